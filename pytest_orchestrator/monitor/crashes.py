"""The watchdog's part of the health monitor: a component's crash, a frozen loop, their reports.

Runs on the watchdog's pool, never in its loop: reading a log, asking Docker whether the
kernel killed a container, and a GitHub request all take time. Each call opens its own
connection to the state database (sqlite connections belong to one thread).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..crashes.bugs import Bug, BugDesk
from ..crashes.config import MonitorSpec
from ..crashes.github import deliver
from ..crashes.model import Crash
from ..crashes.store import CrashStore
from ..state import StateError, StateStore

if TYPE_CHECKING:
    from ..notify import Notifier

LOG_TAIL_BYTES = 64 * 1024
DAY = 86_400.0


def read_tail(path: Path | None, offset: int = 0) -> str:
    """The end of a component's log since its last start."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as log:
        size = log.seek(0, os.SEEK_END)
        start = offset if offset <= size else 0
        begin = max(start, size - LOG_TAIL_BYTES)
        log.seek(begin)
        text = log.read().decode("utf-8", "replace")
    # A cut first line may hold half a secret, which redaction would not recognise.
    return text.partition("\n")[2] if begin > start else text


def container_tail(name: str, docker_timeout: float) -> tuple[str, bool]:
    """A container's last log lines, and whether the kernel killed it for memory (OOMKilled)."""
    try:
        from ..sandbox.docker import connect

        container = connect(docker_timeout).containers.get(name)
        logs = container.logs(tail=200).decode("utf-8", "replace")
        return logs, bool(container.attrs.get("State", {}).get("OOMKilled"))
    except Exception:  # an engine that is down or a container that is gone: no log to read
        return "", False


def overall(checks: dict[str, str]) -> str:
    """The watchdog's status from its components' health: one unhealthy one is enough."""
    if any(health == "unhealthy" for health in checks.values()):
        return "unhealthy"
    return "degraded" if any(health == "not_ready" for health in checks.values()) else "healthy"


class Monitor:
    """Records the watchdog's crashes and files the reports they make due."""

    def __init__(
        self,
        state_dir: Path,
        spec: MonitorSpec,
        log: Callable[[str], None],
        notifier: Notifier | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.spec = spec
        self.log = log
        self.notifier = notifier
        self.pruned_at: float | None = None
        # The start's prune and the first round's may be on the pool at once: one deletes.
        self._pruning = threading.Lock()

    def crashed(self, crash: Crash, *, report: bool = True) -> None:
        """Record a component's crash; file a report when its fingerprint keeps crashing."""
        with self._store() as store:
            if store is None:
                return
            CrashStore(store).record(crash)
            if report:
                self._report(store, lambda desk: desk.consider(crash.fingerprint))

    def frozen(self, name: str, detail: str, log: str) -> None:
        """The loop run by component `name` stopped beating: the CRITICAL report."""
        with self._store() as store:
            if store is not None:
                self._report(store, lambda desk: desk.freeze(name, detail, log_tail=log))

    def health_round(self, checks: dict[str, str], actions: list[str], freeze_threshold: float) -> None:
        """A row of health history for a watchdog round: at most one a minute while nothing changes."""
        from ..health.history import WATCHDOG, HealthHistory, HealthRow
        from ..health.monitor import read_monitor

        with self._store() as store:
            if store is None:
                return
            reading = read_monitor(
                store,
                freeze_threshold=freeze_threshold,
                critical_crashes_per_hour=self.spec.critical_crashes_per_hour,
            )
            row = HealthRow(
                at=reading.at,
                source=WATCHDOG,
                status="critical" if reading.critical else overall(checks),
                checks=checks,
                active_agents=reading.active_agents,
                crashed_agents=reading.crashes_last_hour,
                last_poll_age=reading.last_poll_age,
                actions=actions,
                bugs_reported=reading.bugs_reported,
            )
            HealthHistory(store).record_round(row, now=reading.at)
        if self.notifier is not None:
            from ..notify.events import health_event

            status = row.status
            failed = {name: health for name, health in checks.items() if health != "healthy"}
            if reading.critical:
                failed.update({"orchestrator": "; ".join(reading.critical)})
            self.notifier.transition(
                WATCHDOG, status, lambda previous: health_event(status, previous, WATCHDOG, failed)
            )

    def prune(self, now: float | None = None) -> None:
        """Delete crash, health and resource rows older than the retention; at most once a day."""
        now = time.time() if now is None else now
        with self._pruning:
            if self.pruned_at is not None and now - self.pruned_at < DAY:
                return
            self.pruned_at = now
        with self._store() as store:
            if store is not None:
                from ..transcripts import prune as prune_transcripts

                deleted = CrashStore(store).prune(now - self.spec.retention_days * DAY)
                deleted += prune_transcripts(self.state_dir, now - self.spec.retention_days * DAY)
                if deleted:
                    self.log(
                        f"monitor: deleted {deleted} crash, health and resource rows and transcripts "
                        f"older than {self.spec.retention_days:g} days"
                    )

    def _report(self, store: StateStore, make: Callable[[BugDesk], Bug | None]) -> None:
        desk = BugDesk(store, self.spec, self.state_dir, command="orchestrator up")
        bug = make(desk)
        path = desk.file(bug) if bug is not None else None
        if bug is None or path is None:
            return
        self.log(f"monitor: {bug.name} ({bug.priority}): {bug.title} [{path}]")
        url = deliver(
            bug, self.spec.bug_tracker, os.environ, lambda line: self.log(f"monitor: warning: {line}")
        )
        if url:
            desk.mark_delivered(bug, url)
            self.log(f"monitor: {bug.name} sent to {url}")

    def _store(self) -> _Opened:
        return _Opened(self.state_dir, self.log)


class _Opened:
    """A connection for one piece of the monitor's work; a state error is one log line."""

    def __init__(self, state_dir: Path, log: Callable[[str], None]) -> None:
        self.state_dir, self.log = state_dir, log
        self.store: StateStore | None = None

    def __enter__(self) -> StateStore | None:
        try:
            self.store = StateStore.open(self.state_dir, wait=5)
        except StateError as exc:
            self.log(f"monitor: {exc}")
        return self.store

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if self.store is not None:
            self.store.close()
        if isinstance(exc, StateError):
            self.log(f"monitor: {exc}")
            return True
        return False
