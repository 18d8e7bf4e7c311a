"""Counting CPU instructions with valgrind's callgrind, for the benchmarks that must not move with the machine's
load (page_instructions.py, loop_instructions.py): the script runs itself again as a child under callgrind with
counting off, and the child switches counting on only around the work it measures. Needs Debian's ``valgrind``."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def require_valgrind() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian package valgrind)")


def count_child(script: str, *arguments: str) -> int:
    """Instructions counted while ``script`` (run again with ``arguments``) had counting on (``counting``)."""
    with tempfile.TemporaryDirectory() as tmp:
        child = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={tmp}/out",
             sys.executable, script, *arguments],
            capture_output=True, text=True, cwd=ROOT)
        collected = re.search(r"Collected : (\d+)", child.stderr)
        if child.returncode != 0 or not collected:
            raise RuntimeError(f"{' '.join(arguments)}: {child.stdout[-2000:]}{child.stderr[-2000:]}")
        return int(collected.group(1))


@contextmanager
def counting() -> Iterator[None]:
    """Inside the child: count what runs in the block."""
    switch = ["callgrind_control", "--instr={}", str(os.getpid())]
    subprocess.run([part.format("on") for part in switch], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([part.format("off") for part in switch], check=True, capture_output=True)
