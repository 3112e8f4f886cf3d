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
    for name, text in (
        ("watch", "run the watchdog in the foreground: start the components, probe them, restart them"),
        ("up", "start the watchdog in the background; returns once its components are started"),
        ("down", "stop the watchdog and the components it started"),
    ):
        command = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        command.add_argument("--config", metavar="FILE", help="the config file (default orchestrator.yaml)")
    restart = commands.add_parser(
        "restart",
        help="restart a component now; clears FATAL",
        description="Ask the running watchdog to restart a component now, clearing FATAL.",
    )
    restart.add_argument("name", metavar="NAME", help="the component, e.g. sandbox")
    restart.add_argument("--config", metavar="FILE", help="the config file (default orchestrator.yaml)")
    return parser


WATCHDOG_COMMANDS = ("watch", "up", "down", "restart")


def _watchdog_command(options: argparse.Namespace) -> int:
    """`watch`, `up`, `down` and `restart`: plain Python, no pytest."""
    import os
    from pathlib import Path

    from .config_file import ConfigFileError
    from .monitor import service
    from .monitor.config import WatchdogSpec, watchdog_spec
    from .project import sources_for_project
    from .settings import ConfigError, resolve

    cwd = Path.cwd()

    def load() -> tuple[Path, float, WatchdogSpec]:
        sources = sources_for_project(cwd, {}, os.environ, options.config)
        settings = resolve(sources)
        return (
            settings.state_dir,
            settings.docker_timeout,
            watchdog_spec(sources.file, settings.sandbox, sources.root),
        )

    try:
        state_dir, docker_timeout, spec = load()
        if options.command == "watch":
            from .monitor.watchdog import Watchdog

            service.claim(state_dir)
            try:
                Watchdog(spec, state_dir, docker_timeout, load=lambda: load()[2]).run()
            finally:
                service.release(state_dir)
            return 0
        if options.command == "up":
            command = [sys.executable, "-m", "pytest_orchestrator", "watch"]
            if options.config:
                command += ["--config", str(Path(options.config).resolve())]
            pid, started = service.up(state_dir, command, cwd)
            print(f"watchdog {'started' if started else 'already running'} (pid {pid})")
            return 0
        if options.command == "down":
            stopped = service.down(state_dir, timeout=spec.stop_timeout * 2 + 10)
            print(f"watchdog stopped (pid {stopped})" if stopped else "no watchdog is running here")
            return 0
        service.request_restart(state_dir, options.name)
        print(f"restart of {options.name} requested")
        return 0
    except (ConfigError, ConfigFileError, service.ServiceError) as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, service.ServiceError) else 1


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
    if options.command in WATCHDOG_COMMANDS:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return _watchdog_command(options)
    import pytest

    if options.command == "health":
        return int(pytest.main(health_args(options.check, extra)))
    if options.command == "task":
        return int(pytest.main(task_args(options.plan, options.task_id, options.guidance, extra)))
    parser.error(f"unknown command {options.command}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":
    sys.exit(main())
