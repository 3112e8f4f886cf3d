"""The orchestrator's own state: idle, working on a task, or frozen (a task's heartbeat or the loop's)."""

from __future__ import annotations

from pytest_orchestrator.health import describe_state
from pytest_orchestrator.loop import LoopStore
from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.settings import Settings
from pytest_orchestrator.state import StateStore


def check_orchestrator(
    orchestrator_state: StateStore | None, orchestrator_settings: Settings, check: CheckRecord
) -> None:
    """Idle or working with a fresh heartbeat; failed when a heartbeat or the loop's last poll is too old."""
    attempts = orchestrator_state.active_attempts() if orchestrator_state else None
    loop = LoopStore(orchestrator_state).row() if orchestrator_state else None
    ok, message = describe_state(attempts, orchestrator_settings.freeze_threshold, loop=loop)
    if not ok:
        check.fail(message)
    check.ok(message)
