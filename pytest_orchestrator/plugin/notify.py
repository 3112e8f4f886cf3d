"""Webhook notifications from a pytest run: a task's failure, the run's end, the health's change.

The domain (`pytest_orchestrator.notify`) builds, deduplicates and delivers; this module tells
it when. Task events go out from the process that ran the task, `run_finished` from the
controller (or the single process), never from each xdist worker.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import pytest

from ..config_file import ConfigFileError
from . import xdist
from .options import config_file, settings_for

if TYPE_CHECKING:
    from ..health import HealthReport
    from ..notify import Notifier, NotifySpec
    from ..plan import Task
    from ..result import TaskResult

SPEC = pytest.StashKey["NotifySpec"]()
# The check whose presence makes a health run the environment's health, not a narrower
# question such as `orchestrator sandbox up`'s wait on the sandbox checks.
MONITOR_CHECK = "orchestrator"


def notify_spec_for(config: pytest.Config) -> NotifySpec:
    """The `notifications:` section of the config file; a bad one is a usage error."""
    if SPEC not in config.stash:
        from ..notify import notify_spec

        try:
            config.stash[SPEC] = notify_spec(config_file(config), os.environ)
        except ConfigFileError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[SPEC]


class Notifications:
    """The plugin object: one notifier per process, started on its first event, closed at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.notifier: Notifier | None = None
        # Said by the delivery thread; written out by the main thread, past pytest's capture.
        self.warnings: list[str] = []

    def _notifier(self) -> Notifier | None:
        if self.notifier is None:
            spec = notify_spec_for(self.config)
            if not spec.enabled:
                return None
            from ..notify import Notifier

            self.notifier = Notifier(spec, settings_for(self.config).state_dir, self.warnings.append)
        return self.notifier

    def pytest_orchestrator_task_finished(
        self, task: Task, result: TaskResult, config: pytest.Config
    ) -> None:
        """A task that failed or needs a human: its event, from the process that ran it."""
        from ..notify.events import TASK_EVENTS, task_event

        if result.status not in TASK_EVENTS:
            return
        notifier = self._notifier()
        if notifier is not None:
            notifier.send(task_event(task.plan, task.title, result, xdist.worker_id(config)))

    def pytest_runtest_logfinish(self) -> None:
        """Between tasks: the delivery warnings so far."""
        self._flush()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """On the controller or the single process: `run_finished` with the tasks counted by status."""
        if xdist.workerinput(self.config) is not None or self.config.getoption("orchestrator_health"):
            return
        from .reporting import TaskRun

        tasks = self.config.pluginmanager.get_plugin("orchestrator-tasks")
        if not isinstance(tasks, TaskRun) or not tasks.finished:
            return
        notifier = self._notifier()
        if notifier is None:
            return
        from ..notify.events import run_finished

        totals = tasks.totals()
        plans = list(dict.fromkeys(f.nodeid.split("::")[0] for f in tasks.finished))
        notifier.send(
            run_finished(plans, totals["by_status"], totals["cost_usd"], totals["duration_seconds"])
        )

    def notify_health(self, report: HealthReport) -> None:
        """The health run's status: told when it entered degraded or unhealthy since the last one told."""
        if MONITOR_CHECK not in report.checks:
            return
        notifier = self._notifier()
        if notifier is None:
            return
        from ..notify.events import health_event

        status = report.status
        failed = {name: r.message for name, r in report.checks.items() if r.status == "failed"}
        # Each set of checks keeps its own memory: CI's full run and a `-k` selection differ.
        subject = "health:" + ",".join(sorted(report.checks))
        notifier.transition(
            subject, status, lambda previous: health_event(status, previous, "health", failed)
        )

    def pytest_unconfigure(self) -> None:
        """Wait at most the time bound for the notifications still queued, then say what failed."""
        if self.notifier is not None:
            self.notifier.close()
        self._flush()

    def _flush(self) -> None:
        while self.warnings:
            line = f"orchestrator: warning: {self.warnings.pop(0)}"
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            capture = self.config.pluginmanager.get_plugin("capturemanager")
            if capture is not None:
                with capture.global_and_fixture_disabled():
                    self._write(reporter, line)
            else:
                self._write(reporter, line)

    @staticmethod
    def _write(reporter: pytest.TerminalReporter | None, line: str) -> None:
        # An xdist worker has no terminal reporter: its stderr reaches the terminal.
        if reporter is not None:
            reporter.write_line(line, yellow=True)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def notify_health(config: pytest.Config, report: HealthReport) -> None:
    """Hand the health run's document to the notifications, if the plugin is there."""
    plugin = config.pluginmanager.get_plugin("orchestrator-notifications")
    if isinstance(plugin, Notifications):
        plugin.notify_health(report)
