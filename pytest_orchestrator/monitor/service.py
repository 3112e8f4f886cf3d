"""The watchdog as a service: one per state directory, its pid file, and `up`, `down`, `restart`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

PIDFILE = "watchdog.pid"


class ServiceError(Exception):
    """The watchdog cannot be started, stopped or reached; the message says what to do."""


def pidfile(state_dir: Path) -> Path:
    """Where the running watchdog's pid is kept."""
    return state_dir / PIDFILE


def running(state_dir: Path) -> int | None:
    """The pid of the watchdog running for `state_dir`, if one runs; a stale pid file is removed."""
    import psutil

    path = pidfile(state_dir)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        process = psutil.Process(pid)
        # A pid file outlives a killed watchdog, and its pid may now be any process.
        alive = process.status() != psutil.STATUS_ZOMBIE and _is_watchdog(process.cmdline())
    except psutil.Error:
        alive = False
    if alive:
        return pid
    path.unlink(missing_ok=True)
    return None


def _is_watchdog(cmdline: list[str]) -> bool:
    return "watch" in cmdline and any("orchestrator" in part for part in cmdline)


_LOCKS: list[Any] = []


def claim(state_dir: Path) -> None:
    """Record this process as the watchdog; refuse when another one runs.

    A lock on `watchdog.lock` is held while the watchdog lives, so two started at once cannot
    both claim the state directory.
    """
    import fcntl

    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        lock = (state_dir / "watchdog.lock").open("a")
    except OSError as exc:
        raise ServiceError(f"cannot use the state directory {state_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        other = running(state_dir)
        where = f" (pid {other})" if other else ""
        raise ServiceError(
            f"a watchdog is already running here{where}: stop it with `orchestrator down`"
        ) from None
    _LOCKS.append(lock)
    pidfile(state_dir).write_text(f"{os.getpid()}\n")


def release(state_dir: Path) -> None:
    """Remove the pid file, if it is this process's."""
    path = pidfile(state_dir)
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def up(state_dir: Path, command: list[str], cwd: Path, timeout: float = 60.0) -> tuple[int, bool]:
    """Start `command` (the watchdog) in the background; (pid, False) when one already ran.

    Returns once the watchdog has started its components, or raises ServiceError with the
    watchdog's own last words when it ended early.
    """
    other = running(state_dir)
    if other is not None:
        return other, False
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "watchdog.out").open("ab") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            tail = _tail(logs / "watchdog.out")
            raise ServiceError(f"the watchdog exited with code {code}: {tail or 'no output'}")
        if running(state_dir) == process.pid and _components_started(state_dir):
            return process.pid, True
        time.sleep(0.1)
    raise ServiceError(f"the watchdog (pid {process.pid}) did not start its components within {timeout:g}s")


def _components_started(state_dir: Path) -> bool:
    from ..state import StateError, StateStore
    from ..state.components import ComponentStore

    try:
        store = StateStore.read(state_dir)
    except StateError:
        return False
    if store is None:
        return False
    try:
        watchdog = ComponentStore(store).watchdog()
        rows = ComponentStore(store).components()
    except Exception:
        return False
    finally:
        store.close()
    return watchdog is not None and all(r.status != "STOPPED" for r in rows)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def down(state_dir: Path, timeout: float) -> int | None:
    """Stop the running watchdog and wait until it has stopped its components; its pid, or None."""
    pid = running(state_dir)
    if pid is None:
        return None
    import psutil

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Gone, not only its pid file: it stops its components before it exits.
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return pid
        except psutil.NoSuchProcess:
            return pid
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return pid
    raise ServiceError(
        f"the watchdog (pid {pid}) did not stop within {timeout:g}s and was killed; its components may "
        "still run: the next `orchestrator up` stops what it left before starting them again"
    )


def request_restart(state_dir: Path, name: str) -> None:
    """Ask the running watchdog to restart a component now, clearing FATAL."""
    from ..state import StateStore
    from ..state.components import ComponentStore

    if running(state_dir) is None:
        raise ServiceError("no watchdog is running here: start it with `orchestrator up`")
    store = StateStore.open(state_dir)
    try:
        known = [r.name for r in ComponentStore(store).components()]
        if not ComponentStore(store).request(name, "restart"):
            raise ServiceError(
                f"no component named {name!r}: known components are {', '.join(known) or 'none'}"
            )
    finally:
        store.close()
