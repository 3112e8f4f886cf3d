"""A running attempt's progress (turns and tokens so far), read from its agent's events, recorded on a beat.

The agent's stream-json events carry each model call's usage as the call starts; the attempt
row gets the running totals at most once per beat interval, never once per event, and the
final figures from the agent's result when the attempt ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .result import Usage
from .state import StateError

if TYPE_CHECKING:
    from .state import StateStore

Event = dict[str, Any]


def beat_interval(freeze_threshold: float) -> float:
    """Seconds between two beats: often enough for the freeze threshold, no more."""
    return max(1.0, min(30.0, freeze_threshold / 10))


class AttemptProgress:
    """Counts an attempt's model calls and their tokens from its events; records them on a beat."""

    def __init__(
        self,
        store: StateStore,
        attempt_id: int,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.attempt_id = attempt_id
        self.interval = interval
        self.clock = clock
        # Each model call's usage, by message id: Claude Code repeats a call's message (and its
        # usage) in one event per content block, so a call counts once.
        self.calls: dict[str, Usage] = {}
        self.last = clock()
        self.recorded: tuple[int, Usage] = (0, Usage())

    @property
    def num_turns(self) -> int:
        """The model calls so far."""
        return len(self.calls)

    @property
    def usage(self) -> Usage:
        """The tokens of the calls so far: input exact, output as counted when each call began."""
        total = Usage()
        for usage in self.calls.values():
            total = total + usage
        return total

    def __call__(self, event: Event) -> None:
        """Take one event; record the totals when a beat interval has passed since the last record."""
        if event.get("type") == "assistant":
            message = event.get("message")
            if isinstance(message, dict):
                key = str(message.get("id") or f"call-{len(self.calls)}")
                self.calls[key] = _usage(message.get("usage"))
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        self.record()

    def record(self) -> None:
        """Write the totals to the attempt row, when they changed since the last write."""
        current = (self.num_turns, self.usage)
        if current == self.recorded:
            return
        self.recorded = current
        try:
            self.store.attempt_progress(self.attempt_id, current[0], current[1])
        except StateError:
            # Progress is a view's comfort: the attempt's own record at its end says what failed.
            return

    def wrap(self, on_event: Callable[[Event], None]) -> Callable[[Event], None]:
        """`on_event` that also counts the event (first, so a failing callback loses no count)."""

        def both(event: Event) -> None:
            self(event)
            on_event(event)

        return both


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()

    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and value > 0 else 0

    return Usage(
        input_tokens=count("input_tokens"),
        output_tokens=count("output_tokens"),
        cache_read_tokens=count("cache_read_input_tokens"),
        cache_creation_tokens=count("cache_creation_input_tokens"),
    )
