"""`orchestrator dashboard`: the dashboard's snapshot drawn with rich, as one frame or a live screen.

Imported only by the dashboard command: rich costs every other start-up too much. It reads
state.db read-only, a fresh connection per frame, so it never disturbs a run.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..priority import QueueSpec
from ..state import DB_NAME, StateError, StateStore
from .dashboard import ERROR, RUNNING, STALE_AFTER, DashboardSnapshot, snapshot
from .terminal import Style, clock, span

# Green running, yellow pending, red error: for the orchestrator, its health, tasks and attempts.
_STATE = {RUNNING: "green", ERROR: "red"}
_HEALTH = {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "critical": "red"}
_ATTEMPT = {
    "running": "green",
    "completed": "green",
    "failed": "red",
    "error": "red",
    "timeout": "red",
    "interrupted": "yellow",
    "needs_human": "yellow",
}
_COMPONENT = {"RUNNING": "green", "STOPPED": "red", "EXITED": "red", "FATAL": "red"}
# Columns for a frame that goes to a file or a pipe, unless COLUMNS says otherwise.
_PIPE_WIDTH = 120


def render(snap: DashboardSnapshot, refresh: float | None = None) -> RenderableType:
    """One frame: the state, the loop, health, the watchdog, the last hour, then the four tables."""
    now = snap.now
    header = Text.assemble(
        ("Orchestrator: ", "bold"),
        (snap.state.upper(), f"bold {_STATE.get(snap.state, 'yellow')}"),
        (f"   at {clock(now, now)}" + (f", every {refresh:g}s (Ctrl-C ends)" if refresh else ""), "dim"),
    )
    parts: list[RenderableType] = [header]
    parts += [Text(f"  {note}", style="red" if snap.state == ERROR else "dim") for note in snap.notes]
    if not snap.has_state:
        return Group(*parts)
    parts.append(_overview(snap))
    if snap.watchdog is not None and snap.watchdog.components:
        parts.append(_components(snap))
    parts += [_active(snap), _queue(snap), _finished(snap)]
    return Group(*parts)


def _overview(snap: DashboardSnapshot) -> Table:
    now = snap.now
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    loop = snap.loop
    if loop is None:
        grid.add_row("Loop", Text("never ran here", style="dim"))
    else:
        due = f", next due {clock(loop.next_due_at, now)}" if loop.next_due_at else ""
        grid.add_row(
            "Loop",
            Text.assemble(
                (loop.status, "yellow" if loop.status == "waiting" else _STATE.get(loop.status, "dim")),
                f", last poll {span(now - loop.last_poll_at)} ago, round {loop.round}{due}",
            ),
        )
    health = snap.health
    if health is None:
        grid.add_row("Health", Text("never checked", style="dim"))
    else:
        failing = sorted(name for name, status in health.checks.items() if status not in ("ok", "healthy"))
        detail = f", not ok: {', '.join(failing)}" if failing else ""
        grid.add_row(
            "Health",
            Text.assemble(
                (health.status, _HEALTH.get(health.status, "yellow")),
                f" ({health.source}, {span(now - health.at)} ago{detail})",
            ),
        )
    watchdog = snap.watchdog
    if watchdog is None or watchdog.watchdog is None:
        grid.add_row("Watchdog", Text("not running", style="dim" if watchdog is None else "red"))
    elif watchdog.running:
        up = span(now - watchdog.watchdog.started_at)
        grid.add_row(
            "Watchdog", Text.assemble(("running", "green"), f" (pid {watchdog.watchdog.pid}, up {up})")
        )
    else:
        grid.add_row("Watchdog", Text.assemble(("down", "red"), f" ({watchdog.down})"))
    rates = snap.last_hour
    if rates.finished is None:
        grid.add_row("Last hour", Text("no figures", style="dim"))
    else:
        if rates.error_rate is None:
            error_rate = Text("none finished", style="dim")
        else:
            error_rate = Text(f"{rates.error_rate:.1%}", style="red" if rates.error_rate > 0 else "green")
        grid.add_row(
            "Last hour",
            Text.assemble(
                f"{rates.finished} finished ({rates.completed} completed, {rates.failed} failed), "
                f"{rates.throughput_per_hour or 0:.1f} tasks/h, error rate ",
                error_rate,
            ),
        )
    return grid


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", title_style="bold", expand=False)


def _components(snap: DashboardSnapshot) -> Table:
    assert snap.watchdog is not None
    table = _table("Components")
    for name in ("Name", "Status", "Health", "Restarts", "Message"):
        table.add_column(name)
    for c in snap.watchdog.components:
        table.add_row(
            c.name,
            Text(c.status, style=_COMPONENT.get(c.status, "yellow")),
            Text(c.health, style=_HEALTH.get(c.health, "yellow")),
            str(c.restarts),
            c.message or "",
        )
    return table


def _tokens(count: int) -> str:
    return f"{count / 1000:.1f}k" if count >= 1000 else str(count)


def _active(snap: DashboardSnapshot) -> RenderableType:
    if not snap.active:
        return Text("Active tasks: none", style="dim")
    table = _table(f"Active tasks ({len(snap.active)})")
    for name in ("Plan", "Task", "Title", "Worker", "Elapsed", "Turns", "Tokens", "Cost"):
        table.add_column(name, justify="right" if name in ("Elapsed", "Turns", "Tokens", "Cost") else "left")
    for a in snap.active:
        style = "red" if a.stale else "green"
        table.add_row(
            a.plan,
            Text(a.task_id, style=style),
            a.title,
            a.worker,
            span(a.elapsed) + (" (no heartbeat)" if a.stale else ""),
            str(a.num_turns),
            _tokens(a.tokens),
            f"${a.cost_usd:.2f}",
        )
    return table


def _queue(snap: DashboardSnapshot) -> RenderableType:
    if not snap.queue:
        return Text("Queue: empty", style="dim")
    shown = len(snap.queue)
    title = (
        f"Queue ({snap.queue_depth} pending)"
        if shown == snap.queue_depth
        else (f"Queue (first {shown} of {snap.queue_depth} pending)")
    )
    table = _table(title)
    for name in ("#", "Plan", "Task", "Title", "Priority", "Waiting", "Reason", "Estimated"):
        table.add_column(name, justify="right" if name in ("#", "Waiting") else "left")
    for n, q in enumerate(snap.queue, 1):
        priority = q.priority or "-"
        if q.score is not None:
            priority += f" ({q.score:.0f})"
        starts = clock(q.eta_start, snap.now) if q.eta_start is not None else "-"
        if q.eta_done is not None:
            starts += f" - {clock(q.eta_done, snap.now)}"
        table.add_row(
            str(n),
            q.plan,
            Text(q.task_id, style="yellow"),
            q.title,
            priority,
            span(q.waited),
            q.reason,
            starts,
        )
    return table


def _finished(snap: DashboardSnapshot) -> RenderableType:
    if not snap.finished:
        return Text("Latest attempts: none yet", style="dim")
    table = _table(f"Latest {len(snap.finished)} attempts")
    for name in ("Ended", "Plan", "Task", "Status", "Duration", "Tokens", "Cost"):
        table.add_column(name, justify="right" if name in ("Duration", "Tokens", "Cost") else "left")
    for f in snap.finished:
        table.add_row(
            clock(f.ended_at, snap.now),
            f.plan,
            f.task_id,
            Text(f.status, style=_ATTEMPT.get(f.status, "yellow")),
            span(f.duration),
            _tokens(f.tokens),
            f"${f.cost_usd:.2f}",
        )
    return table


def frame(snap: DashboardSnapshot, *, width: int = _PIPE_WIDTH, colour: bool = False) -> str:
    """One frame as text: ANSI colours only when `colour`."""
    buffer = io.StringIO()
    console = _console(buffer, colour=colour, width=width, terminal=colour)
    console.print(render(snap))
    return buffer.getvalue()


def _console(out: TextIO, *, colour: bool, width: int | None, terminal: bool) -> Console:
    return Console(
        file=out,
        width=width,
        force_terminal=terminal,
        color_system="auto" if colour else None,
        no_color=not colour,
        highlight=False,
        emoji=False,
    )


def read(
    state_dir: Path, stale_after: float = STALE_AFTER, queue_spec: QueueSpec | None = None
) -> DashboardSnapshot:
    """A snapshot of the state now, on a connection of its own, closed before drawing."""
    store = StateStore.read(state_dir)
    try:
        return snapshot(store, time.time(), stale_after=stale_after, queue_spec=queue_spec)
    except sqlite3.Error as exc:  # a table this version expects is missing, the file is damaged
        raise StateError(f"cannot read state database {state_dir / DB_NAME}: {exc}") from None
    finally:
        if store is not None:
            store.close()


def show(
    state_dir: Path,
    out: TextIO,
    environ: Mapping[str, str],
    *,
    refresh: float,
    once: bool = False,
    as_json: bool = False,
    stale_after: float = STALE_AFTER,
    queue_spec: QueueSpec | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print one frame (`once`, or the JSON document), or redraw the screen every `refresh` s until Ctrl-C."""
    first = read(state_dir, stale_after, queue_spec)  # a StateError here is the caller's one line
    if as_json:
        out.write(json.dumps(first.as_dict(), indent=2) + "\n")
        return 0
    colour = Style(out, environ).colour
    terminal = _isatty(out)
    try:
        if once or not terminal:
            # A file or a pipe gets plain frames, one per refresh, as `top -b` prints them.
            console = _console(
                out, colour=colour, width=None if terminal else _width(environ), terminal=terminal
            )
            console.print(render(first))
            while not once:
                sleep(refresh)
                console.print()
                console.print(render(_next(state_dir, stale_after, queue_spec)))
            return 0
        from rich.live import Live

        console = _console(out, colour=colour, width=None, terminal=True)
        with Live(render(first, refresh), console=console, screen=True, auto_refresh=False) as live:
            while True:
                sleep(refresh)
                live.update(render(_next(state_dir, stale_after, queue_spec), refresh), refresh=True)
    except KeyboardInterrupt:
        return 0


def _next(state_dir: Path, stale_after: float, queue_spec: QueueSpec | None) -> DashboardSnapshot:
    # A state that cannot be read mid-watch (replaced, permissions changed) is a frame, not an exit.
    try:
        return read(state_dir, stale_after, queue_spec)
    except StateError as exc:
        return DashboardSnapshot(time.time(), ERROR, (str(exc),), has_state=False)


def _width(environ: Mapping[str, str]) -> int:
    raw = environ.get("COLUMNS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else _PIPE_WIDTH


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
