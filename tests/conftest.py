"""Fixtures that give the tests real components: a Docker engine, sandbox containers, an OTLP receiver."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Imported here, before any in-process pytester run: pytester restores sys.modules after
# each run, and a library imported anew by the next one no longer matches the classes
# its already-imported dependents hold (requests' cookie jar, its exception types).
import docker  # noqa: F401
import opentelemetry.exporter.otlp.proto.http.metric_exporter
import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
import pytest
import requests  # noqa: F401

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(component: str, how: str) -> None:
    """A missing real component fails the test in CI and skips it elsewhere, saying how to get it."""
    message = f"{component} is not available: {how}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: real components are required)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the caller's orchestrator, telemetry, Docker or xdist settings reaches inner runs."""
    for name in list(os.environ):
        if name.startswith(("ORCHESTRATOR_", "OTEL_", "PYTEST_XDIST_")) or name in (
            "DOCKER_HOST",
            "PYTEST_TIMEOUT",
            "PYTEST_ADDOPTS",
        ):
            monkeypatch.delenv(name)


@pytest.fixture
def dead_docker(clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    """A clean environment whose Docker endpoint is a socket nobody listens on."""
    endpoint = f"unix://{tmp_path}/dead.sock"
    monkeypatch.setenv("DOCKER_HOST", endpoint)
    return endpoint


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


@pytest.fixture(scope="session")
def second_engine(docker_client: Any, agent_image: str, busybox_image: str) -> Iterator[Any]:
    """A second Docker engine on this machine with the agent image loaded; afterwards the first
    engine's bridge network must still work."""
    from tests.support.engines import EngineError, SecondEngine, first_engine_networking

    engine = SecondEngine()
    try:
        engine.start()
        seconds = engine.load_image(docker_client, agent_image)
        print(f"second engine at {engine.host}: {agent_image} loaded in {seconds:.1f}s")
    except EngineError as exc:
        engine.stop()
        require("a second Docker engine", str(exc))
    except BaseException:
        engine.stop()
        raise
    yield engine
    engine.stop()
    broken = first_engine_networking(docker_client, busybox_image)
    assert broken is None, f"the second engine broke the first one's network: {broken}"


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
                **(env or {}),
            },
        )

    return start


@pytest.fixture
def agent_env(clean_env: None, monkeypatch: pytest.MonkeyPatch, docker_client: Any) -> None:
    """The orchestrator's own environment for agent runs: known secrets, nothing inherited."""
    # The secrets are in the orchestrator's environment too, where a careless log line could leak them.
    monkeypatch.setenv("ANTHROPIC_API_KEY", AGENT_API_KEY)
    monkeypatch.setenv("GH_TOKEN", AGENT_GH_TOKEN)


def attempt_rows(directory: Path, columns: str) -> list[tuple[Any, ...]]:
    """`columns` of the attempts recorded in the state database under `directory`, oldest first."""
    from pytest_orchestrator.state import StateStore

    store = StateStore.read(directory / ".orchestrator")
    assert store is not None
    try:
        return [tuple(row) for row in store.conn.execute(f"SELECT {columns} FROM attempts ORDER BY id")]
    finally:
        store.close()


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


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mounts a small tmpfs (a real full disk, a real read-only mount): `tmpfs(size="1m")`."""
    mounted: list[Path] = []

    def mount(size: str = "1m") -> Path:
        target = tmp_path / f"tmpfs{len(mounted)}"
        target.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            require("mounting a tmpfs", f"{done.stderr.strip()}; run the tests as root, as CI does")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def remount_read_only(target: Path) -> None:
    """Makes a tmpfs from the `tmpfs` fixture read-only."""
    subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True, capture_output=True)
