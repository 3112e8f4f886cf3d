"""Running one probe, always within its timeout: a probe that overruns is stopped and fails.

An exec probe on the host runs in its own process group, killed whole at the timeout. An
exec probe in a container carries a marker, and its processes in the container are stopped
at the timeout. The network probes bound every socket operation and the whole call.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..redact import redact
from .config import ProbeSpec


@dataclass(frozen=True)
class ProbeResult:
    """One run of a probe: passed or not, why, and how long it took."""

    ok: bool
    message: str
    duration: float


@dataclass
class Target:
    """What a probe needs to know about its component at the time it runs."""

    pid: int | None = None
    container: str = ""
    log_path: Path | None = None
    # The log's size when the component started: log_line looks only at what came after.
    log_offset: int = 0
    state_dir: Path | None = None
    docker_timeout: float = 5.0
    # When the component last started (wall clock): a heartbeat older than that is the
    # previous run's, and its age counts from the start.
    started_at: float | None = None


def run_probe(spec: ProbeSpec, target: Target) -> ProbeResult:
    """Run `spec` against `target`; never longer than its timeout (plus the cost of stopping it)."""
    started = time.monotonic()
    kind = _KINDS[spec.kind]
    try:
        if spec.kind in ("exec", "http"):
            ok, message = kind(spec, target)  # each stops what it started at the timeout
        else:
            # A slow DNS lookup, a locked database, a huge log: bounded all the same.
            ok, message = _within(spec.timeout, lambda: kind(spec, target), lambda: None)
    except Exception as exc:
        ok, message = False, f"{type(exc).__name__}: {exc}"
    return ProbeResult(ok, redact(message)[:300], round(time.monotonic() - started, 4))


def _within(
    seconds: float, call: Callable[[], tuple[bool, str]], on_timeout: Callable[[], None]
) -> tuple[bool, str]:
    """`call` in a thread, waited for at most `seconds`; `on_timeout` stops what it started."""
    outcome: list[tuple[bool, str]] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=work, name="orchestrator-probe", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        on_timeout()
        return False, f"timed out after {seconds:g}s (stopped)"
    if failure:
        raise failure[0]
    return outcome[0]


def _exec(spec: ProbeSpec, target: Target) -> tuple[bool, str]:
    argv = list(spec.target)
    if target.container:
        return _exec_in_container(argv, spec.timeout, target)
    try:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        return False, f"cannot run {argv[0]}: {exc.strerror or exc}"
    try:
        output, _ = process.communicate(timeout=spec.timeout)
    except subprocess.TimeoutExpired:
        # The whole group: a shell's children must not outlive the probe.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.communicate(timeout=1)
        except subprocess.TimeoutExpired:
            # A grandchild in a session of its own still holds the pipe: let it go.
            if process.stdout is not None:
                process.stdout.close()
            process.wait()
        return False, f"timed out after {spec.timeout:g}s (killed)"
    return _exit_result(process.returncode, output)


def _exit_result(code: int | None, output: bytes) -> tuple[bool, str]:
    text = output.decode("utf-8", "replace").strip().splitlines()
    last = text[-1] if text else ""
    if code == 0:
        return True, f"exit 0{': ' + last if last else ''}"
    return False, f"exit {code}{': ' + last if last else ''}"


def _exec_in_container(argv: list[str], timeout: float, target: Target) -> tuple[bool, str]:
    from ..sandbox import attach

    marker = f"probe-{uuid.uuid4().hex[:12]}"
    # The client's own timeout is longer than the probe's: the probe's deadline is what stops it.
    sandbox = attach(target.container, timeout + target.docker_timeout).for_dispatch(marker)

    def call() -> tuple[bool, str]:
        try:
            result = sandbox.exec(argv)
        except Exception:
            stop()
            raise
        return _exit_result(result.exit_code, result.output.encode())

    def stop() -> None:
        # Inside the container: a Docker exec has no kill of its own.
        try:
            sandbox.stop_quietly(marker)
        except Exception:
            pass

    return _within(timeout, call, stop)


def _http(spec: ProbeSpec, target: Target) -> tuple[bool, str]:
    import urllib.error
    import urllib.request

    url = str(spec.target)
    shown = _without_secrets(url)

    def call() -> tuple[bool, str]:
        request = urllib.request.Request(url, headers={"User-Agent": "pytest-orchestrator-watchdog"})
        try:
            with urllib.request.urlopen(request, timeout=spec.timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        except urllib.error.URLError as exc:
            return False, f"GET {shown}: {exc.reason}"
        # Kubernetes: 200 to 399 passes.
        return 200 <= status < 400, f"GET {shown}: {status}"

    return _within(spec.timeout, call, lambda: None)


def _without_secrets(url: str) -> str:
    """The URL without its user, password and query, which may carry a token."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def _tcp(spec: ProbeSpec, target: Target) -> tuple[bool, str]:
    host, port = spec.target
    try:
        with socket.create_connection((host, port), timeout=spec.timeout):
            return True, f"connected to {host}:{port}"
    except OSError as exc:
        return False, f"connect to {host}:{port}: {exc.strerror or exc}"


def _pid(spec: ProbeSpec, target: Target) -> tuple[bool, str]:
    import psutil

    if target.pid is None:
        return False, "no process"
    try:
        status = psutil.Process(target.pid).status()
    except psutil.NoSuchProcess:
        return False, f"pid {target.pid} is gone"
    if status == psutil.STATUS_ZOMBIE:
        return False, f"pid {target.pid} is a zombie"
    return True, f"pid {target.pid} {status}"


def _container(spec: ProbeSpec, target: Target) -> tuple[bool, str]:
    from ..sandbox import probe

    found = probe(target.container, min(spec.timeout, target.docker_timeout))
    if found.container is None:
        return False, found.message
    container: Any = found.container
    state = container.attrs.get("State", {})
    if state.get("Paused"):
        return False, f"container {target.container} is paused"
    if state.get("Status") != "running":
        return (
            False,
            f"container {target.container} is {state.get('Status')} (exit code {state.get('ExitCode')})",
        )
    health = (state.get("Health") or {}).get("Status")
    if health and health != "healthy":
        return False, f"container {target.container} is running, its HEALTHCHECK says {health}"
    return True, f"container {target.container} running" + (f", {health}" if health else "")


def _log_line(spec: ProbeSpec, target: Target) -> tuple[bool, str]:
    if target.log_path is None or not target.log_path.exists():
        return False, "no log yet"
    with target.log_path.open("rb") as log:
        log.seek(target.log_offset if target.log_offset <= target.log_path.stat().st_size else 0)
        text = log.read().decode("utf-8", "replace")
    if re.search(spec.target, text, re.MULTILINE):
        return True, f"log matched {spec.target!r}"
    return False, f"log has no line matching {spec.target!r} yet"


def _heartbeat(spec: ProbeSpec, target: Target) -> tuple[bool, str]:
    """The continuous loop's last poll; without a loop, the latest heartbeat of a task run."""
    from ..loop import LoopStore
    from ..state import StateStore

    if target.state_dir is None:
        return False, "no state directory"
    store = StateStore.read(target.state_dir)
    if store is None:
        return False, "no state database yet"
    try:
        loop = LoopStore(store).row()
        at: float | None
        if loop is not None:
            at, what = loop.last_poll_at, "the loop's last poll"
        else:
            row = store.conn.execute("SELECT MAX(at) FROM heartbeats").fetchone()
            at, what = (row[0] if row else None), "last heartbeat"
    finally:
        store.close()
    if at is None and target.started_at is None:
        return False, "no heartbeat recorded"
    age = time.time() - max(float(at or 0), target.started_at or 0)
    if age > float(spec.target):
        return False, f"{what} {age:.0f}s ago (more than {spec.target:g}s)"
    return True, f"{what} {age:.0f}s ago"


_KINDS: dict[str, Callable[[ProbeSpec, Target], tuple[bool, str]]] = {
    "exec": _exec,
    "http": _http,
    "tcp": _tcp,
    "pid": _pid,
    "container": _container,
    "log_line": _log_line,
    "heartbeat": _heartbeat,
}
