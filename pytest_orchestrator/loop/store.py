"""The loop's row (its heartbeat: the last poll) and the queue of pending tasks, in state.db."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..state import StateStore


@dataclass(frozen=True)
class LoopRow:
    """The continuous loop as last recorded."""

    pid: int
    host: str
    started_at: float
    last_poll_at: float
    round: int
    status: str  # running | waiting | stopped
    poll_interval: float | None
    # When the earliest waiting task of the last round is due again (None: none waits on time).
    next_due_at: float | None = None


class LoopStore:
    """Writes and reads of the `loop` row, on a `StateStore`'s connection."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def started(self, poll_interval: float, now: float | None = None) -> None:
        """Record this process as the loop, starting now."""
        now = time.time() if now is None else now
        with self.store.writing() as conn:
            conn.execute(
                "INSERT INTO loop (id, pid, host, started_at, last_poll_at, round, status, poll_interval) "
                "VALUES (1, ?, ?, ?, ?, 0, 'waiting', ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, "
                "host = excluded.host, started_at = excluded.started_at, "
                "last_poll_at = excluded.last_poll_at, "
                "round = 0, status = 'waiting', poll_interval = excluded.poll_interval",
                (os.getpid(), socket.gethostname(), now, now, poll_interval),
            )

    def beat(self, round: int | None = None, status: str | None = None, now: float | None = None) -> None:
        """The loop is alive: it polled now; optionally its round and status changed."""
        now = time.time() if now is None else now
        with self.store.writing() as conn:
            conn.execute(
                "UPDATE loop SET last_poll_at = ?, round = COALESCE(?, round), "
                "status = COALESCE(?, status) WHERE id = 1",
                (now, round, status),
            )

    def due(self, next_due_at: float | None) -> None:
        """The round's word to the loop: when its earliest waiting task is due again."""
        with self.store.writing() as conn:
            conn.execute("UPDATE loop SET next_due_at = ? WHERE id = 1", (next_due_at,))

    def stopped(self) -> None:
        """The loop ended."""
        with self.store.writing() as conn:
            conn.execute("UPDATE loop SET status = 'stopped' WHERE id = 1")

    def row(self) -> LoopRow | None:
        """The loop's row, if a loop ever ran on this state."""
        try:
            row = self.store.conn.execute(
                "SELECT pid, host, started_at, last_poll_at, round, status, poll_interval, next_due_at "
                "FROM loop"
            ).fetchone()
        except Exception:  # an older schema, read-only
            return None
        return LoopRow(**dict(row)) if row else None


@dataclass(frozen=True)
class QueueRow:
    """A pending task: where it stands in the dispatch order, since when, and why it waits."""

    plan: str
    task_id: str
    title: str
    priority: str | None
    position: int
    enqueued_at: float
    reason: str


# The reason of a queued task while it runs: not pending, not done yet either.
RUNNING = "running"


class QueueStore:
    """The `queue` table: the tasks a run collected that are not done, in dispatch order."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def replace(
        self,
        plans: Iterable[str],
        rows: Iterable[QueueRow],
        now: float | None = None,
        paths: Mapping[str, str] | None = None,
    ) -> None:
        """Make `rows` the queue of `plans`: a task already queued keeps its enqueued time.

        `paths` gives each plan's file, absolute, for `forget_vanished`.
        """
        paths = paths or {}
        now = time.time() if now is None else now
        plans = list(plans)
        rows = list(rows)
        with self.store.writing() as conn:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS queue_keep (plan TEXT, task_id TEXT)")
            conn.execute("DELETE FROM queue_keep")
            conn.executemany("INSERT INTO queue_keep VALUES (?, ?)", [(r.plan, r.task_id) for r in rows])
            conn.executemany(
                "DELETE FROM queue WHERE plan = ? AND (plan, task_id) NOT IN "
                "(SELECT plan, task_id FROM queue_keep)",
                [(p,) for p in plans],
            )
            conn.executemany(
                "INSERT INTO queue (plan, task_id, title, priority, position, enqueued_at, reason, path) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (plan, task_id) DO UPDATE SET "
                "title = excluded.title, priority = excluded.priority, position = excluded.position, "
                "reason = excluded.reason, path = COALESCE(excluded.path, queue.path)",
                [
                    (r.plan, r.task_id, r.title, r.priority, r.position, now, r.reason, paths.get(r.plan))
                    for r in rows
                ],
            )
            conn.execute("DELETE FROM queue_keep")

    def forget_vanished(self, root: str) -> list[str]:
        """Delete the rows of plans under `root` (the project) whose file is gone (deleted, or
        renamed); return those plans.

        Each row keeps the absolute path its run found the plan at. Only paths under `root`
        are judged: a project moved elsewhere, or another project on the same state
        directory, has its rows kept, and so have plans named from outside the project, rows
        queued before the path was kept, and a file that cannot be looked at (permissions).
        """
        roots = {os.path.abspath(root), os.path.realpath(root)}
        try:
            known = self.store.conn.execute(
                "SELECT DISTINCT plan, path FROM queue WHERE path IS NOT NULL"
            ).fetchall()
        except sqlite3.Error:
            return []
        gone = [
            (str(plan), str(path))
            for plan, path in known
            if any(str(path).startswith(r.rstrip(os.sep) + os.sep) for r in roots) and _vanished(str(path))
        ]
        if gone:
            with self.store.writing() as conn:
                # Rows of the same plan queued before the path was kept go with it.
                conn.executemany("DELETE FROM queue WHERE plan = ? AND (path = ? OR path IS NULL)", gone)
        return sorted({plan for plan, _ in gone})

    def wait(self, plan: str, task_id: str, reason: str) -> None:
        """Say why a queued task still waits (blocked, budget, due later)."""
        with self.store.writing() as conn:
            conn.execute(
                "UPDATE queue SET reason = ? WHERE plan = ? AND task_id = ?", (reason, plan, task_id)
            )

    def take(self, plan: str, task_id: str) -> None:
        """The task was dispatched: it leaves the queue."""
        with self.store.writing() as conn:
            conn.execute("DELETE FROM queue WHERE plan = ? AND task_id = ?", (plan, task_id))

    def since(self) -> dict[tuple[str, str], float]:
        """When each queued task, by (plan, task id), entered the queue."""
        try:
            rows = self.store.conn.execute("SELECT plan, task_id, enqueued_at FROM queue").fetchall()
        except sqlite3.OperationalError:  # an older schema, read-only
            return {}
        return {(r["plan"], r["task_id"]): float(r["enqueued_at"]) for r in rows}

    def pending(self) -> list[QueueRow]:
        """The tasks waiting for dispatch, in dispatch order (not those running)."""
        rows = self.store.conn.execute(
            "SELECT plan, task_id, title, priority, position, enqueued_at, reason FROM queue "
            "WHERE reason != ? ORDER BY position, plan, task_id",
            (RUNNING,),
        ).fetchall()
        return [QueueRow(**dict(r)) for r in rows]


def _vanished(path: str) -> bool:
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False
