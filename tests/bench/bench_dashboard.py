"""Time a dashboard frame over 100,000 attempts of 30 days, with a live run, loop and watchdog.

The history is inserted in bulk: runs of 20 attempts each on four workers, every attempt
finished (85 % completed, the rest failed, timed out, errored or interrupted). The live part
is written through the stores the orchestrator uses: a run with four attempts running (with
their progress and fresh heartbeats), 50 queued tasks, the loop, three components under a
live watchdog, and the watchdog's health history (a row a minute for 30 days, as
`record_round` keeps it while all is well). Timed:

- a frame in this process, as the live view draws it: open state.db read-only, `snapshot`,
  render to a string, close; and `snapshot` and the rendering alone;
- the whole command, `orchestrator dashboard --once` and `--json`, in fresh processes,
  interleaved with the floor `python -c pass`; byte code cached (in a temporary
  PYTHONPYCACHEPREFIX) as for an installed package.

    python tests/bench/bench_dashboard.py [--rounds 30] [--attempts 100000] [--days 30]

Target: a median of at most 200 ms for a frame (the specification's goal).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pytest_orchestrator.health.history import HealthRow, record
from pytest_orchestrator.loop import LoopStore, QueueRow, QueueStore
from pytest_orchestrator.result import Usage
from pytest_orchestrator.state import StateStore
from pytest_orchestrator.state.components import ComponentRow, ComponentStore
from pytest_orchestrator.views.dashboard import snapshot
from pytest_orchestrator.views.dashboard_screen import frame, read
from tests.bench._common import median_ms, state_project, timed

TARGET = 0.200
DAY = 86400.0
STATUSES = ["completed"] * 85 + ["failed"] * 8 + ["timeout"] * 3 + ["error"] * 2 + ["interrupted"] * 2
PER_RUN = 20


def build_state(state_dir: Path, attempts: int, days: float, now: float) -> StateStore:
    """A state database with `attempts` finished attempts over the last `days` days, and a live run."""
    store = StateStore.open(state_dir)
    rng = random.Random(11)
    starts = sorted(now - rng.random() * days * DAY for _ in range(attempts))
    runs, rows = [], []
    for index, started in enumerate(starts):
        run = index // PER_RUN + 1
        if index % PER_RUN == 0:
            last = starts[min(index + PER_RUN, attempts) - 1]
            runs.append((run, started - 1, min(now - 1, last + 901), 10_000 + run, f"key{run}"))
        plan = f"plans/plan{index % 20}.md"
        task = f"{index % 7 + 1}.{index % 13 + 1}"
        status = rng.choice(STATUSES)
        rows.append(
            (
                run,
                plan,
                task,
                f"Task {task} of {plan}",
                status,
                started,
                min(now - 1, started + rng.uniform(20, 900)),
                rng.randrange(1000, 200_000),
                rng.randrange(100, 20_000),
                rng.randrange(0, 50_000),
                rng.random() * 2,
                rng.randrange(1, 40),
                f"session-{index}",
                None if status == "completed" else f"{status}: something went wrong in step {index % 9}",
                f"gw{index % 4}",
            )
        )
    # The history in two statements: what is timed is reading it, and 200,000 transactions
    # would take minutes to write.
    with store.writing() as conn:
        conn.executemany(
            "INSERT INTO runs (id, started_at, ended_at, status, pid, host, run_key) "
            "VALUES (?, ?, ?, 'finished', ?, 'bench-host', ?)",
            runs,
        )
        conn.executemany(
            "INSERT INTO attempts (run_id, plan, task_id, title, status, started_at, ended_at, input_tokens, "
            "output_tokens, cache_read_tokens, cost_usd, num_turns, session_id, error, worker) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO heartbeats (run_id, worker, at) VALUES (?, ?, ?)",
            [(run, f"gw{w}", ended) for run, _, ended, _, _ in runs for w in range(4)],
        )
    live = store.begin_run("live")
    for worker in range(4):
        attempt = store.start_attempt(
            live, "plans/live.md", f"9.{worker}", f"Live task {worker}", worker=f"gw{worker}", now=now - 60
        )
        store.attempt_progress(attempt, 5 + worker, Usage(input_tokens=10_000 * (worker + 1)))
        store.heartbeat(live, f"gw{worker}")
    QueueStore(store).replace(
        ["plans/queued.md"],
        [
            QueueRow("plans/queued.md", f"5.{n}", f"Queued {n}", "P2", n, now, "not yet reached")
            for n in range(50)
        ],
    )
    LoopStore(store).started(poll_interval=30)
    components = ComponentStore(store)
    components.started("orchestrator.yaml", period=10)
    for name in ("sandbox", "mcp", "proxy"):
        components.save(ComponentRow(name, "process", "RUNNING", "healthy", pid=1, started_at=now - DAY))
    checks = {"sandbox": "ok", "disk_space": "ok", "credentials": "ok", "orchestrator": "ok"}
    for n in range(int(days * DAY / 60), 0, -1):
        record(store, HealthRow(at=now - n * 60, source="watchdog", status="healthy", checks=checks))
    return store


def main() -> int:
    """Build the state, run the benchmark and print medians against the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--attempts", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=30.0)
    options = parser.parse_args()

    with state_project() as (project, env):
        state_dir = project / "state"
        now = time.time()
        started = time.perf_counter()
        store = build_state(state_dir, options.attempts, options.days, now)
        built = time.perf_counter() - started
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = (state_dir / "state.db").stat().st_size

        def whole_frame() -> str:
            return frame(read(state_dir))

        reader = StateStore.read(state_dir)
        assert reader is not None
        taken = snapshot(reader, time.time())
        text = frame(taken)
        assert "Orchestrator: RUNNING" in text and "Latest 10 attempts" in text, text
        assert len(taken.active) == 4 and taken.queue_depth == 50, taken
        queries = {
            "frame (read + snapshot + render)": median_ms(whole_frame, options.rounds),
            "snapshot() alone": median_ms(lambda: snapshot(reader, time.time()), options.rounds),
            "render to a string alone": median_ms(lambda: frame(taken), options.rounds),
        }
        reader.close()

        env["COLUMNS"] = "160"
        command = [sys.executable, "-m", "pytest_orchestrator", "dashboard"]
        commands = {
            "floor   (python -c pass)": [sys.executable, "-c", "pass"],
            "command (dashboard --once)": [*command, "--once"],
            "command (dashboard --json)": [*command, "--json"],
        }
        for args in commands.values():
            timed(args, project, env)
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(min(options.rounds, 15)):
            for label, args in commands.items():
                times[label].append(timed(args, project, env))
        store.close()

    print(
        f"rounds: {options.rounds}; {options.attempts} attempts over {options.days:g} days, "
        f"state.db {size / 2**20:.0f} MiB (written in {built:.0f} s)"
    )
    for label, (median, least) in queries.items():
        print(f"{label:<40} median {median:6.1f} ms, min {least:6.1f} ms")
    for label, values in times.items():
        print(
            f"{label:<40} median {statistics.median(values) * 1000:6.0f} ms, min {min(values) * 1000:6.0f} ms"
        )
    floor = statistics.median(times["floor   (python -c pass)"])
    once = statistics.median(times["command (dashboard --once)"])
    print(f"dashboard --once over the floor (median): {(once - floor) * 1000:.0f} ms")
    median = queries["frame (read + snapshot + render)"][0] / 1000
    verdict = "met" if median <= TARGET else "MISSED"
    print(f"target: a frame's median <= {TARGET * 1000:.0f} ms: {verdict}")
    return 0 if median <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
