"""What the HTTP benchmarks share: gunicorn under the committed settings (tests/gunicorn_server.py), a cheap
load generator, and readings of the workers from /proc.

The load generator is one asyncio process with aiohttp: each simulated client holds its own keep-alive
connection and sends its next request as soon as the last one is answered (a closed loop), so the rate is
the server's. It costs far less CPU than a thread pool with requests, but it runs on the same two cores as
gunicorn, so every report also says how much CPU the client itself used in the measured window.
"""
import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.gunicorn_server import USER_AGENT, Visitor  # noqa: E402

# The committed gunicorn.conf.py defaults (GUNICORN_WORKERS, GUNICORN_THREADS); every server in one run,
# baseline or app, gets the same.
WORKERS, THREADS = 2, 8
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cookie_header(visitor: Visitor) -> str:
    """The logged-in browser's cookies as one Cookie header, for a client that keeps no cookie jar."""
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in visitor.http.cookies)


def client_session(cookie: str = "") -> aiohttp.ClientSession:
    """One browser: a single keep-alive connection, a fixed Cookie header, no cookie jar to maintain, and the
    User-Agent the cookies were issued to (``Visitor``)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT, **({"Cookie": cookie} if cookie else {})},
        timeout=aiohttp.ClientTimeout(total=60))


# ---------------------------------------------------------------- gunicorn's workers, from /proc

def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def peak_memory_mb(master_pid: int) -> list[float]:
    """VmHWM of each worker: the most resident memory it ever held."""
    peaks = []
    for pid in worker_pids(master_pid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


# ---------------------------------------------------------------- the measured window

@dataclass
class Window:
    """What happened between the end of the warm-up and the end of the run."""
    seconds: float
    opened_at: float  # time.monotonic() when the window opened
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def done(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    def percentile(self, share: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(0.99)

    @property
    def server_cpu_ms_each(self) -> float:
        return 1000 * self.server_cpu_s / self.done if self.done else float("nan")

    @property
    def client_cpu_share(self) -> float:
        return self.client_cpu_s / self.seconds

    def holds(self, moment: float) -> bool:
        return self.opened_at <= moment <= self.opened_at + self.seconds

    def summary(self, unit: str = "req") -> str:
        text = (f"{self.rate:8.1f} {unit}/s  p50 {self.p50:6.1f} ms  p99 {self.p99:6.1f} ms  "
                f"server CPU {self.server_cpu_ms_each:5.2f} ms/{unit}  client CPU {self.client_cpu_share:4.0%}")
        if self.failures:
            text += f"  FAILED {dict(self.failures)}"
        return text


def record_profiles(pids: list[int], seconds: float, folder: Path, waits: bool) -> list[subprocess.Popen]:
    """Start py-spy on each worker for ``seconds``, 100 samples a second. ``waits``: every thread's stack,
    waiting ones included (--idle), to see where requests wait (locks, the database); otherwise only the
    thread holding the GIL (--gil), to see where the CPU goes. Collapsed stacks go to
    ``folder/worker-<pid>.txt`` (bench/profile_summary.py reads them)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration", str(int(seconds)),
         "--rate", "100", "--idle" if waits else "--gil", "--nonblocking", "--format", "raw",
         "--output", str(folder / f"worker-{pid}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


async def closed_loop(clients: int, step: Callable[[int], Awaitable[str | None]], *, master_pid: int,
                      warmup: float, duration: float, profile_to: Path | None = None,
                      profile_waits: bool = False) -> Window:
    """Run ``clients`` concurrent clients, each calling ``step(client)`` back to back for warm-up + duration.
    ``step`` returns None on success or a short failure reason. Steps that finish inside the window count
    (completions per second is the throughput, whenever each step began)."""
    start = time.monotonic()
    opens, closes = start + warmup, start + warmup + duration
    window = Window(duration, opens)
    pids = worker_pids(master_pid)

    async def client(number: int) -> None:
        while time.monotonic() < closes:
            began = time.monotonic()
            failure = await step(number)
            finished = time.monotonic()
            if window.holds(finished):
                if failure is None:
                    window.latencies_ms.append((finished - began) * 1000)
                else:
                    window.failures[failure] += 1

    async def meter() -> None:
        await asyncio.sleep(warmup)
        profilers = record_profiles(pids, duration, profile_to, profile_waits) if profile_to else []
        server, client_cpu = cpu_seconds(pids), time.process_time()
        await asyncio.sleep(duration)
        window.server_cpu_s = cpu_seconds(pids) - server
        window.client_cpu_s = time.process_time() - client_cpu
        for profiler in profilers:
            await asyncio.to_thread(profiler.wait)

    await asyncio.gather(meter(), *(client(number) for number in range(clients)))
    return window


def best(windows: list[Window]) -> Window:
    return max(windows, key=lambda window: window.rate)


def load_arguments(description: str) -> argparse.ArgumentParser:
    """The options every HTTP benchmark takes (the script adds its own, and its --py-spy help)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--postgres", default="")
    return parser
