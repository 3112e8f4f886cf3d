"""Time `orchestrator status` (10 components, 100,000 attempt rows) against the interpreter's floor.

The floor is `python -c pass`. Both run side by side, interleaved, in fresh processes, so
start-up counts for both. Byte code is cached (in a temporary PYTHONPYCACHEPREFIX) as for
an installed package, even when the environment sets PYTHONDONTWRITEBYTECODE (`--no-pyc`
measures a source tree without cached byte code: the project's modules compiled on every start).

    python tests/bench/bench_status.py [--rounds 15] [--components 10] [--attempts 100000] [--no-pyc]

Target: a median of at most 250 ms for `orchestrator status`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pytest_orchestrator.state import StateStore
from pytest_orchestrator.state.components import ComponentRow, ComponentStore, ProbeRow
from tests.bench._common import bench_env, timed

REPO = Path(__file__).resolve().parents[2]
TARGET = 0.250


def build_state(state_dir: Path, components: int, attempts: int) -> ComponentStore:
    """A state database with `attempts` finished attempts and `components` healthy components."""
    store = StateStore.open(state_dir)
    now = time.time()
    with store._transaction() as conn:
        run_id = conn.execute(
            "INSERT INTO runs (started_at, pid, host, run_key) VALUES (?, 1, 'bench', 'bench')", (now,)
        ).lastrowid
        conn.executemany(
            "INSERT INTO attempts (run_id, plan, task_id, title, attempt, started_at, ended_at, status, "
            "input_tokens, output_tokens, cost_usd, worker) VALUES (?, ?, ?, ?, 1, ?, ?, 'completed', "
            "1200, 340, 0.02, 'main')",
            (
                (run_id, f"plans/plan{i % 50}.md", f"{i // 50}.{i % 7}", f"task {i}", now - i, now - i + 30)
                for i in range(attempts)
            ),
        )
    rows = ComponentStore(store)
    rows.started("orchestrator.yaml")
    for index in range(components):
        name = "sandbox" if index == 0 else f"component{index}"
        kind = "container" if index == 0 else "process"
        rows.save(
            ComponentRow(
                name,
                kind,
                "RUNNING",
                "healthy",
                pid=None if index == 0 else 10_000 + index,
                container="orchestrator-sandbox" if index == 0 else None,
                started_at=now - 3600,
                restarts=index % 3,
                last_restart_at=now - 600 if index % 3 else None,
                last_restart_reason="liveness failed 3 times: exit 1" if index % 3 else None,
            )
        )
        for role in ("startup", "liveness", "readiness"):
            rows.save_probe(ProbeRow(name, role, "exec", True, "exit 0", 0.01, now, 1, 0))
    return rows


def main() -> int:
    """Run the benchmark and print medians against the floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--attempts", type=int, default=100_000)
    parser.add_argument("--no-pyc", action="store_true", help="compile the project's modules on every start")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as project_dir, tempfile.TemporaryDirectory() as pycache:
        project = Path(project_dir)
        (project / "pytest.ini").write_text("[pytest]\norchestrator_state_dir = state\n")
        rows = build_state(project / "state", options.components, options.attempts)
        size = (project / "state" / "state.db").stat().st_size
        env = bench_env()
        env.update(PYTHONPATH=str(REPO))
        if options.no_pyc:
            # The standard library keeps its own cached byte code; only the project's is compiled.
            env.update(PYTHONDONTWRITEBYTECODE="1")
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env.update(PYTHONPYCACHEPREFIX=pycache)
        commands = {
            "floor  (python -c pass)": [sys.executable, "-c", "pass"],
            "status (orchestrator status)": [sys.executable, "-m", "pytest_orchestrator", "status"],
            "json   (orchestrator status --json)": [
                sys.executable,
                "-m",
                "pytest_orchestrator",
                "status",
                "--json",
            ],
            "verbose (orchestrator status -v)": [sys.executable, "-m", "pytest_orchestrator", "status", "-v"],
        }
        # One warm-up each: the byte code cache and the page cache then hold everything.
        for args in commands.values():
            timed(args, project, env)
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(options.rounds):
            # The bench process is the watchdog; its heartbeat must stay fresh.
            rows.beat()
            for label, args in commands.items():
                times[label].append(timed(args, project, env))
        rows.store.close()

    print(
        f"rounds: {options.rounds}; {options.components} components, {options.attempts} attempt rows, "
        f"state.db {size / 2**20:.1f} MiB"
    )
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:<37} median {median * 1000:4.0f} ms, min {min(values) * 1000:4.0f} ms")
    floor = statistics.median(times["floor  (python -c pass)"])
    status = statistics.median(times["status (orchestrator status)"])
    print(f"status over the floor (median): {(status - floor) * 1000:.0f} ms")
    verdict = "met" if status <= TARGET else "MISSED"
    print(f"target: median <= {TARGET * 1000:.0f} ms: {verdict}")
    return 0 if status <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
