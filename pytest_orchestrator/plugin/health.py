"""Health mode (`--orchestrator-health`): collect the checks, build and print the document.

stdout carries the document and nothing else: from the start of pytest's configuration
(when its terminal reporter is made) to the start of the session, `sys.stdout` points at
stderr, so pytest's own report goes there; the document goes to the real stdout at the end.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Generator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

from ..health import CheckResult, HealthReport, merge
from ..redact import redact
from ..settings import Settings
from . import checks, xdist
from .options import config_file, settings_for

if TYPE_CHECKING:
    from ..crashes.config import MonitorSpec
    from ..health.monitor import MonitorReading
    from ..monitor.config import ComponentSpec, ProbeSpec

# The attribute crosses pytest-xdist with the report, so the controller sees what workers found.
REPORT_ATTR = "orchestrator_check"
USAGE_ERROR_KEY = "orchestrator_usage_error"
# The check whose subject is the orchestrator's state: the document's `issues` and `metrics`,
# and the `critical` status, come with it (`-k sandbox` asks about the sandbox alone).
MONITOR_CHECK = "orchestrator"
# How long the health history's write waits for another writer's lock.
HISTORY_WAIT = 5.0


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """In health mode, start the harness; pytest then makes its terminal reporter on stderr."""
    if not config.getoption("orchestrator_health"):
        return
    from .bugs import monitor_for
    from .fixtures import health_thresholds_for
    from .notify import notify_spec_for

    harness = HealthHarness(config, settings_for(config), config.getoption("orchestrator_check"), sys.stdout)
    harness.monitor_spec = monitor_for(config)
    # Resolved now: a bad threshold or notifications section is one usage error, not a
    # failure of each check.
    health_thresholds_for(config)
    notify_spec_for(config)
    config.pluginmanager.register(harness, "orchestrator-health")
    sys.stdout = sys.stderr


def _message(call: pytest.CallInfo[None], record: checks.CheckRecord | None) -> str:
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
    record = item.stash.get(checks.CHECK_RECORD, None)
    return {
        "check_name": item.stash[checks.CHECK_NAME],
        "status": status,
        "message": _message(call, record),
        "level": (record.level if record else None) or checks.check_level(item),
        "metrics": dict(record.metrics) if record else {},
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

    def __init__(
        self, config: pytest.Config, settings: Settings, selected: list[str], stdout: IO[str]
    ) -> None:
        self.config = config
        self.settings = settings
        self.selected = selected
        self.stdout = stdout
        self.results: list[CheckResult] = []
        self.known: list[str] = []
        self.files: list[Path] | None = None
        self.probes: list[tuple[ComponentSpec, ProbeSpec]] = []
        self.failures = 0
        self.usage_error: str | None = None
        self.monitor_spec: MonitorSpec | None = None
        # What the monitor read from the state, for the document and the history row.
        self.reading: MonitorReading | None = None
        self._report: HealthReport | None = None

    def _usage_error(self, exc: pytest.UsageError) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is None:
            raise exc
        # Raised on a worker it would only kill the worker; the controller reports it instead.
        workeroutput[USAGE_ERROR_KEY] = str(exc)

    def _restore_stdout(self) -> None:
        sys.stdout = self.stdout

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """pytest's terminal reporter exists now, on stderr: stdout is the document's again."""
        self._restore_stdout()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Put stdout back also when the run ended before its session started."""
        self._restore_stdout()

    # ---- collection (workers and single-process runs) ----

    def pytest_collection(self, session: pytest.Session) -> bool | None:
        """Collect the check modules in place of the usual test paths."""
        if xdist.is_controller(self.config):
            return None
        try:
            if self.config.args and self.config.args_source is pytest.Config.ArgsSource.ARGS:
                raise pytest.UsageError(
                    "--orchestrator-health runs the health checks and takes no paths; "
                    "add your own checks with --orchestrator-check-paths"
                )
            self.files = checks.check_files(
                self.settings.check_paths, self.settings.origin.get("check_paths", "default")
            )
            self.probes = checks.configured_probes(config_file(self.config), self.settings)
        except pytest.UsageError as exc:
            self._usage_error(exc)
            self.files = []
        session.perform_collect([str(self.config.rootpath)])
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_collect_directory(self, path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        """The rootdir, in health mode, is the collector of the check modules."""
        if self.files is None or not isinstance(parent, pytest.Session) or path != self.config.rootpath:
            return None
        return checks.HealthChecks.from_parent(
            parent, path=path, files=self.files, probes=self.probes, state_dir=self.settings.state_dir
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """Name and mark the checks before -k and -m look at them; apply --orchestrator-check."""
        try:
            self.known = checks.mark_checks(items)
            unknown = [name for name in self.selected if name not in self.known]
            if unknown:
                raise pytest.UsageError(
                    f"unknown check {', '.join(map(repr, unknown))}; known checks: {', '.join(self.known)}"
                )
        except pytest.UsageError as exc:
            self._usage_error(exc)
            self.known = []
            items[:] = []
            return
        if self.selected:
            kept = [i for i in items if i.stash[checks.CHECK_NAME] in self.selected]
            dropped = [i for i in items if i not in kept]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """A selection that leaves no check is a usage error, not a healthy run."""
        if not self.known or session.items or session.testsfailed:
            return
        selection = " ".join(
            f"{flag} {value!r}"
            for flag, value in (("-k", self.config.option.keyword), ("-m", self.config.option.markexpr))
            if value
        )
        self._usage_error(
            pytest.UsageError(
                f"no check matches {selection or 'the selection'}; known checks: {', '.join(self.known)}"
            )
        )

    # ---- running (workers and single-process runs) ----

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Attach the check's result to each phase's report."""
        report: pytest.TestReport = yield
        if checks.CHECK_NAME in item.stash:
            setattr(report, REPORT_ATTR, phase_result(item, call, report))
            _redact_longrepr(report)
        return report

    # ---- the controller ----

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Gather check results; count the failures that make the run unhealthy."""
        data = getattr(report, REPORT_ATTR, None)
        if data:
            self.results.append(CheckResult(**data))
        if report.failed and not (data and data["level"] == "warning"):
            self.failures += 1

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Pick up a usage error found by an xdist worker."""
        message = getattr(node, "workeroutput", {}).get(USAGE_ERROR_KEY)
        if message:
            self.usage_error = message

    @property
    def report(self) -> HealthReport:
        """The health document's data, built once from the gathered results and the monitor's reading."""
        if self._report is None:
            results = merge(self.results)
            self.reading = self._read_monitor(results)
            monitored = self.reading if MONITOR_CHECK in results else None
            self._report = HealthReport(checks=results, monitor=monitored)
        return self._report

    def _read_monitor(self, results: dict[str, CheckResult]) -> MonitorReading | None:
        """Crashes, the loop, active agents from the state; zombies from the check that counted them."""
        from ..health.monitor import read_monitor
        from ..state import StateError, StateStore

        spec = self.monitor_spec
        if spec is None or self._on_worker:
            return None
        try:
            store = StateStore.read(self.settings.state_dir)
        except StateError as exc:
            self._warn(f"the monitor cannot read the state: {exc}")
            return None
        try:
            reading = read_monitor(
                store,
                freeze_threshold=self.settings.freeze_threshold,
                critical_crashes_per_hour=spec.critical_crashes_per_hour,
            )
        except sqlite3.Error as exc:
            self._warn(f"the monitor cannot read the state: {exc}")
            return None
        finally:
            if store is not None:
                store.close()
        for result in results.values():
            count = result.metrics.get("zombie_processes")
            if count is not None and result.status != "skipped":
                reading.add_zombies(int(count), self.settings.sandbox, result.message)
        return reading

    def _warn(self, line: str, *, warning: bool = True) -> None:
        text = f"orchestrator: {'warning: ' if warning else ''}{redact(line)}"
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(text, yellow=warning)
        else:
            sys.stderr.write(text + "\n")

    def _record_history(self) -> None:
        """Append this run to the health history; a state that cannot take it costs one warning line."""
        from ..crashes.config import MonitorSpec
        from ..health.history import record, row_for, trim
        from ..state import DB_NAME, StateError, StateStore

        directory = self.settings.state_dir
        if not (directory / DB_NAME).exists():
            # A health run reads the state; it does not create one where nothing has run yet.
            self._warn(f"health history not recorded: no state database in {directory} yet", warning=False)
            return
        try:
            store = StateStore.open(directory, wait=HISTORY_WAIT)
        except StateError as exc:
            self._warn(f"health history not recorded: {exc}")
            return
        row = row_for(self.report, self.reading)
        retention = (self.monitor_spec or MonitorSpec()).retention_days * 86_400
        try:
            record(store, row)
            # The history this run adds to is kept for the monitor's retention, like the watchdog's.
            trim(store, row.at - retention)
        except StateError as exc:
            self._warn(f"health history not recorded: {exc}")
        finally:
            store.close()

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_modifyreport(self, json_report: dict[str, Any]) -> None:
        """Embed the health document in pytest-json-report's report."""
        json_report["health"] = self.report.to_dict()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
        """Set the exit status from the document before anyone reports it; then print the document.

        A failed warning-level check only degrades the health, so a degraded run exits 0; an
        unhealthy or critical one exits 1, and the document's status tells those two apart.
        """
        if self.usage_error:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
        elif exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not self._on_worker:
            critical = not self.config.option.collectonly and self.report.status == "critical"
            failed = self.failures or critical
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if failed else pytest.ExitCode.OK
        try:
            return (yield)
        finally:
            self._finish(exitstatus)

    @property
    def _on_worker(self) -> bool:
        return xdist.workerinput(self.config) is not None

    def _finish(self, exitstatus: int) -> None:
        if self.usage_error:
            sys.stderr.write(f"ERROR: {self.usage_error}\n")
            return
        if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or self._on_worker:
            return
        if self.config.option.collectonly:
            # Nothing was checked, so there is no health to report.
            return
        from ..telemetry import export_health

        warning = export_health(self.report, self.settings.otlp_endpoint, self.settings.otlp_timeout)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if warning and reporter is not None:
            reporter.write_line(f"orchestrator: {warning}", yellow=True)
        if self.report.monitor is not None and reporter is not None:
            for reason in self.report.monitor.critical:
                reporter.write_line(f"orchestrator: critical: {redact(reason)}", red=True)
        self.stdout.write(json.dumps(self.report.to_dict(), indent=2) + "\n")
        self.stdout.flush()
        self._record_history()
        from .notify import notify_health

        notify_health(self.config, self.report)
