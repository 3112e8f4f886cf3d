"""pytest-orchestrator: AI coding agents as pytest items, and a health harness for their sandbox.

The names a plugin or conftest agent needs are importable from here; each is loaded on
first use, so importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "Task": "pytest_orchestrator.plan",
    "TaskResult": "pytest_orchestrator.result",
    "Usage": "pytest_orchestrator.result",
    "DispatchContext": "pytest_orchestrator.dispatch",
    "Sandbox": "pytest_orchestrator.sandbox",
    "SandboxError": "pytest_orchestrator.sandbox",
    "Settings": "pytest_orchestrator.settings",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
