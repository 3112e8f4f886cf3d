"""The sandbox the agents work in: what a backend offers, and how one is found.

A backend is a module with `probe(name, timeout)` and `attach(name, timeout)`; the
Docker engine is the one backend today, and a remote engine (`DOCKER_HOST=ssh://...`
or `tcp://...`) is the same backend. Backends are imported on first use, so a run that
never touches the sandbox never imports the Docker SDK.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

# The sandbox setting's default: the container's name when none is configured.
DEFAULT_SANDBOX = "orchestrator-sandbox"
AUTH_ENV = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
GITHUB_ENV = ("GH_TOKEN", "GITHUB_TOKEN")

# Every process started for a dispatch carries this variable, set to the dispatch id that
# the state database records, so a later run can stop what a killed run left behind.
MARKER_ENV = "ORCHESTRATOR_DISPATCH_ID"

Chunks = Iterator[tuple[bytes | None, bytes | None]]

BACKENDS = {"docker": "pytest_orchestrator.sandbox.docker"}


class SandboxError(Exception):
    """The sandbox cannot be reached or used; the message says what to do next.

    Another attempt would meet the same (a stopped container waits for someone to start it).
    """


class SandboxTransportError(SandboxError):
    """The connection to the sandbox's engine failed mid-way: worth another attempt."""


@dataclass(frozen=True)
class SandboxProbe:
    """What the engine says about the sandbox container."""

    name: str
    running: bool
    message: str
    container: Any = field(default=None, compare=False, repr=False)


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


class Sandbox(Protocol):
    """A place to run the agent's processes; what the dispatch hook and the checks get."""

    name: str

    @property
    def engine(self) -> str:
        """The engine the sandbox runs on, as the state database records it: an endpoint without
        credentials (`unix:///var/run/docker.sock`, `tcp://host-a:2376`)."""
        ...

    def stream(
        self,
        argv: Sequence[str],
        *,
        workdir: str,
        marker: str | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[tuple[Chunks, Callable[[], int | None]]]:
        """Start argv with `env` added to its environment and `stdin` as its whole input; yield
        its (stdout, stderr) chunks and a function giving its exit code.

        Leaving the block early stops every process it started, inside the sandbox.
        """
        ...

    def exec(self, argv: Sequence[str], *, workdir: str | None = None) -> ExecResult:
        """Run argv to its end (no shell unless argv asks for one)."""
        ...

    def stop_marked(self, marker: str, grace: float = 2.0) -> int:
        """Stop every process started with `marker`; return how many there were."""
        ...

    def stop_quietly(self, marker: str) -> None:
        """Stop the marked processes; never raises."""
        ...

    def facts(self, credential_paths: Sequence[str]) -> SandboxFacts:
        """Which of the credential files exist and which secret variables are set, never their values."""
        ...

    def for_dispatch(self, dispatch_id: str) -> Sandbox:
        """The same sandbox, whose processes all carry `dispatch_id` as their marker."""
        ...

    def on_engine(self, engine: str, environ: Mapping[str, str] | None = None) -> Sandbox:
        """The sandbox of the same name on another engine (`environ`: how to reach it, TLS and all)."""
        ...


def _backend(kind: str) -> Any:
    return importlib.import_module(BACKENDS[kind])


def probe(name: str, timeout: float, kind: str = "docker") -> SandboxProbe:
    """Find the sandbox container on this process's engine and say whether it runs; never raises."""
    result: SandboxProbe = _backend(kind).probe(name, timeout)
    return result


def attach(name: str, timeout: float, probed: SandboxProbe | None = None, kind: str = "docker") -> Sandbox:
    """A handle on the sandbox of this process's engine; the container is looked up on first use
    unless already probed."""
    result: Sandbox = _backend(kind).attach(name, timeout, probed.container if probed else None)
    return result
