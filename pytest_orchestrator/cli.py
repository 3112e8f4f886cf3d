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
    _add_sandbox(commands)
    _add_serve(commands)
    return parser


WATCHDOG_COMMANDS = ("watch", "up", "down", "restart")
VIEW_COMMANDS = ("status", "logs", "crashes", "metrics", "dashboard", "queue")


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
    _add_since(crashes)
    crashes.add_argument("--json", action="store_true", help="print a JSON document instead")
    crashes.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    metrics = commands.add_parser(
        "metrics",
        help="the numbers of a time window: throughput, latency, error rate, cost, retries, resources",
        description="Show the numbers of the attempts that ended since a time, of every plan or one. "
        "Exit 0 (also when no state exists yet), 2 for bad input.",
    )
    _add_since(metrics)
    metrics.add_argument("--plan", metavar="PLAN", help="only this plan, as the runs name it (plans/x.md)")
    metrics.add_argument("--json", action="store_true", help="print a JSON document instead")
    metrics.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    dashboard = commands.add_parser(
        "dashboard",
        help="a live view of the orchestrator: state, health, active tasks, queue, latest attempts",
        description="Show the orchestrator's state, the loop, the watchdog's components, health, the "
        "active tasks, the head of the queue, the latest attempts and the last hour's throughput, "
        "redrawn every --refresh seconds until Ctrl-C. Reads state.db only. Exit 0, 1 when the state "
        "cannot be read, 2 for bad input.",
    )
    dashboard.add_argument(
        "--refresh",
        type=_refresh,
        metavar="SECONDS",
        help="seconds between two frames (default: dashboard.refresh in the config file, else 5)",
    )
    dashboard.add_argument("--once", action="store_true", help="print one frame and exit")
    dashboard.add_argument("--json", action="store_true", help="print the frame's data as a JSON document")
    dashboard.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    queue = commands.add_parser(
        "queue",
        help="the pending tasks in dispatch order, with score, wait, reason and estimated start",
        description="Show the pending tasks in the order the next run dispatches them: the plan holding "
        "the highest-scored task first (priority plus age boost), each plan's tasks in plan order. "
        "Exit 0 (also when no state exists yet), 2 for bad input.",
    )
    queue.add_argument("-v", "--verbose", action="store_true", help="add each task's description and files")
    queue.add_argument("--json", action="store_true", help="print a JSON document instead")
    queue.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    queue.add_argument(
        "--interval",
        type=_interval,
        default=2.0,
        metavar="SECONDS",
        help="seconds between refreshes with --watch (default 2)",
    )
    queue.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def _add_since(parser: argparse.ArgumentParser) -> None:
    """The `--since WHEN` window start that the time-window views share."""
    parser.add_argument(
        "--since",
        type=_since,
        default="24h",
        metavar="WHEN",
        help="the window's start: a time span back from now (90s, 30m, 24h, 7d) or an ISO date/time "
        "(default 24h)",
    )


def _since(raw: str) -> float:
    from .views.terminal import parse_since

    try:
        return parse_since(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _refresh(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, not {raw!r}")
    return seconds


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
        if options.command == "dashboard":
            return _dashboard(options)
        if options.command == "queue":
            return _queue(options)
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
        if options.command == "metrics":
            from .views import metrics

            return metrics.show(
                settings.state_dir,
                options.since,
                sys.stdout,
                sys.stderr,
                os.environ,
                plan=options.plan,
                as_json=options.json,
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
        return 0 if getattr(options, "follow", False) or getattr(options, "watch", False) else 130


def _queue(options: argparse.Namespace) -> int:
    from pathlib import Path

    from .loop import queue_spec
    from .project import find_project, sources_for_project
    from .settings import resolve
    from .views import queue

    cwd = Path.cwd()
    sources = sources_for_project(cwd, {}, os.environ, options.config)
    settings = resolve(sources)
    return queue.show(
        settings.state_dir,
        sys.stdout,
        sys.stderr,
        os.environ,
        spec=queue_spec(sources.file),
        root=find_project(cwd).root,
        verbose=options.verbose,
        as_json=options.json,
        watch=options.interval if options.watch else None,
        stale_after=settings.freeze_threshold,
    )


def _dashboard(options: argparse.Namespace) -> int:
    """`orchestrator dashboard`; errors are _view's to tell."""
    from pathlib import Path

    from .loop import queue_spec
    from .project import sources_for_project
    from .settings import resolve
    from .views.dashboard_config import dashboard_spec

    sources = sources_for_project(Path.cwd(), {}, os.environ, options.config)
    settings = resolve(sources)
    refresh = options.refresh if options.refresh is not None else dashboard_spec(sources.file).refresh
    # rich is imported here, by the one command that draws with it.
    from .views import dashboard_screen

    return dashboard_screen.show(
        settings.state_dir,
        sys.stdout,
        os.environ,
        refresh=refresh,
        once=options.once,
        as_json=options.json,
        stale_after=settings.freeze_threshold,
        queue_spec=queue_spec(sources.file),
    )


# ---- orchestrator serve ----


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve /healthz, /metrics (Prometheus), a JSON API and the web dashboard",
        description="Serve the state database over HTTP: /healthz (200 or 503), /metrics for "
        "Prometheus, /api/... as JSON, and the web dashboard at /. Binds to loopback unless --host "
        "says otherwise. Runs until interrupted; exit 2 for bad input, 1 when the address cannot be used.",
    )
    serve.add_argument(
        "--host", metavar="HOST", help="the address to listen on (default: serve.host, 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, metavar="PORT", help="the port (default: serve.port, 8080; 0 picks a free one)"
    )
    serve.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def _port(raw: str) -> int:
    if not raw.isdigit() or int(raw) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, not {raw!r}")
    return int(raw)


def _serve_command(options: argparse.Namespace) -> int:
    """`orchestrator serve`: plain Python on the standard library's HTTP server, no pytest."""
    import socket
    from pathlib import Path

    from .config_file import ConfigFileError
    from .loop import queue_spec
    from .project import sources_for_project
    from .server import App, HealthCache, run_checks, serve, serve_spec
    from .settings import ConfigError, resolve

    cwd = Path.cwd()
    try:
        sources = sources_for_project(cwd, {}, os.environ, options.config)
        settings = resolve(sources)
        spec = serve_spec(sources.file)
        queue_spec(sources.file)
    except (ConfigError, ConfigFileError) as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    host = options.host if options.host is not None else spec.host
    port = options.port if options.port is not None else spec.port
    config = str(Path(options.config).resolve()) if options.config else None
    health = HealthCache(run_checks(sources.root, config, spec.health_timeout), spec.health_cache)
    app = App(
        settings.state_dir,
        health,
        settings.serve_token,
        stale_after=settings.freeze_threshold,
        queue_spec=queue_spec(sources.file),
        root=sources.root,
    )
    try:
        serve(
            app,
            host,
            port,
            lambda line: print(line, flush=True),
            lambda line: print(f"orchestrator: {line}", file=sys.stderr, flush=True),
        )
    except socket.gaierror as exc:
        print(f"orchestrator: cannot listen on {host}:{port}: unknown host ({exc.strerror})", file=sys.stderr)
        return 2
    except OverflowError as exc:
        print(f"orchestrator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"orchestrator: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


# ---- orchestrator sandbox ----


def _add_sandbox(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser(
        "sandbox",
        help="build, start, reset, stop or enter the agents' sandbox container",
        description="The sandbox container, made by the tool from the Dockerfile in the package.",
    )
    actions = sandbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up",
        help="build the image unless an unchanged one exists, start the container, wait until healthy",
        description="Build the sandbox image (reused when its inputs are unchanged), start the "
        "container, and wait until the sandbox's health checks pass. Exit 0 when healthy, 1 when not.",
    )
    reset = actions.add_parser(
        "reset",
        help="recreate the container from the same inputs, with an empty workspace",
        description="Recreate the sandbox container from the same inputs and credentials, with an "
        "empty workspace unless --keep-workspace, then wait until it is healthy.",
    )
    for command in (up, reset):
        _sandbox_target(command)
        image = command.add_mutually_exclusive_group()
        image.add_argument("--image", metavar="IMAGE", help="use this image as it is, without a build")
        image.add_argument(
            "--base-image",
            metavar="IMAGE",
            help="the image to build on (default node:22-bookworm-slim); a local one is used without a pull",
        )
        cli = command.add_mutually_exclusive_group()
        cli.add_argument("--claude-version", metavar="VERSION", help="the Claude Code version npm installs")
        cli.add_argument(
            "--claude-binary",
            metavar="PATH",
            help="copy this Claude Code binary into the image instead of installing it from npm",
        )
        command.add_argument(
            "--workspace",
            metavar="DIR",
            help="a host directory to mount as the workspace (default: the volume NAME-workspace)",
        )
        command.add_argument("--network", metavar="NETWORK", help="the container's network, e.g. host")
        command.add_argument(
            "--env-file",
            metavar="FILE",
            help="variables for the container, NAME=value a line (credentials are also taken "
            "from the environment by name: " + ", ".join(_CREDENTIAL_NAMES) + ")",
        )
        command.add_argument(
            "--claude-credentials",
            metavar="FILE",
            help="a Claude Code credentials file, mounted read-only as the sandbox user's "
            "~/.claude/.credentials.json",
        )
        command.add_argument(
            "--wait",
            type=_seconds,
            default=120.0,
            metavar="SECONDS",
            help="how long to wait for the health checks (default 120; 0: do not run them)",
        )
    reset.add_argument("--keep-workspace", action="store_true", help="keep the workspace volume's files")
    down = actions.add_parser(
        "down",
        help="stop and remove the container",
        description="Stop and remove the sandbox container; --volumes removes its workspace volume too.",
    )
    _sandbox_target(down)
    down.add_argument("--volumes", action="store_true", help="remove the workspace volume too")
    shell = actions.add_parser(
        "shell",
        help="an interactive shell in the workspace, as the sandbox's user",
        description="Open an interactive shell in the sandbox's workspace, as the sandbox's user.",
    )
    _sandbox_target(shell)
    status = actions.add_parser(
        "status",
        help="container, image and inputs, uptime, restarts, workspace, credentials (names only)",
        description="Show the sandbox container: state, image and its inputs, uptime, restarts, "
        "workspace, network and the names of the credentials it holds. Exit 0 when it runs, 1 otherwise.",
    )
    _sandbox_target(status)
    status.add_argument("--json", action="store_true", help="print a JSON document instead")


_CREDENTIAL_NAMES = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "GH_TOKEN", "GITHUB_TOKEN")


def _sandbox_target(command: argparse.ArgumentParser) -> None:
    command.add_argument("--name", metavar="NAME", help="the container (default: the sandbox setting)")
    command.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, not {raw!r}")
    return value


def _interval(raw: str) -> float:
    value = _seconds(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, not {raw!r}")
    return value


def _sandbox_command(options: argparse.Namespace) -> int:
    """`orchestrator sandbox ACTION`: plain Python on the Docker SDK, no pytest."""
    from pathlib import Path

    from .config_file import ConfigFileError
    from .project import settings_for_project
    from .redact import redact
    from .sandbox import SandboxError
    from .sandbox.docker import engine_error
    from .settings import ConfigError

    try:
        flags = {"sandbox": options.name} if options.name else {}
        settings = settings_for_project(Path.cwd(), flags, config=options.config)
    except (ConfigError, ConfigFileError) as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    try:
        return _sandbox_action(options, settings.sandbox, settings.workspace, settings.docker_timeout)
    except SandboxError as exc:
        print(f"orchestrator: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("orchestrator: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        return _os_error(exc)
    except Exception as exc:
        error = engine_error(exc, settings.docker_timeout)
        if error is None:
            raise
        print(f"orchestrator: {error}", file=sys.stderr)
        return 1


def _sandbox_action(options: argparse.Namespace, name: str, workspace: str, timeout: float) -> int:
    """Do the action on the sandbox `name`; print what it did, and the health after up or reset."""
    from pathlib import Path

    from .redact import redact
    from .sandbox import lifecycle
    from .sandbox.docker import connect, probe

    client = connect(timeout)
    if options.action == "status":
        from .sandbox.status import status
        from .views import sandbox as view
        from .views.terminal import Style

        found = status(client, name, workspace, probe(name, timeout))
        if options.json:
            import json

            print(json.dumps(found.to_dict(), indent=2))
        else:
            sys.stdout.write(view.render_status(found, Style(sys.stdout, os.environ)))
        return 0 if found.running else 1
    if options.action == "down":
        print(lifecycle.down(client, name, volumes=options.volumes))
        return 0
    if options.action == "shell":
        from .sandbox import SandboxError
        from .sandbox.shell import enter
        from .sandbox.workspace import workspace_root

        found_probe = probe(name, timeout)
        if not found_probe.running:
            raise SandboxError(found_probe.message)
        return enter(found_probe.container, workspace_root(workspace))
    request = lifecycle.Request(
        name,
        workspace,
        lifecycle.Options(
            base_image=options.base_image,
            claude_version=options.claude_version,
            claude_binary=options.claude_binary,
            image=options.image,
            workspace=options.workspace,
            network=options.network,
            claude_credentials=options.claude_credentials,
        ),
        env_file=Path(options.env_file) if options.env_file else None,
        environ=os.environ,
    )

    def progress(line: str) -> None:
        print(f"  {redact(line)}", file=sys.stderr, flush=True)

    if options.action == "reset":
        outcome = lifecycle.reset(client, request, keep_workspace=options.keep_workspace, progress=progress)
    else:
        outcome = lifecycle.up(client, request, progress)
    print(outcome.message, flush=True)
    for note in outcome.notes:
        print(f"note: {note}", file=sys.stderr)
    if outcome.action == "running" or options.wait == 0:
        return 0
    # Only when it waits: `up` on a running sandbox, or with --wait 0, stays a quick command.
    import time

    from .health.run import SANDBOX_CHECKS, run_health
    from .views import sandbox as view
    from .views.terminal import Style

    flags = ["--orchestrator-sandbox", name]
    if options.config:
        flags += ["--orchestrator-config", str(Path(options.config).resolve())]
    report = lifecycle.wait_healthy(
        time.monotonic() + options.wait,
        lambda: probe(name, timeout),
        lambda limit: run_health(SANDBOX_CHECKS, flags, Path.cwd(), limit),
    )
    sys.stdout.write(view.render_health(report, Style(sys.stdout, os.environ)))
    if not report.ok:
        print(f"orchestrator: sandbox '{name}' is unhealthy: {view.failure(report)}", file=sys.stderr)
        return 1
    return 0


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
    if options.command == "serve":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return _serve_command(options)
    if options.command == "sandbox":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return _sandbox_command(options)
    import pytest

    if options.command == "health":
        return int(pytest.main(health_args(options.check, extra)))
    if options.command == "task":
        return int(pytest.main(task_args(options.plan, options.task_id, options.guidance, extra)))
    parser.error(f"unknown command {options.command}")  # pragma: no cover - argparse exits first
    return 2


if __name__ == "__main__":
    sys.exit(main())
