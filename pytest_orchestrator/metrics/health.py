"""Health from the numbers (US9): a backlog, an error rate and a silence that degrade the health.

The `health:` section of orchestrator.yaml holds the thresholds; the checks in checks/
(`task_backlog`, `error_rate`, `last_completion`) call the functions here, which read the
state database and say whether the figure is within its threshold, and why not.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from ..config_file import ConfigFile, Reader
from ..loop.store import RUNNING
from .window import HOUR, last_hour

HEALTH_KEYS = ("task_backlog", "error_rate", "error_rate_min_tasks", "last_completion")
# The first schema with the queue table.
_QUEUE_SCHEMA = 5


@dataclass(frozen=True)
class HealthThresholds:
    """When the numbers degrade the health: the defaults of the specification."""

    # More pending tasks than this in the queue.
    task_backlog: int = 20
    # A larger fraction of the last hour's finished attempts failed...
    error_rate: float = 0.10
    # ...of at least this many finished attempts (two failures of three say little).
    error_rate_min_tasks: int = 5
    # Seconds without a completed task while tasks are pending.
    last_completion: float = HOUR


def health_thresholds(file: ConfigFile | None) -> HealthThresholds:
    """The `health:` section of the config file, validated; the defaults without one."""
    reader = Reader(file)
    data = file.data if file is not None else {}
    section = reader.mapping(("health",), data.get("health"), HEALTH_KEYS)
    defaults = HealthThresholds()
    rate_key = ("health", "error_rate")
    rate = reader.number(rate_key, section.get("error_rate", defaults.error_rate))
    if rate > 1:
        raise reader.fail(rate_key, f"error_rate must be a fraction from 0 to 1 (0.1 is 10 %), not {rate:g}")
    return HealthThresholds(
        task_backlog=reader.count(
            ("health", "task_backlog"), section.get("task_backlog", defaults.task_backlog)
        ),
        error_rate=rate,
        error_rate_min_tasks=reader.count(
            ("health", "error_rate_min_tasks"),
            section.get("error_rate_min_tasks", defaults.error_rate_min_tasks),
        ),
        last_completion=reader.seconds(
            ("health", "last_completion"), section.get("last_completion", defaults.last_completion)
        ),
    )


@dataclass(frozen=True)
class Verdict:
    """A check's outcome: whether the figure is within its threshold, the line saying so, the figure."""

    ok: bool
    message: str
    value: float


def _pending(conn: sqlite3.Connection) -> int:
    if conn.execute("PRAGMA user_version").fetchone()[0] < _QUEUE_SCHEMA:
        return 0
    # A running task's row stays in the queue until it ends: it no longer waits.
    return int(conn.execute("SELECT COUNT(*) FROM queue WHERE reason != ?", (RUNNING,)).fetchone()[0])


def _tasks(n: int) -> str:
    return f"{n} task" if n == 1 else f"{n} tasks"


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * HOUR:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / HOUR:.1f}h"


def task_backlog(conn: sqlite3.Connection | None, thresholds: HealthThresholds) -> Verdict:
    """Whether the queue holds no more pending tasks than `task_backlog`."""
    pending = _pending(conn) if conn is not None else 0
    limit = thresholds.task_backlog
    if pending > limit:
        return Verdict(
            False,
            f"{_tasks(pending)} pending, more than {limit}: the runs fall behind; see `orchestrator metrics` "
            "for their throughput, or run more workers (-n)",
            pending,
        )
    return Verdict(True, f"{_tasks(pending)} pending (at most {limit})", pending)


def error_rate(
    conn: sqlite3.Connection | None, thresholds: HealthThresholds, now: float | None = None
) -> Verdict:
    """Whether at most `error_rate` of the last hour's finished attempts failed (with enough of them)."""
    now = time.time() if now is None else now
    if conn is None:
        return Verdict(True, "no task finished in the last hour", 0.0)
    hour = last_hour(conn, now)
    rate = hour.error_rate or 0.0
    figures = f"{hour.failed} of {hour.finished} finished attempts failed in the last hour"
    if hour.finished < thresholds.error_rate_min_tasks:
        return Verdict(
            True, f"{figures}: too few to judge (at least {thresholds.error_rate_min_tasks})", rate
        )
    if rate > thresholds.error_rate:
        return Verdict(
            False,
            f"{figures} ({rate:.0%}, more than {thresholds.error_rate:.0%}): "
            "see `orchestrator crashes --since 1h` for why",
            rate,
        )
    return Verdict(True, f"{figures} ({rate:.0%}, at most {thresholds.error_rate:.0%})", rate)


def last_completion(
    conn: sqlite3.Connection | None, thresholds: HealthThresholds, now: float | None = None
) -> Verdict:
    """Whether a task completed in the last `last_completion` seconds, or nothing is pending."""
    now = time.time() if now is None else now
    pending = _pending(conn) if conn is not None else 0
    row = (
        conn.execute(
            # Newest first through the index on ended_at: it stops at the first completed attempt.
            "SELECT ended_at FROM attempts WHERE status = 'completed' AND ended_at IS NOT NULL "
            "ORDER BY ended_at DESC LIMIT 1"
        ).fetchone()
        if conn is not None
        else None
    )
    last = float(row[0]) if row is not None and row[0] is not None else None
    age = now - last if last is not None else None
    seen = f"the last {_span(age)} ago" if age is not None else "none yet"
    if pending and (age is None or age > thresholds.last_completion):
        return Verdict(
            False,
            f"{_tasks(pending)} pending and no task completed in the last "
            f"{_span(thresholds.last_completion)} ({seen}): is the loop running? "
            "see `orchestrator status` and `orchestrator metrics --since 1h`",
            age if age is not None else -1.0,
        )
    return Verdict(
        True, f"{_tasks(pending)} pending; completed tasks: {seen}", age if age is not None else -1.0
    )
