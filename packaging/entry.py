"""The single file's entry point (packaging/dingqiao.spec): the `dingqiao` command of dingqiao/main.py."""
from dingqiao.main import main

main()
