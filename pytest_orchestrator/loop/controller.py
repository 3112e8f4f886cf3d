"""The loop itself: start a round, watch it, wait, poll again, until the stop file or a signal.

The loop's heartbeat (`loop.last_poll_at`) is beaten here only while the loop waits between
rounds; during a round the round's own process beats it, from its task loop. A round stuck
between tasks therefore stops the beats, and the watchdog sees a frozen loop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..state import StateError, StateStore
from .store import LoopStore

if TYPE_CHECKING:
    from ..notify import Notifier

# How often the loop looks at its round, the stop file and the signals. A stat and a
# poll() each time: far below 1 % of a core.
TICK = 0.5
# Exit codes, as pytest's.
OK, INTERRUPTED, USAGE_ERROR, NOTHING_DUE = 0, 2, 4, 5
# A round runs at least this often, even when nothing seems to have changed.
FORCE_ROUND = 600.0
# How long a round has to stop its task and record it, below the watchdog's default
# stop_timeout (10 s), so that a runner stopped by the watchdog finishes its records.
STOP_GRACE = 8.0
DAY = 86_400.0


def snapshot(paths: list[Path]) -> frozenset[tuple[str, int, int]]:
    """The plans (and config) a round would read, by path, modification time and size."""
    found: set[tuple[str, int, int]] = set()
    for path in paths:
        files = sorted(path.rglob("*.md")) if path.is_dir() else [path]
        for file in files:
            try:
                stat = file.stat()
            except OSError:
                continue
            found.add((str(file), stat.st_mtime_ns, stat.st_size))
    return frozenset(found)


@dataclass
class Stop:
    """Why the loop should end, once it should: the stop file, SIGTERM or Ctrl-C."""

    reason: str | None = None
    exit_code: int = OK
    event: threading.Event = field(default_factory=threading.Event)

    def ask(self, reason: str, exit_code: int) -> None:
        """End the loop; the first reason wins."""
        if self.reason is None:
            self.reason, self.exit_code = reason, exit_code
        self.event.set()


def _ended(code: int) -> str:
    return {0: "done", 1: "done, with failed tasks", 5: "done: nothing was due"}.get(
        code, f"ended with exit code {code}"
    )


class Loop:
    """Runs rounds (`start_round(n)` returns the round's process) until stopped."""

    def __init__(
        self,
        state_dir: Path,
        poll_interval: float,
        stop_file: Path,
        beat_interval: float,
        start_round: Callable[[int], subprocess.Popen[bytes]],
        say: Callable[[str], None],
        *,
        stop_grace: float = STOP_GRACE,
        housekeeping: Callable[[StateStore], None] | None = None,
        watched: list[Path] | None = None,
        notifier: Notifier | None = None,
        sample: Callable[[StateStore], None] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.poll_interval = poll_interval
        self.stop_file = stop_file
        self.beat_interval = beat_interval
        self.start_round = start_round
        self.say = say
        self.stop_grace = stop_grace
        self.housekeeping = housekeeping
        # The plans and the config file: while they stay as they were, nothing was due in the
        # last round and no waiting task is due yet, a round would only cost a pytest start.
        self.watched = watched
        # Told when the loop stops, and why.
        self.notifier = notifier
        # The loop's own resource sampler, called at its beats; it keeps its own pace.
        self.sample = sample
        self.stop = Stop()
        self.round = 0
        self._idle_since: float | None = None
        self._seen: frozenset[tuple[str, int, int]] = frozenset()

    def run(self) -> int:
        """The loop, to its end; returns the exit code (0 for the stop file)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop.ask("SIGTERM", INTERRUPTED))
            signal.signal(signal.SIGINT, lambda *_: self.stop.ask("Ctrl-C", INTERRUPTED))
        store = StateStore.open(self.state_dir)
        loop = LoopStore(store)
        why: str | None = None
        try:
            loop.started(self.poll_interval)
            housekept: float | None = None
            while not self._stopping():
                if self.housekeeping is not None and (
                    housekept is None or time.monotonic() - housekept >= DAY
                ):
                    # At start, then once a day: a loop may run for weeks.
                    housekept = time.monotonic()
                    self.housekeeping(store)
                if self._nothing_changed(loop):
                    loop.beat(status="waiting")
                    self._wait(loop)
                    continue
                self.round += 1
                loop.beat(round=self.round, status="running")
                self._sample(store)
                loop.due(None)
                if self.watched is not None:
                    self._seen = snapshot(self.watched)
                code = self._run_round()
                self._idle_since = (self._idle_since or time.monotonic()) if code == NOTHING_DUE else None
                if code == USAGE_ERROR and self.round == 1:
                    # A bad flag or config fails every round alike: say so once and end.
                    why = "its first round ended with a usage error (exit 4): fix the flags or the config"
                    return USAGE_ERROR
                if self._stopping():
                    break
                self.say(
                    f"orchestrator loop: round {self.round} {_ended(code)}; "
                    f"next poll in {self.poll_interval:g}s"
                )
                self._safely(loop.beat, status="waiting")
                self._wait(loop)
            self._consume_stop_file()
            self.say(f"orchestrator loop: stopped ({self.stop.reason}) after {self.round} rounds")
            return self.stop.exit_code
        except BaseException as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            try:
                loop.stopped()
            except StateError as exc:
                self.say(f"orchestrator loop: {exc}")
            store.close()
            self._notify_stopped(why or self.stop.reason or "stopped")

    def _notify_stopped(self, why: str) -> None:
        if self.notifier is None:
            return
        from ..notify.events import stopped

        self.notifier.send(
            stopped(
                "loop", f"{why}, after {self.round} round{'s' if self.round != 1 else ''}", rounds=self.round
            )
        )
        # The loop's process ends now: the notification gets at most its time bound.
        self.notifier.close()

    def _safely(self, write: Callable[..., object], *args: object, **kwargs: object) -> None:
        # A full disk or a lock held too long: said, and the loop polls on; its rounds say
        # more, and a loop whose beats fail looks frozen to the watchdog, as it should.
        try:
            write(*args, **kwargs)
        except StateError as exc:
            self.say(f"orchestrator loop: {exc}")

    def _sample(self, store: StateStore) -> None:
        if self.sample is None:
            return
        try:
            self.sample(store)
        except Exception:  # a reading or a write that fails, however: never the loop's end
            # Worth less than the beats: a sample that cannot be taken or written is skipped, unsaid.
            return

    def _nothing_changed(self, loop: LoopStore) -> bool:
        if self.watched is None or self._idle_since is None:
            return False
        if time.monotonic() - self._idle_since >= FORCE_ROUND:
            self._idle_since = time.monotonic()
            return False
        try:
            row = loop.row()
        except StateError:
            return False
        if row is not None and row.next_due_at is not None and time.time() >= row.next_due_at:
            return False
        return snapshot(self.watched) == self._seen

    def _stopping(self) -> bool:
        if self.stop.reason is None and self.stop_file.is_file():
            self.stop.ask(f"stop file {self.stop_file}", OK)
        return self.stop.reason is not None

    def _run_round(self) -> int:
        process = self.start_round(self.round)
        while True:
            try:
                return process.wait(timeout=TICK)
            except subprocess.TimeoutExpired:
                pass
            if self._stopping():
                return self._end_round(process)

    def _end_round(self, process: subprocess.Popen[bytes]) -> int:
        """Stop the round as Ctrl-C would: its running task is stopped and recorded."""
        self.say(f"orchestrator loop: stopping round {self.round} ({self.stop.reason})")
        try:
            # The round leads its own process group: the signal reaches it once, and its
            # xdist workers through it.
            process.send_signal(signal.SIGTERM)
            return process.wait(timeout=self.stop_grace)
        except subprocess.TimeoutExpired:
            self.say(f"orchestrator loop: round {self.round} did not stop in {self.stop_grace:g}s: killed")
            # With its xdist workers: the round leads their process group.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return process.wait()

    def _wait(self, loop: LoopStore) -> None:
        deadline = time.monotonic() + self.poll_interval
        next_beat = time.monotonic() + self.beat_interval
        while not self._stopping():
            now = time.monotonic()
            if now >= deadline:
                return
            if now >= next_beat:
                next_beat = now + self.beat_interval
                try:
                    loop.beat()
                except StateError as exc:
                    self.say(f"orchestrator loop: {exc}")
                self._sample(loop.store)
            self.stop.event.wait(min(TICK, deadline - now, max(0.0, next_beat - now)))

    def _consume_stop_file(self) -> None:
        # Consumed, so that the next start of the loop does not stop at once.
        if self.stop.exit_code == OK:
            try:
                self.stop_file.unlink(missing_ok=True)
            except OSError as exc:
                self.say(f"orchestrator loop: cannot remove the stop file: {exc}")
