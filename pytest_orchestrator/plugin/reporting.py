"""The plugin object behind task runs: report each task's result, total them, export telemetry."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from ..result import FinishedTask, TaskResult, describe_failure, skip_line, status_line
from . import xdist
from .dispatch import WORKER_LINES, close_run
from .items import REPORT_ATTR, RESULT, TaskItem
from .options import settings_for

# Cross pytest-xdist with the report, like REPORT_ATTR.
SKIP_ATTR = "orchestrator_skip"
LINES_ATTR = "orchestrator_lines"


class TaskRun:
    """Turns task reports into terminal lines, JSON report entries and telemetry."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.finished: list[FinishedTask] = []

    # ---- the process that runs the task ----

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Attach the task's result to its call report; a skipped task points at its heading."""
        report: pytest.TestReport = yield
        if not isinstance(item, TaskItem):
            return report
        lines = item.config.stash.get(WORKER_LINES, None)
        if lines:
            setattr(report, LINES_ATTR, list(lines))
            lines.clear()
        if call.when == "call" and RESULT in item.stash:
            setattr(report, REPORT_ATTR, {"title": item.task.title, **item.stash[RESULT].to_dict()})
        if report.skipped and isinstance(report.longrepr, tuple):
            path, line, _ = item.reportinfo()
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            report.longrepr = (str(path), line + 1, reason)
            setattr(report, SKIP_ATTR, {"task_id": item.task.id, "reason": reason})
        return report

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_runtest_metadata(self, item: pytest.Item, call: pytest.CallInfo[None]) -> dict[str, Any]:
        """Put the task's result into its pytest-json-report entry."""
        if isinstance(item, TaskItem) and call.when == "call" and RESULT in item.stash:
            return {"orchestrator_task": item.stash[RESULT].to_dict()}
        return {}

    # ---- the controller ----

    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        """Show a task that needs a human, or was interrupted, as its own status."""
        data = getattr(report, REPORT_ATTR, None)
        if not data or report.when != "call":
            return None
        if data.get("status") == "needs_human":
            return "needs_human", "H", "NEEDS_HUMAN"
        if data.get("status") == "interrupted":
            return "interrupted", "I", "INTERRUPTED"
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Print a worker's lines and each task's one-line outcome; keep the result for the totals."""
        for line in getattr(report, LINES_ATTR, ()):
            self._write(line)
        skipped = getattr(report, SKIP_ATTR, None)
        if skipped:
            self._write(
                skip_line(skipped["task_id"], skipped["reason"], report.stop, report.nodeid.split("::")[0])
            )
            return
        data = getattr(report, REPORT_ATTR, None)
        if not data:
            return
        data = dict(data)
        title = data.pop("title", "")
        result = TaskResult.from_dict(data)
        self.finished.append(FinishedTask(report.nodeid, title, result, report.start, report.stop))
        self._write(status_line(result.task_id, result, report.stop, report.nodeid.split("::")[0]))

    def _write(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """List the tasks that wait for a human, with their question and options."""
        waiting = [f for f in self.finished if f.result.status == "needs_human"]
        if not waiting:
            return
        terminalreporter.write_sep("=", "needs human")
        for item in waiting:
            terminalreporter.write_line(f"{item.nodeid}: {item.title}")
            plan = item.nodeid.split("::")[0]
            for line in describe_failure(item.result.task_id, item.result, plan).splitlines()[1:]:
                terminalreporter.write_line(f"  {line}")

    def totals(self) -> dict[str, Any]:
        """Task counts by status, tokens and cost over the run."""
        by_status: dict[str, int] = {}
        for item in self.finished:
            by_status[item.result.status] = by_status.get(item.result.status, 0) + 1
        results = [f.result for f in self.finished]
        return {
            "tasks": len(results),
            "by_status": by_status,
            "input_tokens": sum(r.usage.input_tokens for r in results),
            "output_tokens": sum(r.usage.output_tokens for r in results),
            "cache_read_tokens": sum(r.usage.cache_read_tokens for r in results),
            "cache_creation_tokens": sum(r.usage.cache_creation_tokens for r in results),
            "tokens": sum(r.tokens for r in results),
            "cost_usd": round(sum(r.cost_usd for r in results), 6),
            "duration_seconds": round(sum(r.duration_seconds for r in results), 3),
        }

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_modifyreport(self, json_report: dict[str, Any]) -> None:
        """Add the run's task totals to the JSON report's summary."""
        if self.finished:
            json_report.setdefault("summary", {})["orchestrator"] = self.totals()

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Close this process's run in the state database; on the controller, export telemetry."""
        close_run(session, exitstatus)
        if not self.finished or xdist.workerinput(self.config) is not None:
            return
        from ..telemetry import export_tasks

        settings = settings_for(self.config)
        warning = export_tasks(self.finished, settings.otlp_endpoint, settings.otlp_timeout)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if warning and reporter is not None:
            reporter.write_line(f"orchestrator: {warning}", yellow=True)
