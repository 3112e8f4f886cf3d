"""No defunct (zombie) processes inside the sandbox: a warning, as they cost only process slots."""

from __future__ import annotations

import pytest

from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.sandbox import Sandbox
from pytest_orchestrator.sandbox.zombies import describe, processes


@pytest.mark.check(level="warning")
def check_zombies(sandbox: Sandbox, check: CheckRecord) -> None:
    """Counts the processes in state Z from the sandbox's /proc; any at all degrade the health."""
    count, message = describe(processes(sandbox), sandbox.name)
    check.metric("zombie_processes", count)
    if count:
        check.fail(message)
    check.ok(message)
