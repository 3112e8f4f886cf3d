"""`/metrics`: the state database as Prometheus metrics, computed on each scrape.

A custom collector reads state.db when Prometheus scrapes, so every figure is right across
processes and restarts: the counters are the database's own totals. Labels are few and
bounded (statuses, check and component names, token kinds), never a task or an attempt.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ..loop.store import RUNNING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# Seconds: from a one-shot answer to a task at its default time limit and beyond.
DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_creation")
# A check's (or component's) status as a number: 1 passing, 0 failing; skipped is left out.
CHECK_VALUES = {"ok": 1.0, "healthy": 1.0, "failed": 0.0, "unhealthy": 0.0, "not_ready": 0.0}

# One pass over the attempts that ended in [start, end) gives the totals and every bucket of the histogram.
_FINISHED = (
    "SELECT COUNT(*), COALESCE(SUM(ended_at - started_at), 0), "
    "COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
    "COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_creation_tokens), 0), "
    "COALESCE(SUM(cost_usd), 0), "
    + ", ".join(f"COALESCE(SUM(ended_at - started_at <= {le!r}), 0)" for le in DURATION_BUCKETS)
    + " FROM attempts WHERE ended_at >= ? AND ended_at < ?"
)
# Attempts that ended before the last whole hour that is at least this old are settled: their sums
# are kept between scrapes, and only the newer ones are read again.
SETTLED_AFTER = 600.0


class _Settled:
    """The sums over the settled attempts, as of a watermark, and how many rows they cover."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.watermark = -1.0
        self.rows = -1
        self.sums: tuple[float, ...] = ()

    def totals(self, conn: sqlite3.Connection, now: float) -> tuple[float, ...]:
        """The sums over every ended attempt: the settled ones' (kept), plus the newer ones' (read now).

        The settled sums are read again once an hour, and whenever the number of settled rows
        changed (an attempt recorded with an old end time, another database in the same place).
        """
        watermark = (now - SETTLED_AFTER) // 3600 * 3600
        # Counted from the index on ended_at alone.
        rows = conn.execute("SELECT COUNT(*) FROM attempts WHERE ended_at < ?", (watermark,)).fetchone()[0]
        with self.lock:
            if watermark != self.watermark or rows != self.rows:
                self.sums = tuple(conn.execute(_FINISHED, (float("-inf"), watermark)).fetchone())
                self.watermark, self.rows = watermark, rows
            settled = self.sums
        recent = conn.execute(_FINISHED, (watermark, float("inf"))).fetchone()
        return tuple(a + b for a, b in zip(settled, recent, strict=True))


class StateCollector(Collector):
    """The orchestrator's metrics, read from the state database under `state_dir` on each collect."""

    def __init__(self, state_dir: Path, extra: Callable[[], Iterator[Metric]] | None = None) -> None:
        self.state_dir = state_dir
        self._settled = _Settled()
        # The serving process's own figures (its health runs), added to the database's.
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        """Every metric family, from one read-only connection."""
        from ..state import StateStore

        store = StateStore.read(self.state_dir)
        try:
            tables = (
                {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if store is not None
                else set()
            )
            conn = store.conn if store is not None else None
            yield from _tasks(conn, self._settled)
            yield from _health_checks(conn if "health_checks" in tables else None)
            yield from _queue(conn if "queue" in tables else None)
            yield from _components(conn if "components" in tables else None)
        finally:
            if store is not None:
                store.close()
        if self.extra is not None:
            yield from self.extra()


def _tasks(conn: sqlite3.Connection | None, settled: _Settled) -> Iterator[Metric]:
    tasks = CounterMetricFamily(
        "orchestrator_tasks_total",
        "Task attempts that ended, by how they ended (completed, failed, needs_human, error, timeout, ...).",
        labels=["status"],
    )
    running = GaugeMetricFamily("orchestrator_tasks_running", "Task attempts running now.")
    tokens = CounterMetricFamily(
        "orchestrator_tokens_total", "Tokens the agents used, by kind.", labels=["type"]
    )
    cost = CounterMetricFamily("orchestrator_cost_usd_total", "What the agents cost, in US dollars.")
    counts: dict[str, int] = {}
    finished: tuple[float, ...] = (0.0,) * (7 + len(DURATION_BUCKETS))
    if conn is not None:
        # Counted from the index on status alone.
        counts = {r[0]: r[1] for r in conn.execute("SELECT status, COUNT(*) FROM attempts GROUP BY status")}
        finished = settled.totals(conn, time.time())
    for status, count in sorted(counts.items()):
        if status != "running":
            tasks.add_metric([status], count)
    running.add_metric([], counts.get("running", 0))
    total, seconds = finished[0], finished[1]
    for kind, value in zip(TOKEN_KINDS, finished[2:6], strict=True):
        tokens.add_metric([kind], value)
    cost.add_metric([], finished[6])
    buckets = [(_le(le), count) for le, count in zip(DURATION_BUCKETS, finished[7:], strict=True)]
    duration = HistogramMetricFamily(
        "orchestrator_task_duration_seconds",
        "How long the task attempts that ended took.",
        buckets=[*buckets, ("+Inf", total)],
        sum_value=seconds,
    )
    yield from (tasks, running, tokens, cost, duration)


def _le(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{value:.1f}"


def _health_checks(conn: sqlite3.Connection | None) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "orchestrator_health_check_status",
        "Each health check in the latest health run: 1 passed, 0 failed (skipped checks are left out).",
        labels=["check"],
    )
    row = None
    if conn is not None:
        row = conn.execute(
            "SELECT checks FROM health_checks WHERE source = 'health' ORDER BY at DESC, id DESC LIMIT 1"
        ).fetchone()
    if row is not None:
        try:
            checks = json.loads(row[0])
        except ValueError:
            checks = {}
        for name, status in sorted(checks.items()):
            if status in CHECK_VALUES:
                family.add_metric([str(name)], CHECK_VALUES[status])
    yield family


def _queue(conn: sqlite3.Connection | None) -> Iterator[Metric]:
    depth = 0
    if conn is not None:
        depth = conn.execute("SELECT COUNT(*) FROM queue WHERE reason != ?", (RUNNING,)).fetchone()[0]
    yield GaugeMetricFamily("orchestrator_queue_depth", "Tasks waiting to be dispatched.", value=depth)


def _components(conn: sqlite3.Connection | None) -> Iterator[Metric]:
    family = CounterMetricFamily(
        "orchestrator_component_restarts_total",
        "Restarts of each component the watchdog keeps.",
        labels=["component"],
    )
    if conn is not None:
        for name, restarts in conn.execute("SELECT name, restarts FROM components ORDER BY name"):
            family.add_metric([name], restarts)
    yield family
