"""The GitHub token is set inside the sandbox (its value is never read out)."""

from __future__ import annotations

from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.sandbox import GITHUB_ENV, Sandbox
from pytest_orchestrator.settings import Settings


def check_github_token(sandbox: Sandbox, orchestrator_settings: Settings, check: CheckRecord) -> None:
    """GH_TOKEN or GITHUB_TOKEN is non-empty inside the sandbox."""
    facts = sandbox.facts(orchestrator_settings.credential_paths)
    found = [name for name in GITHUB_ENV if name in facts.env]
    if not found:
        check.fail(
            f"GH_TOKEN is not set in sandbox '{sandbox.name}': recreate the container with GH_TOKEN "
            "set (a token with repo scope): `orchestrator sandbox reset --keep-workspace`, or "
            "`docker run -e GH_TOKEN`"
        )
    check.ok(f"{found[0]} set in the sandbox")
