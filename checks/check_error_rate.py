"""At most the `health: error_rate` share of the last hour's finished attempts failed: a warning."""

from __future__ import annotations

import pytest

from pytest_orchestrator.metrics.health import HealthThresholds, error_rate
from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.state import StateStore


@pytest.mark.check(level="warning")
def check_error_rate(
    orchestrator_state: StateStore | None, health_thresholds: HealthThresholds, check: CheckRecord
) -> None:
    """Failed / finished attempts of the last hour; above 10 % of at least 5 degrades the health."""
    verdict = error_rate(orchestrator_state.conn if orchestrator_state else None, health_thresholds)
    check.metric("error_rate", round(verdict.value, 4))
    if not verdict.ok:
        check.fail(verdict.message)
    check.ok(verdict.message)
