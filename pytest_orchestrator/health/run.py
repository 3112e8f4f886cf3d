"""Run checks of `pytest --orchestrator-health` from outside pytest, and read their document.

`orchestrator sandbox up` waits on the same checks CI gates on: the harness runs in a
subprocess, exactly as a user would run it, and its JSON document is the answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The checks about the sandbox: the container, and those it gates.
SANDBOX_CHECKS = ("sandbox", "claude_code", "claude_auth", "github_token")


@dataclass(frozen=True)
class HealthRun:
    """The health document of one run, or why there was none (`error`)."""

    status: str
    checks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    error: str = ""
    # The whole health document as the run printed it; empty when there was none.
    document: Mapping[str, Any] = field(default_factory=dict)

    def failed(self) -> list[str]:
        """The names of the checks that failed, in the document's order."""
        return [name for name, check in self.checks.items() if check.get("status") == "failed"]

    @property
    def ok(self) -> bool:
        """Healthy or degraded: what exits 0."""
        return self.status in ("healthy", "degraded")


def run_health(
    checks: Sequence[str],
    pytest_args: Sequence[str],
    cwd: Path,
    timeout: float,
    environ: Mapping[str, str] | None = None,
) -> HealthRun:
    """Run `pytest --orchestrator-health` for `checks` in `cwd`; never raises."""
    argv = [sys.executable, "-m", "pytest", "--orchestrator-health", "-p", "no:cacheprovider", "-q"]
    for name in checks:
        argv += ["--orchestrator-check", name]
    try:
        done = subprocess.run(
            [*argv, *pytest_args],
            cwd=cwd,
            env=None if environ is None else dict(environ),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return HealthRun("unhealthy", error=f"the health checks did not finish within {timeout:.0f}s")
    except OSError as exc:
        return HealthRun("unhealthy", error=f"the health checks could not start: {exc}")
    try:
        document = json.loads(done.stdout)
    except ValueError:
        # A usage error (exit 4) says why on stderr, as one `ERROR:` line.
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        said = next((line for line in lines if line.startswith("ERROR")), lines[-1] if lines else "")
        return HealthRun("unhealthy", error=f"the health checks exited {done.returncode}: {said.strip()}")
    return HealthRun(str(document.get("status")), dict(document.get("checks") or {}), document=document)
