"""Starting and stopping components: a process in its own group with one log, or a container.

A process component is stopped the way process-compose does it: SIGTERM to its process group,
`stop_timeout` seconds, then SIGKILL, so the children it forked go with it. Its stdout and
stderr share one log, `<state>/logs/<name>.log`, copied to `.1` and truncated when it grows
past its size, which the process keeps writing to (the file is opened for appending).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from .config import ComponentSpec
from .probes import Target

LOG_MAX_BYTES = 10 * 2**20
LOG_BACKUPS = 3


class ComponentError(Exception):
    """A component cannot be started or stopped; the message says why and what to do."""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ProcessRuntime:
    """A command the watchdog starts itself."""

    def __init__(self, spec: ComponentSpec, log_dir: Path | None) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log" if log_dir is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.log_offset = 0
        self.started_at: float | None = None

    def start(self) -> None:
        """Start the command in its own process group, its output appended to its log."""
        self.stop_leftovers()
        log: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("ab")
            self.log_offset = self.log_path.stat().st_size
        env = {**os.environ, **self.spec.env}
        try:
            self.process = subprocess.Popen(
                list(self.spec.command),
                cwd=self.spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ComponentError(f"command not found: {self.spec.command[0]}") from None
        except NotADirectoryError:
            raise ComponentError(f"cwd {self.spec.cwd} is not a directory") from None
        except PermissionError:
            raise ComponentError(f"permission denied running {self.spec.command[0]}") from None
        except OSError as exc:
            raise ComponentError(f"cannot start {self.spec.command[0]}: {exc.strerror or exc}") from None
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self.pid = self.process.pid
        self.started_at = time.time()

    def exit_code(self) -> int | None:
        """The exit code once the process ended (negative: the signal), else None."""
        if self.process is None:
            return None
        return self.process.poll()

    def running(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float) -> None:
        """SIGTERM to the group, then SIGKILL after `timeout` seconds."""
        if self.pid is None:
            return
        pgid = self.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            self._reap()
            self.pid = None
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._reap()
            if not _group_alive(pgid):
                # Forgotten once gone: the pid may be someone else's tomorrow.
                self.pid = None
                return
            time.sleep(0.05)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap(block=True)
        self.pid = None

    def stop_leftovers(self) -> None:
        """Kill what the previous run of the component left in its group (a forked daemon)."""
        if self.pid is not None and _group_alive(self.pid):
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._reap()
        self.pid = None

    def _reap(self, block: bool = False) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=5 if block else 0)
            except subprocess.TimeoutExpired:
                pass

    def rotate(self) -> None:
        """Copy the log aside and truncate it once it is too big; the process keeps appending."""
        path = self.log_path
        if path is None or not path.exists() or path.stat().st_size < LOG_MAX_BYTES:
            return
        for index in range(LOG_BACKUPS - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                older.replace(path.with_name(f"{path.name}.{index + 1}"))
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
        with path.open("r+b") as log:
            log.truncate(0)
        self.log_offset = 0

    def target(self, state_dir: Path, docker_timeout: float) -> Target:
        """What the component's probes look at."""
        return Target(
            pid=self.pid,
            log_path=self.log_path,
            log_offset=self.log_offset,
            state_dir=state_dir,
            docker_timeout=docker_timeout,
            started_at=self.started_at,
        )


class ContainerRuntime:
    """An existing container, found by name; the watchdog starts, unpauses and restarts it."""

    def __init__(self, spec: ComponentSpec, docker_timeout: float) -> None:
        self.spec = spec
        self.docker_timeout = docker_timeout
        self.pid: int | None = None
        self.log_path: Path | None = None
        # Brought up by the watchdog's own start: `down` stops it. A container that was running
        # when the watchdog started, and was restarted since, is left running.
        self.started_by_watchdog = False
        self.starts = 0

    def _container(self) -> Any:
        import docker
        import requests

        from ..sandbox import SandboxError
        from ..sandbox.docker import connect

        name = self.spec.container
        try:
            return connect(self.docker_timeout).containers.get(name)
        except SandboxError as exc:
            raise ComponentError(str(exc)) from None
        except docker.errors.NotFound:
            raise ComponentError(f"container {name} does not exist: create it, or name another") from None
        except (docker.errors.APIError, requests.exceptions.RequestException, OSError) as exc:
            raise ComponentError(f"cannot inspect container {name}: {exc}") from None

    def start(self) -> None:
        """Running already: nothing. Paused: unpause. Stopped: start."""
        import docker

        container = self._container()
        state = container.attrs.get("State", {})
        first = self.starts == 0
        self.starts += 1
        try:
            if state.get("Paused"):
                container.unpause()
            elif state.get("Status") != "running":
                container.start()
                self.started_by_watchdog = first
        except docker.errors.APIError as exc:
            raise ComponentError(
                f"cannot start container {self.spec.container}: {exc.explanation or exc}"
            ) from None

    def restart(self, timeout: float) -> None:
        """Stop (SIGTERM, then SIGKILL after `timeout`) and start again."""
        import docker

        container = self._container()
        try:
            if container.attrs.get("State", {}).get("Paused"):
                container.unpause()
            # The timeout is passed explicitly: the SDK's default is not the engine's (docker-py#1815).
            container.restart(timeout=int(max(1, timeout)))
        except docker.errors.APIError as exc:
            raise ComponentError(
                f"cannot restart container {self.spec.container}: {exc.explanation or exc}"
            ) from None

    def exit_code(self) -> int | None:
        """Containers are judged by their probes."""
        return None

    def running(self) -> bool:
        """Whether Docker says the container runs, not paused."""
        try:
            state = self._container().attrs.get("State", {})
        except ComponentError:
            return False
        return state.get("Status") == "running" and not state.get("Paused")

    def stop(self, timeout: float) -> None:
        """Stop the container, if the watchdog was the one that started it."""
        if not self.started_by_watchdog:
            return
        try:
            self._container().stop(timeout=int(max(1, timeout)))
        except Exception:  # a container that is gone or an engine that is down: nothing to stop
            pass

    def stop_leftovers(self) -> None:
        """Nothing: a container has no process group of ours."""

    def rotate(self) -> None:
        """Docker keeps a container's logs."""

    def target(self, state_dir: Path, docker_timeout: float) -> Target:
        """What the component's probes look at."""
        return Target(container=self.spec.container, state_dir=state_dir, docker_timeout=docker_timeout)


Runtime = ProcessRuntime | ContainerRuntime


def runtime_for(spec: ComponentSpec, log_dir: Path | None, docker_timeout: float) -> Runtime:
    """The runtime of a component of either kind."""
    if spec.kind == "process":
        return ProcessRuntime(spec, log_dir)
    return ContainerRuntime(spec, docker_timeout)
