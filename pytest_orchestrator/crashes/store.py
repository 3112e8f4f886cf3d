"""The crash records in state.db (`agent_crashes`): written by task runs and the watchdog."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

from .model import Crash

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
