"""The sandbox container, reached through the Docker SDK: probe its state and run commands in it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .redact import redact

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


def _transport_error(exc: BaseException, timeout: float, environ: Mapping[str, str]) -> SandboxError:
    endpoint = docker_endpoint(environ)
    if _is_timeout(exc):
        return SandboxError(
            f"docker daemon at {endpoint} did not answer within {timeout:g}s: check it with "
            "`docker info`, or raise --orchestrator-docker-timeout"
        )
    return SandboxError(
        f"docker daemon not reachable at {endpoint}: start it with `sudo systemctl start docker` "
        "(or `sudo dockerd &`), or point DOCKER_HOST at a running engine"
    )


def connect(timeout: float, environ: Mapping[str, str] | None = None) -> Any:
    """A Docker client bound by `timeout` per call; raises SandboxError with the next step."""
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
            name, False, f"sandbox container '{name}' is paused: resume it with `docker unpause {name}`"
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


class Sandbox:
    """A running sandbox container."""

    def __init__(self, container: Any, timeout: float) -> None:
        self.container = container
        self.name: str = container.name
        self.timeout = timeout
        self._facts: dict[tuple[str, ...], SandboxFacts] = {}

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
