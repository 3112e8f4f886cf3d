"""The numbers of the orchestrator: throughput, latency, errors, cost and resource usage of a window."""

from __future__ import annotations

from .resources import Resources, Sample
from .window import FAILED, FINISHED, HOUR, Window, last_hour, window

__all__ = ["FAILED", "FINISHED", "HOUR", "Resources", "Sample", "Window", "last_hour", "window"]
