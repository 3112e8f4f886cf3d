"""Ctrl-C and SIGTERM while tasks run: stop the agents, record the attempts, exit 2.

The first signal unwinds the running task, which stops its agent in the sandbox and
records the attempt; a second one, during that cleanup, exits at once. SIGTERM reaches
only an xdist controller, so it passes on to the workers what Ctrl-C would have sent
them. The previous handlers come back when the run ends.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

import pytest

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(int(pytest.ExitCode.INTERRUPTED))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    for sig in _SIGNALS:
        signal.signal(sig, _exit_now)
    raise KeyboardInterrupt


def _interrupt_workers(signum: int, frame: FrameType | None) -> None:
    import psutil

    for child in psutil.Process().children():
        try:
            child.send_signal(signal.SIGINT)
        except psutil.Error:
            pass
    _interrupt(signum, frame)


class Interrupts:
    """The run's signal handlers; a plugin object, so they are restored on unconfigure."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    def _install(self, handlers: dict[int, Any]) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        # Both are saved: the first signal re-arms both of them (_interrupt).
        for sig in _SIGNALS:
            self._previous.setdefault(sig, signal.getsignal(sig))
        for number, handler in handlers.items():
            signal.signal(number, handler)

    def on_controller(self) -> None:
        """An xdist controller: SIGTERM interrupts the workers like Ctrl-C."""
        self._install({signal.SIGTERM: _interrupt_workers})

    def while_dispatching(self) -> None:
        """A process that runs tasks: the first signal interrupts, the second exits."""
        self._install(dict.fromkeys(_SIGNALS, _interrupt))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Put back the handlers that were there before the run."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
