"""The `orchestrator` console script: a thin front over pytest with the plugin's flags."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

CONFIG_HELP = "the config file (env ORCHESTRATOR_CONFIG, default orchestrator.yaml in the project root)"


def _os_error(exc: OSError) -> int:
    """A file or process the command could not use: one line, exit 1."""
    where = f" {exc.filename}" if exc.filename else ""
    print(f"orchestrator: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
    return 1


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
        description="Check orchestrator health status. Exit 0 healthy or degraded, 1 unhealthy or critical.",
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
        command.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    restart = commands.add_parser(
        "restart",
        help="restart a component now; clears FATAL",
        description="Ask the running watchdog to restart a component now, clearing FATAL.",
    )
    restart.add_argument("name", metavar="NAME", help="the component, e.g. sandbox")
    restart.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    _add_views(commands)
    return parser


WATCHDOG_COMMANDS = ("watch", "up", "down", "restart")
VIEW_COMMANDS = ("status", "logs", "crashes")


def _watchdog_command(options: argparse.Namespace) -> int:
    """`watch`, `up`, `down` and `restart`: plain Python, no pytest."""
    from pathlib import Path

    from .config_file import ConfigFileError
    from .monitor import service
    from .monitor.config import WatchdogSpec, watchdog_spec
    from .project import sources_for_project
    from .settings import ConfigError, resolve
    from .state import StateError

    cwd = Path.cwd()

    def load() -> tuple[Path, float, WatchdogSpec]:
        sources = sources_for_project(cwd, {}, os.environ, options.config)
        settings = resolve(sources)
        return (
            settings.state_dir,
            settings.docker_timeout,
            watchdog_spec(sources.file, settings.sandbox, sources.root, settings.freeze_threshold),
        )

    try:
        state_dir, docker_timeout, spec = load()
        if options.command in ("watch", "up") and service.running(state_dir) is None:
            from .monitor.config import preflight

            problems = preflight(spec)
            if problems:
                for problem in problems:
                    print(f"orchestrator: {problem}", file=sys.stderr)
                return 2
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
    except (ConfigError, ConfigFileError) as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    except (service.ServiceError, StateError) as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        return _os_error(exc)


def _add_views(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="the watchdog and each component as last recorded, with their health",
        description="Show the watchdog and its components. Exit 0 when every component is running "
        "and healthy, 1 otherwise (also when no watchdog has run here), 2 for a bad setting.",
    )
    status.add_argument("-v", "--verbose", action="store_true", help="add each probe's last result")
    status.add_argument("--json", action="store_true", help="print a JSON document instead")
    status.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    logs = commands.add_parser(
        "logs",
        help="the last lines of the watchdog's and the components' logs, or follow them",
        description="Show logs: one component's, several interleaved by time (`name | line`), "
        "or all of them (the default without NAME). Secrets are masked.",
    )
    logs.add_argument("names", nargs="*", metavar="NAME", help="a component, or `watchdog`")
    logs.add_argument("--all", action="store_true", help="every log, interleaved by time")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")
    logs.add_argument(
        "-n", "--lines", type=_line_count, default=50, metavar="N", help="lines of each log (default 50)"
    )
    logs.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    crashes = commands.add_parser(
        "crashes",
        help="the crashes of a time window grouped by fingerprint, with counts and a sample",
        description="Show the recorded crashes since a time, grouped by fingerprint, the most recently "
        "seen first. Exit 0 (also when nothing has crashed, or no state exists yet), 2 for bad input.",
    )
    crashes.add_argument(
        "--since",
        type=_since,
        default="24h",
        metavar="WHEN",
        help="the window's start: a time span back from now (90s, 30m, 24h, 7d) or an ISO date/time "
        "(default 24h)",
    )
    crashes.add_argument("--json", action="store_true", help="print a JSON document instead")
    crashes.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def _since(raw: str) -> float:
    from .views.crashes import parse_since

    try:
        return parse_since(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _line_count(raw: str) -> int:
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, not {raw!r}")
    return int(raw)


def _view(options: argparse.Namespace) -> int:
    """Run a read-only view of the state; they never import pytest, so they start fast."""
    from pathlib import Path

    from .config_file import ConfigFileError
    from .project import settings_for_project
    from .settings import ConfigError
    from .state import StateError

    try:
        settings = settings_for_project(Path.cwd(), config=options.config)
        if options.command == "status":
            from .views import status

            return status.show(
                settings.state_dir,
                sys.stdout,
                sys.stderr,
                os.environ,
                verbose=options.verbose,
                as_json=options.json,
            )
        if options.command == "crashes":
            from .views import crashes

            return crashes.show(
                settings.state_dir, options.since, sys.stdout, sys.stderr, os.environ, as_json=options.json
            )
        from .views import logs

        names = [] if options.all else options.names
        return logs.show(
            settings.state_dir,
            names,
            sys.stdout,
            sys.stderr,
            count=options.lines,
            follow=options.follow,
            docker_timeout=settings.docker_timeout,
        )
    except (ConfigError, ConfigFileError) as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    except StateError as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (`| head`) has gone; nothing left to say, and nobody to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        return _os_error(exc)
    except KeyboardInterrupt:
        # Ctrl-C is how `logs -f` ends: quietly, and successfully.
        return 0 if getattr(options, "follow", False) else 130


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
    if options.command in VIEW_COMMANDS:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return _view(options)
    import pytest

    if options.command == "health":
        return int(pytest.main(health_args(options.check, extra)))
    if options.command == "task":
        return int(pytest.main(task_args(options.plan, options.task_id, options.guidance, extra)))
    parser.error(f"unknown command {options.command}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":
    sys.exit(main())
