"""`orchestrator queue`: the pending tasks in the order they will be dispatched, and when.

Read-only. The runs record the queue (the `queue` table: every collected task that is not
done, with its level, since when it waits and why); this view orders it as the next run
will, by plan score (`pytest_orchestrator.priority`): the plan holding the highest-scored
task first, each plan's tasks in plan order.

The estimate: the average latency of the attempts that finished in the last 24 hours, on
as many workers as the busiest run of those 24 hours used (distinct xdist workers, at least
one). Tasks running now end at their start plus that average (now, if it is past). Then
each plan, in dispatch order, goes to the worker free first and runs its tasks one after
the other, as `--dist loadfile` does. Only tasks that the next run will dispatch when it
reaches them get an estimate (not yet reached, or failed and tried again); a task blocked
in its plan, over the budget, waiting for a human or, in the loop, due again later has none.
Without a finished attempt in the window there is no estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..loop import RUNNING, QueueRow
from ..loop.due import NOT_YET
from ..priority import Pending as _Pending
from ..priority import QueueSpec, grouped, plan_order, score
from ..redact import redact
from .terminal import Style, clock, iso, span

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..plan import Task
    from ..state import StateStore

# The window of finished attempts whose average latency makes the estimate.
LATENCY_WINDOW = 86_400.0
# The first schema with the queue table.
QUEUE_SCHEMA = 5
NO_STATE = "no state here yet: the queue is recorded by the first run of plans (`pytest plans/`)"


@dataclass(frozen=True)
class Queued:
    """One task of the queue: where and why it waits, its score, and when it should start and end."""

    plan: str
    task_id: str
    title: str
    priority: str | None  # the level, P1..P4, or None when the plan names none
    score: float
    waited: float  # seconds since it was queued
    reason: str
    eta_start: float | None  # epoch seconds
    eta_done: float | None
    description: str | None = None  # with verbose, from the plan file
    files: tuple[str, ...] = ()
    # Running, but its run has not beaten for longer than the freeze threshold: killed, or frozen.
    stale: bool = False

    def as_dict(self, verbose: bool = False) -> dict[str, Any]:
        """A JSON-safe dict; the description and files only when `verbose`."""
        data: dict[str, Any] = {
            "plan": self.plan,
            "task_id": self.task_id,
            "title": self.title,
            "priority": self.priority,
            "score": self.score,
            "waited": self.waited,
            "reason": self.reason,
            "eta_start": self.eta_start,
            "eta_done": self.eta_done,
            "eta_start_at": iso(self.eta_start),
            "eta_done_at": iso(self.eta_done),
            "stale": self.stale,
        }
        if verbose:
            data["description"] = self.description
            data["files"] = list(self.files)
        return data


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue at one moment: pending tasks in dispatch order, and those running now."""

    now: float
    tasks: list[Queued] = field(default_factory=list)
    running: list[Queued] = field(default_factory=list)
    # The estimate's inputs: seconds per task (None: nothing finished in the window), workers.
    average_latency: float | None = None
    workers: int = 1
    verbose: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a JSON-safe document: {now, average_latency, workers, tasks, running}."""
        return {
            "now": self.now,
            "average_latency": self.average_latency,
            "workers": self.workers,
            "depth": len(self.tasks),
            "tasks": [task.as_dict(self.verbose) for task in self.tasks],
            "running": [task.as_dict(self.verbose) for task in self.running],
        }


def snapshot(
    store: StateStore,
    now: float,
    verbose: bool = False,
    *,
    spec: QueueSpec | None = None,
    root: Path | None = None,
    stale_after: float | None = None,
) -> QueueSnapshot:
    """The queue recorded in `store`, ordered for dispatch at `now`.

    `spec` is the `queue:` section's age boost (the defaults without it); `root` is the
    directory the plan paths are relative to, for `verbose` (the current one without it).
    A running task whose run has not beaten for `stale_after` seconds (the freeze threshold)
    is stale: its run was killed or froze, and it holds no worker in the estimate.
    """
    spec = QueueSpec() if spec is None else spec
    if _schema(store) < QUEUE_SCHEMA:
        return QueueSnapshot(now, verbose=verbose)
    rows = [
        QueueRow(**dict(r))
        for r in store.conn.execute(
            "SELECT plan, task_id, title, priority, position, enqueued_at, reason FROM queue "
            "ORDER BY position, plan, task_id"
        ).fetchall()
    ]
    pending = [r for r in rows if r.reason != RUNNING]
    running = [r for r in rows if r.reason == RUNNING]
    order = plan_order((_Pending(r.plan, r.task_id, r.priority, r.enqueued_at) for r in pending), now, spec)
    pending = grouped(pending, lambda r: r.plan, order)
    latency = _latency(store, now)
    starts = _running_since(store, running)
    stale = {
        key
        for key, (_, last_sign) in starts.items()
        if stale_after is not None and now - last_sign > stale_after
    }
    # Each plan running now holds a worker, whatever the window says.
    live = {r.plan for r in running if (r.plan, r.task_id) not in stale}
    workers = max(_workers(store, now), len(live))
    tasks_of = _PlanTasks(root or Path.cwd()) if verbose else None

    def queued(row: QueueRow, start: float | None, done: float | None, silent: float | None = None) -> Queued:
        waited = max(0.0, now - row.enqueued_at)
        task = tasks_of.get(row.plan, row.task_id) if tasks_of is not None else None
        return Queued(
            row.plan,
            row.task_id,
            row.title,
            row.priority,
            score(row.priority, waited, spec),
            waited,
            # Written by any dispatch hook's error, and by older versions unmasked.
            redact(row.reason) if silent is None else _stale_reason(silent),
            start,
            done,
            (task.description if task is not None else None),
            (task.files if task is not None else ()),
            silent is not None,
        )

    # Each worker's next free time, and the worker each plan in flight holds.
    free: list[float] = []
    held: dict[str, int] = {}
    ran: list[Queued] = []
    for row in running:
        key = (row.plan, row.task_id)
        start = starts[key][0] if key in starts else None
        if key in stale:
            ran.append(queued(row, start, None, now - starts[key][1]))
            continue
        end = max(now, start + latency) if latency is not None and start is not None else None
        if row.plan not in held:
            held[row.plan] = len(free)
            free.append(end if end is not None else now)
        ran.append(queued(row, start, end))
    while len(free) < workers:
        free.append(now)
    out: list[Queued] = []
    for row in pending:
        start = done = None
        if latency is not None and dispatchable(row.reason):
            worker = held.get(row.plan)
            if worker is None:
                worker = min(range(len(free)), key=lambda w: (free[w], w))
                held[row.plan] = worker
            start = free[worker]
            done = start + latency
            free[worker] = done
        out.append(queued(row, start, done))
    return QueueSnapshot(now, out, ran, latency, workers, verbose)


def _stale_reason(silent: float) -> str:
    return f"no heartbeat for {span(silent)}: its run was killed or froze; the next run dispatches it again"


# Reasons of tasks the next run leaves alone: blocked in their plan, over the budget, waiting
# for a human's answer, or, in the loop, for their delay after failures.
_LEFT_ALONE = ("blocked by", "budget reached", "needs_human", "needs a human")


def dispatchable(reason: str) -> bool:
    """Whether the next run dispatches a task that waits for `reason` once it reaches it."""
    return not reason.startswith(_LEFT_ALONE) and "due again at" not in reason


def _schema(store: StateStore) -> int:
    version: int = store.conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _latency(store: StateStore, now: float) -> float | None:
    """The average seconds of the attempts that ended in the window before `now`."""
    row = store.conn.execute(
        "SELECT AVG(ended_at - started_at) FROM attempts "
        "WHERE ended_at IS NOT NULL AND ended_at > ? AND ended_at <= ?",
        (now - LATENCY_WINDOW, now),
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else None


def _workers(store: StateStore, now: float) -> int:
    """How many workers the busiest run of the window dispatched on; at least one."""
    row = store.conn.execute(
        "SELECT MAX(n) FROM (SELECT COUNT(DISTINCT a.worker) AS n FROM attempts a "
        "JOIN runs r ON r.id = a.run_id WHERE a.started_at > ? AND a.started_at <= ? "
        "GROUP BY COALESCE(r.run_key, r.id))",
        (now - LATENCY_WINDOW, now),
    ).fetchone()
    return max(1, int(row[0])) if row and row[0] is not None else 1


def _running_since(store: StateStore, running: list[QueueRow]) -> dict[tuple[str, str], tuple[float, float]]:
    """When each running task's current attempt started, and its run's last sign of life."""
    found: dict[tuple[str, str], tuple[float, float]] = {}
    for row in running:
        started = store.conn.execute(
            "SELECT a.started_at, MAX(a.started_at, COALESCE(h.at, 0)) FROM attempts a "
            "LEFT JOIN heartbeats h ON h.run_id = a.run_id AND h.worker = a.worker "
            "WHERE a.plan = ? AND a.task_id = ? AND a.ended_at IS NULL ORDER BY a.started_at DESC LIMIT 1",
            (row.plan, row.task_id),
        ).fetchone()
        if started is not None:
            found[(row.plan, row.task_id)] = (float(started[0]), float(started[1]))
    return found


class _PlanTasks:
    """Tasks read from their plan files, once per plan; a vanished or broken plan has none."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plans: dict[str, dict[str, Task]] = {}

    def get(self, plan: str, task_id: str) -> Task | None:
        if plan not in self.plans:
            from ..plan import PlanError, parse_plan

            try:
                parsed = parse_plan(self.root / plan, plan)
                self.plans[plan] = {task.id: task for task in parsed.tasks}
            except PlanError:
                self.plans[plan] = {}
        return self.plans[plan].get(task_id)


# ---- text ----


def render(snapshot: QueueSnapshot, stream: TextIO, style: Style) -> None:
    """Write the queue as a table, one task a line, in dispatch order; with verbose, its details."""
    now = snapshot.now
    if snapshot.average_latency is None:
        basis = "no estimate: no attempt finished in the last 24h"
    else:
        basis = (
            f"estimate: {span(snapshot.average_latency)} a task on {snapshot.workers} "
            f"worker{'s' if snapshot.workers != 1 else ''}"
        )
    stream.write(
        style.paint(f"{len(snapshot.tasks)} pending, {len(snapshot.running)} running", "bold")
        + f"  ({basis})\n"
    )
    for task in snapshot.running:
        if task.stale:
            mark = style.paint("?", "yellow")
            stream.write(style.text(f"  {mark} {task.plan} {task.task_id} {task.title}"))
            stream.write(f"  {style.paint(task.reason, 'yellow')}\n")
            continue
        end = f", done ~{clock(task.eta_done, now)}" if task.eta_done is not None else ""
        stream.write(style.text(f"  {style.paint('⟳', 'green')} {task.plan} {task.task_id} {task.title}"))
        stream.write(f"  running{end}\n")
    if not snapshot.tasks:
        stream.write("  queue empty: no task waits for dispatch\n")
        return
    header = ("#", "PLAN", "TASK", "PRI", "SCORE", "WAITED", "START", "DONE", "REASON")
    rows = [
        (
            str(index),
            task.plan,
            task.task_id,
            task.priority or "-",
            f"{task.score:.1f}",
            span(task.waited),
            clock(task.eta_start, now) if task.eta_start is not None else "-",
            clock(task.eta_done, now) if task.eta_done is not None else "-",
            task.reason,
        )
        for index, task in enumerate(snapshot.tasks, 1)
    ]
    widths = [max(len(header[c]), *(len(r[c]) for r in rows)) for c in range(len(header) - 1)]
    line = "".join(h.ljust(w) + "  " for h, w in zip(header, widths, strict=False)) + header[-1]
    stream.write(style.paint(line, "dim") + "\n")
    for row, task in zip(rows, snapshot.tasks, strict=True):
        cells = "".join(cell.ljust(width) + "  " for cell, width in zip(row, widths, strict=False))
        colour = "yellow" if task.reason == NOT_YET else None
        stream.write(cells + style.paint(row[-1], colour) + "\n")
        if snapshot.verbose:
            stream.write(f"    {task.title}\n")
            if task.files:
                stream.write(f"    files: {', '.join(task.files)}\n")
            if task.description:
                for line in task.description.splitlines():
                    stream.write(f"    | {line}\n")
            elif task.description is None:
                stream.write("    (plan file not found or unreadable)\n")


# ---- the command ----


def show(
    state_dir: Path,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    *,
    spec: QueueSpec | None = None,
    root: Path | None = None,
    verbose: bool = False,
    as_json: bool = False,
    watch: float | None = None,
    stale_after: float | None = None,
) -> int:
    """Print the queue (refreshed in place every `watch` seconds until Ctrl-C); exit 0."""
    style = Style(out, environ)
    try:
        return _show(state_dir, out, err, style, spec, root, verbose, as_json, watch, stale_after)
    except KeyboardInterrupt:
        # Ctrl-C is how --watch ends: quietly, and successfully.
        return 0


def _show(
    state_dir: Path,
    out: TextIO,
    err: TextIO,
    style: Style,
    spec: QueueSpec | None,
    root: Path | None,
    verbose: bool,
    as_json: bool,
    watch: float | None,
    stale_after: float | None,
) -> int:
    from ..state import StateStore

    while True:
        store = StateStore.read(state_dir)
        if store is None:
            found = None
        else:
            try:
                found = snapshot(store, time.time(), verbose, spec=spec, root=root, stale_after=stale_after)
            finally:
                store.close()
        if watch is not None and not as_json:
            # Home and clear: the frame replaces the last one instead of scrolling.
            out.write("\033[H\033[2J")
        if found is None:
            if as_json and watch is None:
                # A script reading the document gets one, empty, on a fresh machine.
                import json

                out.write(json.dumps(QueueSnapshot(time.time()).as_dict(), indent=2) + "\n")
            (out if watch is not None else err).write(f"orchestrator: {NO_STATE}\n")
        elif as_json:
            import json

            # Watched, one document a line (JSON Lines) that a script can read as it comes.
            out.write(json.dumps(found.as_dict(), indent=None if watch is not None else 2) + "\n")
        else:
            render(found, out, style)
        if watch is None:
            return 0
        out.flush()
        time.sleep(watch)
