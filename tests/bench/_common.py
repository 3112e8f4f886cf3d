"""What the benchmarks share: how pytest is started and with which environment."""

from __future__ import annotations

import os
import sys

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]


def bench_env() -> dict[str, str]:
    """The caller's environment without orchestrator or OpenTelemetry settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "OTEL_"))}
    return env
