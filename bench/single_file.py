"""The single file's size and start-up time (docs/performance.md, "The single file").

    .venv/bin/python bench/single_file.py [COMMAND ...] [--runs N]

COMMAND defaults to dist/dingqiao (scripts/build makes it); give `.venv/bin/dingqiao` too to compare with the
same command run from the virtualenv. Each run starts `COMMAND serve` in an empty folder with no Python on PATH,
as a production shop (not demo mode, 2 workers): a first start, which creates and migrates the SQLite file and
generates the secret key, then a second start in the same folder. The time is from the start of the command to
the first /healthz answer; `version` is the floor every command pays (for the single file: unpacking itself into
a temporary folder, then importing the app). Prints the medians.
"""
import argparse
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {"WECHAT_APP_ID": "wx1234567890abcdef", "WECHAT_APP_SECRET": "bench-secret",
              "PUBLIC_BASE_URL": "https://shop.example.cn"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_healthz(command: Path, folder: Path, env: dict, timeout: float = 120) -> float:
    port = free_port()
    started = time.monotonic()
    server = subprocess.Popen([command, "serve", "--bind", f"127.0.0.1:{port}"], cwd=folder, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.monotonic() - started < timeout:
            if server.poll() is not None:
                raise RuntimeError(f"serve exited with {server.returncode}")
            try:
                with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return time.monotonic() - started
            except (URLError, ConnectionError, OSError):
                time.sleep(0.02)
        raise RuntimeError(f"no /healthz answer within {timeout} s")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def time_command(command: Path, folder: Path, env: dict, *argv: str) -> float:
    started = time.monotonic()
    subprocess.run([command, *argv], cwd=folder, env=env, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commands", nargs="*", type=Path, default=[ROOT / "dist" / "dingqiao"])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    print(f"{options.runs} runs on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    for command in options.commands:
        command = command.absolute()
        first, second, version = [], [], []
        for _ in range(options.runs):
            with tempfile.TemporaryDirectory(prefix="dingqiao-bench-") as scratch:
                folder = Path(scratch) / "server"
                folder.mkdir()
                env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "LANG": "C.UTF-8", "GUNICORN_WORKERS": "2",
                       **PRODUCTION}
                version.append(time_command(command, folder, env, "version"))
                first.append(time_to_healthz(command, folder, env))
                second.append(time_to_healthz(command, folder, env))
        print(f"{command} ({command.stat().st_size / 2**20:.1f} MB)")
        print(f"  version (unpack + import):                  {statistics.median(version):5.2f} s")
        print(f"  first start to /healthz (create + migrate): {statistics.median(first):5.2f} s")
        print(f"  second start to /healthz (existing data):   {statistics.median(second):5.2f} s")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
