"""The continuous loop's idle cost and its state writes per task, on the real `pytest --orchestrator-loop`.

Idle cost: `pytest plans --orchestrator-loop` runs its first round (one quick task), then
waits for a poll interval longer than the measurement. Over W windows of S seconds each
(default 3 x 30 s) the CPU time (user + system) of the loop process and its children is
sampled with psutil, as a share of one core; `python -c "import time; time.sleep(...)"`
is sampled in the same windows, as the floor. Target: under 1 % of one core. Then a loop
polling every second over the done project: its first round finds nothing due (its CPU is
reported), and no round starts after it while the plans stay unchanged, so the same
windows give the idle cost at a short poll interval.

Writes per task: a plan of T tasks (default 4) whose scripted agent (a conftest
implementing `pytest_orchestrator_dispatch`) emits E events through `context.on_event`,
spread over D seconds (default 2), E being 1 and then 500; both take the same time, so
only the number of events differs. A plugin loaded with `-p` wraps
`StateStore._transaction` and counts the committed write transactions of each process,
per task (inside its `pytest_runtest_protocol`) and by writer; a trace callback on every
read-write connection checks that no write escapes a transaction. Each case runs in a
round of a real loop and outside the loop. The first task of a run is shown apart (it
opens the run); per task is the median of the others. Target: the 500-event task costs
at most the beats its events may add over the 1-event one, one per `beat_interval`
(1 s with the default freeze threshold of 10 s, the shortest there is) for the attempt's
progress, and in a loop round as many again for the loop's heartbeat: no write per event.
Targets are reported, not enforced; the script exits non-zero when a run or a check of the
count fails.

    python tests/bench/bench_loop.py [--window 30] [--windows 3] [--tasks 4] [--events 500]
                                     [--event-seconds 2]
                                     [--freeze-threshold 10] [--quick]

No Docker engine is needed: the agent never uses the sandbox handle.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pytest_orchestrator.loop import LoopRow, LoopSpec, LoopStore
from pytest_orchestrator.loop.controller import FORCE_ROUND
from pytest_orchestrator.plugin.beat import beat_interval
from pytest_orchestrator.state import StateError, StateStore
from tests.bench._common import PYTEST, bench_env

REPO = Path(__file__).resolve().parents[2]
# What an empty round costs is spread over the default wait between rounds.
DEFAULT_POLL = LoopSpec().poll_interval

# The agent: E events over D seconds (both from the environment), then completed.
AGENT = """
import os
import time

from pytest_orchestrator.result import TaskResult

EVENTS = int(os.environ.get("BENCH_LOOP_EVENTS", "1"))
SECONDS = float(os.environ.get("BENCH_LOOP_SECONDS", "0"))


def pytest_orchestrator_dispatch(task, context):
    # Spread evenly and ending at the deadline, whatever the count: 1 event then a sleep.
    deadline = time.monotonic() + SECONDS
    for n in range(EVENTS):
        context.on_event(
            {
                "type": "assistant",
                "message": {"content": [{"type": "tool_use", "name": "Write", "input": {"file_path": f"step{n}.py"}}]},
            }
        )
        time.sleep(max(0.0, (deadline - time.monotonic()) / (EVENTS - n)))
    return TaskResult(task.id, "completed", agent="scripted")
"""

# The counter, loaded with `-p bench_write_counter`. Its file is written at exit, not at
# unconfigure: the loop process never configures a session, and a cleanup could write later.
COUNTER = """
import atexit
import contextlib
import json
import os
import sys
import threading

import pytest

from pytest_orchestrator.state import store as store_module

OUT = os.environ["BENCH_LOOP_WRITES"]
LOCK = threading.Lock()
COUNTS = {}  # phase (a task's node id, or "session") -> writer -> [transactions, rows changed]
TRACED = {"commits": 0, "autocommit_writes": []}
CURRENT = [None]
SKIP = {"counted", "StateStore.writing", "_write.<locals>.write"}
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")

_transaction = store_module.StateStore._transaction
_connect = store_module._connect


def _writer():
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_qualname in SKIP or frame.f_code.co_filename == contextlib.__file__
    ):
        frame = frame.f_back
    return frame.f_code.co_qualname if frame is not None else "?"


@contextlib.contextmanager
def counted(self):
    writer = _writer()
    before = self.conn.total_changes
    with _transaction(self) as conn:
        yield conn
    with LOCK:
        entry = COUNTS.setdefault(CURRENT[0] or "session", {}).setdefault(writer, [0, 0])
        entry[0] += 1
        entry[1] += self.conn.total_changes - before


def connect(path, *, readonly, **kwargs):
    conn = _connect(path, readonly=readonly, **kwargs)
    if not readonly:

        def trace(sql, conn=conn):
            statement = sql.lstrip().upper()
            with LOCK:
                if statement.startswith("COMMIT"):
                    TRACED["commits"] += 1
                elif statement.startswith(WRITES) and not conn.in_transaction:
                    TRACED["autocommit_writes"].append(sql[:80])

        conn.set_trace_callback(trace)
    return conn


store_module.StateStore._transaction = counted
store_module._connect = connect


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item):
    CURRENT[0] = item.nodeid
    try:
        return (yield)
    finally:
        CURRENT[0] = None


@atexit.register
def _save():
    with LOCK:
        document = {"phases": COUNTS, **TRACED}
    with open(os.path.join(OUT, f"writes-{os.getpid()}.json"), "w") as out:
        json.dump(document, out)
"""


def _plan(tasks: int) -> str:
    body = ["# Loop benchmark", ""]
    for n in range(1, tasks + 1):
        body += [f"## Task 1.{n}: Step {n}", "", f"Do step {n}.", ""]
    return "\n".join(body)


@dataclass
class Project:
    """A project directory with the scripted agent, a plan, the counter and its environment."""

    root: Path
    env: dict[str, str]

    @property
    def state(self) -> Path:
        return self.root / ".orchestrator"

    def configure(self, poll: float, freeze: float) -> None:
        (self.root / "orchestrator.yaml").write_text(
            f"freeze_threshold: {freeze:g}\nloop:\n  poll_interval: {poll:g}\n", encoding="utf-8"
        )

    def loop_row(self) -> LoopRow | None:
        try:
            store = StateStore.read(self.state)
        except StateError:
            return None  # being created
        if store is None:
            return None
        try:
            return LoopStore(store).row()
        finally:
            store.close()

    def completed(self) -> int:
        store = StateStore.read(self.state)
        assert store is not None
        try:
            return int(
                store.conn.execute("SELECT COUNT(*) FROM attempts WHERE status = 'completed'").fetchone()[0]
            )
        finally:
            store.close()

    def log(self) -> str:
        path = self.root / "output.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _project(parent: Path, name: str, tasks: int, events: int, seconds: float) -> Project:
    root = parent / name
    (root / "plans").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "conftest.py").write_text(AGENT, encoding="utf-8")
    (root / "plans" / "bench.md").write_text(_plan(tasks), encoding="utf-8")
    plugins, writes = root / "plugins", root / "writes"
    plugins.mkdir()
    writes.mkdir()
    (plugins / "bench_write_counter.py").write_text(COUNTER, encoding="utf-8")
    env = bench_env()
    env.update(
        PYTHONPATH=os.pathsep.join((str(plugins), str(REPO))),
        # A socket nobody listens on: the scripted agent never needs the engine.
        DOCKER_HOST=f"unix://{root}/dead.sock",
        BENCH_LOOP_EVENTS=str(events),
        BENCH_LOOP_SECONDS=str(seconds),
        BENCH_LOOP_WRITES=str(writes),
    )
    return Project(root, env)


def _wait(predicate: Any, what: str, timeout: float = 120.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise SystemExit(f"timed out waiting for {what}")


def _start_loop(project: Project, *args: str) -> subprocess.Popen[bytes]:
    # The child has its own copy of the file descriptor; ours may close.
    with open(project.root / "output.log", "ab") as output:
        return subprocess.Popen(
            [*PYTEST, "plans", "--orchestrator-loop", *args],
            cwd=project.root,
            env=project.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _stop_loop(project: Project, loop: subprocess.Popen[bytes]) -> None:
    """End the loop with its stop file; a loop that does not end with 0 ends the benchmark."""
    (project.state / "stop").touch()
    try:
        code = loop.wait(timeout=60)
    except subprocess.TimeoutExpired:
        loop.kill()
        loop.wait()
        raise SystemExit(f"the loop did not stop on its stop file:\n{project.log()}") from None
    if code != 0:
        raise SystemExit(f"the loop exited {code}:\n{project.log()}")


def _waiting_after(project: Project, round: int) -> Any:
    row = project.loop_row()
    return row is not None and row.round == round and row.status == "waiting" and row


def _cpu(process: psutil.Process) -> float:
    """CPU seconds of `process`, its reaped children and its live descendants."""
    times = process.cpu_times()
    total = float(times.user + times.system + times.children_user + times.children_system)
    for child in process.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += child_times.user + child_times.system
    return total


# ---- idle cost ----


@dataclass
class Idle:
    loop: list[float]
    floor: list[float]
    empty_round_cpu: list[float]
    empty_round_wall: list[float]
    collect_cpu: list[float]
    polling: list[float]


def _idle(options: argparse.Namespace, parent: Path) -> Idle:
    project = _project(parent, "idle", tasks=1, events=1, seconds=0.0)
    measured = options.windows * options.window
    poll = measured + 60  # no second round while the windows run
    project.configure(poll, options.freeze_threshold)
    loop = _start_loop(project)
    floor = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({poll + 60:g})"])
    loop_shares: list[float] = []
    floor_shares: list[float] = []
    try:
        _wait(lambda: _waiting_after(project, 1), "the loop to wait after its first round")
        time.sleep(1)  # the round's last line and its reaping settle
        watched, slept = psutil.Process(loop.pid), psutil.Process(floor.pid)
        for _ in range(options.windows):
            loop0, floor0, wall0 = _cpu(watched), _cpu(slept), time.monotonic()
            time.sleep(options.window)
            loop1, floor1, wall1 = _cpu(watched), _cpu(slept), time.monotonic()
            if not _waiting_after(project, 1):
                raise SystemExit(f"the loop left its wait during the window: {project.loop_row()}")
            loop_shares.append(100 * (loop1 - loop0) / (wall1 - wall0))
            floor_shares.append(100 * (floor1 - floor0) / (wall1 - wall0))
            print(
                f"  idle window of {wall1 - wall0:.1f}s: loop {loop_shares[-1]:.3f}% of one core, "
                f"floor {floor_shares[-1]:.3f}%",
                flush=True,
            )
        _stop_loop(project, loop)
    finally:
        for process in (loop, floor):
            if process.poll() is None:
                process.kill()
                process.wait()

    # A loop polling every second over the done project: its first round finds nothing due
    # (its CPU is reaped into the loop's children times); after it no round starts while the
    # plans stay unchanged, so the windows measure what an idle loop costs at any poll interval.
    poll = 1.0
    project.configure(poll, options.freeze_threshold)
    loop = _start_loop(project)
    rounds: list[float] = []
    walls: list[float] = []
    polling: list[float] = []
    try:
        watched = psutil.Process(loop.pid)
        _wait(lambda: _waiting_after(project, 1), "the empty round", step=0.01)
        times = watched.cpu_times()
        rounds.append(times.children_user + times.children_system)
        time.sleep(1)
        for _ in range(options.windows):
            before, wall0 = _cpu(watched), time.monotonic()
            time.sleep(options.window)
            after, wall1 = _cpu(watched), time.monotonic()
            polling.append(100 * (after - before) / (wall1 - wall0))
            print(
                f"  idle window of {wall1 - wall0:.1f}s polling every {poll:g}s: {polling[-1]:.3f}%",
                flush=True,
            )
        row = project.loop_row()
        if row is None or row.round != 1:
            raise SystemExit(f"rounds started although nothing changed: {row}")
        _stop_loop(project, loop)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    # The floor of a round: pytest's start-up and collection of the same project.
    collect: list[float] = []
    for _ in range(options.empty_rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [*PYTEST, "plans", "--collect-only"],
            cwd=project.root,
            env=project.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        collect.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return Idle(loop_shares, floor_shares, rounds, walls, collect, polling)


# ---- writes per task ----


@dataclass
class Writes:
    """The counted transactions of one case: per task in order, by writer, and around the tasks."""

    tasks: list[dict[str, list[int]]]  # per task, in plan order: writer -> [transactions, rows]
    session: dict[str, list[int]]  # the round's (or run's) writes outside its tasks
    loop: dict[str, list[int]]  # the loop process's own writes (in a round only)

    @staticmethod
    def total(writers: dict[str, list[int]], column: int = 0) -> int:
        return sum(counts[column] for counts in writers.values())

    def steady(self, column: int = 0) -> float:
        """Median over the tasks after the first (which opens the run)."""
        later = self.tasks[1:] or self.tasks
        return statistics.median(self.total(t, column) for t in later)


def _writes(options: argparse.Namespace, parent: Path, events: int, in_round: bool) -> Writes:
    name = f"writes-{events}-{'round' if in_round else 'outside'}"
    project = _project(parent, name, options.tasks, events, options.event_seconds)
    project.configure(3600, options.freeze_threshold)
    if in_round:
        loop = _start_loop(project, "-p", "bench_write_counter")
        try:
            _wait(
                lambda: _waiting_after(project, 1),
                "the loop's first round",
                timeout=60 + options.tasks * options.event_seconds * 3,
            )
            _stop_loop(project, loop)
        finally:
            if loop.poll() is None:
                loop.kill()
                loop.wait()
    else:
        with open(project.root / "output.log", "wb") as output:
            code = subprocess.run(
                [*PYTEST, "plans", "-p", "bench_write_counter"],
                cwd=project.root,
                env=project.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            ).returncode
        if code != 0:
            raise SystemExit(f"pytest plans exited {code}:\n{project.log()}")
    if project.completed() != options.tasks:
        raise SystemExit(
            f"{name}: {project.completed()} of {options.tasks} tasks completed:\n{project.log()}"
        )

    documents = [json.loads(p.read_text()) for p in sorted((project.root / "writes").iterdir())]
    problems = []
    for document in documents:
        counted = sum(Writes.total(w) for w in document["phases"].values())
        if document["commits"] != counted:
            problems.append(f"{document['commits']} commits traced, {counted} transactions counted")
        problems += [f"a write outside a transaction: {sql}" for sql in document["autocommit_writes"]]
    if problems:
        raise SystemExit(f"{name}: the count cannot be trusted: " + "; ".join(problems))
    runs = [d for d in documents if len(d["phases"]) > 1 or "session" not in d["phases"]]
    if len(runs) != 1:
        raise SystemExit(f"{name}: expected one process that ran the tasks, found {len(runs)}")
    phases = runs[0]["phases"]
    nodes = [f"plans/bench.md::1.{n}" for n in range(1, options.tasks + 1)]
    loops = [d["phases"].get("session", {}) for d in documents if d is not runs[0]]
    return Writes(
        [phases.get(node, {}) for node in nodes], phases.get("session", {}), loops[0] if loops else {}
    )


# ---- the report ----


def _breakdown(writers: dict[str, list[int]]) -> str:
    ranked = sorted(writers.items(), key=lambda item: (-item[1][0], item[0]))
    return ", ".join(f"{name} {counts[0]}" for name, counts in ranked) or "none"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def _row(measure: str, value: str, target: str = "") -> None:
    print(f"{measure:52} {value:>9}  {target}".rstrip())


def _report(
    options: argparse.Namespace, interval: float, idle: Idle, cases: dict[tuple[int, bool], Writes]
) -> None:
    loop_idle, floor_idle = statistics.median(idle.loop), statistics.median(idle.floor)
    empty, collect = statistics.median(idle.empty_round_cpu), statistics.median(idle.collect_cpu)
    print()
    _row("measure (medians)", "figure", "target")
    _row("idle loop between rounds, % of one core", f"{loop_idle:.3f}%", f"< 1%: {_met(loop_idle < 1)}")
    _row("floor: python sleeping, % of one core", f"{floor_idle:.3f}%")
    polling = statistics.median(idle.polling)
    _row(
        "idle loop polling every 1s, nothing due, % of one core",
        f"{polling:.3f}%",
        f"< 1%: {_met(polling < 1)}",
    )
    _row(
        "a round that finds nothing due, CPU seconds",
        f"{empty:.2f}s",
        f"run again only when a plan or the config changes, a task is due, or every {FORCE_ROUND:g}s",
    )
    _row("floor: pytest --collect-only, CPU seconds", f"{collect:.2f}s")
    # Beats ride on events at most once per interval; the task's forced beat is in both cases.
    # The attempt's progress (turns and tokens so far) is written on the same interval, in and
    # outside the loop; in a round the loop's own beat comes on top.
    bound = math.ceil(options.event_seconds / interval) + 1
    for in_round in (False, True):
        where = "in a loop round" if in_round else "outside the loop"
        allowed = 2 * bound if in_round else bound
        one, many = cases[(1, in_round)].steady(), cases[(options.events, in_round)].steady()
        per_event = (many - one) / (options.events - 1)
        _row(f"writes per task, 1 event, {where}", f"{one:g}")
        _row(
            f"writes per task, {options.events} events, {where}",
            f"{many:g}",
            f"<= {one + allowed:g} (1-event + {allowed} beats): {_met(many - one <= allowed)}; "
            f"{per_event:.4f} per event",
        )
    print()
    print("writes (transactions) by writer:")
    for (events, in_round), case in cases.items():
        where = "round  " if in_round else "outside"
        second = case.tasks[1] if len(case.tasks) > 1 else case.tasks[0]
        print(f"  {where} {events:>4} events, a later task: {_breakdown(second)}")
    for in_round in (False, True):
        case = cases[(options.events, in_round)]
        where = "round  " if in_round else "outside"
        print(
            f"  {where} first task ({Writes.total(case.tasks[0])}, it opens the run): {_breakdown(case.tasks[0])}"
        )
        print(f"  {where} around the tasks ({Writes.total(case.session)}): {_breakdown(case.session)}")
        if in_round:
            print(f"  the loop process, one round ({Writes.total(case.loop)}): {_breakdown(case.loop)}")


def main() -> int:
    """Run both measurements and print their medians against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0, help="seconds per idle CPU window")
    parser.add_argument("--windows", type=int, default=3, help="idle windows (the median is reported)")
    parser.add_argument("--tasks", type=int, default=4, help="tasks per run in the writes measurement")
    parser.add_argument(
        "--events", type=int, default=500, help="events of the busy agent (the other emits 1)"
    )
    parser.add_argument("--event-seconds", type=float, default=2.0, help="how long each task's agent runs")
    parser.add_argument("--empty-rounds", type=int, default=5, help="rounds of a loop with nothing due")
    parser.add_argument(
        "--freeze-threshold", type=float, default=10.0, help="seconds; the loop beats every tenth"
    )
    parser.add_argument(
        "--quick", action="store_true", help="defaults of 2 windows of 5 s, 2 tasks of 1 s, 2 empty rounds"
    )
    options = parser.parse_args()
    if options.quick:
        # Smaller defaults; a value given on the command line still wins.
        parser.set_defaults(window=5.0, windows=2, tasks=2, event_seconds=1.0, empty_rounds=2)
        options = parser.parse_args()
    if options.tasks < 1 or options.events < 2 or options.windows < 1 or options.empty_rounds < 1:
        parser.error("need at least 1 task, 2 events, 1 window and 1 empty round")

    interval = beat_interval(SimpleNamespace(freeze_threshold=options.freeze_threshold))  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp)
        print(
            f"writes: {options.tasks} tasks a run, {options.event_seconds:g}s each, 1 or {options.events} "
            f"events; beat interval {interval:g}s",
            flush=True,
        )
        cases = {
            (events, in_round): _writes(options, parent, events, in_round)
            for in_round in (False, True)
            for events in (1, options.events)
        }
        print(
            f"idle: {options.windows} windows of {options.window:g}s, then {options.empty_rounds} empty rounds",
            flush=True,
        )
        idle = _idle(options, parent)
    _report(options, interval, idle, cases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
