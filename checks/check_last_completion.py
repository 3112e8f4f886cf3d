"""A task completed in the last `health: last_completion` seconds, or none is pending: a warning."""

from __future__ import annotations

import pytest

from pytest_orchestrator.metrics.health import HealthThresholds, last_completion
from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.state import StateStore


@pytest.mark.check(level="warning")
def check_last_completion(
    orchestrator_state: StateStore | None, health_thresholds: HealthThresholds, check: CheckRecord
) -> None:
    """Tasks pending and none completed in the last hour degrade the health: the runs have stalled."""
    verdict = last_completion(orchestrator_state.conn if orchestrator_state else None, health_thresholds)
    if verdict.value >= 0:
        check.metric("last_completion_age", round(verdict.value, 1))
    if not verdict.ok:
        check.fail(verdict.message)
    check.ok(verdict.message)
