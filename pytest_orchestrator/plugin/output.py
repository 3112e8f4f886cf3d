"""Lines on the terminal while a task runs."""

from __future__ import annotations

import pytest


def write_now(config: pytest.Config, text: str) -> None:
    """A line on the terminal while a task runs, past pytest's output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(text)
    else:
        reporter.write_line(text)
