"""The sandbox container, reached through the Docker SDK: probe its state and run commands in it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .redact import redact, remember

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

AUTH_ENV = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
GITHUB_ENV = ("GH_TOKEN", "GITHUB_TOKEN")

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


class SandboxError(Exception):
    """The sandbox cannot be reached or used; the message says what to do next."""


class SandboxTransportError(SandboxError):
    """The connection to the Docker engine failed mid-way: worth another attempt."""


def docker_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The Docker endpoint the SDK will use, for messages."""
    environ = os.environ if environ is None else environ
    return environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


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
    endpoint = docker_endpoint(environ)
    if _is_timeout(exc) and timeout is not None:
        return SandboxTransportError(
            f"docker daemon at {endpoint} did not answer within {timeout:g}s: check it with "
            "`docker info`, or raise --orchestrator-docker-timeout"
        )
    return SandboxTransportError(
        f"docker daemon not reachable at {endpoint}: start it with `sudo systemctl start docker` "
        "(or `sudo dockerd &`), or point DOCKER_HOST at a running engine"
    )


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


@dataclass(frozen=True)
class SandboxProbe:
    """What the engine says about the sandbox container."""

    name: str
    running: bool
    message: str
    container: Any = field(default=None, compare=False, repr=False)


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
            f"sandbox container '{name}' exited with code {state.get('ExitCode')}: "
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
        return SandboxProbe(
            name,
            False,
            f"sandbox container '{name}' does not exist: create it with "
            f"`docker run -d --name {name} IMAGE sleep infinity`, or name yours with "
            "--orchestrator-sandbox / ORCHESTRATOR_SANDBOX",
        )
    except (requests.exceptions.RequestException, OSError) as exc:
        return SandboxProbe(name, False, str(_transport_error(exc, timeout, environ)))
    except docker.errors.APIError as exc:
        return SandboxProbe(name, False, redact(f"docker engine refused to inspect '{name}': {exc}"))
    return describe(container, name)


@dataclass(frozen=True)
class ExecResult:
    """Exit code and combined output of a command run in the sandbox."""

    exit_code: int
    output: str


@dataclass(frozen=True)
class SandboxFacts:
    """Which credential files exist and which secret variables are set inside the sandbox."""

    files: tuple[str, ...]
    env: tuple[str, ...]


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

MARKER_ENV = "ORCHESTRATOR_DISPATCH_ID"


def _count(result: ExecResult) -> int:
    """The number the stop script printed last; processes may vanish while it runs."""
    lines = result.output.strip().splitlines()
    return int(lines[-1]) if lines and lines[-1].strip().isdigit() else 0


class Sandbox:
    """The sandbox container; found on first use, so agents that never touch it cost nothing."""

    def __init__(self, container: Any = None, timeout: float = 5.0, *, name: str | None = None) -> None:
        self._container = container
        self.name: str = container.name if container is not None else str(name)
        self.timeout = timeout
        self._facts: dict[tuple[str, ...], SandboxFacts] = {}
        self._streaming_client: Any = None

    @property
    def container(self) -> Any:
        """The running container; raises SandboxError saying what to do when it is not running."""
        if self._container is None:
            found = probe(self.name, self.timeout)
            if not found.running:
                raise SandboxError(found.message)
            self._container = found.container
        return self._container

    @contextmanager
    def stream(
        self, argv: Sequence[str], *, workdir: str, marker: str | None = None
    ) -> Iterator[tuple[Iterator[tuple[bytes | None, bytes | None]], Callable[[], int | None]]]:
        """Start argv; yield (an iterator of (stdout, stderr) chunks, a function giving its exit code).

        Every process it starts carries `marker` in its environment. If the caller leaves
        the block early (a timeout, Ctrl-C), they are all stopped in the sandbox: killing
        the Docker exec client would leave them running.

        A client without a read timeout carries the stream: an agent may stay silent
        for minutes while it thinks. pytest-timeout bounds the whole task instead.
        """
        import docker
        import requests

        marker = marker or uuid.uuid4().hex
        container = self.container
        if self._streaming_client is None:
            self._streaming_client = connect(None)
        api = self._streaming_client.api
        try:
            exec_id = api.exec_create(
                container.id, list(argv), environment={MARKER_ENV: marker}, workdir=workdir
            )["Id"]
            chunks = api.exec_start(exec_id, stream=True, demux=True)
        except (requests.exceptions.RequestException, OSError) as exc:
            raise _transport_error(exc, self.timeout, os.environ) from None
        except docker.errors.APIError as exc:
            raise SandboxError(redact(f"cannot start a process in sandbox '{self.name}': {exc}")) from None

        def guarded() -> Iterator[tuple[bytes | None, bytes | None]]:
            try:
                yield from chunks
            except (requests.exceptions.RequestException, OSError) as exc:
                raise _transport_error(exc, self.timeout, os.environ) from None

        def exit_code() -> int | None:
            try:
                code = api.exec_inspect(exec_id).get("ExitCode")
            except (requests.exceptions.RequestException, OSError) as exc:
                raise _transport_error(exc, self.timeout, os.environ) from None
            return int(code) if code is not None else None

        try:
            yield guarded(), exit_code
        except BaseException:
            self.stop_quietly(marker)
            raise

    def stop_quietly(self, marker: str) -> None:
        """Stop the marked processes; a failure to do so must not replace what is being handled."""
        try:
            self.stop_marked(marker)
        except SandboxError:
            pass

    def stop_marked(self, marker: str, grace: float = 2.0) -> int:
        """Stop every process in the sandbox started with `marker`; returns how many."""
        import time

        marker = f"{MARKER_ENV}={marker}"
        stopped = _count(self.exec(["sh", "-c", _STOP_SCRIPT, "sh", marker, "TERM"]))
        deadline = time.monotonic() + grace
        while stopped and time.monotonic() < deadline:
            time.sleep(0.1)
            if _count(self.exec(["sh", "-c", _STOP_SCRIPT, "sh", marker, "0"])) == 0:
                return stopped
        if stopped:
            self.exec(["sh", "-c", _STOP_SCRIPT, "sh", marker, "KILL"])
        return stopped

    def exec(self, argv: Sequence[str], **kwargs: Any) -> ExecResult:
        """Run argv in the container (no shell unless argv asks for one)."""
        import docker
        import requests

        try:
            code, output = self.container.exec_run(list(argv), **kwargs)
        except (requests.exceptions.RequestException, OSError) as exc:
            raise _transport_error(exc, self.timeout, os.environ) from None
        except docker.errors.APIError as exc:
            raise SandboxError(redact(f"cannot run a command in sandbox '{self.name}': {exc}")) from None
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output or "")
        return ExecResult(code if code is not None else -1, text)

    def facts(self, credential_paths: Sequence[str]) -> SandboxFacts:
        """Look for credentials and tokens in one exec, shared by the checks that need them."""
        key = tuple(credential_paths)
        if key not in self._facts:
            script = _FACTS_SCRIPT.replace("VARS", " ".join(AUTH_ENV + GITHUB_ENV))
            result = self.exec(["sh", "-c", script, "sh", *key])
            if result.exit_code != 0:
                raise SandboxError(
                    f"cannot inspect sandbox '{self.name}' (exit {result.exit_code}): "
                    f"{redact(result.output.strip())[:200]}"
                )
            lines = result.output.splitlines()
            self._facts[key] = SandboxFacts(
                files=tuple(line[5:] for line in lines if line.startswith("file:")),
                env=tuple(line[4:] for line in lines if line.startswith("env:")),
            )
        return self._facts[key]
