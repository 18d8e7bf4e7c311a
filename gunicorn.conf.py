"""gunicorn -c gunicorn.conf.py wsgi:app: the settings live in the package (dingqiao/gunicorn_conf.py), where the
single file's ``dingqiao serve`` reads them too."""
from dingqiao.gunicorn_conf import *  # noqa: F401,F403
