"""A crash record from what the dispatch or the watchdog saw: its root cause, fingerprint, redacted.

Everything a crash carries passes through `redact` here, before it reaches the state
database, a bug report or a tracker.
"""

from __future__ import annotations

import time

from ..redact import redact
from .diagnose import diagnose, fingerprint, in_workspace
from .model import Crash, RootCause

TAIL_LINES = 40
TAIL_CHARS = 8_000
MESSAGE_CHARS = 500


def log_tail(log: str) -> str:
    """The last lines of a log, redacted, short enough for a row."""
    lines = [line.rstrip() for line in redact(log).splitlines() if line.strip()][-TAIL_LINES:]
    text = "\n".join(lines)
    return text if len(text) <= TAIL_CHARS else text[-TAIL_CHARS:]


def signal_of(exit_code: int | None) -> int | None:
    """The signal that ended a process: negative codes (Popen), or 128+N (a shell, docker exec)."""
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    return exit_code - 128 if 128 < exit_code < 128 + 65 else None


def _crash(
    kind: str,
    subject: str,
    cause: RootCause | None,
    error_type: str,
    message: str,
    log: str,
    exit_code: int | None,
    files: tuple[str, ...],
) -> Crash:
    message = redact(cause.message if cause and cause.message else message).strip()[:MESSAGE_CHARS]
    error_type = cause.error_type if cause is not None else error_type
    return Crash(
        kind=kind,  # type: ignore[arg-type]
        subject=subject,
        at=time.time(),
        error_type=error_type,
        message=message,
        fingerprint=fingerprint(cause, error_type, message),
        exit_code=exit_code,
        signal=signal_of(exit_code),
        log_tail=log_tail(log),
        root_cause=redact(str(cause)) if cause is not None else None,
        files=files,
    )


def task_crash(
    task_id: str,
    plan: str,
    *,
    status: str,
    error: str | None,
    log: str,
    exit_code: int | None,
    workspace: str,
    attempt_id: int | None = None,
    respawned: bool = False,
) -> Crash:
    """The crash of a task's attempt: its agent died without a result, or it ended in error or timeout."""
    cause = diagnose(log, exit_code) or diagnose(error or "", exit_code)
    fallback = {"timeout": "Timeout", "error": "DispatchError"}.get(status, "AgentCrashed")
    files = in_workspace(cause.files, workspace) if cause is not None else ()
    crash = _crash("task", task_id, cause, fallback, error or status, log, exit_code, files)
    crash.plan = plan
    crash.attempt_id = attempt_id
    crash.respawned = respawned
    return crash


def component_crash(
    name: str,
    *,
    reason: str,
    log: str,
    exit_code: int | None = None,
    pid: int | None = None,
    container: str | None = None,
    oom_killed: bool = False,
    respawned: bool = False,
) -> Crash:
    """The crash of a watchdog component: it died, failed its liveness probe, or could not start."""
    cause = diagnose(log, exit_code, oom_killed=oom_killed)
    if cause is None and oom_killed:
        cause = RootCause("OOMKilled", "killed by the kernel for lack of memory", "oom")
    error_type = "Exited" if exit_code is not None else reason.split(" ", 1)[0].capitalize() + "Failure"
    crash = _crash("component", name, cause, error_type, reason, log, exit_code, ())
    crash.pid = pid
    crash.container = container
    crash.respawned = respawned
    return crash
