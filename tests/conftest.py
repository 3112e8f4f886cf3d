"""Fixtures that give the tests real components: a Docker engine, sandbox containers, an OTLP receiver."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(component: str, how: str) -> None:
    """A missing real component fails the test in CI and skips it elsewhere, saying how to get it."""
    message = f"{component} is not available: {how}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: real components are required)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A client of the real Docker engine that .ci/run starts."""
    try:
        import docker

        client = docker.DockerClient(version="auto", timeout=30)
        client.ping()
    except Exception as exc:
        require(
            "a Docker engine",
            f"{type(exc).__name__}; install Debian's docker.io and start `dockerd` as root "
            "(.ci/run does both)",
        )
    return client


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """The tiny sandbox image, imported from a busybox-static rootfs."""
    from tests.support.images import ensure_busybox_image

    try:
        return ensure_busybox_image(docker_client)
    except FileNotFoundError as exc:
        require("busybox-static", str(exc))
        raise


@pytest.fixture
def make_sandbox(docker_client: Any, busybox_image: str) -> Iterator[Callable[..., Any]]:
    """Start sandbox containers with a unique name; all are removed afterwards."""
    started: list[Any] = []

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> Any:
        name = f"orch-test-{uuid.uuid4().hex[:10]}"
        container = docker_client.containers.run(
            kwargs.pop("image", busybox_image),
            name=name,
            detach=True,
            environment=env or {},
            **kwargs,
        )
        started.append(container)
        return container

    yield start
    for container in started:
        try:
            container.remove(force=True)
        except Exception:
            pass


AGENT_API_KEY = "sk-ant-api03-" + "E2eKey" * 6
AGENT_GH_TOKEN = "ghp_" + "E2eTok" * 6


@pytest.fixture(scope="session")
def agent_image(docker_client: Any) -> str:
    """The Debian sandbox image holding the real `claude` binary (built by .ci/setup, or here)."""
    from tests.support.debian_image import ImageBuildError, ensure_debian_image

    try:
        return ensure_debian_image()
    except ImageBuildError as exc:
        require("the Debian sandbox image with Claude Code", f"{exc} (.ci/setup builds it)")
        raise


@pytest.fixture
def messages_server() -> Iterator[Callable[..., Any]]:
    """Start scripted Anthropic Messages API servers on loopback; all are closed afterwards."""
    from tests.support.messages_server import MessagesServer

    servers: list[Any] = []

    def start(*steps: Any, **kwargs: Any) -> Any:
        server = MessagesServer(list(steps), **kwargs)
        server.__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def agent_sandbox(make_sandbox: Callable[..., Any], agent_image: str) -> Callable[..., Any]:
    """A sandbox running the real Claude Code CLI against a scripted server (host network)."""

    def start(server: Any, env: dict[str, str] | None = None) -> Any:
        return make_sandbox(
            image=agent_image,
            network_mode="host",
            env={
                "ANTHROPIC_BASE_URL": server.url,
                "ANTHROPIC_API_KEY": AGENT_API_KEY,
                "GH_TOKEN": AGENT_GH_TOKEN,
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                # Claude Code's own retries would make every error test take minutes.
                "CLAUDE_CODE_MAX_RETRIES": "0",
                **(env or {}),
            },
        )

    return start


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch, docker_client: Any) -> None:
    """The orchestrator's own environment for agent runs: known secrets, nothing inherited."""
    for name in ("DOCKER_HOST", "OTEL_EXPORTER_OTLP_ENDPOINT", "ORCHESTRATOR_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    # The secrets are in the orchestrator's environment too, where a careless log line could leak them.
    monkeypatch.setenv("ANTHROPIC_API_KEY", AGENT_API_KEY)
    monkeypatch.setenv("GH_TOKEN", AGENT_GH_TOKEN)


def task_run_args(sandbox: Any) -> list[str]:
    """The flags every end-to-end task run uses: the sandbox, no cache, a JSON report."""
    return [
        "--orchestrator-sandbox",
        sandbox.name,
        "-p",
        "no:cacheprovider",
        "--json-report",
        "--json-report-file",
        "report.json",
    ]
