"""The orchestrator's own state: idle, working on a task, or frozen."""

from __future__ import annotations

from pytest_orchestrator.health import describe_state
from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.settings import Settings
from pytest_orchestrator.state import StateStore


def check_orchestrator(
    orchestrator_state: StateStore | None, orchestrator_settings: Settings, check: CheckRecord
) -> None:
    """Idle or working with a fresh heartbeat; failed when the heartbeat is too old."""
    attempts = orchestrator_state.active_attempts() if orchestrator_state else None
    ok, message = describe_state(attempts, orchestrator_settings.freeze_threshold)
    if not ok:
        check.fail(message)
    check.ok(message)
