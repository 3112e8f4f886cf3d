"""Which collected tasks a round of the loop dispatches, and why the others wait.

A completed or ticked task is done. A task whose last dispatch failed is due again after a
delay that doubles with each failed round (from the poll interval, at most an hour), so a
task that always fails costs one attempt an hour, not one a round. A task waiting for a
human waits for guidance. A task after a waiting one in its plan waits too, as the plan's
order asks, unless it is marked [P].
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..plan import Task

MAX_DELAY = 3600.0
NOT_YET = "not yet reached"


@dataclass(frozen=True)
class TaskHistory:
    """What the state says of a task: completed when, and failed dispatches since then."""

    completed_at: float | None
    failures: int
    last_failed_at: float | None
    last_status: str | None


@dataclass(frozen=True)
class Decision:
    """Whether a round dispatches a task; the reason it waits, when it does not."""

    plan: str
    task: Task
    dispatch: bool
    reason: str | None = None
    done: bool = False


def _stamp(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def waiting(history: TaskHistory | None, now: float, poll_interval: float, guided: bool) -> str | None:
    """Why a task that is not done is not due now, or None when it is."""
    if history is None or history.failures == 0 or history.last_failed_at is None:
        return None
    if history.last_status == "needs_human":
        return None if guided else "needs a human: answer with --orchestrator-guidance"
    if history.last_status == "interrupted":
        return None
    delay = min(MAX_DELAY, poll_interval * 2 ** (history.failures - 1))
    due_at = history.last_failed_at + delay
    if now >= due_at:
        return None
    return f"{history.last_status} in {history.failures} rounds; due again at {_stamp(due_at)}"


def decide(
    tasks: Iterable[tuple[str, Task]],
    histories: Mapping[tuple[str, str], TaskHistory],
    now: float,
    poll_interval: float,
    *,
    rerun: bool = False,
    guided: bool = False,
) -> list[Decision]:
    """The round's decision on each task, in the order given (the dispatch order)."""
    decisions: list[Decision] = []
    blocked: dict[str, str] = {}
    for plan, task in tasks:
        history = histories.get((plan, task.id))
        done = not rerun and (task.checked or (history is not None and history.completed_at is not None))
        if done and not guided:
            decisions.append(Decision(plan, task, False, None, done=True))
            continue
        reason = None if rerun else waiting(history, now, poll_interval, guided)
        if reason is None and plan in blocked and not task.parallel:
            reason = f"blocked by {blocked[plan]}"
        if reason is not None:
            if not task.parallel:
                blocked.setdefault(plan, task.id)
            decisions.append(Decision(plan, task, False, reason))
            continue
        decisions.append(Decision(plan, task, True, NOT_YET))
    return decisions
