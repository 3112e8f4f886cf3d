"""A task's time limit: pytest-timeout's marker on each task, and a timer that stops the task
without a thread dump.

pytest-timeout's own timer dumps every thread's stack and fails the item with its own exception,
which leaves a task without its result in the report. Its `pytest_timeout_set_timer` hook lets a
plugin replace the timer: ours raises `TaskTimeout` into the dispatch, which stops the agent,
records the attempt and reports the task as TIMEOUT like any other outcome.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

import pytest

_CANCEL = pytest.StashKey["Any"]()


def timeout_configured(config: pytest.Config) -> bool:
    """Whether the user set pytest-timeout's timeout, which then wins over task_timeout."""
    try:
        given = config.getoption("timeout", default=None)
        ini = config.getini("timeout")
    except ValueError:
        return True
    return given is not None or bool(ini) or "PYTEST_TIMEOUT" in os.environ


def bound_task_time(items: list[pytest.Item], seconds: float) -> None:
    """Give each task a pytest-timeout marker of `seconds`, unless it has its own."""
    from .items import TaskItem

    # One marker shared by every item: a plan of ten thousand tasks need not build ten thousand.
    marker = pytest.mark.timeout(seconds)
    for item in items:
        if isinstance(item, TaskItem) and item.get_closest_marker("timeout") is None:
            item.add_marker(marker)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Time a task with a SIGALRM that raises TaskTimeout; other items keep pytest-timeout's timer."""
    from ..dispatch import TaskTimeout
    from .items import TaskItem

    # The thread method ends the whole process by design; a user who chose it keeps it.
    if (
        not isinstance(item, TaskItem)
        or settings.method != "signal"
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    seconds = float(settings.timeout)

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TaskTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, expire)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    item.stash[_CANCEL] = cancel
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return True


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    """Stop the task's timer, when it was ours."""
    cancel = item.stash.get(_CANCEL, None)
    if cancel is None:
        return None
    del item.stash[_CANCEL]
    cancel()
    return True
