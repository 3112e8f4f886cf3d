"""`orchestrator status`: the watchdog and each component as state.db last recorded them.

Read-only: it opens state.db read-only and never signals anything, so it is safe to run
from cron, a health endpoint's shell, or while the watchdog writes.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..redact import redact
from ..state import StateStore
from ..state.components import ComponentRow, ComponentStore, ProbeRow, WatchdogRow
from .terminal import Style, clock, span
from .terminal import iso as _iso

# Three of the watchdog's 10 s loop periods without a heartbeat: its loop is stuck or gone.
STALE_AFTER = 30.0
# The first schema that records the watchdog; an older state.db has never seen one.
WATCHDOG_SCHEMA = 4
NO_STATE = "no watchdog has run here: start it with `orchestrator up`"
# Probes in the order they act (startup gates the other two); monitor.config.PROBE_ROLES,
# not imported: reading the watchdog's config module costs `status` more than all its work.
_ROLES = ("startup", "liveness", "readiness")


@dataclass(frozen=True)
class Snapshot:
    """Everything `status` shows, read at one moment."""

    now: float
    watchdog: WatchdogRow | None
    # Why the recorded watchdog counts as not running; None while it runs.
    down: str | None
    components: tuple[ComponentRow, ...] = ()
    probes: Mapping[str, tuple[ProbeRow, ...]] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        """Whether a live watchdog keeps the components."""
        return self.watchdog is not None and self.down is None

    @property
    def status(self) -> str:
        """healthy: all running and healthy under a live watchdog; unhealthy: something down."""
        if not self.running:
            return "unhealthy"
        if any(
            c.status in ("STOPPED", "EXITED", "FATAL") or c.health == "unhealthy" for c in self.components
        ):
            return "unhealthy"
        if all(c.status == "RUNNING" and c.health == "healthy" for c in self.components):
            return "healthy"
        return "degraded"

    @property
    def exit_code(self) -> int:
        """0 when healthy, so a script can gate on it; 1 otherwise."""
        return 0 if self.status == "healthy" else 1


def read(state_dir: Path, now: float | None = None, stale_after: float = STALE_AFTER) -> Snapshot | None:
    """The recorded watchdog and components; None when no watchdog has ever recorded anything."""
    store = StateStore.read(state_dir)
    if store is None:
        return None
    try:
        return from_store(store, time.time() if now is None else now, stale_after)
    finally:
        store.close()


def from_store(store: StateStore, now: float, stale_after: float = STALE_AFTER) -> Snapshot | None:
    """What `read` gives, from an open store (the dashboard reads it with the rest)."""
    version = store.conn.execute("PRAGMA user_version").fetchone()[0]
    if version < WATCHDOG_SCHEMA:
        return None
    rows = ComponentStore(store)
    watchdog, components, probes = rows.watchdog(), rows.components(), rows.probes()
    if watchdog is None and not components:
        return None
    by_component: dict[str, tuple[ProbeRow, ...]] = {}
    order = {role: index for index, role in enumerate(_ROLES)}
    for probe in sorted(probes, key=lambda p: (p.component, order.get(p.role, len(order)), p.role)):
        by_component[probe.component] = (*by_component.get(probe.component, ()), probe)
    return Snapshot(now, watchdog, _down(watchdog, now, stale_after), tuple(components), by_component)


def _down(watchdog: WatchdogRow | None, now: float, stale_after: float) -> str | None:
    if watchdog is None:
        return "stopped"
    if watchdog.host == socket.gethostname() and not pid_exists(watchdog.pid):
        return "process gone"
    silent = now - watchdog.heartbeat_at
    # It beats once a period: three missed beats, and never sooner than `stale_after`.
    if silent > max(stale_after, 3 * (watchdog.period or 0)):
        return f"no heartbeat for {span(silent)}"
    return None


def pid_exists(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    # What psutil.pid_exists does on POSIX, without the 20 ms its import adds to every `status`.
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- the terminal view ----

_STATUS = {
    "RUNNING": ("✓ Running", "green"),
    "STARTING": ("⟳ Starting", "yellow"),
    "BACKOFF": ("⟳ Restarting", "yellow"),
    "STOPPING": ("⟳ Stopping", "yellow"),
    "STOPPED": ("✗ Stopped", "red"),
    "EXITED": ("✗ Exited", "red"),
    "FATAL": ("✗ FATAL", "red"),
}
_HEALTH = {
    "healthy": ("✓ Healthy", "green"),
    "not_ready": ("◐ Not ready", "yellow"),
    "unhealthy": ("✗ Unhealthy", "red"),
    "unknown": ("? Unknown", "yellow"),
}
_RULE = "─" * 37
_ANSI = re.compile(r"\033\[[0-9;]*m")


def render(snapshot: Snapshot, style: Style, *, verbose: bool = False) -> str:
    """The status as text: a header, the watchdog, then one block per component."""
    now = snapshot.now
    lines = ["Orchestrator Status:", _RULE, f"Watchdog: {_watchdog_line(snapshot, style)}"]
    for row in snapshot.components:
        lines.append("")
        note = "" if snapshot.running else f" (as last recorded at {clock(row.updated_at, now)})"
        lines.append(style.paint(row.name, "bold") + ":" + style.paint(note, "dim"))
        lines += [f"  {label + ':':<11}{value}" for label, value in _fields(row, now, style)]
        if verbose:
            lines += _probe_lines(snapshot.probes.get(row.name, ()), now, style)
    return style.text("\n".join(lines)) + "\n"


def _watchdog_line(snapshot: Snapshot, style: Style) -> str:
    watchdog = snapshot.watchdog
    if watchdog is None:
        return style.paint("✗ Not running", "red")
    where = "" if watchdog.host == socket.gethostname() else f" on {watchdog.host}"
    if snapshot.down is not None:
        return style.paint("✗ Not running", "red") + f" (pid {watchdog.pid}{where}: {snapshot.down})"
    up = span(snapshot.now - watchdog.started_at)
    return style.paint("✓ Running", "green") + f" (pid {watchdog.pid}{where}, up {up})"


def _fields(row: ComponentRow, now: float, style: Style) -> list[tuple[str, str]]:
    text, colour = _STATUS.get(row.status, (row.status, "yellow"))
    if row.status == "EXITED" and row.exit_code is not None:
        text += f" (code {row.exit_code})"
    if row.status == "BACKOFF" and row.next_start_at is not None:
        text += f" (next start in {span(row.next_start_at - now)})"
    health, health_colour = _HEALTH.get(row.health, (row.health, "yellow"))
    fields = [("Status", style.paint(text, colour)), ("Health", style.paint(health, health_colour))]
    if row.kind == "container":
        fields.append(("Container", row.container or row.name))
    else:
        fields.append(("PID", str(row.pid) if row.pid else "-"))
    running = row.status == "RUNNING" and row.started_at is not None
    fields.append(("Uptime", span(now - row.started_at) if running and row.started_at else "-"))
    fields.append(("Restarts", _restarts(row, now)))
    if row.message:
        fields.append(("Message", redact(row.message)))
    return fields


def _restarts(row: ComponentRow, now: float) -> str:
    if not row.restarts or row.last_restart_at is None:
        return str(row.restarts)
    reason = f": {redact(row.last_restart_reason)}" if row.last_restart_reason else ""
    return f"{row.restarts} (last {span(now - row.last_restart_at)} ago{reason})"


def _probe_lines(probes: tuple[ProbeRow, ...], now: float, style: Style) -> list[str]:
    if not probes:
        return ["  Probes:    none recorded"]
    cells = [_probe_cells(p, now, style) for p in probes]
    widths = [max(len(_plain(c[i])) for c in cells) for i in range(len(cells[0]) - 1)]
    lines = ["  Probes:"]
    for row in cells:
        padded = [cell + " " * (width - len(_plain(cell))) for cell, width in zip(row, widths, strict=False)]
        lines.append(("    " + "  ".join([*padded, row[-1]])).rstrip())
    return lines


def _probe_cells(probe: ProbeRow, now: float, style: Style) -> list[str]:
    if probe.ok is None:
        result = style.paint("? not run", "yellow")
    else:
        result = style.paint("✓ ok", "green") if probe.ok else style.paint("✗ failed", "red")
    took = f"{probe.duration * 1000:.0f} ms" if probe.duration is not None else "-"
    at = f"at {clock(probe.at, now)}" if probe.at is not None else "-"
    counters = (
        f"successes {probe.successes}/{probe.success_threshold}  "
        f"failures {probe.failures}/{probe.failure_threshold}"
    )
    return [probe.role, probe.kind, result, took, at, counters, redact(probe.message or "")]


def _plain(text: str) -> str:
    # Widths count what is seen, not the colour codes around it.
    return _ANSI.sub("", text)


# ---- the JSON document ----


def document(snapshot: Snapshot | None) -> dict[str, Any]:
    """The status as a JSON-safe document: {watchdog, components, status}."""
    if snapshot is None:
        return {"watchdog": None, "components": [], "status": "unhealthy"}
    now = snapshot.now
    watchdog = snapshot.watchdog
    return {
        "watchdog": None
        if watchdog is None
        else {
            "running": snapshot.running,
            "reason": snapshot.down,
            "pid": watchdog.pid,
            "host": watchdog.host,
            "started_at": _iso(watchdog.started_at),
            "heartbeat_at": _iso(watchdog.heartbeat_at),
            "uptime": round(now - watchdog.started_at, 3) if snapshot.running else None,
            "config": watchdog.config,
        },
        "components": [_component(row, snapshot) for row in snapshot.components],
        "status": snapshot.status,
    }


def _component(row: ComponentRow, snapshot: Snapshot) -> dict[str, Any]:
    running = row.status == "RUNNING" and row.started_at is not None
    return {
        "name": row.name,
        "kind": row.kind,
        "status": row.status,
        "health": row.health,
        "pid": row.pid,
        "container": row.container,
        "started_at": _iso(row.started_at),
        "uptime": round(snapshot.now - row.started_at, 3) if running and row.started_at else None,
        "restarts": row.restarts,
        "last_restart_at": _iso(row.last_restart_at),
        "last_restart_reason": redact(row.last_restart_reason) if row.last_restart_reason else None,
        "next_start_at": _iso(row.next_start_at),
        "exit_code": row.exit_code,
        "message": redact(row.message) if row.message else None,
        "updated_at": _iso(row.updated_at),
        # With the watchdog down, nobody keeps these rows current.
        "as_last_recorded": not snapshot.running,
        "probes": [
            {
                "role": p.role,
                "kind": p.kind,
                "ok": p.ok,
                "message": redact(p.message) if p.message else None,
                "duration": p.duration,
                "at": _iso(p.at),
                "successes": p.successes,
                "failures": p.failures,
                "success_threshold": p.success_threshold,
                "failure_threshold": p.failure_threshold,
            }
            for p in snapshot.probes.get(row.name, ())
        ],
    }


def show(
    state_dir: Path,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    *,
    verbose: bool = False,
    as_json: bool = False,
) -> int:
    """Print the status to `out`; the exit status: 0 healthy, 1 otherwise or no state."""
    snapshot = read(state_dir)
    if as_json:
        import json

        out.write(json.dumps(document(snapshot), indent=2) + "\n")
    elif snapshot is not None:
        out.write(render(snapshot, Style(out, environ), verbose=verbose))
    if snapshot is None:
        err.write(f"orchestrator: {NO_STATE}\n")
        return 1
    return snapshot.exit_code
