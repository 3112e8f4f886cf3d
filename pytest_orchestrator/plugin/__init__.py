"""The pytest11 entry point: options, hookspecs, and the wiring of the modes. No domain logic here.

Everything that needs pytest lives in this package, one job per module:

- `options`: the flags and ini keys, and the settings they resolve to;
- `hookspecs`: the dispatch and task-finished hooks;
- `fixtures`: `orchestrator_settings`, `sandbox_probe`, `sandbox`, `orchestrator_state`, `check`;
- `checks` and `health`: health mode, from check modules to the document on stdout;
- `items`, `dispatch` and `reporting`: plan files, the dispatch of a task item, its report;
- `interrupts`: Ctrl-C and SIGTERM while tasks run; `xdist`: what comes from pytest-xdist;
- `loop`: `--orchestrator-loop`, its rounds, their heartbeat and the queue;
- `notify`: when the webhook notifications go out.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from ..health import BUILTIN_CHECKS
from . import xdist
from .options import add_options, settings_for

pytest_plugins = [
    "pytest_orchestrator.plugin.fixtures",
    "pytest_orchestrator.plugin.health",
    "pytest_orchestrator.plugin.loop",
    "pytest_orchestrator.plugin.timeouts",
]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the orchestrator's hookspecs (dispatch, task finished)."""
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --orchestrator-health and every orchestrator setting."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and the task plugins; with plans in play, settle settings and xdist."""
    config.addinivalue_line(
        "markers",
        "check(level='error'): a health check; failures of level='warning' checks only "
        "degrade the health status",
    )
    for name in BUILTIN_CHECKS:
        config.addinivalue_line("markers", f"{name}: the {name} health check")
    config.addinivalue_line("markers", "task: a plan task, dispatched to the agent")
    config.addinivalue_line("markers", "parallel: a plan task marked [P], which may run in parallel")
    if config.getoption("orchestrator_check") and not config.getoption("orchestrator_health"):
        raise pytest.UsageError("--orchestrator-check needs --orchestrator-health")

    from .bugs import BuiltinTracker, monitor_for
    from .dispatch import INTERRUPTS, ClaudeCodeAgent
    from .interrupts import Interrupts
    from .items import uses_plans
    from .notify import Notifications, notify_spec_for
    from .reporting import TaskRun

    # Plans may be collected from a file named on the command line at any time, so the
    # task plugins are always there; they cost nothing until a task item runs.
    config.pluginmanager.register(ClaudeCodeAgent(), "orchestrator-claude-code")
    config.pluginmanager.register(BuiltinTracker(), "orchestrator-bug-tracker")
    config.pluginmanager.register(TaskRun(config), "orchestrator-tasks")
    config.pluginmanager.register(Notifications(config), "orchestrator-notifications")
    interrupts = Interrupts()
    config.pluginmanager.register(interrupts, "orchestrator-interrupts")
    config.stash[INTERRUPTS] = interrupts
    if uses_plans(config):
        # Resolved now so a bad value is one usage error here, not a crash on each worker.
        settings_for(config)
        monitor_for(config)
        notify_spec_for(config)
        xdist.group_by_plan(config)
        xdist.check_engines(config)
        if xdist.is_controller(config):
            interrupts.on_controller()
        # Everything imported so far lives as long as the process. Freezing it keeps the
        # collector from walking pytest's and the plugins' objects again, which at the end
        # of a run with -n costs each worker its share of two cores (measured with
        # tests/bench/bench_parallel.py). A worker ends with its process; elsewhere the
        # objects are handed back to the collector when pytest unconfigures.
        gc.freeze()
        if xdist.workerinput(config) is None:
            config.add_cleanup(gc.unfreeze)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect markdown plans named on the command line or found under a plan directory."""
    if file_path.suffix.lower() != ".md":
        return None
    from .items import PlanFile, is_plan

    if is_plan(file_path, parent.session):
        return PlanFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate the settings before any task is dispatched, and bound each task's time."""
    from .items import TaskItem
    from .timeouts import bound_task_time, timeout_configured

    if not any(isinstance(item, TaskItem) for item in items):
        return
    settings = settings_for(config)
    if not timeout_configured(config):
        bound_task_time(items, settings.task_timeout)
