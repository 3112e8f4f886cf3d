"""The watchdog's cost and its detection latency, measured on the real `orchestrator watch`.

Cost: N process components (default 10), each with a `pid` liveness probe and an `exec`
readiness probe, probed every P seconds (default 10), for S seconds (default 120). The
watchdog process's CPU time over the window, as a share of one core, and its peak RSS,
sampled every second. Targets: under 1 % of one core, under 60 MiB.

Detection latency: a component is killed with SIGKILL K times (default 5); from the kill to
the watchdog's log line that names it, and from the kill to the restart's log line minus the
backoff that line announced. Target: at most 1 s plus the backoff. Then a liveness failure:
an HTTP component whose health endpoint starts answering 500, from that moment to its
restart; the bound is period x failure_threshold + timeout + backoff.

    python tests/bench/bench_watchdog.py [--components 10] [--period 10] [--seconds 120] [--kills 5]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench._common import bench_env

WATCH = [sys.executable, "-m", "pytest_orchestrator", "watch"]

SERVER = """\
import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if os.path.exists("sick") else 200)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def _config(components: int, period: float, port: int) -> str:
    lines = [
        "watchdog:",
        f"  period: {period}",
        "  stop_timeout: 2",
        "  backoff: {initial: 1, factor: 2, max: 60, reset_after: 600}",
        "components:",
        "  sandbox: {enabled: false}",
    ]
    for number in range(components):
        lines += [
            f"  worker{number}:",
            "    command: [sleep, '100000']",
            f"    liveness: {{pid: true, period: {period}}}",
            f"    readiness: {{exec: ['true'], period: {period}}}",
        ]
    lines += [
        "  web:",
        f"    command: [{sys.executable}, server.py, '{port}']",
        f"    startup: {{tcp: '127.0.0.1:{port}', period: 0.2, timeout: 0.1, failure_threshold: 100}}",
        f"    liveness: {{http: 'http://127.0.0.1:{port}/', period: 1, timeout: 0.5, failure_threshold: 3}}",
    ]
    return "\n".join(lines) + "\n"


def _pid_of(state: Path, name: str) -> int | None:
    try:
        conn = sqlite3.connect(f"file:{state / 'state.db'}?mode=ro", uri=True)
    except sqlite3.Error:
        return None  # not created yet
    try:
        row = conn.execute("SELECT pid, status FROM components WHERE name = ?", (name,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return int(row[0]) if row and row[0] and row[1] == "RUNNING" else None


def _wait(predicate, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit("timed out waiting for the watchdog")


def _log_after(log: Path, pattern: str, since: float) -> tuple[float, re.Match[str]] | None:
    for line in log.read_text().splitlines():
        stamp, _, message = line.partition(" ")
        at = datetime.fromisoformat(stamp).timestamp()
        match = re.search(pattern, message)
        if match and at >= since:
            return at, match
    return None


def main() -> int:
    """Run the measurements and print their medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--kills", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (work / "server.py").write_text(SERVER)
        (work / "orchestrator.yaml").write_text(_config(options.components, options.period, port))
        state = work / ".orchestrator"
        watch = subprocess.Popen(
            WATCH, cwd=work, env=bench_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            process = psutil.Process(watch.pid)
            _wait(
                lambda: (
                    all(_pid_of(state, f"worker{n}") for n in range(options.components))
                    and _pid_of(state, "web")
                )
            )
            # Cost over the window: CPU seconds of the watchdog process (its probes' children included).
            time.sleep(1)
            cpu0, wall0 = process.cpu_times(), time.monotonic()
            peak = 0
            while time.monotonic() - wall0 < options.seconds:
                peak = max(peak, process.memory_info().rss)
                time.sleep(1)
            cpu1, wall1 = process.cpu_times(), time.monotonic()
            used = (cpu1.user + cpu1.system + cpu1.children_user + cpu1.children_system) - (
                cpu0.user + cpu0.system + cpu0.children_user + cpu0.children_system
            )
            share = 100 * used / (wall1 - wall0)
            print(
                f"cost: {options.components} components probed every {options.period:g}s for {wall1 - wall0:.0f}s: "
                f"{share:.2f}% of one core (target < 1%), peak RSS {peak / 2**20:.1f} MiB (target < 60 MiB)"
            )
            log = state / "logs" / "watchdog.log"
            detect, restart = [], []
            for kill in range(options.kills):
                name = f"worker{kill % options.components}"
                pid = _wait(lambda name=name: _pid_of(state, name))
                killed = time.time()
                os.kill(pid, signal.SIGKILL)
                seen = _wait(
                    lambda name=name, killed=killed: _log_after(
                        log, rf"^{name}: killed by signal 9; restart \d+ in ([\d.]+)s", killed
                    )
                )
                backoff = float(seen[1].group(1))
                started = _wait(
                    lambda name=name, killed=killed: _log_after(log, rf"^{name}: running pid", killed)
                )
                detect.append(seen[0] - killed)
                restart.append(started[0] - killed - backoff)
            print(
                f"detection after SIGKILL ({options.kills} kills): median {statistics.median(detect) * 1000:.0f} ms "
                f"to the log line; median {statistics.median(restart) * 1000:.0f} ms to the restart beyond its "
                f"backoff (target <= 1000 ms plus the backoff)"
            )
            sick = time.time()
            (work / "sick").touch()
            seen = _wait(
                lambda: _log_after(log, r"^web: liveness failed 3 times: .*; restart \d+ in ([\d.]+)s", sick)
            )
            print(
                f"liveness failure to restart decision: {seen[0] - sick:.2f}s "
                f"(bound: period 1 x threshold 3 + timeout 0.5 = 3.5s, then the backoff {seen[1].group(1)}s)"
            )
        finally:
            watch.send_signal(signal.SIGTERM)
            try:
                watch.wait(30)
            except subprocess.TimeoutExpired:
                watch.kill()
        errors = watch.stderr.read().decode() if watch.stderr else ""
    if watch.returncode not in (0, -signal.SIGTERM):
        print(f"watchdog exited {watch.returncode}: {errors[-2000:]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
