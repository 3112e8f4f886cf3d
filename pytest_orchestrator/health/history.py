"""The health history in state.db (`health_checks`): one row per health run and per watchdog round."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..state import StateStore
    from .document import HealthReport
    from .monitor import MonitorReading

# Who wrote a row: `pytest --orchestrator-health`, or a round of the watchdog.
HEALTH = "health"
WATCHDOG = "watchdog"

_COLUMNS = (
    "at",
    "source",
    "status",
    "checks",
    "active_agents",
    "crashed_agents",
    "zombie_processes",
    "last_poll_age",
    "actions",
    "bugs_reported",
)


@dataclass(frozen=True)
class HealthRow:
    """One health run as recorded: its status, each check's status, and what the monitor saw."""

    at: float
    source: str
    status: str
    # Each check's (or component's) status, by name.
    checks: Mapping[str, str] = field(default_factory=dict)
    active_agents: int = 0
    # Crashes in the hour before `at`.
    crashed_agents: int = 0
    # Defunct processes in the sandbox; None when not counted.
    zombie_processes: int | None = None
    # Seconds since the loop's last poll; None when no loop ever ran.
    last_poll_age: float | None = None
    # What the run did about it (a watchdog's restarts); a health run takes no action.
    actions: Sequence[str] = ()
    # The bug reports filed or updated in the hour before `at`.
    bugs_reported: Sequence[int] = ()
    # The row's id, once recorded.
    id: int | None = None


def row_for(report: HealthReport, reading: MonitorReading | None, source: str = HEALTH) -> HealthRow:
    """The history row of a health document, with the monitor's figures when it read them."""
    return HealthRow(
        at=report.timestamp.timestamp(),
        source=source,
        status=report.status,
        checks={name: result.status for name, result in report.checks.items()},
        active_agents=reading.active_agents if reading else 0,
        crashed_agents=reading.crashes_last_hour if reading else 0,
        zombie_processes=reading.zombie_processes if reading else None,
        last_poll_age=reading.last_poll_age if reading else None,
        bugs_reported=tuple(reading.bugs_reported) if reading else (),
    )


def _values(row: HealthRow) -> tuple[object, ...]:
    return (
        row.at,
        row.source,
        row.status,
        json.dumps(dict(row.checks), sort_keys=True),
        row.active_agents,
        row.crashed_agents,
        row.zombie_processes,
        row.last_poll_age,
        json.dumps(list(row.actions)),
        json.dumps(list(row.bugs_reported)),
    )


def _from_row(row: sqlite3.Row) -> HealthRow:
    return HealthRow(
        at=float(row["at"]),
        source=row["source"],
        status=row["status"],
        checks=json.loads(row["checks"] or "{}"),
        active_agents=int(row["active_agents"]),
        crashed_agents=int(row["crashed_agents"]),
        zombie_processes=row["zombie_processes"],
        last_poll_age=row["last_poll_age"],
        actions=tuple(json.loads(row["actions"] or "[]")),
        bugs_reported=tuple(json.loads(row["bugs_reported"] or "[]")),
        id=int(row["id"]),
    )


_INSERT = f"INSERT INTO health_checks ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
_LATEST = "SELECT * FROM health_checks {where} ORDER BY at DESC, id DESC LIMIT 1"


def record(store: StateStore, row: HealthRow) -> int:
    """Append `row` to the history; its id. A failed write raises StateError."""
    with store.writing() as conn:
        return int(conn.execute(_INSERT, _values(row)).lastrowid or 0)


# At most this many rows go in one trim: a backlog of weeks is cleared over a few runs, each short.
TRIM_BATCH = 1000


def trim(store: StateStore, before: float, batch: int = TRIM_BATCH) -> int:
    """Delete up to `batch` rows recorded before `before`, the oldest first; how many went.

    A health run trims as it appends: `orchestrator serve` runs one on each scrape of
    /healthz, which without the watchdog or the loop (their daily prune) nothing would delete.
    A failed write raises StateError.
    """
    with store.writing() as conn:
        return conn.execute(
            "DELETE FROM health_checks WHERE id IN "
            "(SELECT id FROM health_checks WHERE at < ? ORDER BY at LIMIT ?)",
            (before, batch),
        ).rowcount


def latest(store: StateStore, source: str | None = None) -> HealthRow | None:
    """The newest row, of `source` or of any; None when there is none."""
    if source is None:
        found = store.conn.execute(_LATEST.format(where="")).fetchone()
    else:
        found = store.conn.execute(_LATEST.format(where="WHERE source = ?"), (source,)).fetchone()
    return _from_row(found) if found else None


class HealthHistory:
    """The `health_checks` rows, on a `StateStore`'s connection."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def record(self, row: HealthRow) -> int:
        """Append `row`; its id."""
        return record(self.store, row)

    def latest(self, source: str | None = None) -> HealthRow | None:
        """The newest row, of `source` or of any."""
        return latest(self.store, source)

    def record_round(
        self, row: HealthRow, now: float | None = None, min_interval: float = 60.0
    ) -> int | None:
        """Append a periodic round's row unless nothing changed: its id, or None when skipped.

        Skipped when the last row of the same source is less than `min_interval` seconds old and
        has the same status and check statuses, and this round took no action. So a watchdog
        polling every few seconds writes a row a minute while all is well, and one at once on
        any change.
        """
        now = time.time() if now is None else now
        with self.store.writing() as conn:
            last = conn.execute(_LATEST.format(where="WHERE source = ?"), (row.source,)).fetchone()
            if last is not None and not row.actions:
                previous = _from_row(last)
                if (
                    now - previous.at < min_interval
                    and previous.status == row.status
                    and dict(previous.checks) == dict(row.checks)
                ):
                    return None
            return int(conn.execute(_INSERT, _values(row)).lastrowid or 0)
