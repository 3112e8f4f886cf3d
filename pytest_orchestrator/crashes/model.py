"""What a crash record holds, and the root cause parsed from its log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CrashKind = Literal["task", "component"]


@dataclass(frozen=True)
class RootCause:
    """The cause of a crash as its log tells it: the error, its message, and where it was raised.

    `kind` says which parser found it: python, node, oom, command_not_found, error_line or exit.
    """

    error_type: str
    message: str
    kind: str
    # The innermost frame, as `path:line in function`.
    frame: str | None = None
    # The in-app frames, normalised (`path:function`, no line numbers), for the fingerprint.
    frames: tuple[str, ...] = ()
    # The files of the frames, as the log names them.
    files: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = f"{self.error_type}: {self.message}" if self.message else self.error_type
        return f"{text} (at {self.frame})" if self.frame else text


@dataclass
class Crash:
    """One crash: of a task's agent (`subject` is the task id) or of a component (its name)."""

    kind: CrashKind
    subject: str
    at: float
    error_type: str
    message: str
    fingerprint: str
    plan: str | None = None
    attempt_id: int | None = None
    pid: int | None = None
    container: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    # The last lines of its log or stderr, redacted.
    log_tail: str = ""
    respawned: bool = False
    root_cause: str | None = None
    files: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CrashSample:
    """What a group's latest crash says: what crashed, where, and why."""

    kind: CrashKind
    subject: str
    plan: str | None
    message: str
    root_cause: str | None
    at: float
    # The process that crashed, when known (a component's), and whether it was retried or restarted.
    pid: int | None = None
    respawned: bool = False


@dataclass(frozen=True)
class CrashGroup:
    """The crashes of one fingerprint in a time window: one problem, however often it crashed."""

    fingerprint: str
    error_type: str
    count: int
    first_seen: float
    last_seen: float
    # How many of them were retried or restarted.
    respawned: int
    sample: CrashSample
    # The bug report filed on this fingerprint, if any.
    bug_number: int | None = None
