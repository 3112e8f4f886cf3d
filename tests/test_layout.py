"""The package's architecture: no import cycles, and pytest only at the edge (plugin/ and cli)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DOMAIN = (
    "pytest_orchestrator.agents.claude_code",
    "pytest_orchestrator.dispatch",
    "pytest_orchestrator.health",
    "pytest_orchestrator.metrics",
    "pytest_orchestrator.metrics.health",
    "pytest_orchestrator.metrics.sampler",
    "pytest_orchestrator.plan",
    "pytest_orchestrator.project",
    "pytest_orchestrator.prompt",
    "pytest_orchestrator.result",
    "pytest_orchestrator.retry",
    "pytest_orchestrator.sandbox.docker",
    "pytest_orchestrator.sandbox.image",
    "pytest_orchestrator.sandbox.lifecycle",
    "pytest_orchestrator.sandbox.shell",
    "pytest_orchestrator.sandbox.status",
    "pytest_orchestrator.sandbox.workspace",
    "pytest_orchestrator.health.run",
    "pytest_orchestrator.notify.config",
    "pytest_orchestrator.notify.dedupe",
    "pytest_orchestrator.notify.deliver",
    "pytest_orchestrator.notify.events",
    "pytest_orchestrator.views.sandbox",
    "pytest_orchestrator.settings",
    "pytest_orchestrator.state",
    "pytest_orchestrator.telemetry.otlp",
    "pytest_orchestrator.views.logs",
    "pytest_orchestrator.views.metrics",
    "pytest_orchestrator.views.status",
)


def test_the_import_contracts_hold() -> None:
    # The contracts live in pyproject.toml: no cycles (function-level imports count) and
    # no pytest, pluggy or xdist import outside pytest_orchestrator.plugin.
    result = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c(['--no-cache'])"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_domain_modules_run_without_pytest() -> None:
    code = (
        "import sys\n"
        f"for name in {DOMAIN!r}:\n"
        "    __import__(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest', 'pluggy', 'xdist'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
