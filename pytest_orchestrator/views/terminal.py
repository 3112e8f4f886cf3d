"""What the terminal views share: colour only on a terminal, symbols that fit its encoding, times, --since."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TextIO

SINCE_HELP = "a time span (90s, 30m, 24h, 7d) or an ISO date/time (2026-11-23, 2026-11-23T14:00)"
_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CODES = {"green": "32", "yellow": "33", "red": "31", "bold": "1", "dim": "2"}
# For a terminal whose encoding lacks them (LANG=C on an old system).
_ASCII = str.maketrans({"✓": "+", "✗": "x", "⟳": "~", "◐": "o", "─": "-"})


class Style:
    """Colours and symbols for one output stream."""

    def __init__(self, stream: TextIO, environ: Mapping[str, str]) -> None:
        # https://no-color.org: any non-empty NO_COLOR turns colour off; a pipe never gets it.
        self.colour = _isatty(stream) and not environ.get("NO_COLOR")
        try:
            "✓✗⟳◐─".encode(getattr(stream, "encoding", None) or "utf-8")
            self.unicode = True
        except (UnicodeEncodeError, LookupError):
            self.unicode = False

    def paint(self, text: str, colour: str | None) -> str:
        """`text` in `colour` (green, yellow, red, bold, dim) when colour is on."""
        if not self.colour or colour is None:
            return text
        return f"\033[{_CODES[colour]}m{text}\033[0m"

    def text(self, text: str) -> str:
        """`text` with symbols the stream can encode."""
        return text if self.unicode else text.translate(_ASCII)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def span(seconds: float) -> str:
    """A duration the way an operator reads it: `42s`, `5m`, `2h 15m`, `3d 4h`."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 3600:
        return f"{minutes}m"
    if seconds < 86400:
        return f"{hours}h {minutes % 60}m"
    return f"{days}d {hours % 24}h"


def clock(at: float, now: float | None = None) -> str:
    """Local wall-clock time of `at`: `14:05:01`, with the date when it is not today."""
    now = time.time() if now is None else now
    here, today = time.localtime(at), time.localtime(now)
    if here[:3] == today[:3]:
        return time.strftime("%H:%M:%S", here)
    return time.strftime("%Y-%m-%d %H:%M:%S", here)


def iso(at: float | None) -> str | None:
    """`at` as an ISO 8601 time in UTC to the millisecond, for JSON documents; None stays None."""
    if at is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def parse_since(text: str, now: float | None = None) -> float:
    """The start of the window `text` names, in seconds since the epoch; ValueError names the forms.

    A span counts back from `now`; a date or time without a zone is local time.
    """
    now = time.time() if now is None else now
    raw = text.strip()
    span_match = _SPAN.fullmatch(raw)
    if span_match:
        return now - float(span_match[1]) * _UNITS[span_match[2]]
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"expected {SINCE_HELP}, not {text!r}") from None
    # A naive datetime's timestamp() is local time, as the terminal shows it.
    since = moment.timestamp()
    if since > now:
        # The window would end before it starts: every figure zero, and no hint why.
        raise ValueError(f"{text!r} is in the future: give a time before now, or a span such as 24h")
    return since
