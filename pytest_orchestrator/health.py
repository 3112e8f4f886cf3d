"""The health document: check results, the overall status, and what the state says."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .state import ActiveAttempt

CheckStatus = Literal["ok", "failed", "skipped"]
OverallStatus = Literal["healthy", "degraded", "unhealthy"]
Level = Literal["error", "warning"]

BUILTIN_CHECKS = ("sandbox", "claude_auth", "github_token", "orchestrator")
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

    def to_dict(self) -> dict[str, Any]:
        """The check's entry in the health document."""
        return {
            "status": self.status,
            "message": self.message,
            "level": self.level,
            "duration": round(self.duration, 4),
        }


@dataclass
class HealthReport:
    """All check results of one run and the status they add up to."""

    checks: dict[str, CheckResult] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def status(self) -> OverallStatus:
        """unhealthy if an error-level check failed, degraded if only warnings did."""
        failed = [r for r in self.checks.values() if r.status == "failed"]
        if any(r.level == "error" for r in failed):
            return "unhealthy"
        return "degraded" if failed else "healthy"

    def to_dict(self) -> dict[str, Any]:
        """The JSON health document (seed 000 fields, plus level and duration per check)."""
        return {
            "status": self.status,
            "timestamp": self.timestamp.isoformat(),
            "checks": {name: result.to_dict() for name, result in self.checks.items()},
        }


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
        )
    return merged


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def describe_state(
    attempts: Iterable[ActiveAttempt] | None, freeze_threshold: float, now: float | None = None
) -> tuple[bool, str]:
    """(ok, message) for the orchestrator check: idle, working on task X.Y, or frozen."""
    now = time.time() if now is None else now
    active = list(attempts or ())
    if not active:
        return True, "idle"
    work = "; ".join(
        f"working on task {a.task_id} ({a.plan}), started {_ago(now - a.started_at)}" for a in active
    )
    stale = [a for a in active if now - (a.heartbeat_at or a.started_at) > freeze_threshold]
    if stale:
        worst = max(now - (a.heartbeat_at or a.started_at) for a in stale)
        return False, (
            f"orchestrator frozen: no heartbeat for {int(worst)}s (threshold "
            f"{freeze_threshold:g}s) while {work}; stop the stuck run and start it again"
        )
    return True, work
