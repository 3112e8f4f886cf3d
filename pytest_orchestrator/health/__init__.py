"""Health: the document and the status logic, plain Python for every front end (today the plugin)."""

from __future__ import annotations

from .document import BUILTIN_CHECKS, SANDBOX_DOWN, CheckResult, HealthReport, merge
from .orchestrator import describe_state

__all__ = ["BUILTIN_CHECKS", "SANDBOX_DOWN", "CheckResult", "HealthReport", "describe_state", "merge"]
