"""Claude Code inside the sandbox can authenticate."""

from __future__ import annotations

from pytest_orchestrator.plugin.checks import CheckRecord
from pytest_orchestrator.sandbox import AUTH_ENV, Sandbox
from pytest_orchestrator.settings import Settings


def check_claude_auth(sandbox: Sandbox, orchestrator_settings: Settings, check: CheckRecord) -> None:
    """A credentials file exists in the sandbox, or an API key / OAuth token is set there."""
    paths = orchestrator_settings.credential_paths
    facts = sandbox.facts(paths)
    if facts.files:
        check.ok(f"credentials file {facts.files[0]}")
        return
    found = [name for name in AUTH_ENV if name in facts.env]
    if found:
        check.ok(f"{found[0]} set in the sandbox")
        return
    check.fail(
        f"no Claude Code credentials in sandbox '{sandbox.name}': looked for "
        f"{', '.join(paths)} and {' / '.join(AUTH_ENV)}; run `claude login` inside the "
        "sandbox (`orchestrator sandbox shell`), or recreate it with ANTHROPIC_API_KEY set "
        "(`orchestrator sandbox reset --keep-workspace`, or `docker run -e ANTHROPIC_API_KEY`)"
    )
