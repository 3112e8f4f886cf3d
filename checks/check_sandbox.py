"""The sandbox container exists and is running."""

from __future__ import annotations

from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.sandbox import SandboxProbe


def check_sandbox(sandbox_probe: SandboxProbe, check: CheckRecord) -> None:
    """The sandbox container exists and is running."""
    if not sandbox_probe.running:
        check.fail(sandbox_probe.message)
    check.ok(sandbox_probe.message)
