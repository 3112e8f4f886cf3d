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


# The agent's command could not start at all: not installed, not executable, or a missing
# interpreter. Shells and the container runtime say so with these exit codes and words;
# another attempt would meet the same.
CANNOT_START_CODES = (126, 127)
CANNOT_START_WORDS = ("executable file not found", "no such file or directory", "command not found")


def cannot_start(result: TaskResult) -> bool:
    """Whether the agent process died because its command cannot be started."""
    error = (result.error or "").lower()
    return result.exit_code in CANNOT_START_CODES or any(words in error for words in CANNOT_START_WORDS)


def retry_reason(result: TaskResult) -> str | None:
    """Why a failed attempt is worth another try, or None when it is not transient."""
    if result.status != "failed" or result.verification is not None:
        return None
    status = result.api_error_status
    if status is not None and (status in (408, 409, 429) or status >= 500):
        return f"the API answered {status}"
    if "overloaded" in (result.error or "").lower():
        return "the API is overloaded"
    if result.crashed and not cannot_start(result):
        return "the agent process crashed"
    return None
