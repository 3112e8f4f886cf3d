"""Task priority: the levels a plan may name, their order, and the score that ages a waiting task.

Plain Python. There is one ordering, P1 (highest) to P4 (lowest). The words map onto it:
``high`` is P1, ``medium`` P2 and ``low`` P3, so P4 is below every word; a task with no
priority counts as P2 (medium), the level of ordinary work. A plan's own words for a level
are accepted as well (``critical``/``urgent`` are P1, ``normal`` P2, ``minor`` P3, ``lowest``
P4), and P0 is P1.

A task's score is its level's base score plus an age boost: `age_boost_per_hour` points for
each hour it has waited in the queue, at most `age_boost_cap`. The bases are 100 points
apart, so with the defaults (10 points an hour, capped at 100) a task rises by one level
after ten hours of waiting and never by more: an old P2 task ties with a fresh P1 one, and
the earlier-queued one goes first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

LEVELS = ("P1", "P2", "P3", "P4")
DEFAULT_LEVEL = "P2"
# P1 scores highest; each level is one step of STEP points below the one above it.
STEP = 100.0
_BASE = {level: STEP * (len(LEVELS) - rank) for rank, level in enumerate(LEVELS)}

_WORDS = {
    "high": "P1",
    "highest": "P1",
    "critical": "P1",
    "urgent": "P1",
    "blocker": "P1",
    "medium": "P2",
    "normal": "P2",
    "moderate": "P2",
    "low": "P3",
    "minor": "P3",
    "lowest": "P4",
}
_LEVEL = re.compile(r"^p(?P<number>\d+)$")
ACCEPTED = "P1, P2, P3, P4, high, medium or low"


def level(value: str) -> str | None:
    """The level (`P1`..`P4`) a priority label's value names, or None when it names none.

    The first word counts, so ``P1 (blocks the release)`` is P1; markdown emphasis and
    backticks around it are ignored, and a bare number is a P number.
    """
    words = value.strip().split(None, 1)
    if not words:
        return None
    word = words[0].strip("*_`.,;:()[]").lower()
    if word in _WORDS:
        return _WORDS[word]
    match = _LEVEL.match(word)
    number = int(match["number"]) if match else int(word) if word.isdigit() else None
    if number is None or number > len(LEVELS):
        return None
    return LEVELS[max(number, 1) - 1]


def base_score(label: str | None) -> float:
    """The score of a priority level before any age boost; no level counts as DEFAULT_LEVEL."""
    # A queue recorded by an older version holds words (high, medium, low), not levels.
    found = _BASE.get(label) if label else None
    if found is None:
        found = _BASE[(level(label) if label else None) or DEFAULT_LEVEL]
    return found


@dataclass(frozen=True)
class QueueSpec:
    """How fast a waiting task's score rises (points an hour), and by how much at most."""

    age_boost_per_hour: float = 10.0
    age_boost_cap: float = 100.0


def age_boost(waited: float, spec: QueueSpec) -> float:
    """The points `waited` seconds in the queue add to a task's score."""
    return min(spec.age_boost_cap, max(0.0, waited) / 3600.0 * spec.age_boost_per_hour)


def score(label: str | None, waited: float, spec: QueueSpec) -> float:
    """A task's priority score: its level's base score plus its age boost."""
    return base_score(label) + age_boost(waited, spec)


@dataclass(frozen=True)
class Pending:
    """A task as the dispatch order sees it: its plan, its level, since when it waits."""

    plan: str
    task_id: str
    label: str | None
    enqueued_at: float


K = TypeVar("K")


def plan_order(tasks: Iterable[Pending], now: float, spec: QueueSpec) -> list[str]:
    """The plans of `tasks` in dispatch order: the plan holding the highest-scored task first.

    Ties go to the plan whose best task has waited longer, then to the plan met first, so
    the order is the same in every process that computes it from the same rows and `now`.
    """
    best: dict[str, tuple[float, float, int]] = {}
    for index, task in enumerate(tasks):
        key = (-score(task.label, now - task.enqueued_at, spec), task.enqueued_at, index)
        if task.plan not in best:
            best[task.plan] = key
        else:
            best[task.plan] = min(best[task.plan], key)
    return sorted(best, key=best.__getitem__)


def grouped(items: Sequence[K], plan_of: Callable[[K], str], order: Sequence[str]) -> list[K]:
    """`items` with each plan's items together, plans in `order`, each plan's own order kept."""
    rank = {plan: index for index, plan in enumerate(order)}
    last = len(rank)
    positions = sorted(range(len(items)), key=lambda i: (rank.get(plan_of(items[i]), last), i))
    return [items[i] for i in positions]
