"""The `orchestrator` console script: a thin front over pytest with the plugin's flags."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Run AI coding agents as pytest items, and check the health of their sandbox.",
        epilog="Arguments after the subcommand's own are passed to pytest.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    health = commands.add_parser(
        "health",
        help="check the sandbox, credentials and orchestrator state; print the JSON document",
        description="Check orchestrator health status. Exit 0 healthy or degraded, 1 unhealthy.",
    )
    health.add_argument("--check", action="append", default=[], metavar="NAME", help="run only this check")
    task = commands.add_parser(
        "task",
        help="run one task of a plan with the agent in the sandbox",
        description="Execute a single task from a plan file. Exit 0 when it completed.",
    )
    task.add_argument("plan", metavar="PLAN", help="the plan file, e.g. plans/hello_world.md")
    task.add_argument("task_id", metavar="TASK_ID", help="the task's id, e.g. 1.1")
    task.add_argument(
        "-g",
        "--guidance",
        metavar="TEXT",
        help="guidance for the agent; resumes the task's session",
    )
    return parser


def health_args(check: Sequence[str], extra: Sequence[str]) -> list[str]:
    """The pytest arguments that `orchestrator health` runs."""
    args = ["--orchestrator-health", "-p", "no:cacheprovider", "-q"]
    for name in check:
        args += ["--orchestrator-check", name]
    return args + list(extra)


def task_args(plan: str, task_id: str, guidance: str | None, extra: Sequence[str]) -> list[str]:
    """The pytest arguments that `orchestrator task` runs."""
    args = [f"{plan}::{task_id}", "-p", "no:cacheprovider"]
    if guidance:
        args += ["--orchestrator-guidance", guidance]
    return args + list(extra)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `orchestrator` command."""
    parser = _parser()
    options, extra = parser.parse_known_args(argv)
    import pytest

    if options.command == "health":
        return int(pytest.main(health_args(options.check, extra)))
    if options.command == "task":
        return int(pytest.main(task_args(options.plan, options.task_id, options.guidance, extra)))
    parser.error(f"unknown command {options.command}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":
    sys.exit(main())
