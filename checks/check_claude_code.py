"""Claude Code runs inside the sandbox, in a version the orchestrator is tested with."""

from __future__ import annotations

from pytest_orchestrator.agents.claude_code import version_check
from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.sandbox import Sandbox
from pytest_orchestrator.settings import Settings


def check_claude_code(sandbox: Sandbox, orchestrator_settings: Settings, check: CheckRecord) -> None:
    """`<claude_command> --version` runs in the sandbox; a version outside the tested range only warns."""
    command = orchestrator_settings.claude_command
    level, message = version_check(sandbox.exec([command, "--version"]), command, sandbox.name)
    if level == "error":
        check.fail(message)
    if level == "warning":
        check.warn(message)
    check.ok(message)
