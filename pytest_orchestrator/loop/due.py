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
    # When a task waiting after failures is due again.
    due_at: float | None = None


def _stamp(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def due_at(history: TaskHistory | None, poll_interval: float) -> float | None:
    """When a task that failed is due again; None when it is due whenever reached."""
    if history is None or history.failures == 0 or history.last_failed_at is None:
        return None
    if history.last_status in ("needs_human", "interrupted"):
        return None
    delay: float = min(MAX_DELAY, poll_interval * 2.0 ** (history.failures - 1))
    return history.last_failed_at + delay


def waiting(history: TaskHistory | None, now: float, poll_interval: float, guided: bool) -> str | None:
    """Why a task that is not done is not due now, or None when it is."""
    if history is not None and history.failures and history.last_status == "needs_human" and not guided:
        return "needs a human: answer with --orchestrator-guidance"
    due = due_at(history, poll_interval)
    if history is None or due is None or now >= due:
        return None
    return f"{history.last_status} in {history.failures} rounds; due again at {_stamp(due)}"


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
            later = due_at(history, poll_interval) if not rerun else None
            decisions.append(
                Decision(plan, task, False, reason, due_at=later if later and later > now else None)
            )
            continue
        decisions.append(Decision(plan, task, True, NOT_YET))
    return decisions


def next_due(decisions: Iterable[Decision]) -> float | None:
    """When the earliest task that waits on time is due again."""
    return min((d.due_at for d in decisions if d.due_at is not None), default=None)
