"""pytest-orchestrator: AI coding agents as pytest items, and a health harness for their sandbox."""

from __future__ import annotations

__version__ = "0.1.0"
