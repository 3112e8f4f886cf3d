"""No more pending tasks in the queue than the `health: task_backlog` threshold: a warning."""

from __future__ import annotations

import pytest

from pytest_orchestrator.metrics.health import HealthThresholds, task_backlog
from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.state import StateStore


@pytest.mark.check(level="warning")
def check_task_backlog(
    orchestrator_state: StateStore | None, health_thresholds: HealthThresholds, check: CheckRecord
) -> None:
    """Counts the queue's pending tasks; more than the threshold (20) degrade the health."""
    verdict = task_backlog(orchestrator_state.conn if orchestrator_state else None, health_thresholds)
    check.metric("pending_tasks", verdict.value)
    if not verdict.ok:
        check.fail(verdict.message)
    check.ok(verdict.message)
