"""The orchestrator's own health, read from the state database: idle, working, or frozen."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..loop.store import LoopRow
    from ..state import ActiveAttempt

# The loop's states in which it must keep polling; a stopped loop polls no more, by design.
POLLING = ("running", "waiting")
# The engine an attempt runs on goes unnamed when it is this one: the one every user has.
LOCAL_ENGINE = "unix:///var/run/docker.sock"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def _alive(pid: int) -> bool:
    import psutil

    return bool(psutil.pid_exists(pid))


def loop_freeze(loop: LoopRow | None, freeze_threshold: float, now: float) -> str | None:
    """What shows that the continuous loop is frozen, or None: running or waiting, no poll for too long."""
    if loop is None or loop.status not in POLLING:
        return None
    if loop.host == socket.gethostname() and not _alive(loop.pid):
        # Killed without a word (SIGKILL, a reboot): gone, not frozen; nothing to restart it
        # from here, and a health gate must not stay critical until a loop runs again.
        return None
    age = now - loop.last_poll_at
    if age <= freeze_threshold:
        return None
    return (
        f"orchestrator loop frozen: no poll for {int(age)}s (threshold {freeze_threshold:g}s) while "
        f"{loop.status} in round {loop.round}, pid {loop.pid} on {loop.host}"
    )


def describe_state(
    attempts: Iterable[ActiveAttempt] | None,
    freeze_threshold: float,
    now: float | None = None,
    loop: LoopRow | None = None,
) -> tuple[bool, str]:
    """(ok, message) for the orchestrator check: idle, working on task X.Y, or frozen (a task or the loop)."""
    now = time.time() if now is None else now
    frozen = loop_freeze(loop, freeze_threshold, now)
    if frozen is not None:
        return False, f"{frozen}; stop that process and start the loop again"
    active = list(attempts or ())
    if not active:
        return True, "idle"
    work = "; ".join(
        f"working on task {a.task_id} ({a.plan}), started {_ago(now - a.started_at)}"
        + (f" on {a.engine}" if a.engine and a.engine != LOCAL_ENGINE else "")
        for a in active
    )
    stale = [a for a in active if now - (a.heartbeat_at or a.started_at) > freeze_threshold]
    if stale:
        worst = max(now - (a.heartbeat_at or a.started_at) for a in stale)
        return False, (
            f"orchestrator frozen: no heartbeat for {int(worst)}s (threshold "
            f"{freeze_threshold:g}s) while {work}; stop the stuck run and start it again"
        )
    return True, work
