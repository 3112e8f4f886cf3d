"""What `orchestrator dashboard` (and the web page) shows, read from state.db at one moment.

Plain Python, no rich, no pytest: the terminal and the web render the same `DashboardSnapshot`.
It only reads (a `StateStore.read` connection), so a dashboard never disturbs a run.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..redact import redact
from . import status
from .terminal import iso

if TYPE_CHECKING:
    from ..health.history import HealthRow
    from ..loop.store import LoopRow
    from ..priority import QueueSpec
    from ..state import StateStore

# The settings' default freeze threshold: a loop, run or attempt silent for longer is dead or stuck.
STALE_AFTER = 300.0
# How many finished attempts and queued tasks a frame shows.
RECENT = 10
QUEUE_HEAD = 5
# The first schema with the loop, the queue and the health history.
LOOP_SCHEMA = 5
# The loop's states in which it must keep polling (health.orchestrator.POLLING, not imported:
# the health package costs a view start-up more than it reads).
_POLLING = ("running", "waiting")

RUNNING, STOPPED, ERROR = "running", "stopped", "error"


@dataclass(frozen=True)
class ActiveTask:
    """An attempt recorded as running, with what it has done so far."""

    plan: str
    task_id: str
    title: str
    worker: str
    attempt: int
    run_id: int
    started_at: float
    elapsed: float
    heartbeat_at: float | None
    num_turns: int
    tokens: int
    cost_usd: float
    # No heartbeat of its worker for longer than the freeze threshold: its process died or hangs.
    stale: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "plan": self.plan,
            "task_id": self.task_id,
            "title": self.title,
            "worker": self.worker,
            "attempt": self.attempt,
            "run_id": self.run_id,
            "started_at": iso(self.started_at),
            "elapsed": round(self.elapsed, 3),
            "heartbeat_at": iso(self.heartbeat_at),
            "num_turns": self.num_turns,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "stale": self.stale,
        }


@dataclass(frozen=True)
class FinishedAttempt:
    """One of the latest attempts to end, whatever their status."""

    # The attempt's row id: the web dashboard links it to its transcript.
    id: int
    plan: str
    task_id: str
    title: str
    attempt: int
    status: str
    ended_at: float
    duration: float
    cost_usd: float
    tokens: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "id": self.id,
            "plan": self.plan,
            "task_id": self.task_id,
            "title": self.title,
            "attempt": self.attempt,
            "status": self.status,
            "ended_at": iso(self.ended_at),
            "duration": round(self.duration, 3),
            "cost_usd": round(self.cost_usd, 6),
            "tokens": self.tokens,
            "error": self.error,
        }


@dataclass(frozen=True)
class QueuedTask:
    """A pending task near the head of the queue."""

    plan: str
    task_id: str
    title: str
    priority: str | None
    # The dispatch score: the priority level's points plus the age boost (views.queue).
    score: float | None
    waited: float
    reason: str
    eta_start: float | None = None
    eta_done: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "plan": self.plan,
            "task_id": self.task_id,
            "title": self.title,
            "priority": self.priority,
            "score": self.score,
            "waited": round(self.waited, 3),
            "reason": self.reason,
            "eta_start": iso(self.eta_start),
            "eta_done": iso(self.eta_done),
        }


@dataclass(frozen=True)
class Rates:
    """Throughput and error rate over the last hour; None when there is no state."""

    # Attempts that ended in the hour; throughput counts the completed ones per hour, the error
    # rate the failed ones (failed or timed out) among those finished (metrics.window's terms).
    finished: int | None = None
    throughput_per_hour: float | None = None
    error_rate: float | None = None
    completed: int | None = None
    failed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        from ..metrics import HOUR

        return {
            "window": HOUR,
            "finished": self.finished,
            "completed": self.completed,
            "failed": self.failed,
            "throughput_per_hour": self.throughput_per_hour,
            "error_rate": self.error_rate,
        }


@dataclass(frozen=True)
class DashboardSnapshot:
    """Everything a dashboard frame shows, read at `now`."""

    now: float
    # running | stopped | error; `notes` says why, one line each.
    state: str
    notes: tuple[str, ...] = ()
    loop: LoopRow | None = None
    # The watchdog and its components, as `orchestrator status` reads them.
    watchdog: status.Snapshot | None = None
    health: HealthRow | None = None
    active: tuple[ActiveTask, ...] = ()
    queue: tuple[QueuedTask, ...] = ()
    queue_depth: int = 0
    finished: tuple[FinishedAttempt, ...] = ()
    last_hour: Rates = field(default_factory=Rates)
    # False when there is no state database yet: the frame says so and shows nothing else.
    has_state: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a JSON-ready document, the same for `--json` and the web API."""
        loop = self.loop
        health = self.health
        return {
            "at": iso(self.now),
            "has_state": self.has_state,
            "state": self.state,
            "notes": list(self.notes),
            "loop": None
            if loop is None
            else {
                "status": loop.status,
                "pid": loop.pid,
                "host": loop.host,
                "round": loop.round,
                "started_at": iso(loop.started_at),
                "last_poll_at": iso(loop.last_poll_at),
                "last_poll_age": round(self.now - loop.last_poll_at, 3),
                "poll_interval": loop.poll_interval,
                "next_due_at": iso(loop.next_due_at),
            },
            "watchdog": status.document(self.watchdog) if self.watchdog is not None else None,
            "health": None
            if health is None
            else {
                "status": health.status,
                "at": iso(health.at),
                "age": round(self.now - health.at, 3),
                "source": health.source,
                "checks": dict(health.checks),
            },
            "active": [a.as_dict() for a in self.active],
            "queue": {"depth": self.queue_depth, "head": [q.as_dict() for q in self.queue]},
            "finished": [f.as_dict() for f in self.finished],
            "last_hour": self.last_hour.as_dict(),
        }


NO_STATE = "no orchestrator state here yet: run a plan (`pytest plans/`) or start the loop"


def snapshot(
    store: StateStore | None,
    now: float,
    *,
    stale_after: float = STALE_AFTER,
    queue_spec: QueueSpec | None = None,
) -> DashboardSnapshot:
    """Read the dashboard's data from `store` (None: no state yet) at `now`.

    `stale_after` is the freeze threshold: a loop, run or attempt silent for longer is dead.
    `queue_spec` is the config file's age boost, which orders the queue (its defaults without).
    """
    if store is None:
        return DashboardSnapshot(now, STOPPED, (NO_STATE,), has_state=False)
    version = int(store.conn.execute("PRAGMA user_version").fetchone()[0])
    watchdog = status.from_store(store, now, min(stale_after, status.STALE_AFTER))
    loop = health = None
    queue: tuple[QueuedTask, ...] = ()
    depth = 0
    if version >= LOOP_SCHEMA:
        from ..health.history import latest
        from ..loop.store import LoopStore

        loop = LoopStore(store).row()
        health = latest(store)
        queue, depth = _queue(store, now, queue_spec, stale_after)
    active = _active(store, now, stale_after)
    state, notes = _state(store, now, stale_after, loop, watchdog, active)
    return DashboardSnapshot(
        now,
        state,
        notes,
        loop=loop,
        watchdog=watchdog,
        health=health,
        active=active,
        queue=queue,
        queue_depth=depth,
        finished=_finished(store),
        last_hour=_rates(store, now),
    )


_TOKENS = "a.input_tokens + a.output_tokens + a.cache_read_tokens + a.cache_creation_tokens"


def _active(store: StateStore, now: float, stale_after: float) -> tuple[ActiveTask, ...]:
    rows = store.conn.execute(
        "SELECT a.run_id, a.plan, a.task_id, a.title, a.attempt, a.worker, a.started_at, a.num_turns, "
        f"{_TOKENS} AS tokens, a.cost_usd, h.at AS heartbeat_at FROM attempts a "
        "LEFT JOIN heartbeats h ON h.run_id = a.run_id AND h.worker = a.worker "
        "WHERE a.status = 'running' ORDER BY a.started_at, a.id"
    ).fetchall()
    return tuple(
        ActiveTask(
            plan=r["plan"],
            task_id=r["task_id"],
            title=r["title"],
            worker=r["worker"],
            attempt=int(r["attempt"]),
            run_id=int(r["run_id"]),
            started_at=float(r["started_at"]),
            elapsed=max(0.0, now - float(r["started_at"])),
            heartbeat_at=r["heartbeat_at"],
            num_turns=int(r["num_turns"]),
            tokens=int(r["tokens"]),
            cost_usd=float(r["cost_usd"]),
            stale=now - float(r["heartbeat_at"] or r["started_at"]) > stale_after,
        )
        for r in rows
    )


def _finished(store: StateStore) -> tuple[FinishedAttempt, ...]:
    # attempts_by_end (schema 6) makes this a walk down the index, whatever the history's size.
    rows = store.conn.execute(
        "SELECT a.id, a.plan, a.task_id, a.title, a.attempt, a.status, a.started_at, a.ended_at, a.cost_usd, "
        f"{_TOKENS} AS tokens, a.error FROM attempts a WHERE a.ended_at IS NOT NULL "
        "ORDER BY a.ended_at DESC, a.id DESC LIMIT ?",
        (RECENT,),
    ).fetchall()
    return tuple(
        FinishedAttempt(
            id=int(r["id"]),
            plan=r["plan"],
            task_id=r["task_id"],
            title=r["title"],
            attempt=int(r["attempt"]),
            status=r["status"],
            ended_at=float(r["ended_at"]),
            duration=max(0.0, float(r["ended_at"]) - float(r["started_at"])),
            cost_usd=float(r["cost_usd"]),
            tokens=int(r["tokens"]),
            error=redact(r["error"]) if r["error"] else None,
        )
        for r in rows
    )


def _queue(
    store: StateStore, now: float, spec: QueueSpec | None, stale_after: float
) -> tuple[tuple[QueuedTask, ...], int]:
    from . import queue

    # As `orchestrator queue` estimates: a stale running task holds no worker.
    pending = queue.snapshot(store, now, spec=spec, stale_after=stale_after).tasks
    head = tuple(
        QueuedTask(
            plan=q.plan,
            task_id=q.task_id,
            title=q.title,
            priority=q.priority,
            score=q.score,
            waited=q.waited,
            reason=q.reason,
            eta_start=q.eta_start,
            eta_done=q.eta_done,
        )
        for q in pending[:QUEUE_HEAD]
    )
    return head, len(pending)


def _rates(store: StateStore, now: float) -> Rates:
    from ..metrics import last_hour

    numbers = last_hour(store.conn, now)
    return Rates(
        finished=numbers.finished,
        throughput_per_hour=numbers.throughput_per_hour,
        error_rate=numbers.error_rate,
        completed=numbers.completed,
        failed=numbers.failed,
    )


def _state(
    store: StateStore,
    now: float,
    stale_after: float,
    loop: LoopRow | None,
    watchdog: status.Snapshot | None,
    active: tuple[ActiveTask, ...],
) -> tuple[str, tuple[str, ...]]:
    """running, stopped or error, and why: error when something recorded as running has died."""
    here = socket.gethostname()
    alive: list[str] = []
    dead: list[str] = []
    if loop is not None and loop.status in _POLLING:
        silent = now - loop.last_poll_at
        if loop.host == here and not status.pid_exists(loop.pid):
            dead.append(f"the loop (pid {loop.pid}) is gone without recording its stop")
        elif silent > stale_after:
            dead.append(f"the loop has not polled for {int(silent)}s (pid {loop.pid} on {loop.host})")
        else:
            alive.append(f"the loop is {loop.status} (round {loop.round}, pid {loop.pid})")
    if watchdog is not None and watchdog.watchdog is not None:
        if watchdog.running:
            alive.append(f"the watchdog keeps {len(watchdog.components)} component(s)")
            fatal = [c.name for c in watchdog.components if c.status == "FATAL"]
            if fatal:
                dead.append(f"component(s) FATAL: {', '.join(fatal)}")
        else:
            dead.append(f"the watchdog is down ({watchdog.down})")
    live_runs, last_dead = _runs(store, now, stale_after, here)
    if live_runs:
        alive.append(f"{live_runs} task run(s) in progress")
    elif last_dead is not None:
        dead.append(last_dead)
    stale = [a for a in active if a.stale]
    if stale:
        names = ", ".join(f"{a.task_id} ({a.plan})" for a in stale)
        dead.append(f"attempt(s) without a heartbeat for over {stale_after:g}s: {names}")
    if dead:
        return ERROR, tuple(dead + alive)
    if alive:
        return RUNNING, tuple(alive)
    return STOPPED, ("nothing is running",)


def _runs(store: StateStore, now: float, stale_after: float, here: str) -> tuple[int, str | None]:
    """How many runs are alive; and, when none is, why the latest run counts as dead (or None)."""
    rows = store.conn.execute(
        "SELECT r.id, r.pid, r.host, "
        "COALESCE((SELECT MAX(h.at) FROM heartbeats h WHERE h.run_id = r.id), r.started_at) AS beat "
        "FROM runs r WHERE r.ended_at IS NULL ORDER BY r.id DESC"
    ).fetchall()
    latest = store.conn.execute("SELECT MAX(id) FROM runs").fetchone()[0]
    live = 0
    last_dead = None
    for r in rows:
        gone = r["host"] == here and r["pid"] is not None and not status.pid_exists(int(r["pid"]))
        silent = now - float(r["beat"])
        if not gone and silent <= stale_after:
            live += 1
        elif r["id"] == latest:
            why = "its process is gone" if gone else f"no heartbeat for {int(silent)}s"
            last_dead = f"the last task run ({r['id']}, pid {r['pid']}) ended without recording it: {why}"
    return live, last_dead
