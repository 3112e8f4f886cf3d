"""The built-in health checks a health run reports, in the order the document lists them.

Written out here rather than imported from `pytest_orchestrator.health.BUILTIN_CHECKS`: the plugin
collects and orders its checks from that tuple, so a test comparing the report with it would
pass whatever the tuple held. This is the contract the tests hold the plugin to.
"""

from __future__ import annotations

CHECKS = (
    "sandbox",
    "claude_code",
    "claude_auth",
    "github_token",
    "orchestrator",
    "zombies",
    "task_backlog",
    "error_rate",
    "last_completion",
)
