"""`--orchestrator-loop`: the loop runs each round as a pytest session of its own, in a child.

A round is the same command without the loop, so `-k`, `-m`, `-n`, `--timeout` and the
JSON report keep their meaning, and a round's crash or leak ends with its process. In a
round, this module beats the loop's heartbeat from the task loop itself, leaves out the
tasks that are done or not due, and records the queue.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..config_file import ConfigFileError
from ..loop import LoopStore, QueueRow, QueueStore, loop_spec, queue_spec
from ..loop.due import Decision, TaskHistory, decide, next_due
from ..priority import Pending, QueueSpec, grouped, plan_order
from ..state import StateError, StateStore
from . import xdist
from .beat import BEAT, RoundBeat, beat, beat_interval
from .bugs import monitor_for
from .notify import notify_spec_for
from .options import config_file, project_root, settings_for
from .rounds import ROUND_ENV, round_start

if TYPE_CHECKING:
    from ..settings import Settings
    from .items import TaskItem


def _die_with_parent() -> Any:
    # A round outlives a loop killed with SIGKILL unless told otherwise; SIGTERM stops its
    # task and records it.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def preexec() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return preexec if sys.platform.startswith("linux") else None


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Run the loop instead of a session: rounds in children, until a stop."""
    if not config.getoption("orchestrator_loop") or os.environ.get(ROUND_ENV):
        return None
    from ..loop.controller import Loop

    settings = settings_for(config)
    for flag, dest, why in (
        ("--orchestrator-health", "orchestrator_health", "the health command runs once: schedule it instead"),
        (
            "--orchestrator-dry-run",
            "orchestrator_dry_run",
            "a dry run dispatches nothing: run it without the loop",
        ),
        ("--collect-only", "collectonly", "collecting dispatches nothing: run it without the loop"),
    ):
        if config.getoption(dest, False):
            raise pytest.UsageError(f"--orchestrator-loop cannot be combined with {flag}: {why}")
    # Either would dispatch every task again in every round, for as long as the loop runs.
    if config.getoption("orchestrator_rerun"):
        raise pytest.UsageError(
            "--orchestrator-rerun dispatches again once: run it without --orchestrator-loop"
        )
    if settings.guidance:
        raise pytest.UsageError(
            "guidance (--orchestrator-guidance, ORCHESTRATOR_GUIDANCE or the config file) answers a task "
            "once: give it to `orchestrator task PLAN ID -g ...`, not to --orchestrator-loop"
        )
    try:
        spec = loop_spec(config_file(config), project_root(config))
    except ConfigFileError as exc:
        raise pytest.UsageError(str(exc)) from None
    notifications = notify_spec_for(config)
    args = list(config.invocation_params.args)
    if spec.max_concurrent_tasks and config.getoption("numprocesses", None) is None:
        args += ["-n", str(spec.max_concurrent_tasks)]
    preexec = _die_with_parent()
    key = uuid.uuid4().hex

    def say(line: str) -> None:
        print(line, flush=True)

    def start_round(number: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, ROUND_ENV: f"{number}:{time.time():.6f}:{key}"}
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            cwd=config.invocation_params.dir,
            env=env,
            process_group=0,
            preexec_fn=preexec,
        )

    from ..metrics.sampler import ResourceSampler

    retention = monitor_for(config).retention_days * 86_400

    def prune(store: StateStore) -> None:
        from ..crashes.store import CrashStore
        from ..transcripts import prune as prune_transcripts

        # Crash, health and resource rows past their retention, in bounded batches; the agents'
        # transcripts too.
        CrashStore(store).prune(time.time() - retention)
        prune_transcripts(settings.state_dir, time.time() - retention)

    notifier = None
    if notifications.enabled:
        from ..notify import Notifier

        notifier = Notifier(
            notifications, settings.state_dir, lambda line: say(f"orchestrator loop: warning: {line}")
        )
    loop = Loop(
        settings.state_dir,
        spec.poll_interval,
        spec.stop_hook_file,
        beat_interval(settings),
        start_round,
        say,
        housekeeping=prune,
        watched=_watched(config, settings),
        notifier=notifier,
        sample=ResourceSampler("loop"),
    )
    # This runs before pytest configures itself (there is no session, nor terminal reporter):
    # the loop's lines and its rounds go to the terminal, not to pytest's capture.
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    try:
        return loop.run()
    except StateError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config: pytest.Config) -> None:
    """In a round of the loop: the beat."""
    if round_start() is None:
        return
    settings = settings_for(config)
    config.stash[BEAT] = RoundBeat(settings.state_dir, beat_interval(settings))
    config.add_cleanup(config.stash[BEAT].close)


def _watched(config: pytest.Config, settings: Settings) -> list[Path]:
    """What a round reads: the paths named on the command line (or the plan directories), the config."""
    base = config.invocation_params.dir
    named = [base / arg.split("::")[0] for arg in config.args if not arg.startswith("-")]
    paths = [p for p in named if p.exists()] or list(settings.plan_dirs)
    found = config_file(config)
    return paths + ([found.path] if found is not None else [])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    """Between two tasks, the loop is alive."""
    beat(item.config, force=True)


# Node ids of the tasks a round leaves out, decided before -k and -m deselect, left out after.
WAITING = pytest.StashKey["set[str]"]()


# The rows the plans are ordered from, read once by the controller and given to each worker. Read
# by each worker, a row another run wrote between two workers' reads (its queue, an attempt it
# ended) ordered the plans differently in each, and xdist refuses to run workers that collected
# different orders.
SNAPSHOT_INPUT = "orchestrator_queue_snapshot"
SNAPSHOT = pytest.StashKey[dict[str, list[list[Any]]]]()


@dataclass(frozen=True)
class _Snapshot:
    """Each task's history and when each queued task was queued, as one process read them."""

    histories: dict[tuple[str, str], TaskHistory]
    queued: dict[tuple[str, str], float]

    def encoded(self) -> dict[str, list[list[Any]]]:
        """As plain lists, which execnet carries to a worker."""
        return {
            "histories": [
                [plan, task, h.completed_at, h.failures, h.last_failed_at, h.last_status]
                for (plan, task), h in self.histories.items()
            ],
            "queued": [[plan, task, at] for (plan, task), at in self.queued.items()],
        }

    @classmethod
    def decoded(cls, data: dict[str, list[list[Any]]]) -> _Snapshot:
        """The snapshot `encoded` gave."""
        return cls(
            {(str(r[0]), str(r[1])): TaskHistory(*r[2:]) for r in data.get("histories", [])},
            {(str(r[0]), str(r[1])): float(r[2]) for r in data.get("queued", [])},
        )


def _read_snapshot(store: StateStore, now: float) -> _Snapshot:
    histories = {key: TaskHistory(*value) for key, value in store.task_histories(before=now).items()}
    return _Snapshot(histories, QueueStore(store).since())


def _given_snapshot(config: pytest.Config) -> _Snapshot | None:
    """The controller's snapshot, in an xdist worker."""
    given = (xdist.workerinput(config) or {}).get(SNAPSHOT_INPUT)
    return _Snapshot.decoded(given) if given is not None else None


def _controller_snapshot(config: pytest.Config) -> dict[str, list[list[Any]]]:
    """The snapshot every worker of this controller orders from, read without writing, once."""
    if SNAPSHOT not in config.stash:
        snapshot = _Snapshot({}, {})
        try:
            reader = StateStore.read(settings_for(config).state_dir)
        except StateError:
            reader = None
        if reader is not None:
            try:
                snapshot = _read_snapshot(reader, xdist.run_start(config))
            except sqlite3.Error:
                pass  # an older schema read-only: every worker starts from nothing alike
            finally:
                reader.close()
        config.stash[SNAPSHOT] = snapshot.encoded()
    return config.stash[SNAPSHOT]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Give each xdist worker the controller's start time and snapshot: they order the plans alike."""
    node.workerinput[xdist.START_INPUT] = xdist.run_start(node.config)
    node.workerinput[SNAPSHOT_INPUT] = _controller_snapshot(node.config)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before any deselection: order the plans by priority, record the queue, in a round decide what waits."""
    from .items import TaskItem

    tasks = [item for item in items if isinstance(item, TaskItem)]
    if not tasks:
        # The last plan deleted: its rows go all the same.
        _forget_without_tasks(config)
        return
    settings = settings_for(config)
    started = round_start()
    now = xdist.run_start(config)
    spec = _queue_spec(config)
    given = _given_snapshot(config)
    if config.getoption("orchestrator_dry_run"):
        # A dry run writes nothing, but shows the order a run would take.
        _reorder(items, _by_plan(tasks, given.queued if given else _queued(settings), now, spec))
        return
    try:
        store = StateStore.open(settings.state_dir)
    except StateError:
        # The first dispatch says so, and stops the run; the order still follows priority.
        _reorder(items, _by_plan(tasks, given.queued if given else {}, now, spec))
        return
    try:
        snapshot = given or _read_snapshot(store, now)
        histories = snapshot.histories
        # Outside the loop a failed task is dispatched again at once, as the run was asked for.
        interval = _poll_interval(config) if started is not None else 0.0
        decisions = decide(
            ((t.plan_key, t.task) for t in tasks),
            histories,
            now,
            interval,
            rerun=bool(config.getoption("orchestrator_rerun")),
            guided=bool(settings.guidance),
        )
        # Every worker orders from the same rows and `now`: a task new to the queue counts as
        # queued at `now`, which is what the first worker records for it.
        queued = snapshot.queued
        pending = [
            Pending(d.plan, d.task.id, d.task.priority, queued.get((d.plan, d.task.id), now))
            for d in decisions
            if not d.done
        ]
        order = plan_order(pending, now, spec)
        tasks = grouped(tasks, _plan_of, order)
        decisions = grouped(decisions, lambda d: d.plan, order)
        _reorder(items, tasks)
        first = xdist.worker_id(config) in ("main", "gw0")
        if started is not None:
            config.stash[WAITING] = {
                t.nodeid for t, d in zip(tasks, decisions, strict=True) if not d.dispatch
            }
            beat(config, force=True)
            if first:
                LoopStore(store).due(next_due(decisions))
        if first:
            _record_queue(store, tasks, decisions, now)
            if not config.option.collectonly:
                # Rows of a plan since deleted or renamed would wait for good, in the queue and
                # in the task_backlog health check.
                QueueStore(store).forget_vanished(str(project_root(config)))
    except StateError:
        return
    finally:
        store.close()


def _queued(settings: Settings) -> dict[tuple[str, str], float]:
    """When each queued task was queued, read without writing (nothing when there is no state)."""
    try:
        reader = StateStore.read(settings.state_dir)
    except StateError:
        return {}
    if reader is None:
        return {}
    try:
        return QueueStore(reader).since()
    finally:
        reader.close()


def _plan_of(item: TaskItem) -> str:
    return item.plan_key


def _by_plan(
    tasks: list[TaskItem], queued: dict[tuple[str, str], float], now: float, spec: QueueSpec
) -> list[TaskItem]:
    """The task items, plans in dispatch order (every task counted pending), each plan's in its order."""
    pending = [
        Pending(t.plan_key, t.task.id, t.task.priority, queued.get((t.plan_key, t.task.id), now))
        for t in tasks
    ]
    return grouped(tasks, _plan_of, plan_order(pending, now, spec))


def _reorder(items: list[pytest.Item], tasks: list[TaskItem]) -> None:
    """Put `tasks`, in their order, in the places task items held; other items keep theirs."""
    from .items import TaskItem

    ordered = iter(tasks)
    items[:] = [next(ordered) if isinstance(item, TaskItem) else item for item in items]


def _queue_spec(config: pytest.Config) -> QueueSpec:
    try:
        return queue_spec(config_file(config))
    except ConfigFileError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_leave_out(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a round: leave out the tasks that are done or not due."""
    waiting = config.stash.get(WAITING, set())
    left = [item for item in items if item.nodeid in waiting]
    if left:
        items[:] = [item for item in items if item.nodeid not in waiting]
        config.hook.pytest_deselected(items=left)


def _poll_interval(config: pytest.Config) -> float:
    try:
        return loop_spec(config_file(config), project_root(config)).poll_interval
    except ConfigFileError as exc:
        raise pytest.UsageError(str(exc)) from None


def _forget_without_tasks(config: pytest.Config) -> None:
    """In a run of plans that found no task, forget the queue rows of plans gone from the project."""
    from ..state import DB_NAME
    from .items import uses_plans

    if (
        config.option.collectonly
        or config.getoption("orchestrator_dry_run")
        or xdist.worker_id(config) not in ("main", "gw0")
        or not uses_plans(config)
    ):
        return
    settings = settings_for(config)
    # Never a state database made by a run that has nothing to put in it.
    if not (settings.state_dir / DB_NAME).is_file():
        return
    try:
        store = StateStore.open(settings.state_dir)
    except StateError:
        return
    try:
        QueueStore(store).forget_vanished(str(project_root(config)))
    except StateError:
        return
    finally:
        store.close()


def _record_queue(store: StateStore, tasks: list[TaskItem], decisions: list[Decision], now: float) -> None:
    rows = [
        QueueRow(d.plan, d.task.id, d.task.title, d.task.priority, position, 0.0, d.reason or "")
        for position, d in enumerate(decisions)
        if not d.done
    ]
    # Once per plan, not per task: a plan of 10,000 tasks is one file.
    first: dict[str, TaskItem] = {}
    collected: dict[str, set[str]] = {}
    for t in tasks:
        first.setdefault(t.plan_key, t)
        collected.setdefault(t.plan_key, set()).add(t.task.id)
    # As found, not resolved: a symlinked plan whose link is deleted is gone.
    paths = {plan: os.path.abspath(t.path) for plan, t in first.items()}
    # A plan of which only some tasks were named (`plans/x.md::1.1`) keeps the others' rows.
    whole = {plan for plan, t in first.items() if set(getattr(t.parent, "task_ids", ())) <= collected[plan]}
    QueueStore(store).replace(whole, rows, now, paths)
