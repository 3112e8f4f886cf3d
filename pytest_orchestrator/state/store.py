"""Access to state.db: open (creating or upgrading it), write runs and attempts, read what others need."""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .migrations import DB_NAME, MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    from ..result import Usage


class StateError(Exception):
    """The state database cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class ActiveAttempt:
    """A task attempt that the state says is running, with its run's latest heartbeat."""

    plan: str
    task_id: str
    title: str
    started_at: float
    heartbeat_at: float | None
    # The Docker engine its agent runs on (None: not recorded).
    engine: str | None = None


@dataclass(frozen=True)
class Interrupted:
    """An attempt found running on behalf of a process that no longer exists."""

    plan: str
    task_id: str
    dispatch_id: str | None
    # The engine its agent ran on (None: recorded before engines were).
    engine: str | None = None


@dataclass(frozen=True)
class Holder:
    """The live run that holds a plan's lease."""

    run_id: int
    pid: int
    host: str

    def __str__(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host})"


@dataclass(frozen=True)
class Completion:
    """Where and when a task was completed."""

    run_id: int
    at: float


_Write = TypeVar("_Write", bound=Callable[..., Any])


def _write_failed(path: Path, exc: sqlite3.Error) -> StateError:
    return StateError(f"cannot write to state database {path}: {exc}")


def _write(method: _Write) -> _Write:
    """A write that fails (disk full, read-only file) raises StateError, naming the database."""

    @functools.wraps(method)
    def write(self: StateStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise _write_failed(self.path, exc) from None

    return write  # type: ignore[return-value]


def _connect(path: Path, *, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    if readonly:
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")
        conn = sqlite3.connect(uri, uri=True, timeout=5)
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


class StateStore:
    """Access to state.db; open it with `open()` (read-write) or `read()` (read-only)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, state_dir: Path, wait: float = 30.0) -> StateStore:
        """Open state.db for writing, creating or upgrading it; a lock is waited on for `wait` seconds."""
        path = state_dir / DB_NAME
        deadline = time.monotonic() + wait
        while True:
            try:
                state_dir.mkdir(parents=True, exist_ok=True)
                conn = _connect(path, readonly=False)
                try:
                    # WAL lets readers (the health check) run while a task run writes.
                    conn.execute("PRAGMA journal_mode=WAL")
                    # In WAL mode NORMAL never corrupts the database; a power cut may lose
                    # the last commits, which resume then treats as an interrupted attempt.
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
                    store = cls(conn, path)
                    store._migrate()
                except BaseException:
                    conn.close()
                    raise
                return store
            except sqlite3.OperationalError as exc:
                # Switching a new database to WAL does not wait on the busy handler, so
                # xdist workers creating it together retry here instead.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise StateError(f"cannot open state database {path}: {exc}") from None
                time.sleep(0.05)
            except (sqlite3.Error, OSError) as exc:
                raise StateError(f"cannot open state database {path}: {exc}") from None

    @classmethod
    def empty(cls) -> StateStore:
        """An in-memory store with the current schema and no history, for runs that write nothing."""
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.row_factory = sqlite3.Row
        store = cls(conn, Path(":memory:"))
        store._migrate()
        return store

    @classmethod
    def read(cls, state_dir: Path) -> StateStore | None:
        """Open state.db read-only; None when there is no state yet."""
        path = state_dir / DB_NAME
        if not path.exists():
            return None
        if not os.access(path, os.R_OK):
            raise StateError(
                f"cannot read state database {path}: permission denied; give this user read "
                "access to it, or run as its owner"
            )
        conn = None
        try:
            conn = _connect(path, readonly=True)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.OperationalError:
            if conn is not None:
                conn.close()
            # A WAL database read-only needs its -shm file, which a reader cannot create on a
            # read-only mount or without write access to the directory. Read the file as it
            # stands: on a read-only mount nothing writes it; otherwise the latest commits,
            # not yet copied from the WAL, may be missing, which a health check can live with.
            try:
                conn = _connect(path, readonly=True, immutable=True)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.Error as exc:
                raise StateError(f"cannot read state database {path}: {exc}") from None
        except sqlite3.Error as exc:
            raise StateError(f"cannot read state database {path}: {exc}") from None
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {path} has schema version {version}, newer than this "
                f"pytest-orchestrator understands ({SCHEMA_VERSION}): upgrade pytest-orchestrator"
            )
        if version < 1:
            empty = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
            conn.close()
            if empty:
                # Being created by a run that has not written its schema yet: no state so far.
                return None
            raise StateError(f"{path} is not an orchestrator state database (schema version 0)")
        return cls(conn, path)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; a write that fails (disk full, read-only file) raises StateError."""
        try:
            with self._transaction() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise _write_failed(self.path, exc) from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so concurrent writers queue on
        # busy_timeout instead of failing when they upgrade a read lock.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            # SQLite has already rolled back after some errors, a full disk among them.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"state database {self.path} has schema version {version}, newer than this "
                    f"pytest-orchestrator understands ({SCHEMA_VERSION}): upgrade pytest-orchestrator"
                )
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ---- writes: used by task runs ----

    @_write
    def begin_run(self, run_key: str | None = None, now: float | None = None) -> int:
        """Record a new run of this process and return its id."""
        now = time.time() if now is None else now
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO runs (started_at, pid, host, run_key) VALUES (?, ?, ?, ?)",
                (now, os.getpid(), socket.gethostname(), run_key),
            )
            return int(cur.lastrowid or 0)

    @_write
    def end_run(self, run_id: int, status: str, now: float | None = None) -> None:
        """Record how a run ended."""
        now = time.time() if now is None else now
        with self._transaction() as conn:
            conn.execute("UPDATE runs SET ended_at = ?, status = ? WHERE id = ?", (now, status, run_id))

    @_write
    def heartbeat(self, run_id: int, worker: str = "main", now: float | None = None) -> None:
        """Record that `worker` of run `run_id` is alive."""
        now = time.time() if now is None else now
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO heartbeats (run_id, worker, at) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, worker) DO UPDATE SET at = excluded.at",
                (run_id, worker, now),
            )

    @_write
    def start_attempt(
        self,
        run_id: int,
        plan: str,
        task_id: str,
        title: str = "",
        attempt: int = 1,
        worker: str = "main",
        now: float | None = None,
        dispatch_id: str | None = None,
        engine: str | None = None,
    ) -> int:
        """Record that a task attempt started, on which engine; returns the attempt's row id."""
        now = time.time() if now is None else now
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO attempts (run_id, plan, task_id, title, attempt, started_at, worker, "
                "dispatch_id, engine) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, plan, task_id, title, attempt, now, worker, dispatch_id, engine),
            )
            conn.execute(
                "INSERT INTO heartbeats (run_id, worker, at) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, worker) DO UPDATE SET at = excluded.at",
                (run_id, worker, now),
            )
            return int(cur.lastrowid or 0)

    @_write
    def finish_attempt(
        self,
        attempt_id: int,
        status: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_creation_tokens: int = 0,
        cost_usd: float = 0.0,
        num_turns: int = 0,
        session_id: str | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> None:
        """Record how a task attempt ended."""
        now = time.time() if now is None else now
        with self._transaction() as conn:
            conn.execute(
                "UPDATE attempts SET status = ?, ended_at = ?, input_tokens = ?, output_tokens = ?, "
                "cache_read_tokens = ?, cache_creation_tokens = ?, cost_usd = ?, num_turns = ?, "
                "session_id = ?, error = ? WHERE id = ?",
                (
                    status,
                    now,
                    input_tokens,
                    output_tokens,
                    cache_read_tokens,
                    cache_creation_tokens,
                    cost_usd,
                    num_turns,
                    session_id,
                    error,
                    attempt_id,
                ),
            )

    @_write
    def attempt_progress(self, attempt_id: int, num_turns: int, usage: Usage) -> None:
        """Record a running attempt's turns and tokens so far; an ended attempt keeps its final figures."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE attempts SET num_turns = ?, input_tokens = ?, output_tokens = ?, "
                "cache_read_tokens = ?, cache_creation_tokens = ? WHERE id = ? AND status = 'running'",
                (
                    num_turns,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cache_read_tokens,
                    usage.cache_creation_tokens,
                    attempt_id,
                ),
            )

    @_write
    def lease(
        self,
        plan: str,
        run_id: int,
        run_key: str,
        is_alive: Callable[[int, str], bool],
        stale_after: float,
    ) -> Holder | None:
        """Take the plan's lease for run `run_id`; the live run of another invocation holding it, if any.

        The processes of one invocation (`run_key`) share their leases. A lease of a run that
        ended, whose process is gone, or whose heartbeat is older than `stale_after` seconds
        is taken over.
        """
        now = time.time()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT r.id, r.run_key, r.pid, r.host, r.ended_at, "
                "COALESCE((SELECT MAX(h.at) FROM heartbeats h WHERE h.run_id = r.id), r.started_at) AS beat "
                "FROM leases l JOIN runs r ON r.id = l.run_id WHERE l.plan = ?",
                (plan,),
            ).fetchone()
            if row is not None:
                if row["run_key"] == run_key:
                    return None
                gone = row["host"] == socket.gethostname() and not is_alive(row["pid"], row["host"])
                if row["ended_at"] is None and not gone and now - row["beat"] <= stale_after:
                    return Holder(int(row["id"]), int(row["pid"]), str(row["host"]))
            conn.execute(
                "INSERT INTO leases (plan, run_id, acquired_at) VALUES (?, ?, ?) ON CONFLICT (plan) "
                "DO UPDATE SET run_id = excluded.run_id, acquired_at = excluded.acquired_at",
                (plan, run_id, now),
            )
        return None

    @_write
    def release_leases(self, run_id: int) -> None:
        """Give up the leases run `run_id` holds."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM leases WHERE run_id = ?", (run_id,))

    def last_session(self, plan: str, task_id: str) -> str | None:
        """The Claude session id of the task's latest attempt that recorded one."""
        row = self.conn.execute(
            "SELECT session_id FROM attempts WHERE plan = ? AND task_id = ? "
            "AND session_id IS NOT NULL AND session_id != '' ORDER BY id DESC LIMIT 1",
            (plan, task_id),
        ).fetchone()
        return str(row["session_id"]) if row else None

    @_write
    def reap_interrupted(self, is_alive: Callable[[int, str], bool], stale_after: float) -> list[Interrupted]:
        """Mark attempts left 'running' by a dead process as interrupted, and return them.

        A run's process is dead when it ran on this host and its pid is gone, or when its
        heartbeat is older than `stale_after` seconds (another host, or pid reuse).
        """
        now = time.time()
        rows = self.conn.execute(
            "SELECT a.id, a.plan, a.task_id, a.dispatch_id, a.engine, a.run_id, r.pid, r.host, "
            "COALESCE(h.at, a.started_at) AS beat "
            "FROM attempts a JOIN runs r ON r.id = a.run_id "
            "LEFT JOIN heartbeats h ON h.run_id = a.run_id AND h.worker = a.worker "
            "WHERE a.status = 'running'"
        ).fetchall()
        dead = [
            r
            for r in rows
            if (r["host"] == socket.gethostname() and not is_alive(r["pid"], r["host"]))
            or now - r["beat"] > stale_after
        ]
        if not dead:
            return []
        with self._transaction() as conn:
            for r in dead:
                conn.execute(
                    "UPDATE attempts SET status = 'interrupted', ended_at = ?, "
                    "error = COALESCE(error, ?) WHERE id = ? AND status = 'running'",
                    (now, "the orchestrator process ended during the attempt", r["id"]),
                )
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', ended_at = COALESCE(ended_at, ?) "
                    "WHERE id = ? AND status = 'running'",
                    (now, r["run_id"]),
                )
        return [Interrupted(r["plan"], r["task_id"], r["dispatch_id"], r["engine"]) for r in dead]

    # ---- reads: used by resume, budgets and the health check ----

    def completed(self, plan: str, task_id: str) -> Completion | None:
        """The latest completed attempt of a task, if any."""
        row = self.conn.execute(
            "SELECT run_id, ended_at FROM attempts WHERE plan = ? AND task_id = ? "
            "AND status = 'completed' ORDER BY id DESC LIMIT 1",
            (plan, task_id),
        ).fetchone()
        return Completion(int(row["run_id"]), float(row["ended_at"] or 0)) if row else None

    def run_cost(self, run_key: str) -> float:
        """What all attempts of the processes sharing `run_key` have cost so far."""
        row = self.conn.execute(
            "SELECT COALESCE(SUM(a.cost_usd), 0) FROM attempts a JOIN runs r ON r.id = a.run_id "
            "WHERE r.run_key = ?",
            (run_key,),
        ).fetchone()
        return float(row[0])

    def active_attempts(self) -> list[ActiveAttempt]:
        """Attempts recorded as running, oldest first, with their worker's last heartbeat."""
        rows = self.conn.execute(
            "SELECT a.plan, a.task_id, a.title, a.started_at, h.at AS heartbeat_at, a.engine "
            "FROM attempts a LEFT JOIN heartbeats h "
            "ON h.run_id = a.run_id AND h.worker = a.worker "
            "WHERE a.status = 'running' ORDER BY a.started_at, a.id"
        ).fetchall()
        return [
            ActiveAttempt(
                r["plan"], r["task_id"], r["title"], r["started_at"], r["heartbeat_at"], r["engine"]
            )
            for r in rows
        ]

    def task_histories(
        self, before: float
    ) -> dict[tuple[str, str], tuple[float | None, int, float | None, str | None]]:
        """Per task ended before `before`: (completed at, failed runs since, last failure, last status).

        One grouped query, for a round that decides on every task at once. Failures count
        the runs whose attempts ended without completing the task, after its last completion.
        """
        rows = self.conn.execute(
            "WITH ended AS (SELECT plan, task_id, run_id, status, ended_at FROM attempts "
            "WHERE ended_at IS NOT NULL AND ended_at <= ?), "
            "done AS (SELECT plan, task_id, MAX(ended_at) AS at FROM ended WHERE status = 'completed' "
            "GROUP BY plan, task_id) "
            "SELECT e.plan, e.task_id, d.at AS completed_at, "
            "COUNT(DISTINCT CASE WHEN e.status != 'completed' AND e.ended_at > COALESCE(d.at, 0) "
            "THEN e.run_id END) AS failures, "
            "MAX(CASE WHEN e.status != 'completed' THEN e.ended_at END) AS last_failed_at, "
            "(SELECT status FROM ended l WHERE l.plan = e.plan AND l.task_id = e.task_id "
            "ORDER BY l.ended_at DESC LIMIT 1) AS last_status "
            "FROM ended e LEFT JOIN done d ON d.plan = e.plan AND d.task_id = e.task_id "
            "GROUP BY e.plan, e.task_id",
            (before,),
        ).fetchall()
        return {
            (r["plan"], r["task_id"]): (
                r["completed_at"],
                r["failures"],
                r["last_failed_at"],
                r["last_status"],
            )
            for r in rows
        }
