"""The run, plan and task browser: runs with their attempts, tasks by plan, and hours of work.

Read-only queries over state.db for `orchestrator serve` (`/api/runs`, `/api/tasks` and the
web dashboard's chart). Times are ISO 8601 in UTC, errors are masked again on the way out.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ..metrics import FAILED
from ..redact import redact
from .terminal import iso

if TYPE_CHECKING:
    from ..state import StateStore

# Failed as `orchestrator metrics` counts it: a question or an interrupted run is not a failure.
_FAILED = "(" + ", ".join(f"'{status}'" for status in FAILED) + ")"
# The attempts' columns every listing shows.
_ATTEMPT = (
    "a.id, a.run_id, a.plan, a.task_id, a.title, a.attempt, a.status, a.started_at, a.ended_at, "
    "a.input_tokens, a.output_tokens, a.cache_read_tokens, a.cache_creation_tokens, a.cost_usd, "
    "a.num_turns, a.worker, a.error"
)


def attempt_dict(row: sqlite3.Row) -> dict[str, Any]:
    """An attempt row as JSON: times in ISO, the duration in seconds, tokens summed, error masked."""
    ended = row["ended_at"]
    return {
        "id": row["id"],
        "run_id": row["run_id"],
        "plan": row["plan"],
        "task_id": row["task_id"],
        "title": row["title"],
        "attempt": row["attempt"],
        "status": row["status"],
        "started_at": iso(row["started_at"]),
        "ended_at": iso(ended),
        "duration_seconds": round(ended - row["started_at"], 3) if ended is not None else None,
        "tokens": row["input_tokens"]
        + row["output_tokens"]
        + row["cache_read_tokens"]
        + row["cache_creation_tokens"],
        "cost_usd": round(row["cost_usd"], 6),
        "num_turns": row["num_turns"],
        "worker": row["worker"],
        "error": redact(row["error"]) if row["error"] else None,
    }


# A run's summary columns over `runs r LEFT JOIN attempts a ... GROUP BY r.id`, for `_run_dict`.
_RUN = (
    "r.id, r.started_at, r.ended_at, r.status, r.pid, r.host, COUNT(a.id) AS attempts, "
    "COALESCE(SUM(a.status = 'completed'), 0) AS completed, "
    f"COALESCE(SUM(a.status IN {_FAILED}), 0) AS failed, "
    "COALESCE(SUM(a.status = 'running'), 0) AS running, "
    "COALESCE(SUM(a.cost_usd), 0) AS cost_usd, "
    "COALESCE(SUM(a.input_tokens + a.output_tokens + a.cache_read_tokens + a.cache_creation_tokens), 0) "
    "AS tokens, GROUP_CONCAT(DISTINCT a.plan) AS plans"
)


def runs(store: StateStore, limit: int = 50) -> list[dict[str, Any]]:
    """The latest `limit` runs, newest first, each with its attempts counted by status and its cost."""
    rows = store.conn.execute(
        "WITH r AS (SELECT * FROM runs ORDER BY id DESC LIMIT ?) "
        f"SELECT {_RUN} FROM r LEFT JOIN attempts a ON a.run_id = r.id GROUP BY r.id ORDER BY r.id DESC",
        (limit,),
    ).fetchall()
    return [_run_dict(row) for row in rows]


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "started_at": iso(row["started_at"]),
        "ended_at": iso(row["ended_at"]),
        "status": row["status"],
        "pid": row["pid"],
        "host": row["host"],
        "plans": sorted((row["plans"] or "").split(",")) if row["plans"] else [],
        "attempts": row["attempts"],
        "completed": row["completed"],
        "failed": row["failed"],
        "running": row["running"],
        "tokens": row["tokens"],
        "cost_usd": round(row["cost_usd"], 6),
    }


def run(store: StateStore, run_id: int, limit: int = 500) -> dict[str, Any] | None:
    """One run with its latest `limit` attempts, in the order they started; None when there is no such run."""
    head = run_summary(store, run_id)
    if head is None:
        return None
    rows = store.conn.execute(
        f"SELECT {_ATTEMPT} FROM attempts a WHERE a.run_id = ? ORDER BY a.id DESC LIMIT ?", (run_id, limit)
    ).fetchall()
    return {**head, "attempt_rows": [attempt_dict(row) for row in reversed(rows)]}


def run_summary(store: StateStore, run_id: int) -> dict[str, Any] | None:
    """The summary of run `run_id`, as `runs` gives it."""
    row = store.conn.execute(
        f"SELECT {_RUN} FROM runs r LEFT JOIN attempts a ON a.run_id = r.id WHERE r.id = ? GROUP BY r.id",
        (run_id,),
    ).fetchone()
    return _run_dict(row) if row is not None else None


def tasks(store: StateStore, plan: str | None = None) -> list[dict[str, Any]]:
    """Each task seen, by plan and task id: its attempts, latest status and attempt, cost and tokens."""
    where, args = ("WHERE plan = ?", (plan,)) if plan else ("", ())
    rows = store.conn.execute(
        "SELECT plan, task_id, COUNT(*) AS attempts, MAX(id) AS last_attempt, "
        "COALESCE(SUM(status = 'completed'), 0) AS completed, SUM(cost_usd) AS cost_usd, "
        "SUM(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens) AS tokens, "
        f"MAX(started_at) AS last_started FROM attempts {where} GROUP BY plan, task_id "
        "ORDER BY plan, last_started",
        args,
    ).fetchall()
    if not rows:
        return []
    latest = {
        r["id"]: r
        for r in store.conn.execute(
            f"SELECT id, title, status, ended_at FROM attempts WHERE id IN ({','.join('?' * len(rows))})",
            [r["last_attempt"] for r in rows],
        )
    }
    found = []
    for row in rows:
        last = latest[row["last_attempt"]]
        found.append(
            {
                "plan": row["plan"],
                "task_id": row["task_id"],
                "title": last["title"],
                "status": last["status"],
                "attempts": row["attempts"],
                "completed": row["completed"],
                "last_attempt": row["last_attempt"],
                "last_started_at": iso(row["last_started"]),
                "last_ended_at": iso(last["ended_at"]),
                "tokens": row["tokens"],
                "cost_usd": round(row["cost_usd"], 6),
            }
        )
    return found


def task_attempts(store: StateStore, plan: str, task_id: str) -> list[dict[str, Any]]:
    """Every attempt of one task, oldest first."""
    rows = store.conn.execute(
        f"SELECT {_ATTEMPT} FROM attempts a WHERE a.plan = ? AND a.task_id = ? ORDER BY a.id",
        (plan, task_id),
    ).fetchall()
    return [attempt_dict(row) for row in rows]


def attempt(store: StateStore, attempt_id: int) -> dict[str, Any] | None:
    """One attempt; None when there is no such attempt."""
    row = store.conn.execute(f"SELECT {_ATTEMPT} FROM attempts a WHERE a.id = ?", (attempt_id,)).fetchone()
    return attempt_dict(row) if row is not None else None


def hourly(store: StateStore, since: float, until: float) -> list[dict[str, Any]]:
    """Per hour from `since` to `until`: the attempts that ended in it (all, completed, failed) and
    their cost. Every hour of the window is listed, the empty ones with zeros."""
    first, last = int(since // 3600), int(until // 3600)
    rows = {
        r["hour"]: r
        for r in store.conn.execute(
            "SELECT CAST(ended_at / 3600 AS INTEGER) AS hour, COUNT(*) AS ended, "
            "SUM(status = 'completed') AS completed, SUM(status != 'completed') AS failed, "
            "SUM(cost_usd) AS cost_usd FROM attempts WHERE ended_at >= ? AND ended_at < ? GROUP BY hour",
            (first * 3600, (last + 1) * 3600),
        )
    }
    series = []
    for hour in range(first, last + 1):
        row = rows.get(hour)
        series.append(
            {
                "hour": iso(hour * 3600.0),
                "tasks": row["ended"] if row else 0,
                "completed": row["completed"] if row else 0,
                "failed": row["failed"] if row else 0,
                "cost_usd": round(row["cost_usd"], 6) if row else 0.0,
            }
        )
    return series
