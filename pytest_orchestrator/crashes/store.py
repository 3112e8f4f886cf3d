"""The crash records in state.db (`agent_crashes`) and the bug reports filed on them (`bug_reports`)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .model import Crash, CrashGroup, CrashSample

if TYPE_CHECKING:
    from ..state import StateStore

_COLUMNS = (
    "at",
    "kind",
    "subject",
    "plan",
    "attempt_id",
    "pid",
    "container",
    "exit_code",
    "signal",
    "error_type",
    "message",
    "log_tail",
    "respawned",
    "root_cause",
    "fingerprint",
    "files",
)


def crash_from_row(row: sqlite3.Row) -> Crash:
    """A crash as recorded."""
    return Crash(
        kind=row["kind"],
        subject=row["subject"],
        at=row["at"],
        error_type=row["error_type"],
        message=row["message"],
        fingerprint=row["fingerprint"],
        plan=row["plan"],
        attempt_id=row["attempt_id"],
        pid=row["pid"],
        container=row["container"],
        exit_code=row["exit_code"],
        signal=row["signal"],
        log_tail=row["log_tail"] or "",
        respawned=bool(row["respawned"]),
        root_cause=row["root_cause"],
        files=tuple(json.loads(row["files"] or "[]")),
    )


class CrashStore:
    """Reads and writes of the crash records, on a `StateStore`'s connection."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def record(self, crash: Crash) -> int:
        """Add a crash; returns its row id. The caller has redacted what it carries."""
        values = (
            crash.at,
            crash.kind,
            crash.subject,
            crash.plan,
            crash.attempt_id,
            crash.pid,
            crash.container,
            crash.exit_code,
            crash.signal,
            crash.error_type,
            crash.message,
            crash.log_tail,
            int(crash.respawned),
            crash.root_cause,
            crash.fingerprint,
            json.dumps(list(crash.files)),
        )
        marks = ", ".join("?" for _ in _COLUMNS)
        with self.store.writing() as conn:
            cur = conn.execute(f"INSERT INTO agent_crashes ({', '.join(_COLUMNS)}) VALUES ({marks})", values)
            return int(cur.lastrowid or 0)

    def of(self, fingerprint: str, since: float = 0.0, limit: int = 50) -> list[Crash]:
        """The latest crashes with `fingerprint` since `since`, newest first."""
        rows = self.store.conn.execute(
            "SELECT * FROM agent_crashes WHERE fingerprint = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?",
            (fingerprint, since, limit),
        ).fetchall()
        return [crash_from_row(r) for r in rows]

    def count(self, since: float, fingerprint: str | None = None) -> int:
        """How many crashes since `since`, of one fingerprint or of all."""
        if fingerprint is None:
            row = self.store.conn.execute("SELECT COUNT(*) FROM agent_crashes WHERE at >= ?", (since,))
        else:
            row = self.store.conn.execute(
                "SELECT COUNT(*) FROM agent_crashes WHERE fingerprint = ? AND at >= ?", (fingerprint, since)
            )
        return int(row.fetchone()[0])

    def span(self, fingerprint: str, since: float = 0.0) -> CrashSpan | None:
        """How many crashes with `fingerprint` since `since`, and the first and last; None without any."""
        row = self.store.conn.execute(
            "SELECT COUNT(*), MIN(at), MAX(at) FROM agent_crashes WHERE fingerprint = ? AND at >= ?",
            (fingerprint, since),
        ).fetchone()
        if not row[0]:
            return None
        return CrashSpan(int(row[0]), float(row[1]), float(row[2]))

    def unreported(self, fingerprint: str) -> int:
        """How many crashes with `fingerprint` no bug report counts yet."""
        row = self.store.conn.execute(
            "SELECT COUNT(*) FROM agent_crashes WHERE fingerprint = ? AND bug_number IS NULL", (fingerprint,)
        ).fetchone()
        return int(row[0])

    def respawns(self, since: float) -> tuple[int, int]:
        """Of the task crashes since `since` that were respawned: how many, and how many of their
        tasks completed later."""
        row = self.store.conn.execute(_RESPAWNS, (since,)).fetchone()
        return int(row[0]), int(row[1])

    # ---- groups and retention: `orchestrator crashes` and the monitor's daily prune ----

    def groups(self, since: float, limit: int | None = None) -> list[CrashGroup]:
        """The crashes since `since` grouped by fingerprint, the most recently seen first."""
        rows = self.store.conn.execute(_GROUPS, {"since": since, "limit": -1 if limit is None else limit})
        return [
            CrashGroup(
                fingerprint=r["fingerprint"],
                error_type=r["error_type"],
                count=r["count"],
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
                respawned=r["respawned"],
                sample=CrashSample(
                    kind=r["kind"],
                    subject=r["subject"],
                    plan=r["plan"],
                    message=r["message"],
                    root_cause=r["root_cause"],
                    at=r["at"],
                    pid=r["pid"],
                    respawned=bool(r["sample_respawned"]),
                ),
                bug_number=r["bug_number"],
            )
            for r in rows
        ]

    def prune(self, before: float, batch: int = 5000) -> int:
        """Delete crash, health and resource rows older than `before`, in batches; how many went.

        Each transaction deletes at most `batch` rows. Bug reports stay: they carry each
        fingerprint's rate limit.
        """
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        deleted = 0
        for table in _PRUNED:
            while True:
                with self.store.writing() as conn:
                    done = conn.execute(
                        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE at < ? LIMIT ?)",
                        (before, batch),
                    ).rowcount
                deleted += done
                if done < batch:
                    break
                # A writer waiting on the lock polls for it, at growing intervals; without a
                # pause it found the lock taken again for about a dozen batches.
                time.sleep(_PRUNE_PAUSE)
        return deleted


# The rows retention deletes, each table with an index on `at`.


_PRUNED = ("agent_crashes", "health_checks", "resource_samples")
_PRUNE_PAUSE = 0.01

# Counts, times and the respawned flag come from the index on (fingerprint, at, respawned)
# alone; the sample is one row per group, the latest by time (crashes may be recorded out of
# order, so not MAX(id)), found through the same index. The bug is the fingerprint's report,
# filed perhaps on crashes older than the window.
_GROUPS = """
WITH g AS (
    SELECT fingerprint, COUNT(*) AS count, MIN(at) AS first_seen, MAX(at) AS last_seen,
           SUM(respawned) AS respawned
    FROM agent_crashes WHERE at >= :since GROUP BY fingerprint
    ORDER BY last_seen DESC, fingerprint LIMIT :limit
)
SELECT g.fingerprint, g.count, g.first_seen, g.last_seen, g.respawned,
       c.error_type, c.kind, c.subject, c.plan, c.message, c.root_cause, c.at, c.pid,
       c.respawned AS sample_respawned,
       b.number AS bug_number
FROM g
JOIN agent_crashes c ON c.id = (
    SELECT id FROM agent_crashes WHERE fingerprint = g.fingerprint AND at >= :since
    ORDER BY at DESC, id DESC LIMIT 1
)
LEFT JOIN bug_reports b ON b.fingerprint = g.fingerprint
ORDER BY g.last_seen DESC, g.fingerprint
"""


# A respawn succeeded when an attempt of the same task completed after the crash.
_RESPAWNS = """
SELECT COUNT(*), COALESCE(SUM(EXISTS (
    SELECT 1 FROM attempts a WHERE a.plan = c.plan AND a.task_id = c.subject
    AND a.status = 'completed' AND a.ended_at >= c.at
)), 0)
FROM agent_crashes c WHERE c.at >= ? AND c.kind = 'task' AND c.respawned = 1
"""


@dataclass(frozen=True)
class CrashSpan:
    """The crashes of one fingerprint in a window: how many, the first and the last."""

    count: int
    first: float
    last: float


@dataclass(frozen=True)
class BugRow:
    """A bug report as recorded in `bug_reports`: one per fingerprint, its number kept for good."""

    number: int
    fingerprint: str
    title: str
    priority: str
    category: str
    crashes: int
    first_reported_at: float
    last_reported_at: float
    path: str | None
    url: str | None


@dataclass(frozen=True)
class BugEntry:
    """What a report writes into its `bug_reports` row."""

    fingerprint: str
    title: str
    priority: str
    category: str
    crashes: int


def _bug_from_row(row: sqlite3.Row) -> BugRow:
    return BugRow(
        number=int(row["number"]),
        fingerprint=row["fingerprint"],
        title=row["title"],
        priority=row["priority"],
        category=row["category"],
        crashes=int(row["crashes"]),
        first_reported_at=float(row["first_reported_at"]),
        last_reported_at=float(row["last_reported_at"]),
        path=row["path"],
        url=row["url"],
    )


class BugStore:
    """Reads and writes of the bug reports (`bug_reports`), on a `StateStore`'s connection."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def of(self, fingerprint: str) -> BugRow | None:
        """The report on `fingerprint`, if one was ever filed."""
        row = self.store.conn.execute(
            "SELECT * FROM bug_reports WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return _bug_from_row(row) if row else None

    def get(self, number: int) -> BugRow | None:
        """Report number `number`, if it exists."""
        row = self.store.conn.execute("SELECT * FROM bug_reports WHERE number = ?", (number,)).fetchone()
        return _bug_from_row(row) if row else None

    def file(
        self,
        entry: BugEntry,
        now: float,
        rate_limit: float,
        write: Callable[[int, bool], str],
        *,
        floor: int = 0,
    ) -> BugRow | None:
        """Record a report on `entry.fingerprint` and write it with `write(number, new)`, in one transaction.

        A new fingerprint gets the next number above both the recorded ones and `floor`; a known
        one keeps its own. `write` returns where it wrote the report; if it raises, nothing is
        recorded. Returns None, writing nothing, when the fingerprint was reported less than
        `rate_limit` seconds ago: another process got there first.
        """
        with self.store.writing() as conn:
            row = conn.execute(
                "SELECT * FROM bug_reports WHERE fingerprint = ?", (entry.fingerprint,)
            ).fetchone()
            if row is not None and now - float(row["last_reported_at"]) < rate_limit:
                return None
            if row is None:
                highest = int(conn.execute("SELECT COALESCE(MAX(number), 0) FROM bug_reports").fetchone()[0])
                number = max(highest, floor) + 1
                conn.execute(
                    "INSERT INTO bug_reports (number, fingerprint, title, priority, category, crashes, "
                    "first_reported_at, last_reported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        number,
                        entry.fingerprint,
                        entry.title,
                        entry.priority,
                        entry.category,
                        entry.crashes,
                        now,
                        now,
                    ),
                )
            else:
                number = int(row["number"])
            path = write(number, row is None)
            conn.execute(
                "UPDATE bug_reports SET title = ?, priority = ?, category = ?, crashes = ?, "
                "last_reported_at = ?, path = ? WHERE number = ?",
                (entry.title, entry.priority, entry.category, entry.crashes, now, path, number),
            )
            # Only the rows not yet marked: an update touches the crashes since the last report.
            conn.execute(
                "UPDATE agent_crashes SET bug_number = ? WHERE fingerprint = ? AND bug_number IS NULL",
                (number, entry.fingerprint),
            )
            done = conn.execute("SELECT * FROM bug_reports WHERE number = ?", (number,)).fetchone()
            return _bug_from_row(done)

    def latest(self, category: str, since: float) -> BugRow | None:
        """The report of `category` (crash, freeze, zombie) filed or updated last, if since `since`."""
        row = self.store.conn.execute(
            "SELECT * FROM bug_reports WHERE category = ? AND last_reported_at >= ? "
            "ORDER BY last_reported_at DESC, number DESC LIMIT 1",
            (category, since),
        ).fetchone()
        return _bug_from_row(row) if row else None

    def reported_since(self, since: float) -> list[int]:
        """The numbers of the reports filed or updated since `since`, oldest number first."""
        rows = self.store.conn.execute(
            "SELECT number FROM bug_reports WHERE last_reported_at >= ? ORDER BY number", (since,)
        ).fetchall()
        return [int(r["number"]) for r in rows]

    def delivered(self, number: int, url: str) -> None:
        """Record where the tracker filed report `number`."""
        with self.store.writing() as conn:
            conn.execute("UPDATE bug_reports SET url = ? WHERE number = ?", (url, number))
