"""A state database with known rows for the server's tests and benchmark: runs, attempts, health, queue."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_orchestrator.state import StateStore

STATUSES = ("completed", "completed", "completed", "failed", "completed", "timeout", "completed", "error")


@dataclass(frozen=True)
class Seeded:
    """What was written, for the tests to compare with."""

    attempts: int
    by_status: dict[str, int]
    cost: float
    tokens: int
    runs: int


def seed(
    state_dir: Path, attempts: int, days: float = 30.0, now: float | None = None, runs: int = 10
) -> Seeded:
    """Write `attempts` finished attempts spread evenly over `days` before `now`, in `runs` runs."""
    now = time.time() if now is None else now
    store = StateStore.open(state_dir)
    span = days * 86400
    by_status: dict[str, int] = {}
    cost, tokens = 0.0, 0
    rows = []
    for i in range(attempts):
        status = STATUSES[i % len(STATUSES)]
        by_status[status] = by_status.get(status, 0) + 1
        ended = now - span + span * (i + 1) / (attempts + 1)
        duration = 5 + (i * 37) % 900
        price = round(0.01 + (i % 13) * 0.003, 6)
        cost += price
        tokens += 1200 + 340 + 50 + 10
        rows.append(
            (
                1 + i * runs // max(attempts, 1),
                f"plans/plan{i % 5}.md",
                f"{1 + i % 3}.{i % 7}",
                f"task {i % 21}",
                status,
                ended - duration,
                ended,
                price,
                "attempt failed: exit 1" if status != "completed" else None,
            )
        )
    with store.writing() as conn:
        for run in range(1, runs + 1):
            started = now - span + span * (run - 1) / runs
            conn.execute(
                "INSERT INTO runs (id, started_at, ended_at, status, pid, host, run_key) "
                "VALUES (?, ?, ?, 'finished', 1, 'seed', ?)",
                (run, started, started + span / runs, f"seed{run}"),
            )
        conn.executemany(
            "INSERT INTO attempts (run_id, plan, task_id, title, attempt, status, started_at, ended_at, "
            "input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, cost_usd, num_turns, "
            "worker, error) VALUES (?, ?, ?, ?, 1, ?, ?, ?, 1200, 340, 50, 10, ?, 3, 'main', ?)",
            rows,
        )
    store.close()
    return Seeded(attempts, by_status, round(cost, 6), tokens, runs)


def add_health(state_dir: Path, checks: dict[str, str], status: str, at: float | None = None) -> None:
    """A row of health history, as a health run writes it."""
    store = StateStore.open(state_dir)
    try:
        with store.writing() as conn:
            conn.execute(
                "INSERT INTO health_checks (at, source, status, checks) VALUES (?, 'health', ?, ?)",
                (time.time() if at is None else at, status, json.dumps(checks)),
            )
    finally:
        store.close()


def add_queue(state_dir: Path, pending: int, running: int = 0) -> None:
    """`pending` waiting tasks and `running` dispatched ones in the queue."""
    store = StateStore.open(state_dir)
    try:
        with store.writing() as conn:
            for i in range(pending + running):
                conn.execute(
                    "INSERT INTO queue (plan, task_id, title, position, enqueued_at, reason) "
                    "VALUES ('plans/q.md', ?, 'queued', ?, ?, ?)",
                    (f"9.{i}", i, time.time() - 60, "running" if i < running else "not yet reached"),
                )
    finally:
        store.close()


def add_component(state_dir: Path, name: str, restarts: int) -> None:
    """A watchdog component with `restarts` restarts."""
    store = StateStore.open(state_dir)
    try:
        with store.writing() as conn:
            conn.execute(
                "INSERT INTO components (name, kind, status, health, restarts, updated_at) "
                "VALUES (?, 'process', 'RUNNING', 'healthy', ?, ?)",
                (name, restarts, time.time()),
            )
    finally:
        store.close()
