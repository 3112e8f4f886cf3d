"""Retry policy: which failures are transient, and how long to wait before the next attempt.

Exponential backoff with jitter, capped; not tied to tasks, so a restart policy can reuse it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .result import TaskResult


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts in all, and the delay before each retry: `delay * factor**(n-1)`, capped, jittered."""

    attempts: int = 3
    delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after attempt `attempt` failed: between half and all of the capped delay."""
        ceiling = min(self.max_delay, self.delay * self.factor ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * rng())


def retry_reason(result: TaskResult) -> str | None:
    """Why a failed attempt is worth another try, or None when it is not transient."""
    if result.status != "failed" or result.verification is not None:
        return None
    status = result.api_error_status
    if status is not None and (status in (408, 409, 429) or status >= 500):
        return f"the API answered {status}"
    if "overloaded" in (result.error or "").lower():
        return "the API is overloaded"
    if result.crashed:
        return "the agent process crashed"
    return None
