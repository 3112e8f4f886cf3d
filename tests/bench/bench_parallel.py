"""Parallel plans: wall time of `pytest plans -n W` against an agent with a fixed latency.

T tasks spread over P plans run with `-n W`; the agent is a conftest plugin implementing
`pytest_orchestrator_dispatch` that sleeps L seconds and reports the task completed. It
never uses the sandbox handle, so no Docker engine is needed. The ideal wall time is
T * L / W (every worker busy from start to end); the report gives the efficiency
(ideal / wall), the orchestration overhead per task and the controller's peak memory.

    python tests/bench/bench_parallel.py [--tasks 100] [--plans 10] [--workers 10]
                                         [--latency 2] [--rounds 1] [--variant all]

Two command lines are timed (--variant): `full`, as a user would type it, and `trimmed`,
with the installed plugins a plan run has no use for disabled (TRIMMED), which every
worker would otherwise import and configure at start-up. pytest-timeout stays: it bounds
each task (task_timeout).

Each has a floor beside it, in the same rounds: `floor` and `floor-trimmed` run the same
shape as plain pytest tests (P test files of `time.sleep(L)` tests) with
`-n W --dist loadfile` and this plugin disabled. No plugin can make a plan run faster than
pytest-xdist runs tests that only sleep, so the distance to the floor is this plugin's own
cost; the floor's efficiency is the ceiling of any target on the machine.

The run is also checked: every task has one completed attempt row in the state database,
each plan's tasks ran on one worker, one after the other, in document order. The script
exits non-zero when a check fails (the efficiency target is reported, not enforced).
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench._common import PYTEST, bench_env

# Installed pytest plugins that play no part in running plans: pytest-benchmark and
# Hypothesis register fixtures, options and hooks only test suites use; pytest-json-report
# (and pytest-metadata, which it needs) only matter with --json-report. Together they about
# double each process's start-up CPU (measured: 0.7 s against 0.35 s for `--collect-only`),
# and Hypothesis's session end holds every worker for about 1 s.
TRIMMED = [
    "-p",
    "no:benchmark",
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:pytest_jsonreport",
    "-p",
    "no:metadata",
]

VARIANTS = ("full", "trimmed", "floor", "floor-trimmed")

# The agent: sleeps the latency, logs where and when it ran, reports the task completed.
# Each process also logs when it reaches a few points of the session (to see where the
# time goes) and its own peak RSS as it ends, so the controller's is known apart from its
# workers'.
CONFTEST = """
import os
import resource
import time

import pytest

from pytest_orchestrator.result import TaskResult

LATENCY = {latency!r}
LOG = {log!r}
EVENTS = {events!r}


def _append(path, line):
    # One write of a short line to an O_APPEND file: lines of concurrent workers never mix.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def pytest_orchestrator_dispatch(task, sandbox, config):
    start = time.time()
    time.sleep(LATENCY)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    _append(LOG, f"{{worker}} {{task.plan}} {{task.id}} {{start:.6f}} {{time.time():.6f}}\\n")
    return TaskResult(task.id, "completed", duration_seconds=LATENCY, cost_usd=0.001)


def _event(name):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "controller")
    _append(EVENTS, f"{{worker}} {{name}} {{time.time():.6f}}\\n")


def pytest_configure(config):
    _event("configure")


def pytest_collection_finish(session):
    _event("collected")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    _event("sessionfinish")
    try:
        return (yield)
    finally:
        _event("sessionfinished")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    _event("testnodedown")


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config):
    _event("unconfigure")
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _event(f"peak_kib={{peak_kib}}")
"""


def _plan(number: int, tasks: int) -> str:
    body = [f"# Benchmark plan {number}", ""]
    for n in range(1, tasks + 1):
        body += [f"## Task {number}.{n}: Step {n}", "", f"Do step {n} of plan {number}.", ""]
    return "\n".join(body)


def _layout(work: Path, tasks: int, plans: int) -> dict[str, list[str]]:
    """Write the plans; return each plan's task ids in document order, by plan key."""
    (work / "plans").mkdir()
    order: dict[str, list[str]] = {}
    for p in range(plans):
        count = tasks // plans + (1 if p < tasks % plans else 0)
        key = f"plans/p{p:02d}.md"
        (work / key).write_text(_plan(p + 1, count))
        order[key] = [f"{p + 1}.{n}" for n in range(1, count + 1)]
    return order


def _check(work: Path, order: dict[str, list[str]], log: list[list[str]]) -> list[str]:
    """What is wrong with the run, as a list of messages (empty when it is right)."""
    problems: list[str] = []
    expected = sum(len(ids) for ids in order.values())
    if len(log) != expected:
        problems.append(f"the agent ran {len(log)} times, expected {expected}")
    workers_of: dict[str, str] = {}
    for plan, ids in order.items():
        rows = [r for r in log if r[1] == plan]
        workers = {r[0] for r in rows}
        if len(workers) != 1:
            problems.append(f"{plan} ran on {len(workers)} workers: {sorted(workers)}")
        else:
            workers_of[plan] = workers.pop()
        rows.sort(key=lambda r: float(r[3]))
        if [r[2] for r in rows] != ids:
            problems.append(f"{plan} ran out of document order: {[r[2] for r in rows]}")
        for before, after in itertools.pairwise(rows):
            if float(after[3]) < float(before[4]):
                problems.append(f"{plan}: {after[2]} started before {before[2]} ended")
    conn = sqlite3.connect(work / "state" / "state.db")
    try:
        attempts = conn.execute("SELECT plan, task_id, status, worker FROM attempts").fetchall()
    finally:
        conn.close()
    done = {(plan, task) for plan, task, status, _ in attempts if status == "completed"}
    if len(attempts) != expected or len(done) != expected:
        problems.append(f"state: {len(attempts)} attempt rows, {len(done)} distinct completed tasks")
    wanted = {(plan, task) for plan, ids in order.items() for task in ids}
    if done != wanted:
        problems.append(f"state: completed tasks differ, missing {sorted(wanted - done)[:5]}")
    for plan, task, _, worker in attempts:
        if plan in workers_of and worker != workers_of[plan]:
            problems.append(f"state: {plan} {task} recorded on {worker}, agent ran on {workers_of[plan]}")
    return problems


def _floor_round(options: argparse.Namespace, trimmed: bool) -> dict[str, float] | list[str]:
    """One timed run of plain pytest tests of the same shape, without this plugin."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "tests").mkdir()
        (work / "pytest.ini").write_text("[pytest]\n")
        for p in range(options.plans):
            count = options.tasks // options.plans + (1 if p < options.tasks % options.plans else 0)
            body = ["import time", ""]
            for n in range(1, count + 1):
                body += [f"def test_{n}():", f"    time.sleep({options.latency!r})", ""]
            (work / "tests" / f"test_p{p:02d}.py").write_text("\n".join(body))
        args = [
            *PYTEST,
            "tests",
            "-n",
            str(options.workers),
            "--dist",
            "loadfile",
            "-p",
            "no:orchestrator",
            *(TRIMMED if trimmed else []),
        ]
        started = time.perf_counter()
        result = subprocess.run(args, cwd=work, env=bench_env(), capture_output=True, text=True)
        wall = time.perf_counter() - started
    if result.returncode != 0:
        return [f"pytest exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"]
    return {"wall": wall, "ideal": options.tasks * options.latency / options.workers}


def _round(options: argparse.Namespace, trimmed: bool) -> dict[str, float] | list[str]:
    """One timed run in a fresh project; its figures, or what went wrong."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        order = _layout(work, options.tasks, options.plans)
        log, events = work / "agent.log", work / "events.log"
        (work / "conftest.py").write_text(
            CONFTEST.format(latency=options.latency, log=str(log), events=str(events))
        )
        args = [
            *PYTEST,
            "plans",
            "-n",
            str(options.workers),
            "--orchestrator-state-dir",
            "state",
            *(TRIMMED if trimmed else []),
        ]
        env = bench_env()
        launched = time.time()
        started = time.perf_counter()
        result = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        ended = time.time()
        if result.returncode != 0:
            return [f"pytest exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"]
        rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
        problems = _check(work, order, rows)
        if problems:
            return problems
        marks = [line.split() for line in events.read_text().splitlines() if line.strip()]
    # Each process's events, in seconds since launch; peak RSS in KiB.
    at: dict[str, dict[str, float]] = {}
    peaks: dict[str, int] = {}
    for process, name, stamp in marks:
        if name.startswith("peak_kib="):
            peaks[process] = int(name.split("=")[1])
        else:
            at.setdefault(process, {})[name] = float(stamp) - launched
    workers = [p for p in at if p != "controller"]
    spans: dict[str, list[tuple[float, float]]] = {}
    for worker, _, _, start, end in rows:
        spans.setdefault(worker, []).append((float(start) - launched, float(end) - launched))
    gaps = []
    for runs in spans.values():
        runs.sort()
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(runs)]
    return {
        "wall": wall,
        "ideal": options.tasks * options.latency / options.workers,
        "controller_configured": at["controller"]["configure"],
        "workers_configured": max(at[w]["configure"] for w in workers),
        "workers_collected": max(at[w]["collected"] for w in workers),
        "first_dispatch": min(r[0][0] for r in spans.values()),
        "last_first_dispatch": max(r[0][0] for r in spans.values()),
        "gap_ms": statistics.mean(gaps) * 1000 if gaps else 0.0,
        "last_end": max(r[-1][1] for r in spans.values()),
        "workers_session_end": max(at[w]["sessionfinish"] for w in workers),
        "workers_session_ended": max(at[w]["sessionfinished"] for w in workers),
        "workers_finished": max(at[w]["unconfigure"] for w in workers),
        "last_node_down": at["controller"]["testnodedown"],
        "controller_session_end": at["controller"]["sessionfinish"],
        "controller_session_ended": at["controller"]["sessionfinished"],
        "controller_finished": at["controller"]["unconfigure"],
        "exit": ended - launched,
        "controller_mib": peaks["controller"] / 1024,
        "worker_mib": max(peaks[w] for w in workers) / 1024,
    }


def _show(variant: str, f: dict[str, float]) -> None:
    print(
        f"{variant:13} wall {f['wall']:.2f}s, ideal {f['ideal']:.2f}s, efficiency {f['ideal'] / f['wall']:.1%}; "
        f"controller peak RSS {f['controller_mib']:.0f} MiB (largest worker {f['worker_mib']:.0f} MiB)"
    )
    print(
        f"{'':13} since launch: controller configured {f['controller_configured']:.2f}s, all workers "
        f"configured {f['workers_configured']:.2f}s, collected {f['workers_collected']:.2f}s, first "
        f"dispatch {f['first_dispatch']:.2f}s (last worker's {f['last_first_dispatch']:.2f}s), gap between "
        f"tasks {f['gap_ms']:.0f} ms, last agent done {f['last_end']:.2f}s"
    )
    print(
        f"{'':13} session end: workers' began {f['workers_session_end']:.2f}s and took until "
        f"{f['workers_session_ended']:.2f}s, workers unconfigured {f['workers_finished']:.2f}s, last worker "
        f"down {f['last_node_down']:.2f}s, controller's session end {f['controller_session_end']:.2f}s to "
        f"{f['controller_session_ended']:.2f}s, controller unconfigured {f['controller_finished']:.2f}s, "
        f"exit {f['exit']:.2f}s"
    )


def main() -> int:
    """Run the benchmark, check each run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--plans", type=int, default=10)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds each dispatch takes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variant", choices=(*VARIANTS, "both", "all"), default="all")
    parser.add_argument("--target", type=float, default=0.85, help="least acceptable efficiency")
    options = parser.parse_args()
    if options.tasks < options.plans or options.plans < 1:
        parser.error("need at least one task per plan")

    if options.variant == "all":
        variants = list(VARIANTS)
    elif options.variant == "both":
        variants = ["full", "trimmed"]
    else:
        variants = [options.variant]
    figures: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    failed = False
    for _ in range(options.rounds):
        for variant in variants:
            trimmed = variant.endswith("trimmed")
            if variant.startswith("floor"):
                outcome = _floor_round(options, trimmed)
            else:
                outcome = _round(options, trimmed)
            if isinstance(outcome, list):
                print(f"{variant}: CHECK FAILED")
                for problem in outcome[:10]:
                    print(f"  {problem}")
                if len(outcome) > 10:
                    print(f"  ... and {len(outcome) - 10} more")
                failed = True
                continue
            figures[variant].append(outcome)
            if variant.startswith("floor"):
                print(
                    f"{variant:13} wall {outcome['wall']:.2f}s, efficiency {outcome['ideal'] / outcome['wall']:.1%}"
                )
            else:
                _show(variant, outcome)

    print(
        f"{options.tasks} tasks, {options.plans} plans, -n {options.workers}, latency {options.latency:g}s, "
        f"rounds {options.rounds}; checks (state rows, one worker per plan, order): "
        + ("FAILED" if failed else "passed")
    )
    print(
        "efficiency = ideal / wall, ideal = tasks * latency / workers; "
        "overhead per task = (wall - ideal) * workers / tasks (worker-seconds not spent in the agent)"
    )
    walls = {v: statistics.median(r["wall"] for r in runs) for v, runs in figures.items() if runs}
    for variant, wall in walls.items():
        runs = figures[variant]
        ideal = runs[0]["ideal"]
        overhead = (wall - ideal) * options.workers / options.tasks
        line = (
            f"{variant:13} median wall {wall:.2f}s, efficiency {ideal / wall:.1%} "
            f"(target >= {options.target:.0%}), overhead {overhead * 1000:.0f} ms/task"
        )
        floor = walls.get("floor" if variant == "full" else "floor-trimmed" if variant == "trimmed" else "")
        if floor is not None:
            line += f", {wall - floor:+.2f}s against its floor"
        if "controller_mib" in runs[0]:
            line += f", controller peak RSS {statistics.median(r['controller_mib'] for r in runs):.0f} MiB"
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
