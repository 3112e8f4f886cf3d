"""The plugin object behind `--orchestrator-health`: collect the checks, build and print the document."""

from __future__ import annotations

import json
import sys
from collections.abc import Generator
from typing import Any

import pytest

from . import collect
from .config import Settings
from .health import CheckResult, HealthReport, merge
from .redact import redact

# The attribute crosses pytest-xdist with the report, so the controller sees what workers found.
REPORT_ATTR = "orchestrator_check"
USAGE_ERROR_KEY = "orchestrator_usage_error"


class CheckRecord:
    """What a check says about itself; the `check` fixture hands it to the check function."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.message = ""

    def ok(self, message: str) -> None:
        """Record the message shown when the check passes."""
        self.message = message

    def fail(self, message: str) -> None:
        """End the check as failed with an actionable message (no traceback)."""
        pytest.fail(redact(message), pytrace=False)


CHECK_RECORD = pytest.StashKey[CheckRecord]()


def _message(call: pytest.CallInfo[None], record: CheckRecord | None) -> str:
    if call.excinfo is None:
        return redact(record.message) if record and record.message else ""
    exc = call.excinfo.value
    if isinstance(exc, pytest.skip.Exception | pytest.fail.Exception):
        text = exc.msg or ""
    else:
        first = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__
    return redact(text)


def phase_result(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> dict[str, Any]:
    """The JSON-safe result of one phase of a check, to attach to its report."""
    status = "ok" if report.passed else "skipped" if report.skipped else "failed"
    return {
        "check_name": item.stash[collect.CHECK_NAME],
        "status": status,
        "message": _message(call, item.stash.get(CHECK_RECORD, None)),
        "level": collect.check_level(item),
        "duration": report.duration,
        "start": call.start,
        "stop": call.stop,
    }


def _redact_longrepr(report: pytest.TestReport) -> None:
    # A check's failure text can quote what it inspected; pytest prints it on the terminal.
    if report.failed and report.longrepr is not None:
        text = str(report.longrepr)
        masked = redact(text)
        if masked != text:
            report.longrepr = masked
    elif report.skipped and isinstance(report.longrepr, tuple):
        path, lineno, reason = report.longrepr
        report.longrepr = (path, lineno, redact(reason))


class HealthHarness:
    """Runs the health checks as pytest items and turns their reports into the health document."""

    def __init__(self, config: pytest.Config, settings: Settings, selected: list[str]) -> None:
        self.config = config
        self.settings = settings
        self.selected = selected
        self.results: list[CheckResult] = []
        self.session: pytest.Session | None = None
        self.usage_error: str | None = None
        self._report: HealthReport | None = None

    # ---- collection (workers and single-process runs) ----

    def collect(self, session: pytest.Session) -> None:
        """Collect the checks; on an xdist worker a usage error travels to the controller."""
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is None:
            self._collect(session)
            return
        try:
            self._collect(session)
        except pytest.UsageError as exc:
            # Raised here it would only kill the worker; the controller reports it instead.
            workeroutput[USAGE_ERROR_KEY] = str(exc)
            session.items = []
            self.config.hook.pytest_collection_finish(session=session)

    def _collect(self, session: pytest.Session) -> None:
        if self.config.args and self.config.args_source is pytest.Config.ArgsSource.ARGS:
            raise pytest.UsageError(
                "--orchestrator-health runs the health checks and takes no paths; "
                "add your own checks with --orchestrator-check-paths"
            )
        files = collect.check_files(
            self.settings.check_paths, self.settings.origin.get("check_paths", "default")
        )
        items = collect.collect_checks(session, files)
        known = [item.stash[collect.CHECK_NAME] for item in items]
        unknown = [name for name in self.selected if name not in known]
        if unknown:
            raise pytest.UsageError(
                f"unknown check {', '.join(map(repr, unknown))}; known checks: {', '.join(known)}"
            )
        if self.selected:
            kept = [i for i in items if i.stash[collect.CHECK_NAME] in self.selected]
            dropped = [i for i in items if i not in kept]
            if dropped:
                self.config.hook.pytest_deselected(items=dropped)
            items = kept
        session.items = items
        self.config.hook.pytest_collection_modifyitems(session=session, config=self.config, items=items)
        if known and not items and not session.testsfailed:
            selection = " ".join(
                f"{flag} {value!r}"
                for flag, value in (
                    ("-k", self.config.option.keyword),
                    ("-m", self.config.option.markexpr),
                )
                if value
            )
            raise pytest.UsageError(
                f"no check matches {selection or 'the selection'}; known checks: {', '.join(known)}"
            )
        self.config.hook.pytest_collection_finish(session=session)
        session.testscollected = len(items)

    # ---- running (workers and single-process runs) ----

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Send pytest's own terminal output to stderr: stdout carries only the document."""
        self.session = session
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            # TerminalReporter has no public way to change its stream after creation;
            # every plugin holds this same reporter, so swapping its writer moves them all.
            reporter._tw = pytest.TerminalReporter(self.config, sys.stderr)._tw

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Attach the check's result to each phase's report."""
        report: pytest.TestReport = yield
        if collect.CHECK_NAME in item.stash:
            setattr(report, REPORT_ATTR, phase_result(item, call, report))
            _redact_longrepr(report)
        return report

    # ---- the controller ----

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Gather check results; a failed warning-level check does not fail the run."""
        data = getattr(report, REPORT_ATTR, None)
        if not data:
            return
        self.results.append(CheckResult(**data))
        if report.failed and data["level"] == "warning":
            # pytest's exit code counts failed reports; a degraded run must still exit 0.
            if self.session is not None:
                self.session.testsfailed -= 1

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Pick up a usage error found by an xdist worker."""
        message = getattr(node, "workeroutput", {}).get(USAGE_ERROR_KEY)
        if message:
            self.usage_error = message

    @property
    def report(self) -> HealthReport:
        """The health document's data, built once from the gathered results."""
        if self._report is None:
            self._report = HealthReport(checks=merge(self.results))
        return self._report

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_modifyreport(self, json_report: dict[str, Any]) -> None:
        """Embed the health document in pytest-json-report's report."""
        json_report["health"] = self.report.to_dict()

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Print the document on stdout and export telemetry, once the checks have run."""
        if self.usage_error:
            sys.stderr.write(f"ERROR: {self.usage_error}\n")
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            return
        if self.config.option.collectonly:
            # Nothing was checked, so there is no health to report.
            return
        if getattr(self.config, "workerinput", None) is not None:
            return
        from .telemetry import export_health

        warning = export_health(self.report, self.settings)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if warning and reporter is not None:
            reporter.write_line(f"orchestrator: {warning}", yellow=True)
        sys.stdout.write(json.dumps(self.report.to_dict(), indent=2) + "\n")
        sys.stdout.flush()
