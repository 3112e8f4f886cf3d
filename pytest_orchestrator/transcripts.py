"""Each attempt's agent transcript: its stream-json events, redacted, one file per attempt.

A transcript is `<state dir>/transcripts/<attempt id>.jsonl`, one event a line, written as
the events arrive, so the web dashboard shows a running attempt's progress. It is capped
(`transcript_max_bytes`): the event that would cross the cap is replaced by one marker,
`{"type": "transcript_truncated", "max_bytes": N, "at": T}`, and the later events are
dropped (the attempt's row keeps its result, tokens and cost). Retention deletes transcripts
with the crash and health rows (`prune`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .redact import redact

TRANSCRIPTS_DIR = "transcripts"
TRUNCATED = "transcript_truncated"

Event = dict[str, Any]


def transcript_path(state_dir: Path, attempt_id: int) -> Path:
    """Where attempt `attempt_id`'s transcript is kept."""
    return state_dir / TRANSCRIPTS_DIR / f"{int(attempt_id)}.jsonl"


class TranscriptWriter:
    """Appends an attempt's events to its transcript, redacted, up to `max_bytes`.

    A transcript must never cost the task: a write that fails (disk full) ends the
    transcript quietly, and the attempt goes on.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.written = 0
        self.truncated = False
        self._file: IO[str] | None = None
        self._opened = False
        self._failed = False

    def write(self, event: Event) -> None:
        """Append one event, unless the cap was reached."""
        if self.truncated or self._failed:
            return
        line = redact(json.dumps(event, ensure_ascii=False, default=str)) + "\n"
        size = len(line.encode("utf-8"))
        if self.written + size > self.max_bytes:
            self.truncated = True
            line = json.dumps({"type": TRUNCATED, "max_bytes": self.max_bytes, "at": time.time()}) + "\n"
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Line-buffered: each event reaches the file as it arrives, for readers of a live attempt.
                # Truncated the first time: a file already there is another attempt's, of a state
                # database since deleted (attempt ids start from 1 again), and not under this cap.
                self._file = open(self.path, "a" if self._opened else "w", encoding="utf-8", buffering=1)
                self._opened = True
            self._file.write(line)
        except OSError:
            self._failed = True
            self.close()
            return
        self.written += size

    def tee(self, then: Callable[[Event], None]) -> Callable[[Event], None]:
        """An event callback that writes the event here, then hands it to `then`."""

        def both(event: Event) -> None:
            self.write(event)
            then(event)

        return both

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None


def read_transcript(state_dir: Path, attempt_id: int) -> list[Event] | None:
    """The attempt's events, masked again on the way out; None when it has no transcript."""
    path = transcript_path(state_dir, attempt_id)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    events: list[Event] = []
    for line in text.splitlines():
        try:
            event = json.loads(redact(line))
        except ValueError:
            # The last line of a transcript being written may be incomplete.
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def prune(state_dir: Path, before: float) -> int:
    """Delete the transcripts last written before `before`; how many went."""
    directory = state_dir / TRANSCRIPTS_DIR
    deleted = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not entry.name.endswith(".jsonl"):
            continue
        try:
            if entry.stat().st_mtime < before:
                os.unlink(entry.path)
                deleted += 1
        except FileNotFoundError:
            continue
    return deleted
