"""The sandbox container exists and is running."""

from __future__ import annotations


def check_sandbox(sandbox_probe, check):
    """The sandbox container exists and is running."""
    if not sandbox_probe.running:
        check.fail(sandbox_probe.message)
    check.ok(sandbox_probe.message)
