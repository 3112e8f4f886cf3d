"""Time `orchestrator crashes` over 100,000 crash rows of 200 fingerprints spread over 30 days.

The rows are written through `CrashStore.record`, oldest first, each with a realistic log
tail (a traceback of about 1 KiB), fingerprints drawn with Zipf-like frequencies, a third of
them respawned. Timed:

- the whole command, `orchestrator crashes --since 24h --json` and `--since 30d --json`, in
  fresh processes, interleaved with the floor `python -c pass`; byte code cached (in a
  temporary PYTHONPYCACHEPREFIX) as for an installed package;
- `CrashStore.groups()` alone, in this process, for both windows;
- the other ways to pick each group's sample, for comparison: the row of MAX(id) per group,
  and a window function (ROW_NUMBER() OVER (PARTITION BY fingerprint ...));
- `groups()` with schema 5's index on (fingerprint, at), which lacks the respawned flag.

    python tests/bench/bench_crashes.py [--rounds 15] [--crashes 100000] [--fingerprints 200] [--days 30]

Target: a median of at most 250 ms for the command, for both windows.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pytest_orchestrator.crashes.model import Crash
from pytest_orchestrator.crashes.store import CrashStore
from pytest_orchestrator.state import StateStore
from tests.bench._common import median_ms, state_project, timed

TARGET = 0.250
DAY = 86400.0

TRACEBACK = """\
Traceback (most recent call last):
  File "/workspace/app/main.py", line {line}, in run
    result = handler(request)
  File "/workspace/app/handlers.py", line {line2}, in handle_{n}
    return backend.fetch(key)
  File "/usr/lib/python3.11/site-packages/backend/client.py", line 311, in fetch
    raise {error}(f"request {request} failed after {attempts} attempts")
{error}: request {request} failed after {attempts} attempts
2026-11-23T14:05:01.123 ERROR worker {worker} stopped: {error}
2026-11-23T14:05:01.124 INFO shutting down worker {worker}, pending {pending} requests dropped
"""

# Other ways to pick each group's sample than groups()' lookup of the latest row by time.
MAX_ID = """
WITH g AS (
    SELECT fingerprint, COUNT(*) AS count, MIN(at) AS first_seen, MAX(at) AS last_seen,
           SUM(respawned) AS respawned, MAX(id) AS latest
    FROM agent_crashes WHERE at >= :since GROUP BY fingerprint
)
SELECT g.*, c.error_type, c.kind, c.subject, c.plan, c.message, c.root_cause, c.at, b.number
FROM g JOIN agent_crashes c ON c.id = g.latest
LEFT JOIN bug_reports b ON b.fingerprint = g.fingerprint
ORDER BY g.last_seen DESC, g.fingerprint
"""
WINDOW = """
WITH w AS (
    SELECT fingerprint, at, error_type, kind, subject, plan, message, root_cause,
           ROW_NUMBER() OVER (PARTITION BY fingerprint ORDER BY at DESC, id DESC) AS rank,
           COUNT(*) OVER (PARTITION BY fingerprint) AS count,
           MIN(at) OVER (PARTITION BY fingerprint) AS first_seen,
           SUM(respawned) OVER (PARTITION BY fingerprint) AS respawned
    FROM agent_crashes WHERE at >= :since
)
SELECT w.*, b.number FROM w LEFT JOIN bug_reports b ON b.fingerprint = w.fingerprint
WHERE rank = 1 ORDER BY at DESC, w.fingerprint
"""


def build_state(state_dir: Path, crashes: int, fingerprints: int, days: float, now: float) -> StateStore:
    """A state database with `crashes` crash rows over the last `days` days, and a few bug reports."""
    store = StateStore.open(state_dir)
    rows = CrashStore(store)
    rng = random.Random(10)
    weights = [1 / (rank + 1) for rank in range(fingerprints)]
    errors = ("ImportError", "RuntimeError", "TimeoutError", "ConnectionError", "KeyError", "OOMKilled")
    times = sorted(now - rng.random() * days * DAY for _ in range(crashes))
    kinds = rng.choices(range(fingerprints), weights, k=crashes)
    for index, (at, n) in enumerate(zip(times, kinds, strict=True)):
        error = errors[n % len(errors)]
        request = rng.randrange(10**6)
        message = f"request {request} failed after {1 + index % 3} attempts"
        component = n % 10 == 0
        rows.record(
            Crash(
                kind="component" if component else "task",
                subject=f"component{n}" if component else f"{n // 10}.{n % 10}",
                at=at,
                error_type=error,
                message=message,
                fingerprint=f"{error}:{n:04d}:" + "0123456789abcdef" * 2,
                plan=None if component else f"plans/plan{n % 20}.md",
                pid=10_000 + index,
                exit_code=1,
                log_tail=TRACEBACK.format(
                    line=10 + n,
                    line2=40 + n,
                    n=n,
                    error=error,
                    request=request,
                    attempts=1 + index % 3,
                    worker=index,
                    pending=index % 17,
                ),
                respawned=index % 3 != 0,
                root_cause=f"{error}: {message} (at app/handlers.py:{40 + n} in handle_{n})",
                files=("app/main.py", "app/handlers.py"),
            )
        )
    with store.writing() as conn:
        for number, n in enumerate(range(0, fingerprints, 7), start=1):
            error = errors[n % len(errors)]
            conn.execute(
                "INSERT INTO bug_reports (number, fingerprint, title, priority, category, crashes, "
                "first_reported_at, last_reported_at) VALUES (?, ?, ?, 'High', 'crash', 3, ?, ?)",
                (number, f"{error}:{n:04d}:" + "0123456789abcdef" * 2, f"{error} in handle_{n}", now, now),
            )
    return store


def main() -> int:
    """Build the state, run the benchmark and print medians against the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--crashes", type=int, default=100_000)
    parser.add_argument("--fingerprints", type=int, default=200)
    parser.add_argument("--days", type=float, default=30.0)
    options = parser.parse_args()

    with state_project() as (project, env):
        now = time.time()
        started = time.perf_counter()
        store = build_state(project / "state", options.crashes, options.fingerprints, options.days, now)
        built = time.perf_counter() - started
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = (project / "state" / "state.db").stat().st_size
        command = [sys.executable, "-m", "pytest_orchestrator", "crashes"]
        windows = {"24h": DAY, f"{options.days:g}d": options.days * DAY}
        commands = {"floor   (python -c pass)": [sys.executable, "-c", "pass"]}
        for label in windows:
            commands[f"command (crashes --since {label} --json)"] = [*command, "--since", label, "--json"]
        commands["command (crashes, terminal view)"] = command
        for args in commands.values():
            timed(args, project, env)
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(options.rounds):
            for label, args in commands.items():
                times[label].append(timed(args, project, env))

        crashes = CrashStore(store)
        queries: dict[str, tuple[float, float]] = {}
        counts: dict[str, tuple[int, int]] = {}
        for label, window in windows.items():
            since = time.time() - window
            groups = crashes.groups(since)
            counts[label] = (len(groups), sum(g.count for g in groups))
            queries[f"groups() --since {label}"] = median_ms(
                lambda s=since: crashes.groups(s), options.rounds
            )
            for name, sql in (("MAX(id) sample", MAX_ID), ("window function", WINDOW)):
                queries[f"{name} --since {label}"] = median_ms(
                    lambda q=sql, s=since: store.conn.execute(q, {"since": s}).fetchall(), options.rounds
                )
        # Schema 5's index: the respawned flag has to be read from each row.
        with store.writing() as conn:
            conn.execute("DROP INDEX crashes_by_fingerprint")
            conn.execute("CREATE INDEX crashes_by_fingerprint ON agent_crashes (fingerprint, at)")
        for label, window in windows.items():
            since = time.time() - window
            queries[f"groups() --since {label}, schema 5 index"] = median_ms(
                lambda s=since: crashes.groups(s), options.rounds
            )
        store.close()

    print(
        f"rounds: {options.rounds}; {options.crashes} crashes of {options.fingerprints} fingerprints over "
        f"{options.days:g} days, state.db {size / 2**20:.0f} MiB (written in {built:.0f} s)"
    )
    for label, (groups_found, rows) in counts.items():
        print(f"  --since {label}: {groups_found} groups, {rows} crashes")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:<44} median {median * 1000:4.0f} ms, min {min(values) * 1000:4.0f} ms")
    for label, (median, least) in queries.items():
        print(f"{label:<44} median {median:6.1f} ms, min {least:6.1f} ms")
    floor = statistics.median(times["floor   (python -c pass)"])
    slowest = max(statistics.median(v) for label, v in times.items() if label.startswith("command"))
    print(f"slowest command over the floor (median): {(slowest - floor) * 1000:.0f} ms")
    verdict = "met" if slowest <= TARGET else "MISSED"
    print(f"target: median <= {TARGET * 1000:.0f} ms for every command: {verdict}")
    return 0 if slowest <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
