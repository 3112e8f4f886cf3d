"""`orchestrator crashes`: the crashes of a time window, grouped by fingerprint, newest first.

Read-only, like `status`: it opens state.db read-only and never creates it. No state at all
means nothing has crashed here: one line on stderr and exit 0, so that a CI step listing
the crashes of a fresh machine passes, and `--json` still prints its (empty) document. The
exit status never counts crashes: the health check's `critical` is the gate for that.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..crashes.model import CrashGroup, CrashSample
from ..crashes.store import CrashStore
from ..redact import redact
from ..state import StateStore
from .terminal import Style, clock, iso, span
from .terminal import parse_since as parse_since

DEFAULT_SINCE = "24h"
# The first schema with crash records; an older state.db has none.
CRASHES_SCHEMA = 5
_RULE = "─" * 37
_HEADINGS = ("COUNT", "LAST SEEN", "FIRST SEEN", "RESPAWNED", "ERROR", "LATEST", "BUG")
# The right-aligned columns: the counts.
_NUMERIC = {0, 3}


def read(state_dir: Path, since: float, limit: int | None = None) -> list[CrashGroup] | None:
    """The crash groups since `since`; None when there is no state database at all."""
    store = StateStore.read(state_dir)
    if store is None:
        return None
    try:
        if store.conn.execute("PRAGMA user_version").fetchone()[0] < CRASHES_SCHEMA:
            return []
        return CrashStore(store).groups(since, limit)
    finally:
        store.close()


# ---- the terminal view ----


def render(groups: Sequence[CrashGroup], since: float, style: Style, now: float, width: int | None) -> str:
    """The groups as a table, each with its latest crash's cause under it; `width` cuts that line."""
    if not groups:
        return f"No crashes since {clock(since, now)}.\n"
    total = sum(g.count for g in groups)
    plural = "group" if len(groups) == 1 else "groups"
    lines = [f"Crashes since {clock(since, now)}: {total} in {len(groups)} {plural}", _RULE]
    rows = [_cells(group, now) for group in groups]
    widths = [max(len(row[i]) for row in (_HEADINGS, *rows)) for i in range(len(_HEADINGS))]
    lines.append(style.paint(_line(_HEADINGS, widths), "bold"))
    indent = " " * (widths[0] + 2)
    for group, row in zip(groups, rows, strict=True):
        lines.append(_line(row, widths, {4: style.paint(row[4], "red")}))
        cause = _cause(group.sample)
        if width is not None and len(indent) + len(cause) > width:
            cause = cause[: max(width - len(indent) - 3, 10)] + "..."
        lines.append(indent + style.paint(cause, "dim"))
    return style.text("\n".join(lines)) + "\n"


def _cells(group: CrashGroup, now: float) -> tuple[str, ...]:
    return (
        str(group.count),
        f"{span(now - group.last_seen)} ago",
        f"{span(now - group.first_seen)} ago",
        str(group.respawned),
        group.error_type,
        _subject(group.sample),
        f"BUG-{group.bug_number:03d}" if group.bug_number is not None else "-",
    )


def _line(cells: Sequence[str], widths: Sequence[int], painted: Mapping[int, str] | None = None) -> str:
    # Widths count what is seen: padding goes outside the colour codes.
    out = []
    for index, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        shown = (painted or {}).get(index, cell)
        pad = " " * (width - len(cell))
        out.append(pad + shown if index in _NUMERIC else shown + pad)
    return "  ".join(out).rstrip()


def _subject(sample: CrashSample) -> str:
    if sample.kind == "task":
        # The task's pytest node id, which `pytest` and `orchestrator task` accept.
        return f"{sample.plan}::{sample.subject}" if sample.plan else f"task {sample.subject}"
    return f"{sample.kind} {sample.subject}"


def _cause(sample: CrashSample) -> str:
    text = sample.root_cause or sample.message or "no message"
    return redact(" ".join(text.split()))


# ---- the JSON document ----


def document(groups: Sequence[CrashGroup], since: float) -> dict[str, Any]:
    """The groups as a JSON-safe document: {since, groups}."""
    return {"since": iso(since), "groups": [_group(g) for g in groups]}


def _group(group: CrashGroup) -> dict[str, Any]:
    sample = group.sample
    return {
        "fingerprint": group.fingerprint,
        "error_type": group.error_type,
        "count": group.count,
        "respawned": group.respawned,
        "first_seen": iso(group.first_seen),
        "last_seen": iso(group.last_seen),
        "sample": {
            "kind": sample.kind,
            "subject": sample.subject,
            "plan": sample.plan,
            "message": redact(sample.message),
            "root_cause": redact(sample.root_cause) if sample.root_cause else None,
            "at": iso(sample.at),
        },
        "bug": group.bug_number,
    }


def show(
    state_dir: Path,
    since: float,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    *,
    as_json: bool = False,
) -> int:
    """Print the crash groups since `since` to `out`; always exit 0 (see the module's note)."""
    groups = read(state_dir, since)
    if as_json:
        import json

        out.write(json.dumps(document(groups or [], since), indent=2) + "\n")
    elif groups is not None:
        out.write(render(groups, since, Style(out, environ), time.time(), _width(out)))
    if groups is None:
        err.write(f"orchestrator: no crashes recorded: there is no state database in {state_dir} yet\n")
    return 0


def _width(out: TextIO) -> int | None:
    # Only a terminal is cut to its width; a pipe or a file gets every cause whole.
    try:
        return os.get_terminal_size(out.fileno()).columns if out.isatty() else None
    except (AttributeError, ValueError, OSError):
        return None
