"""The health monitor's reading of the state: the document's `issues` and `metrics`, and what is critical.

Plain Python over a read-only `StateStore`, for the health run, the watchdog and the server
alike. No state is no news: no issues, no agents, no crashes.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from ..redact import redact
from .orchestrator import loop_freeze

if TYPE_CHECKING:
    from ..crashes.model import CrashGroup
    from ..state import StateStore

HOUR = 3600.0
DAY = 86_400.0
# The schema version that added the monitor's tables (crashes, bug reports, the loop).
MONITOR_SCHEMA = 5
# The crash groups listed as issues, the most recently seen first; the count covers them all.
MAX_CRASH_ISSUES = 50

IssueType = Literal["agent_crash", "component_crash", "orchestrator_freeze", "zombie_processes"]
Action = Literal["respawned", "restarted", "none"]


def iso(at: float | None) -> str | None:
    """A time as the document gives it: ISO 8601 in UTC, or None."""
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


@dataclass(frozen=True)
class Issue:
    """One problem the monitor sees: a crashing task or component, a frozen loop, zombies in the sandbox."""

    type: IssueType
    # A task's id, or a component's name (`loop`, the sandbox container).
    subject: str
    subject_kind: Literal["task", "component"]
    error: str
    plan: str | None = None
    pid: int | None = None
    action_taken: Action = "none"
    bug_number: int | None = None
    count: int = 1
    last_seen: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The issue's entry in the health document; its error is redacted once more."""
        return {
            "type": self.type,
            self.subject_kind: self.subject,
            "plan": self.plan,
            "pid": self.pid,
            "error": redact(self.error),
            "action_taken": self.action_taken,
            "bug_reported": self.bug_number is not None,
            "bug_number": self.bug_number,
            "count": self.count,
            "last_seen": iso(self.last_seen),
        }


@dataclass
class MonitorReading:
    """What the monitor read at `at`: the metrics, the issues, and why the health is critical, if it is."""

    at: float
    active_agents: int = 0
    crashes_last_hour: int = 0
    # Of the task crashes of the last day that were respawned, the share whose task then completed.
    respawn_success_rate: float | None = None
    # The continuous loop's last poll; None when no loop ever ran on this state.
    last_poll_at: float | None = None
    # Defunct processes in the sandbox; None when not counted.
    zombie_processes: int | None = None
    issues: list[Issue] = field(default_factory=list)
    # Why the health is critical, one line each; empty when it is not.
    critical: list[str] = field(default_factory=list)
    # The bug reports filed or updated in the last hour.
    bugs_reported: list[int] = field(default_factory=list)

    @property
    def last_poll_age(self) -> float | None:
        """Seconds since the loop's last poll, or None."""
        return None if self.last_poll_at is None else max(0.0, self.at - self.last_poll_at)

    def metrics(self) -> dict[str, Any]:
        """The document's `metrics` section."""
        age = self.last_poll_age
        metrics: dict[str, Any] = {
            "active_agents": self.active_agents,
            "crashed_agents_last_hour": self.crashes_last_hour,
            "respawn_success_rate": self.respawn_success_rate,
            "orchestrator_last_poll": iso(self.last_poll_at),
            "orchestrator_last_poll_age": None if age is None else round(age, 1),
        }
        if self.zombie_processes is not None:
            metrics["zombie_processes"] = self.zombie_processes
        return metrics

    def issues_dicts(self) -> list[dict[str, Any]]:
        """The document's `issues` section."""
        return [issue.to_dict() for issue in self.issues]

    def add_zombies(self, count: int, sandbox: str, message: str) -> None:
        """Count the sandbox's defunct processes; any at all are an issue, described by `message`."""
        self.zombie_processes = count
        if count > 0:
            self.issues.append(
                Issue(
                    type="zombie_processes",
                    subject=sandbox,
                    subject_kind="component",
                    error=message,
                    count=count,
                    last_seen=self.at,
                )
            )


def read_monitor(
    store: StateStore | None,
    *,
    freeze_threshold: float,
    critical_crashes_per_hour: int,
    now: float | None = None,
) -> MonitorReading:
    """Read the metrics and issues from the state (None: no state yet, so none of either).

    Critical: the loop frozen (running or waiting, no poll for more than `freeze_threshold`
    seconds), or more than `critical_crashes_per_hour` crashes in the last hour.
    """
    reading = MonitorReading(at=time.time() if now is None else now)
    if store is None:
        return reading
    reading.active_agents = len(store.active_attempts())
    if _schema(store) < MONITOR_SCHEMA:
        return reading
    from ..crashes.store import BugStore, CrashStore
    from ..loop.store import LoopStore

    crashes, bugs = CrashStore(store), BugStore(store)
    hour_ago = reading.at - HOUR
    reading.crashes_last_hour = crashes.count(hour_ago)
    respawned, recovered = crashes.respawns(reading.at - DAY)
    reading.respawn_success_rate = round(recovered / respawned, 4) if respawned else None
    reading.bugs_reported = bugs.reported_since(hour_ago)
    loop = LoopStore(store).row()
    if loop is not None:
        reading.last_poll_at = loop.last_poll_at
        frozen = loop_freeze(loop, freeze_threshold, reading.at)
        if frozen is not None:
            report = bugs.latest("freeze", loop.last_poll_at)
            reading.issues.append(
                Issue(
                    type="orchestrator_freeze",
                    subject="loop",
                    subject_kind="component",
                    error=frozen,
                    pid=loop.pid,
                    bug_number=report.number if report is not None else None,
                    last_seen=loop.last_poll_at,
                )
            )
            reading.critical.append(frozen)
    if reading.crashes_last_hour:
        reading.issues.extend(_crash_issue(group) for group in crashes.groups(hour_ago, MAX_CRASH_ISSUES))
    if reading.crashes_last_hour > critical_crashes_per_hour:
        reading.critical.append(
            f"{reading.crashes_last_hour} crashes in the last hour, more than {critical_crashes_per_hour}"
        )
    return reading


def _schema(store: StateStore) -> int:
    try:
        return int(store.conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return 0


def _crash_issue(group: CrashGroup) -> Issue:
    sample = group.sample
    task = sample.kind == "task"
    action: Action = "none"
    if sample.respawned:
        action = "respawned" if task else "restarted"
    error = sample.root_cause or group.error_type
    if not sample.root_cause and sample.message:
        error = f"{group.error_type}: {sample.message}"
    return Issue(
        type="agent_crash" if task else "component_crash",
        subject=sample.subject,
        subject_kind="task" if task else "component",
        error=error,
        plan=sample.plan,
        pid=sample.pid,
        action_taken=action,
        bug_number=group.bug_number,
        count=group.count,
        last_seen=group.last_seen,
    )
