"""The notifications themselves: an event, its subject, a human line (Slack's `text`) and details."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..redact import redact

if TYPE_CHECKING:
    from ..result import TaskResult

# Long texts (an agent's error, a component's log line) are cut: a notification points, the
# state database and the logs tell the rest.
MAX_TEXT = 500

# The health statuses each event announces; `critical` outranks unhealthy and is told as such.
HEALTH_EVENTS: Mapping[str, str] = {
    "degraded": "health_degraded",
    "unhealthy": "health_unhealthy",
    "critical": "health_unhealthy",
}
# A task's final status and the event it makes; a timeout is a failure to the operator.
TASK_EVENTS: Mapping[str, str] = {
    "failed": "task_failed",
    "timeout": "task_failed",
    "needs_human": "task_needs_human",
}


@dataclass(frozen=True)
class Notification:
    """One event to send: the payload is built from it, redacted, when it is delivered."""

    event: str
    subject: str
    text: str
    details: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def payload(self) -> dict[str, Any]:
        """The JSON body: event, subject, text, timestamp, host and details, every string redacted."""
        body = {
            "event": self.event,
            "subject": self.subject,
            "text": self.text,
            "timestamp": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "host": socket.gethostname(),
            "details": dict(self.details),
        }
        masked: dict[str, Any] = _redacted(body)
        return masked


def _redacted(value: Any) -> Any:
    # Each string on its own: masking the serialized JSON would miss a secret that JSON escapes.
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


def _cut(text: str | None) -> str:
    text = (text or "").strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def task_event(plan: str, title: str, result: TaskResult, worker: str = "main") -> Notification | None:
    """The notification of a finished task: failed (or timed out), or waiting for a human; else None."""
    event = TASK_EVENTS.get(result.status)
    if event is None:
        return None
    where = f"task {result.task_id} ({title}) of {plan}"
    if event == "task_needs_human":
        text = (
            f"Task {result.task_id} of {plan} needs a human: {_cut(result.question) or 'no question given'}"
        )
    else:
        text = f"Task {result.task_id} of {plan} {result.status}: {_cut(result.error) or 'no details'}"
    details: dict[str, Any] = {
        "plan": plan,
        "task": result.task_id,
        "title": title,
        "status": result.status,
        "error": _cut(result.error) or None,
        "attempts": len(result.attempts) or 1,
        "duration_seconds": result.duration_seconds,
        "cost_usd": result.cost_usd,
        "tokens": result.tokens,
        "worker": worker,
    }
    if event == "task_needs_human":
        details.update(
            question=_cut(result.question) or None,
            options=list(result.options or []),
            recommendation=_cut(result.recommendation) or None,
        )
    return Notification(event, where, text, details)


def health_event(
    status: str, previous: str | None, source: str, failed: Mapping[str, str]
) -> Notification | None:
    """The notification of a health status entered from `previous`; None for healthy."""
    event = HEALTH_EVENTS.get(status)
    if event is None:
        return None
    names = ", ".join(f"{name} ({_cut(message)})" if message else name for name, message in failed.items())
    was = f" (was {previous})" if previous else ""
    text = f"Orchestrator health is {status}{was}" + (f": {names}" if names else "")
    details = {"status": status, "previous": previous, "source": source, "failed": dict(failed)}
    return Notification(event, source, _cut(text), details)


def component_fatal(name: str, reason: str, restarts: int) -> Notification:
    """A watchdog component gave up on: FATAL until someone restarts it."""
    text = (
        f"Component {name} is FATAL after {restarts} restarts: {_cut(reason)}. "
        f"Fix it, then `orchestrator restart {name}`"
    )
    return Notification(
        "component_fatal", name, text, {"component": name, "reason": _cut(reason), "restarts": restarts}
    )


def stopped(who: str, why: str, **details: Any) -> Notification:
    """The continuous loop or the watchdog stopped, and why."""
    return Notification(
        "orchestrator_stopped",
        who,
        f"Orchestrator {who} stopped: {why}",
        {"who": who, "reason": why, **details},
    )


def run_finished(
    plans: list[str], by_status: Mapping[str, int], cost_usd: float, duration: float
) -> Notification:
    """A plan run ended, with its tasks counted by status."""
    total = sum(by_status.values())
    counts = ", ".join(f"{count} {status}" for status, count in sorted(by_status.items()))
    subject = ", ".join(plans) if len(plans) <= 3 else f"{len(plans)} plans"
    text = f"Run of {subject} finished: {total} tasks ({counts}), ${cost_usd:.2f}"
    details = {
        "plans": plans,
        "tasks": total,
        "by_status": dict(by_status),
        "cost_usd": round(cost_usd, 6),
        "duration_seconds": round(duration, 3),
    }
    return Notification("run_finished", subject, text, details)
