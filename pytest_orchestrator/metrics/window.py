"""The numbers of a time window, computed in SQL from the attempts, the crashes and the queue.

What counts (the README's "Metrics" section says the same):
- An attempt is *finished* in the window when it ended in it (`since <= ended_at < until`) with
  one of the ended statuses: completed, failed, needs_human, timeout, interrupted, error.
- *Failed* attempts are those that ended `failed`, `timeout` or `error` (the attempt raised: the
  agent died, the sandbox went away): the task was not done.
  needs_human (the agent asked a question) and interrupted (the orchestrator stopped) are not.
- `tasks_by_status` counts the finished attempts by status (statuses with none are left out),
  plus `running`: the attempts running now that started before `until`. `pending` counts the
  queue's tasks now.
- *Throughput* is the completed attempts per hour of the window; each completes a task.
- *Latency* is `ended_at - started_at` of the finished attempts; the percentiles are nearest-rank
  (p95 of n values is the ceil(0.95 n)-th smallest).
- A *task* here is one dispatch of a task: an attempt. *Tokens* are input plus output plus cache
  tokens of the finished attempts; tokens and cost per task divide by the finished attempts.
- A *retry* is a finished attempt whose number is above 1: the task's second, third... dispatch.
- *Crashes* are the crash records (agents and watchdog components) of the window; with a plan,
  only that plan's task crashes.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

from ..loop.store import RUNNING
from .resources import Resources, resources

FINISHED = ("completed", "failed", "needs_human", "timeout", "interrupted", "error")
FAILED = ("failed", "timeout", "error")
# The first schema with crash records and the queue; an older state.db has neither.
_CRASHES_SCHEMA = 5
_RESOURCES_SCHEMA = 6
# The span of the "last hour" figures: the dashboard's rates and the error_rate health check.
HOUR = 3600.0


@dataclass(frozen=True)
class Window:
    """The numbers of the attempts that ended in [since, until), of one plan or all of them."""

    since: float
    until: float
    plan: str | None
    tasks_by_status: dict[str, int]
    finished: int
    completed: int
    failed: int
    pending: int
    throughput_per_hour: float
    latency_avg: float | None
    latency_p50: float | None
    latency_p95: float | None
    error_rate: float | None
    tokens_total: int
    tokens_per_task: float | None
    cost_usd_total: float
    cost_usd_per_task: float | None
    retries: int
    crashes: int
    resources: Resources = field(default_factory=Resources)

    @property
    def hours(self) -> float:
        """The window's length in hours."""
        return max(self.until - self.since, 0.0) / 3600

    def as_dict(self) -> dict[str, Any]:
        """The window as a JSON-ready document (times in ISO 8601, UTC): the data of the text view."""
        from datetime import UTC, datetime

        data = asdict(self)
        for key in ("since", "until"):
            data[key] = datetime.fromtimestamp(data[key], UTC).isoformat(timespec="milliseconds")
        data["hours"] = round(self.hours, 3)
        return data


def _rank(n: int, fraction: float) -> int:
    # The zero-based offset of the nearest-rank percentile among n sorted values.
    return max(math.ceil(fraction * n) - 1, 0)


def window(conn: sqlite3.Connection, since: float, until: float, plan: str | None = None) -> Window:
    """The numbers of the attempts that ended in [since, until), of `plan` or of every plan."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    # `+status`: without it SQLite walks attempts_by_status through nearly every row, not the
    # window's few through attempts_by_end (over 100,000 attempts, the last hour took 130 ms).
    where = "ended_at >= :since AND ended_at < :until AND +status IN ({})".format(
        ", ".join(f"'{s}'" for s in FINISHED)
    )
    if plan is not None:
        where += " AND plan = :plan"
    params = {"since": since, "until": until, "plan": plan}
    per_status = ", ".join(f"TOTAL(status = '{s}')" for s in FINISHED)
    failed_in = ", ".join(f"'{s}'" for s in FAILED)
    # One pass over the window's attempts for everything but the percentiles.
    row = conn.execute(
        f"SELECT COUNT(*), AVG(ended_at - started_at), "
        "TOTAL(input_tokens + output_tokens + cache_read_tokens + cache_creation_tokens), "
        f"TOTAL(cost_usd), TOTAL(attempt > 1), TOTAL(status IN ({failed_in})), {per_status} "
        f"FROM attempts WHERE {where}",
        params,
    ).fetchone()
    finished = int(row[0])
    latency_avg = float(row[1]) if row[1] is not None else None
    tokens, cost, retries, failed = int(row[2]), float(row[3]), int(row[4]), int(row[5])
    by_status = {status: int(count) for status, count in zip(FINISHED, row[6:], strict=True) if count}
    p50 = p95 = None
    if finished:
        # Nearest-rank percentiles: SQLite sorts and only one row comes back. With LIMIT, its
        # sorter keeps only OFFSET + 1 rows, so p95 is found from the top: 5 % of them, not 95 %.
        ascending = f"SELECT ended_at - started_at FROM attempts WHERE {where} ORDER BY 1 LIMIT 1 OFFSET :k"
        rank50, rank95 = _rank(finished, 0.50), _rank(finished, 0.95)
        p50 = float(conn.execute(ascending, {**params, "k": rank50}).fetchone()[0])
        p95 = float(
            conn.execute(
                ascending.replace("ORDER BY 1", "ORDER BY 1 DESC"), {**params, "k": finished - 1 - rank95}
            ).fetchone()[0]
        )
    running = conn.execute(
        "SELECT COUNT(*) FROM attempts WHERE status = 'running' AND started_at < :until"
        + (" AND plan = :plan" if plan is not None else ""),
        params,
    ).fetchone()[0]
    if running:
        by_status["running"] = int(running)
    crashes = pending = 0
    if version >= _CRASHES_SCHEMA:
        crashes = int(
            conn.execute(
                "SELECT COUNT(*) FROM agent_crashes WHERE at >= :since AND at < :until"
                + (" AND plan = :plan" if plan is not None else ""),
                params,
            ).fetchone()[0]
        )
        # The queue keeps a running task's row too: pending is the others, as `orchestrator queue`
        # and orchestrator_queue_depth count them.
        pending = int(
            conn.execute(
                "SELECT COUNT(*) FROM queue WHERE reason != :running"
                + (" AND plan = :plan" if plan is not None else ""),
                {**params, "running": RUNNING},
            ).fetchone()[0]
        )
    completed = by_status.get("completed", 0)
    hours = max(until - since, 0.0) / 3600
    return Window(
        since=since,
        until=until,
        plan=plan,
        tasks_by_status=by_status,
        finished=finished,
        completed=completed,
        failed=failed,
        pending=pending,
        throughput_per_hour=completed / hours if hours else 0.0,
        latency_avg=latency_avg,
        latency_p50=p50,
        latency_p95=p95,
        error_rate=failed / finished if finished else None,
        tokens_total=tokens,
        tokens_per_task=tokens / finished if finished else None,
        cost_usd_total=cost,
        cost_usd_per_task=cost / finished if finished else None,
        retries=retries,
        crashes=crashes,
        resources=resources(conn, since, until) if version >= _RESOURCES_SCHEMA else Resources(),
    )


def last_hour(conn: sqlite3.Connection, now: float) -> Window:
    """The numbers of the attempts that ended in the hour before `now`, of every plan."""
    return window(conn, now - HOUR, now)
