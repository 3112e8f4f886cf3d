"""The pytest11 entry point: options, fixtures, and the wiring of hooks. No domain logic here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from . import config as settings_mod
from .health import BUILTIN_CHECKS

if TYPE_CHECKING:
    from .harness import CheckRecord
    from .sandbox import Sandbox, SandboxProbe
    from .state import StateStore

SETTINGS = pytest.StashKey["settings_mod.Settings"]()
HARNESS = pytest.StashKey["object"]()
LOADGROUP_INPUT = "orchestrator_loadgroup"


# ---- options and hooks ----


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the orchestrator's hookspecs (dispatch, task finished)."""
    from . import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --orchestrator-health and every orchestrator setting."""
    group = parser.getgroup("orchestrator", "orchestrator (AI coding agents and their sandbox)")
    group.addoption(
        "--orchestrator-health",
        action="store_true",
        default=False,
        help="run the health checks and print the JSON health document on stdout "
        "(exit 0 healthy or degraded, 1 unhealthy)",
    )
    group.addoption(
        "--orchestrator-check",
        action="append",
        default=[],
        metavar="NAME",
        help="with --orchestrator-health, run only this check (repeatable)",
    )
    group.addoption(
        "--orchestrator-rerun",
        action="store_true",
        default=False,
        help="dispatch the selected tasks even when an earlier run completed them",
    )
    group.addoption(
        "--orchestrator-dry-run",
        action="store_true",
        default=False,
        help="collect and resolve order, resume and budget; print what would be dispatched, start no agent",
    )
    settings_mod.add_options(parser)


def settings_for(config: pytest.Config) -> settings_mod.Settings:
    """The run's resolved settings; a bad value is a usage error naming its origin."""
    if SETTINGS not in config.stash:
        try:
            config.stash[SETTINGS] = settings_mod.resolve(config)
        except settings_mod.ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[SETTINGS]


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers; in health mode, resolve settings up front and start the harness."""
    config.addinivalue_line(
        "markers",
        "check(level='error'): a health check; failures of level='warning' checks only "
        "degrade the health status",
    )
    for name in BUILTIN_CHECKS:
        config.addinivalue_line("markers", f"{name}: the {name} health check")
    config.addinivalue_line("markers", "task: a plan task, dispatched to the agent")
    config.addinivalue_line("markers", "parallel: a plan task marked [P], which may run in parallel")
    from .claude import ClaudeCodeAgent
    from .taskrun import TaskRun

    config.pluginmanager.register(ClaudeCodeAgent(), "orchestrator-claude-code")
    config.pluginmanager.register(TaskRun(config), "orchestrator-tasks")
    from .tasks import uses_plans

    if uses_plans(config, lambda: _plan_dirs(config)):
        # Resolved now so a bad value is one usage error here, not a crash on each worker.
        settings_for(config)
        if config.getoption("dist", "no") == "load":
            # Each plan is an xdist group, so one worker runs a plan's tasks in order while
            # other workers run other plans.
            config.option.dist = "loadgroup"
        if config.getoption("dist", "no") != "no" and getattr(config, "workerinput", None) is None:
            from .runner import install_controller_signal_handlers

            install_controller_signal_handlers()
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get(LOADGROUP_INPUT):
        # A worker parses the command line again, where the switch above is not, and only
        # names its items by group (what the scheduler groups by) when it sees loadgroup.
        config.option.loadgroup = True
    if config.getoption("orchestrator_health"):
        from .harness import HealthHarness

        harness = HealthHarness(config, settings_for(config), config.getoption("orchestrator_check"))
        config.stash[HARNESS] = harness
        config.pluginmanager.register(harness, "orchestrator-health")
    elif config.getoption("orchestrator_check"):
        raise pytest.UsageError("--orchestrator-check needs --orchestrator-health")


# ---- collection ----


def pytest_collection(session: pytest.Session) -> bool | None:
    """In health mode, collect the check modules instead of the usual test paths."""
    harness = session.config.stash.get(HARNESS, None)
    if harness is None:
        return None
    harness.collect(session)  # type: ignore[attr-defined]
    return True


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect markdown plans named on the command line or found under a plan directory."""
    if file_path.suffix.lower() != ".md":
        return None
    from .tasks import PlanFile, is_plan

    config = parent.config
    if is_plan(file_path, parent.session, lambda: _plan_dirs(config)):
        return PlanFile.from_parent(parent, path=file_path)
    return None


def _plan_dirs(config: pytest.Config) -> tuple[Path, ...]:
    # A bad setting must not turn into a collection traceback; it is reported once, as a
    # usage error, when tasks were collected (pytest_collection_modifyitems).
    try:
        return settings_for(config).plan_dirs
    except pytest.UsageError:
        return (config.rootpath / "plans",)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate the settings before any task is dispatched, and bound each task's time."""
    from .tasks import TaskItem, bound_task_time, timeout_configured

    if not any(isinstance(item, TaskItem) for item in items):
        return
    settings = settings_for(config)
    if not timeout_configured(config):
        bound_task_time(items, settings.task_timeout)


# ---- pytest-xdist ----


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: object) -> None:
    """Give each xdist worker the run key and the dist mode the controller switched to."""
    from .runner import RUN_KEY_INPUT, run_key

    node.workerinput[RUN_KEY_INPUT] = run_key(node.config)  # type: ignore[attr-defined]
    node.workerinput[LOADGROUP_INPUT] = node.config.getoption("dist") == "loadgroup"  # type: ignore[attr-defined]


# ---- fixtures ----


@pytest.fixture(scope="session")
def orchestrator_settings(pytestconfig: pytest.Config) -> settings_mod.Settings:
    """The resolved orchestrator settings (flag > ORCHESTRATOR_* env > ini > default)."""
    return settings_for(pytestconfig)


@pytest.fixture(scope="session")
def sandbox_probe(orchestrator_settings: settings_mod.Settings) -> SandboxProbe:
    """What the Docker engine says about the sandbox container; never skips or raises."""
    from .sandbox import probe

    return probe(orchestrator_settings.sandbox, orchestrator_settings.docker_timeout)


@pytest.fixture(scope="session")
def sandbox(sandbox_probe: SandboxProbe, orchestrator_settings: settings_mod.Settings) -> Sandbox:
    """The running sandbox container; skips the requesting item when it is not running."""
    from .health import SANDBOX_DOWN
    from .sandbox import Sandbox

    if not sandbox_probe.running:
        pytest.skip(SANDBOX_DOWN)
    return Sandbox(sandbox_probe.container, orchestrator_settings.docker_timeout)


@pytest.fixture(scope="session")
def orchestrator_state(orchestrator_settings: settings_mod.Settings) -> Iterator[StateStore | None]:
    """The state database, read-only; None when no run has written state yet."""
    from .state import StateError, StateStore

    try:
        store = StateStore.read(orchestrator_settings.state_dir)
    except StateError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield store
    if store is not None:
        store.close()


@pytest.fixture
def check(request: pytest.FixtureRequest) -> CheckRecord:
    """The running check's record: `check.ok(message)` and `check.fail(message)`."""
    from .collect import CHECK_NAME
    from .harness import CHECK_RECORD, CheckRecord

    record = CheckRecord(request.node.stash.get(CHECK_NAME, request.node.name))
    request.node.stash[CHECK_RECORD] = record
    return record
