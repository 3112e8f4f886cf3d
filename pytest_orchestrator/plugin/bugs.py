"""Bug reports from a task run: after each task, the crashes it recorded may file one.

The report is written to BUG-NNN.md by the domain (`crashes.bugs`); the
`pytest_orchestrator_report_bug` hook sends it on, to GitHub by default when configured.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from ..config_file import ConfigFileError
from ..state import StateError
from .options import config_file, settings_for
from .output import write_now

if TYPE_CHECKING:
    from ..crashes.bugs import Bug
    from ..crashes.config import MonitorSpec
    from ..state import RunRecord

MONITOR = pytest.StashKey["MonitorSpec"]()


def monitor_for(config: pytest.Config) -> MonitorSpec:
    """The `monitor:` section of the config file; a bad one is a usage error."""
    if MONITOR not in config.stash:
        from ..crashes.config import monitor_spec

        try:
            config.stash[MONITOR] = monitor_spec(config_file(config))
        except ConfigFileError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[MONITOR]


def report_bugs(config: pytest.Config, run: RunRecord, say: Callable[[str], None]) -> None:
    """File a report for each problem the run's latest crashes made due, and send it on."""
    if not run.crashed or not run.writes:
        return
    from ..crashes.bugs import BugDesk

    fingerprints = list(dict.fromkeys(run.crashed))
    run.crashed.clear()
    command = shlex.join(["pytest", *config.invocation_params.args])
    desk = BugDesk(run.store, monitor_for(config), settings_for(config).state_dir, command=command)
    for fingerprint in fingerprints:
        try:
            bug = desk.consider(fingerprint)
            path = desk.file(bug) if bug is not None else None
        except StateError as exc:
            run.unrecorded.append(f"the bug report on {fingerprint}: {exc}")
            continue
        if bug is None or path is None:
            continue
        say(f"orchestrator: {bug.name} ({bug.priority}): {bug.title} [{path}]")
        url = config.hook.pytest_orchestrator_report_bug(bug=bug, config=config)
        if url:
            try:
                desk.mark_delivered(bug, url)
            except StateError as exc:
                run.unrecorded.append(f"where {bug.name} went ({url}): {exc}")
            say(f"orchestrator: {bug.name} sent to {url}")


class BuiltinTracker:
    """The built-in implementation of the report hook: GitHub issues, when configured."""

    @pytest.hookimpl(trylast=True)
    def pytest_orchestrator_report_bug(self, bug: Bug, config: pytest.Config) -> str | None:
        """File or update the bug's GitHub issue when `monitor.bug_tracker` is github."""
        from ..crashes.github import deliver

        tracker = monitor_for(config).bug_tracker
        if tracker.kind != "github":
            return None
        return deliver(
            bug, tracker, os.environ, lambda line: write_now(config, f"orchestrator: warning: {line}")
        )
