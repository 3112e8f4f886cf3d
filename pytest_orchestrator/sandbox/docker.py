"""The Docker backend: the sandbox is a container, reached through the Docker SDK."""

from __future__ import annotations

import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..redact import redact, remember
from . import (
    AUTH_ENV,
    DEFAULT_SANDBOX,
    GITHUB_ENV,
    MARKER_ENV,
    Chunks,
    ExecResult,
    SandboxError,
    SandboxFacts,
    SandboxProbe,
    SandboxTransportError,
)

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# What the Docker SDK reads from the environment to find an engine and talk to it.
DOCKER_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
# `user:secret@host:2375`, without a scheme: no URL to the parser, but a password all the same.
_BARE_PASSWORD = re.compile(r"^([^/@:]*):[^/@]*@")
# Endpoints that are their own id: a socket's absolute path, or a host with its port. The SDK's
# parser would change anything else: a trailing slash, white space, a port out of range.
_CANONICAL_ENDPOINT = re.compile(r"unix:///[^\s?#@]*[^\s?#@/]|tcp://[a-z0-9.-]+:(?P<port>[1-9][0-9]{0,4})")

# Runs inside the container so that secret values never leave it: only the names of
# the variables that are set and the paths of the files that exist come back.
_FACTS_SCRIPT = r"""
for p in "$@"; do
  case "$p" in "~/"*) p="$HOME/${p#??}" ;; esac
  [ -s "$p" ] && echo "file:$p"
done
for v in VARS; do
  eval "val=\${$v:-}"
  case "$val" in *[![:space:]]*) echo "env:$v" ;; esac
done
exit 0
"""


def docker_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The Docker endpoint the SDK will use, for messages."""
    environ = os.environ if environ is None else environ
    return environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def engine_id(environ: Mapping[str, str] | None = None) -> str:
    """The engine `environ` points at, as recorded with each attempt: its endpoint in Docker's
    spelling (`tcp://host-a:2375`, `unix:///run/b/docker.sock`), without credentials.

    The endpoint is what a later run needs to reach the engine again (to stop what an
    interrupted run left there). Spellings of one engine are one id (`host-a:2375` is
    `tcp://host-a:2375`, `unix:/x.sock` is `unix:///x.sock`); a password in it
    (`ssh://user:secret@host`) is dropped, and TLS material is never part of it.
    """
    endpoint = docker_endpoint(environ)
    canonical = _CANONICAL_ENDPOINT.fullmatch(endpoint)
    if canonical and int(canonical.group("port") or 1) <= 65535:
        # Already in Docker's spelling. Each attempt records it, and the SDK's parser would
        # cost every xdist worker the import of the whole SDK before its first dispatch,
        # all of them at once (measured with tests/bench/bench_parallel.py).
        return endpoint
    return _parsed_engine_id(endpoint)


def _parsed_engine_id(endpoint: str) -> str:
    """`engine_id` of any spelling, through the SDK's parser."""
    from docker.errors import DockerException
    from docker.utils import parse_host

    try:
        parsed = str(parse_host(endpoint))
    except DockerException:
        parsed = endpoint
    for sdk, usual in (("http+unix://", "unix://"), ("http://", "tcp://"), ("https://", "tcp://")):
        if parsed.startswith(sdk):
            parsed = usual + parsed[len(sdk) :]
            break
    parts = urllib.parse.urlsplit(parsed)
    if parts.password is None:
        return _BARE_PASSWORD.sub(r"\1@", parsed)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def docker_env(environ: Mapping[str, str] | None = None, engine: str | None = None) -> dict[str, str]:
    """The Docker SDK's variables of `environ`, pointed at `engine` when given (else at its own)."""
    environ = os.environ if environ is None else environ
    found = {name: environ[name] for name in DOCKER_ENV if name in environ}
    # Always explicit: the SDK reads the process's environment when given an empty one.
    found["DOCKER_HOST"] = engine or docker_endpoint(environ)
    return found


def _is_timeout(exc: BaseException) -> bool:
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.Timeout | TimeoutError):
            return True
        if "timed out" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transport_error(exc: BaseException, timeout: float | None, environ: Mapping[str, str]) -> SandboxError:
    # The engine's id: a password in DOCKER_HOST stays out of the message.
    endpoint = engine_id(environ)
    if _is_timeout(exc) and timeout is not None:
        return SandboxTransportError(
            f"docker daemon at {endpoint} did not answer within {timeout:g}s: check it with "
            "`docker info`, or raise --orchestrator-docker-timeout"
        )
    return SandboxTransportError(
        f"docker daemon not reachable at {endpoint}: start it with `sudo systemctl start docker` "
        "(or `sudo dockerd &`), or point DOCKER_HOST at a running engine"
    )


def engine_error(exc: BaseException, timeout: float | None) -> SandboxError | None:
    """The one-line error for a failed Docker SDK call, or None when `exc` is not one."""
    import docker
    import requests

    # The SDK's APIError is a requests error too: the engine answered, so it is no transport failure.
    if isinstance(exc, docker.errors.APIError):
        return SandboxError(redact(f"the docker engine refused: {exc.explanation or exc}"))
    if isinstance(exc, requests.exceptions.RequestException | docker.errors.DockerException):
        return _transport_error(exc, timeout, os.environ)
    return None


def connect(timeout: float | None, environ: Mapping[str, str] | None = None) -> Any:
    """A Docker client bound by `timeout` per call (None: unbounded, for long streams);
    raises SandboxError with the next step."""
    import docker
    import requests

    environ = dict(os.environ if environ is None else environ)
    try:
        # version="auto" asks the engine which API it speaks, so old and new engines both work.
        return docker.DockerClient(
            timeout=timeout, version="auto", **docker.utils.kwargs_from_env(environment=environ)
        )
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise _transport_error(exc, timeout, environ) from None


def _last_log_lines(container: Any, lines: int = 5) -> str:
    try:
        raw = container.logs(tail=lines)
    except Exception:
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return redact(" | ".join(tail))


def describe(container: Any, name: str) -> SandboxProbe:
    """Classify a container's state into running or a message that says what to do."""
    # Its logs and the agent's output may echo secrets that only the container knows.
    remember(container.attrs.get("Config", {}).get("Env"))
    state = container.attrs.get("State", {})
    status = state.get("Status", "unknown")
    if state.get("Restarting"):
        count = container.attrs.get("RestartCount", 0)
        return SandboxProbe(
            name,
            False,
            f"sandbox container '{name}' is restarting in a loop (restarted {count} times, last "
            f"exit code {state.get('ExitCode')}): see `docker logs {name}`",
        )
    if state.get("Paused"):
        return SandboxProbe(
            name,
            False,
            f"sandbox container '{name}' is paused: resume it with `docker unpause {name}`",
        )
    if state.get("Running"):
        image = container.attrs.get("Config", {}).get("Image", "?")
        return SandboxProbe(
            name,
            True,
            f"container '{name}' running (image {image}, started {state.get('StartedAt', '?')[:19]})",
            container,
        )
    if status == "exited":
        logs = _last_log_lines(container)
        message = (
            f"sandbox container '{name}' exited with code {state.get('ExitCode')}{_oom(state)}: "
            f"start it with `docker start {name}`"
        )
        return SandboxProbe(name, False, message + (f"; last log lines: {logs}" if logs else ""))
    if status == "created":
        return SandboxProbe(
            name, False, f"sandbox container '{name}' was never started: run `docker start {name}`"
        )
    return SandboxProbe(
        name,
        False,
        f"sandbox container '{name}' is {status}: remove it (`docker rm -f {name}`) and create it again",
    )


def _oom(state: Mapping[str, Any]) -> str:
    return " (OOM killed)" if state.get("OOMKilled") else ""


def stopped(container: Any, name: str) -> str | None:
    """What became of a container that was running, or None while it still runs."""
    state = container.attrs.get("State", {})
    if state.get("Running") and not state.get("Paused") and not state.get("Restarting"):
        return None
    if state.get("Status") == "exited":
        oom = ", OOM killed" if state.get("OOMKilled") else ""
        return (
            f"sandbox container '{name}' stopped (exit code {state.get('ExitCode')}{oom}): "
            f"start it with `docker start {name}`"
        )
    return describe(container, name).message


def create_hint(name: str) -> str:
    """How to make a missing sandbox container: the tool's own command first."""
    flag = "" if name == DEFAULT_SANDBOX else f" --name {name}"
    return (
        f"create it with `orchestrator sandbox up{flag}`, or run your own image "
        f"(`docker run -d --init --name {name} IMAGE sleep infinity`); another name: "
        "--orchestrator-sandbox / ORCHESTRATOR_SANDBOX"
    )


def probe(name: str, timeout: float, environ: Mapping[str, str] | None = None) -> SandboxProbe:
    """Find the sandbox container and say whether it runs; never raises."""
    import docker
    import requests

    environ = os.environ if environ is None else environ
    try:
        client = connect(timeout, environ)
        container = client.containers.get(name)
    except SandboxError as exc:
        return SandboxProbe(name, False, str(exc))
    except docker.errors.NotFound:
        return SandboxProbe(name, False, f"sandbox container '{name}' does not exist: {create_hint(name)}")
    # The SDK's APIError is a requests error too: the engine answered, so it is no transport failure.
    except docker.errors.APIError as exc:
        return SandboxProbe(name, False, redact(f"docker engine refused to inspect '{name}': {exc}"))
    except (requests.exceptions.RequestException, OSError) as exc:
        return SandboxProbe(name, False, str(_transport_error(exc, timeout, environ)))
    return describe(container, name)


# Finds every process carrying the dispatch's marker variable, so the agent and all
# its children stop together; killing the docker exec client would leave them running.
_STOP_SCRIPT = r"""
marker="$1"; signal="$2"; found=0
for dir in /proc/[0-9]*; do
  pid="${dir#/proc/}"
  [ "$pid" = "$$" ] && continue
  if { tr '\0' '\n' < "$dir/environ"; } 2>/dev/null | grep -qxF "$marker"; then
    kill "-$signal" "$pid" 2>/dev/null && found=$((found + 1))
  fi
done
echo "$found"
"""


def _count(result: ExecResult) -> int:
    """The number the stop script printed last; processes may vanish while it runs."""
    lines = result.output.strip().splitlines()
    return int(lines[-1]) if lines and lines[-1].strip().isdigit() else 0


# How long a process that died with its container may wait for the engine to say so.
_STOP_SETTLE = 2.0


def _write_stdin(raw: Any, data: bytes) -> None:
    """Write a process's whole stdin, then end it, so that it knows its input is complete."""
    try:
        raw.sendall(data)
        _end_stdin(raw)
    except OSError:
        # The process ended, or never started, before it read everything: its output says why.
        pass


def _end_stdin(raw: Any) -> None:
    if isinstance(raw, ssl.SSLSocket):
        # TLS has no half-close: its close_notify ends stdin, and the engine's output still
        # arrives until the engine sends its own.
        raw.setblocking(False)
        try:
            raw.unwrap()
        except ssl.SSLWantReadError:
            pass
        finally:
            raw.setblocking(True)
    elif hasattr(raw, "shutdown_write"):  # a paramiko channel (ssh://)
        raw.shutdown_write()
    elif getattr(raw, "proc", None) is not None:  # the ssh client as a subprocess
        raw.proc.stdin.close()
    else:
        raw.shutdown(socket.SHUT_WR)


def _start_writing(raw: Any, data: bytes) -> None:
    """Feed stdin while the caller reads the output, so neither side waits for the other."""
    if isinstance(raw, ssl.SSLSocket):
        # One TLS connection cannot be written and read from two threads at once; `claude -p`
        # reads all its input before it writes, so writing first does not block.
        _write_stdin(raw, data)
        return
    threading.Thread(target=_write_stdin, args=(raw, data), name="sandbox-stdin", daemon=True).start()


def _hang_up(connection: Any, raw: Any) -> None:
    """Close an exec's connection; a stdin writer still blocked on it stops too."""
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass
    connection.close()


class DockerSandbox:
    """The sandbox container; found on first use, so agents that never touch it cost nothing.

    The handle keeps the engine it was made for (the Docker variables of the environment
    it was attached in: an xdist worker's own `--tx ...//env:DOCKER_HOST=...`), so every
    call it makes, a stop included, goes to that engine.
    """

    def __init__(
        self,
        container: Any = None,
        timeout: float = 5.0,
        *,
        name: str | None = None,
        marker: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name: str = container.name if container is not None else str(name)
        self.timeout = timeout
        self.marker = marker
        self.environ = docker_env(environ)
        # Shared with the handles bound to each dispatch: one lookup, one streaming client.
        self._shared: dict[str, Any] = {"container": container, "client": None, "facts": {}}

    @property
    def engine(self) -> str:
        """The engine this handle talks to, as the state database records it."""
        return engine_id(self.environ)

    def for_dispatch(self, dispatch_id: str) -> DockerSandbox:
        """The same container, whose processes all carry `dispatch_id` as their marker."""
        bound = DockerSandbox(timeout=self.timeout, name=self.name, marker=dispatch_id, environ=self.environ)
        bound._shared = self._shared
        return bound

    def on_engine(self, engine: str, environ: Mapping[str, str] | None = None) -> DockerSandbox:
        """The container of the same name on `engine`; `environ` holds that engine's TLS settings
        (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), else this handle's are used."""
        if engine == self.engine:
            return self
        return DockerSandbox(
            timeout=self.timeout, name=self.name, environ=docker_env(environ or self.environ, engine)
        )

    @property
    def container(self) -> Any:
        """The running container; raises SandboxError saying what to do when it is not running."""
        if self._shared["container"] is None:
            found = probe(self.name, self.timeout, self.environ)
            if not found.running:
                raise SandboxError(found.message)
            self._shared["container"] = found.container
        return self._shared["container"]

    @contextmanager
    def stream(
        self,
        argv: Sequence[str],
        *,
        workdir: str,
        marker: str | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Iterator[tuple[Chunks, Callable[[], int | None]]]:
        """Start argv; yield (an iterator of (stdout, stderr) chunks, a function giving its exit code).

        `env` is added to the process's environment, and `stdin` is its whole input, written
        while its output is read: no size limit of the command line applies to it. Every
        process it starts carries the dispatch's id (or else `marker`) in its environment. If
        the caller leaves the block early (a timeout, Ctrl-C), they are all stopped in the
        sandbox: killing the Docker exec client would leave them running.

        A client without a read timeout carries the stream: an agent may stay silent
        for minutes while it thinks. pytest-timeout bounds the whole task instead.
        """
        import requests
        from docker.utils.socket import demux_adaptor, frames_iter

        # A handle bound to a dispatch always marks with its id: the one the state records.
        marker = self.marker or marker or uuid.uuid4().hex
        container = self.container
        if self._shared["client"] is None:
            self._shared["client"] = connect(None, self.environ)
        api = self._shared["client"].api
        try:
            exec_id = api.exec_create(
                container.id,
                list(argv),
                stdin=stdin is not None,
                environment={**(env or {}), MARKER_ENV: marker},
                workdir=workdir,
            )["Id"]
            connection = api.exec_start(exec_id, socket=True)
        except (requests.exceptions.RequestException, OSError) as exc:
            raise self._failure(exc, "start a process") from None
        raw = getattr(connection, "_sock", connection)

        def guarded() -> Chunks:
            try:
                for stream_id, data in frames_iter(connection, False):
                    yield demux_adaptor(stream_id, data)
            except (requests.exceptions.RequestException, OSError) as exc:
                raise self._failure(exc, "read a process's output") from None

        def exit_code() -> int | None:
            try:
                code = api.exec_inspect(exec_id).get("ExitCode")
            except (requests.exceptions.RequestException, OSError) as exc:
                raise self._failure(exc, "inspect a process") from None
            # Killed with the container, or never reaped: a container that stopped says why.
            if code is None or code >= 128:
                reason = self._stopped(settle=_STOP_SETTLE)
                if reason:
                    raise SandboxError(reason)
            return int(code) if code is not None else None

        try:
            if stdin is not None:
                _start_writing(raw, stdin)
            yield guarded(), exit_code
        except BaseException:
            self.stop_quietly(marker)
            raise
        finally:
            _hang_up(connection, raw)

    def _stopped(self, settle: float = 0.0) -> str | None:
        """Why the container no longer runs, or None while it runs (or cannot be asked).

        The engine marks a killed container as exited a moment after its processes died,
        so a caller that saw them die may wait `settle` seconds for the news.
        """
        import docker
        import requests

        container = self._shared["container"]
        if container is None:
            return None
        deadline = time.monotonic() + settle
        while True:
            try:
                container.reload()
            except docker.errors.NotFound:
                return f"sandbox container '{self.name}' was removed: {create_hint(self.name)}"
            except (requests.exceptions.RequestException, OSError):
                return None
            reason = stopped(container, self.name)
            if reason or time.monotonic() >= deadline:
                return reason
            time.sleep(0.1)

    def _failure(self, exc: BaseException, doing: str) -> SandboxError:
        """The error for a failed Docker call: the container stopped, the engine refused, or the
        connection failed (only that one is worth another attempt)."""
        import docker

        reason = self._stopped()
        if reason:
            return SandboxError(reason)
        # The SDK's APIError is a requests error too: the engine answered, so it is no transport failure.
        if isinstance(exc, docker.errors.APIError):
            return SandboxError(redact(f"cannot {doing} in sandbox '{self.name}': {exc}"))
        return _transport_error(exc, self.timeout, self.environ)

    def stop_quietly(self, marker: str) -> None:
        """Stop the marked processes; a failure to do so must not replace what is being handled."""
        try:
            self.stop_marked(marker)
        except SandboxError:
            pass

    def stop_marked(self, marker: str, grace: float = 2.0) -> int:
        """Stop every process in the sandbox started with `marker`; returns how many."""
        marker = f"{MARKER_ENV}={marker}"
        # Run unmarked: the stop script must not find itself.
        stopped = _count(self._run(["sh", "-c", _STOP_SCRIPT, "sh", marker, "TERM"]))
        deadline = time.monotonic() + grace
        while stopped and time.monotonic() < deadline:
            time.sleep(0.1)
            if _count(self._run(["sh", "-c", _STOP_SCRIPT, "sh", marker, "0"])) == 0:
                return stopped
        if stopped:
            self._run(["sh", "-c", _STOP_SCRIPT, "sh", marker, "KILL"])
        return stopped

    def exec(self, argv: Sequence[str], *, workdir: str | None = None) -> ExecResult:
        """Run argv in the container (no shell unless argv asks for one); marked when bound to a dispatch."""
        environment = {MARKER_ENV: self.marker} if self.marker else None
        return self._run(argv, workdir=workdir, environment=environment)

    def _run(
        self, argv: Sequence[str], *, workdir: str | None = None, environment: dict[str, str] | None = None
    ) -> ExecResult:
        import requests

        try:
            code, output = self.container.exec_run(list(argv), workdir=workdir, environment=environment)
        except (requests.exceptions.RequestException, OSError) as exc:
            raise self._failure(exc, "run a command") from None
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output or "")
        return ExecResult(code if code is not None else -1, text)

    def facts(self, credential_paths: Sequence[str]) -> SandboxFacts:
        """Look for credentials and tokens in one exec, shared by the checks that need them."""
        key = tuple(credential_paths)
        known: dict[tuple[str, ...], SandboxFacts] = self._shared["facts"]
        if key not in known:
            script = _FACTS_SCRIPT.replace("VARS", " ".join(AUTH_ENV + GITHUB_ENV))
            result = self._run(["sh", "-c", script, "sh", *key])
            if result.exit_code != 0:
                raise SandboxError(
                    f"cannot inspect sandbox '{self.name}' (exit {result.exit_code}): "
                    f"{redact(result.output.strip())[:200]}"
                )
            lines = result.output.splitlines()
            known[key] = SandboxFacts(
                files=tuple(line[5:] for line in lines if line.startswith("file:")),
                env=tuple(line[4:] for line in lines if line.startswith("env:")),
            )
        return known[key]


def attach(
    name: str, timeout: float, container: Any = None, environ: Mapping[str, str] | None = None
) -> DockerSandbox:
    """A handle on the named container of the engine `environ` points at (this process's by
    default), looked up on first use unless given."""
    return DockerSandbox(container, timeout, name=name, environ=environ)
