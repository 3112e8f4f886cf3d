"""Hookspecs of pytest-orchestrator; added by `pytest_addhooks`, so they exist in every run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..crashes.bugs import Bug
    from ..dispatch import DispatchContext
    from ..plan import Task
    from ..result import TaskResult
    from ..sandbox import Sandbox


# ---- task dispatch ----


@pytest.hookspec(firstresult=True)
def pytest_orchestrator_dispatch(
    task: Task, sandbox: Sandbox, config: pytest.Config, context: DispatchContext
) -> TaskResult | None:
    """Run `task` with an agent in `sandbox` and return its TaskResult; the first non-None result wins.

    `context` carries the settings, the guidance, the session to resume, the event
    callback and the dispatch id; processes started through `sandbox` carry that id.
    """


def pytest_orchestrator_task_finished(task: Task, result: TaskResult, config: pytest.Config) -> None:
    """Called with each finished task result, on the process that ran the task."""


# ---- the health monitor ----


@pytest.hookspec(firstresult=True)
def pytest_orchestrator_report_bug(bug: Bug, config: pytest.Config) -> str | None:
    """Send on a bug report, already written to its BUG-NNN.md file; return where it went (a URL).

    The first non-None result wins. The built-in implementation files a GitHub issue when
    `monitor.bug_tracker` says so, and otherwise leaves the report in its file.
    """
