"""A component's life as the watchdog sees it: its states, the one function that moves between
them, its probes' threshold counters, and its restart budget.

The states are supervisord's; the probe semantics are Kubernetes'. Plain logic, no processes:
`watchdog.py` drives it.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..retry import RetryPolicy
from .config import Backoff, ProbeSpec, RestartLimit
from .probes import ProbeResult


class Status(enum.StrEnum):
    """Where a component is in its life."""

    STOPPED = "STOPPED"  # not started, or stopped on request
    STARTING = "STARTING"  # started; its startup probe has not passed yet
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"  # died or failed; waits for its next start
    STOPPING = "STOPPING"
    EXITED = "EXITED"  # ended, and its restart policy says to leave it
    FATAL = "FATAL"  # past the restart limit: no more restarts until cleared


class Event(enum.StrEnum):
    """What happened to a component."""

    START = "start"  # the watchdog starts it
    STARTED = "started"  # its startup probe passed, or it has none
    FAILED = "failed"  # it exited, or liveness or startup failed; the policy restarts it
    ENDED = "ended"  # it exited, and the policy leaves it
    GAVE_UP = "gave_up"  # the restart limit was reached
    STOP = "stop"
    STOPPED = "stopped"
    CLEAR = "clear"  # `orchestrator restart NAME`


_TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.STOPPED, Event.START): Status.STARTING,
    (Status.EXITED, Event.START): Status.STARTING,
    (Status.BACKOFF, Event.START): Status.STARTING,
    (Status.STARTING, Event.STARTED): Status.RUNNING,
    (Status.STARTING, Event.FAILED): Status.BACKOFF,
    (Status.RUNNING, Event.FAILED): Status.BACKOFF,
    (Status.STARTING, Event.ENDED): Status.EXITED,
    (Status.RUNNING, Event.ENDED): Status.EXITED,
    (Status.STARTING, Event.GAVE_UP): Status.FATAL,
    (Status.RUNNING, Event.GAVE_UP): Status.FATAL,
    (Status.BACKOFF, Event.GAVE_UP): Status.FATAL,
    (Status.STARTING, Event.STOP): Status.STOPPING,
    (Status.RUNNING, Event.STOP): Status.STOPPING,
    (Status.BACKOFF, Event.STOP): Status.STOPPED,
    (Status.EXITED, Event.STOP): Status.STOPPED,
    (Status.FATAL, Event.STOP): Status.FATAL,
    (Status.STOPPED, Event.STOP): Status.STOPPED,
    (Status.STOPPING, Event.STOPPED): Status.STOPPED,
    (Status.FATAL, Event.CLEAR): Status.STOPPED,
}


def transition(status: Status, event: Event) -> Status:
    """The status after `event`; an event the status cannot take is a programming error."""
    try:
        return _TRANSITIONS[(status, event)]
    except KeyError:
        raise ValueError(f"a {status} component cannot take {event.value!r}") from None


@dataclass
class ProbeTrack:
    """A probe's Kubernetes counters: consecutive successes and failures, and its verdict."""

    spec: ProbeSpec
    successes: int = 0
    failures: int = 0
    verdict: bool | None = None  # passed or failed by the thresholds; None until decided
    last: ProbeResult | None = None
    last_at: float | None = None
    next_at: float = 0.0
    saved_at: float | None = None  # the result last written to the state database

    def reset(self, now: float) -> None:
        """A fresh start of the component: counters cleared, first run after the initial delay."""
        self.successes = self.failures = 0
        self.verdict = None
        self.next_at = now + self.spec.initial_delay

    def record(self, result: ProbeResult, now: float) -> bool | None:
        """Count a result; the new verdict when a threshold was just crossed, else None."""
        self.last, self.last_at = result, now
        self.next_at = now + self.spec.period
        if result.ok:
            self.successes, self.failures = self.successes + 1, 0
            reached = self.successes >= self.spec.success_threshold
        else:
            self.failures, self.successes = self.failures + 1, 0
            reached = self.failures >= self.spec.failure_threshold
        if not reached or self.verdict is result.ok:
            return None
        self.verdict = result.ok
        return result.ok


@dataclass
class RestartBudget:
    """Backoff between starts, and the limit past which a component is FATAL.

    Both the restarts in the window and the consecutive failed starts count toward the limit,
    so a backoff longer than the window cannot keep a crashing component out of FATAL.
    """

    backoff: Backoff
    limit: RestartLimit
    times: list[float] = field(default_factory=list)
    failed_starts: int = 0
    rng: Callable[[], float] = random.random

    def delay(self) -> float:
        """Seconds before the next start: exponential with jitter (the task retry policy's)."""
        policy = RetryPolicy(
            self.failed_starts + 1, self.backoff.initial, self.backoff.factor, self.backoff.max
        )
        return policy.backoff(max(1, self.failed_starts), self.rng)

    def failed(self, now: float) -> bool:
        """Count a failed start or a crash; True when the limit is now reached."""
        self.failed_starts += 1
        self.times = [t for t in self.times if now - t < self.limit.window]
        self.times.append(now)
        return len(self.times) > self.limit.count or self.failed_starts > self.limit.count

    def would_give_up(self, now: float) -> bool:
        """Whether one more failure now would reach the limit (FATAL), without counting it."""
        recent = sum(1 for t in self.times if now - t < self.limit.window) + 1
        return recent > self.limit.count or self.failed_starts + 1 > self.limit.count

    def healthy(self, running_since: float, now: float) -> None:
        """Running and healthy long enough: the backoff starts over (CrashLoopBackOff's reset)."""
        if now - running_since >= self.backoff.reset_after:
            self.failed_starts = 0

    def clear(self) -> None:
        """`orchestrator restart NAME`: a fresh budget."""
        self.times.clear()
        self.failed_starts = 0


def health(status: Status, tracks: dict[str, ProbeTrack]) -> str:
    """healthy, not_ready (readiness failing), unhealthy, or unknown (nothing decided yet)."""
    if status not in (Status.RUNNING, Status.STARTING):
        return "unhealthy" if status in (Status.BACKOFF, Status.FATAL, Status.EXITED) else "unknown"
    liveness, readiness = tracks.get("liveness"), tracks.get("readiness")
    if status is Status.STARTING:
        return "unknown"
    if liveness is not None and liveness.verdict is False:
        return "unhealthy"
    if readiness is not None and readiness.verdict is False:
        return "not_ready"
    decided = [t.verdict for t in (liveness, readiness) if t is not None]
    if decided and any(v is None for v in decided):
        return "unknown"
    return "healthy"
