"""The loop's heartbeat in a round: beaten by the task loop and the agents' events, not a thread."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .. import progress
from ..loop import LoopStore
from ..state import StateError, StateStore

if TYPE_CHECKING:
    from ..settings import Settings

BEAT = pytest.StashKey["RoundBeat"]()


def beat_interval(settings: Settings) -> float:
    """Seconds between two beats of the loop: often enough for the freeze threshold, no more."""
    # The attempts' progress is recorded on the same interval (progress.AttemptProgress).
    return progress.beat_interval(settings.freeze_threshold)


class RoundBeat:
    """The loop's heartbeat, beaten by a round's task loop and its agents' events."""

    def __init__(self, state_dir: Path, interval: float) -> None:
        self.state_dir = state_dir
        self.interval = interval
        self.last = 0.0
        self.store: StateStore | None = None

    def __call__(self, force: bool = False) -> None:
        """Beat, at most once per interval unless forced."""
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        try:
            if self.store is None:
                self.store = StateStore.open(self.state_dir)
            LoopStore(self.store).beat()
        except StateError:
            # The task writes say what failed; a loop without beats looks frozen, as it should.
            return

    def close(self) -> None:
        """Close the beat's connection."""
        if self.store is not None:
            self.store.close()


def beat(config: pytest.Config, force: bool = False) -> None:
    """Beat the loop's heartbeat, when this process is a round of the loop."""
    round_beat = config.stash.get(BEAT, None)
    if round_beat is not None:
        round_beat(force)
