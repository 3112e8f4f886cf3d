"""The health document: check results and the overall status they add up to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .monitor import MonitorReading

CheckStatus = Literal["ok", "failed", "skipped"]
OverallStatus = Literal["healthy", "degraded", "unhealthy", "critical"]
Level = Literal["error", "warning"]

BUILTIN_CHECKS = (
    "sandbox",
    "claude_code",
    "claude_auth",
    "github_token",
    "orchestrator",
    "zombies",
    "task_backlog",
    "error_rate",
    "last_completion",
)
# The statuses a run exits 1 on (pytest's TESTS_FAILED); healthy and degraded exit 0.
FAILING = ("unhealthy", "critical")
SANDBOX_DOWN = "sandbox not running"


@dataclass
class CheckResult:
    """The outcome of one check, as it appears in the health document."""

    check_name: str
    status: CheckStatus
    message: str
    level: Level = "error"
    duration: float = 0.0
    start: float | None = None
    stop: float | None = None
    # Numbers the check measured, by name (`zombie_processes`), for the document's metrics.
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The check's entry in the health document (with `metrics` when it measured any)."""
        entry: dict[str, Any] = {
            "status": self.status,
            "message": self.message,
            "level": self.level,
            "duration": round(self.duration, 4),
        }
        if self.metrics:
            entry["metrics"] = dict(self.metrics)
        return entry


@dataclass
class HealthReport:
    """All check results of one run, what the monitor read from the state, and the status they add up to."""

    checks: dict[str, CheckResult] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The document's `issues` and `metrics`; None leaves both sections out.
    monitor: MonitorReading | None = None

    @property
    def status(self) -> OverallStatus:
        """critical if the monitor says so (a frozen loop, a crash storm); then unhealthy if an
        error-level check failed, degraded if only warnings did."""
        if self.monitor is not None and self.monitor.critical:
            return "critical"
        failed = [r for r in self.checks.values() if r.status == "failed"]
        if any(r.level == "error" for r in failed):
            return "unhealthy"
        return "degraded" if failed else "healthy"

    def to_dict(self) -> dict[str, Any]:
        """The JSON health document: status, timestamp, each check's status, message, level and
        duration; then the monitor's `issues` and `metrics`, when it read them."""
        document: dict[str, Any] = {
            "status": self.status,
            "timestamp": self.timestamp.isoformat(),
            "checks": {name: result.to_dict() for name, result in self.checks.items()},
        }
        if self.monitor is not None:
            document["issues"] = self.monitor.issues_dicts()
            document["metrics"] = self.monitor.metrics()
        return document


def merge(results: Iterable[CheckResult]) -> dict[str, CheckResult]:
    """Fold the per-phase results of each check into one: a failure wins, durations add up."""
    merged: dict[str, CheckResult] = {}
    rank = {"ok": 0, "skipped": 1, "failed": 2}
    for result in results:
        previous = merged.get(result.check_name)
        if previous is None:
            merged[result.check_name] = result
            continue
        duration = previous.duration + result.duration
        winner = result if rank[result.status] >= rank[previous.status] else previous
        merged[result.check_name] = CheckResult(
            check_name=result.check_name,
            status=winner.status,
            message=winner.message,
            level=winner.level,
            duration=duration,
            start=min(filter(None, (previous.start, result.start)), default=None),
            stop=max(filter(None, (previous.stop, result.stop)), default=None),
            metrics={**previous.metrics, **result.metrics},
        )
    return merged
