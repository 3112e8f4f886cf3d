"""The health checks against a real Docker engine and real sandbox containers (busybox, imported from scratch)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_orchestrator.sandbox import probe
from tests.support.checks import CHECKS

GH_TOKEN = "ghp_" + "Zx9" * 12
API_KEY = "sk-ant-api03-" + "Qw7" * 10


def document(result: pytest.RunResult) -> dict[str, Any]:
    """stdout parsed as JSON: it must be the health document and nothing else."""
    return json.loads("\n".join(result.outlines))


@pytest.fixture(autouse=True)
def _engine_env(clean_env: None, monkeypatch: pytest.MonkeyPatch, docker_client: Any) -> None:
    # The same secrets live in the caller's environment, where a careless message could pick them up.
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)


def health(pytester: pytest.Pytester, name: str, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    result = pytester.runpytest("--orchestrator-health", "--orchestrator-sandbox", name, *args)
    everything = result.stdout.str() + result.stderr.str()
    assert GH_TOKEN not in everything and API_KEY not in everything
    assert "Traceback" not in everything
    return result, document(result)


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {name: check["status"] for name, check in doc["checks"].items()}


def test_seed_e2e_scenario_healthy_stopped_started(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any], agent_image: str
) -> None:
    # Healthy takes Claude Code in the sandbox: the Debian image holds the real CLI.
    sandbox = make_sandbox(image=agent_image, env={"GH_TOKEN": GH_TOKEN, "ANTHROPIC_API_KEY": API_KEY})

    result, doc = health(pytester, sandbox.name)
    assert (result.ret, doc["status"]) == (0, "healthy")
    assert statuses(doc) == dict.fromkeys(CHECKS, "ok")
    assert re.fullmatch(
        r"Claude Code 2\.1\.\d+ \(claude\), in the tested range >=2\.1\.0,<2\.2\.0",
        doc["checks"]["claude_code"]["message"],
    )
    assert doc["checks"]["claude_auth"]["message"] == "ANTHROPIC_API_KEY set in the sandbox"
    assert doc["checks"]["github_token"]["message"] == "GH_TOKEN set in the sandbox"

    # -k selects the one check.
    result, doc = health(pytester, sandbox.name, "-k", "sandbox")
    assert statuses(doc) == {"sandbox": "ok"}

    sandbox.stop(timeout=1)
    result, doc = health(pytester, sandbox.name)
    assert (result.ret, doc["status"]) == (1, "unhealthy")
    assert statuses(doc) == {
        "sandbox": "failed",
        "claude_code": "skipped",
        "claude_auth": "skipped",
        "github_token": "skipped",
        "orchestrator": "ok",
        "zombies": "skipped",
        "task_backlog": "ok",
        "error_rate": "ok",
        "last_completion": "ok",
    }
    assert doc["checks"]["claude_auth"]["message"] == "sandbox not running"
    assert f"sandbox container '{sandbox.name}' exited with code" in doc["checks"]["sandbox"]["message"]
    assert f"docker start {sandbox.name}" in doc["checks"]["sandbox"]["message"]

    sandbox.start()
    result, doc = health(pytester, sandbox.name)
    assert (result.ret, doc["status"]) == (0, "healthy")


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (None, 'exec: "claude": executable file not found in $PATH'),
        # A CLI script whose interpreter the image lacks.
        (
            "printf '#!/usr/bin/env node\\n' > /bin/claude && chmod +x /bin/claude",
            "no such file or directory",
        ),
    ],
    ids=["missing", "unusable"],
)
def test_a_sandbox_without_a_working_claude_is_unhealthy(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any], setup: str | None, reason: str
) -> None:
    sandbox = make_sandbox(env={"GH_TOKEN": GH_TOKEN, "ANTHROPIC_API_KEY": API_KEY})
    if setup:
        assert sandbox.exec_run(["sh", "-c", setup]).exit_code == 0
    result, doc = health(pytester, sandbox.name)
    check = doc["checks"]["claude_code"]
    assert (result.ret, doc["status"]) == (1, "unhealthy")
    assert (check["status"], check["level"]) == ("failed", "error")
    assert re.match(
        rf"`claude --version` failed in sandbox '{sandbox.name}' \(exit \d+\): ", check["message"]
    )
    assert reason in check["message"]
    assert "install Claude Code in the sandbox image" in check["message"]
    assert statuses(doc)["claude_auth"] == "ok"


def test_a_claude_outside_the_tested_range_degrades(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any]
) -> None:
    sandbox = make_sandbox(env={"GH_TOKEN": GH_TOKEN, "ANTHROPIC_API_KEY": API_KEY})
    # No other Claude Code release is at hand offline: a script plays an old one's --version.
    script = "printf '#!/bin/sh\\necho \"1.0.3 (Claude Code)\"\\n' > /opt/claude && chmod +x /opt/claude"
    assert sandbox.exec_run(["sh", "-c", f"mkdir -p /opt && {script}"]).exit_code == 0
    result, doc = health(pytester, sandbox.name, "--orchestrator-claude-command", "/opt/claude")
    check = doc["checks"]["claude_code"]
    assert (result.ret, doc["status"]) == (0, "degraded")
    assert (check["status"], check["level"]) == ("failed", "warning")
    assert check["message"].startswith(
        "Claude Code 1.0.3 (/opt/claude) is outside the tested range >=2.1.0,<2.2.0"
    )


def test_empty_token_fails_github_token_only(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any]
) -> None:
    sandbox = make_sandbox(env={"GH_TOKEN": "", "GITHUB_TOKEN": "  ", "ANTHROPIC_API_KEY": API_KEY})
    result, doc = health(pytester, sandbox.name)
    assert result.ret == 1
    assert statuses(doc)["claude_auth"] == "ok"
    assert doc["checks"]["github_token"]["status"] == "failed"
    assert doc["checks"]["github_token"]["message"].startswith(
        f"GH_TOKEN is not set in sandbox '{sandbox.name}': recreate the container with GH_TOKEN set"
    )


def test_missing_credentials_say_what_was_looked_for(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any]
) -> None:
    sandbox = make_sandbox(env={"GH_TOKEN": GH_TOKEN})
    result, doc = health(pytester, sandbox.name, "-k", "claude_auth")
    message = doc["checks"]["claude_auth"]["message"]
    assert result.ret == 1
    assert doc["checks"]["claude_auth"]["status"] == "failed"
    for looked_for in (
        "~/.claude/.credentials.json",
        "/root/.claude/.credentials.json",
        "/home/ubuntu/.claude/credentials.json",
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
    ):
        assert looked_for in message
    assert "claude login" in message


def test_a_credentials_file_counts_and_its_paths_are_configurable(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any]
) -> None:
    sandbox = make_sandbox()
    sandbox.exec_run(
        [
            "sh",
            "-c",
            "mkdir -p /root/.claude && echo '{\"token\": 1}' > /root/.claude/.credentials.json",
        ]
    )
    result, doc = health(pytester, sandbox.name, "-k", "claude_auth")
    assert doc["checks"]["claude_auth"] == {
        **doc["checks"]["claude_auth"],
        "status": "ok",
        "message": "credentials file /root/.claude/.credentials.json",
    }
    # A configured list replaces the defaults, so the same file no longer counts.
    result, doc = health(
        pytester,
        sandbox.name,
        "-k",
        "claude_auth",
        "--orchestrator-credential-paths",
        "/opt/agent/creds.json",
    )
    assert doc["checks"]["claude_auth"]["status"] == "failed"
    assert "/opt/agent/creds.json" in doc["checks"]["claude_auth"]["message"]


def test_oauth_token_counts_as_credentials(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any]
) -> None:
    sandbox = make_sandbox(env={"CLAUDE_CODE_OAUTH_TOKEN": "oauth-" + "x" * 20})
    result, doc = health(pytester, sandbox.name, "-k", "claude_auth")
    assert doc["checks"]["claude_auth"]["message"] == "CLAUDE_CODE_OAUTH_TOKEN set in the sandbox"


def test_no_such_container_says_how_to_create_it(pytester: pytest.Pytester, docker_client: Any) -> None:
    result, doc = health(pytester, "orch-test-does-not-exist")
    message = doc["checks"]["sandbox"]["message"]
    assert message.startswith(
        "sandbox container 'orch-test-does-not-exist' does not exist: create it with "
        "`orchestrator sandbox up --name orch-test-does-not-exist`"
    )
    assert "docker run -d --init --name orch-test-does-not-exist" in message
    assert statuses(doc)["claude_auth"] == "skipped"


def test_paused_container(pytester: pytest.Pytester, make_sandbox: Callable[..., Any]) -> None:
    sandbox = make_sandbox(env={"GH_TOKEN": GH_TOKEN, "ANTHROPIC_API_KEY": API_KEY})
    sandbox.pause()
    try:
        result, doc = health(pytester, sandbox.name)
    finally:
        sandbox.unpause()
    assert result.ret == 1
    assert doc["checks"]["sandbox"]["message"] == (
        f"sandbox container '{sandbox.name}' is paused: resume it with `docker unpause {sandbox.name}`"
    )
    assert statuses(doc)["github_token"] == "skipped"


def test_exited_container_shows_exit_code_and_redacted_logs(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any]
) -> None:
    sandbox = make_sandbox(
        env={"GH_TOKEN": GH_TOKEN},
        command=[
            "sh",
            "-c",
            'echo "starting agent"; echo "token is $GH_TOKEN"; echo "fatal: no workspace"; exit 3',
        ],
    )
    sandbox.wait(timeout=30)
    result, doc = health(pytester, sandbox.name, "-k", "sandbox")
    message = doc["checks"]["sandbox"]["message"]
    assert f"exited with code 3: start it with `docker start {sandbox.name}`" in message
    assert "last log lines: starting agent | token is *** | fatal: no workspace" in message


def test_never_started_container(pytester: pytest.Pytester, docker_client: Any, busybox_image: str) -> None:
    container = docker_client.containers.create(busybox_image, name="orch-test-created-only")
    try:
        result, doc = health(pytester, container.name, "-k", "sandbox")
    finally:
        container.remove(force=True)
    assert doc["checks"]["sandbox"]["message"] == (
        "sandbox container 'orch-test-created-only' was never started: run `docker start orch-test-created-only`"
    )


def test_restart_loop_is_reported(make_sandbox: Callable[..., Any]) -> None:
    sandbox = make_sandbox(command=["sh", "-c", "exit 7"], restart_policy={"Name": "always"})
    # Docker backs off between restarts, so after a few the container spends most of its time restarting.
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        result = probe(sandbox.name, timeout=5)
        seen.append(result.message)
        if "restarting in a loop" in result.message:
            break
        time.sleep(0.2)
    assert not result.running
    assert "restarting in a loop" in result.message, seen[-3:]
    assert "last exit code 7" in result.message
    assert f"docker logs {sandbox.name}" in result.message


def test_command_line_gives_the_same_document(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any]
) -> None:
    sandbox = make_sandbox(env={"GH_TOKEN": GH_TOKEN, "ANTHROPIC_API_KEY": API_KEY})
    result = pytester.run(
        "orchestrator", "health", "--check", "sandbox", "--orchestrator-sandbox", sandbox.name
    )
    doc = document(result)
    assert (result.ret, list(doc["checks"]), doc["checks"]["sandbox"]["status"]) == (
        0,
        ["sandbox"],
        "ok",
    )
    sandbox.stop(timeout=1)
    result = pytester.run("orchestrator", "health", "--orchestrator-sandbox", sandbox.name)
    assert result.ret == 1
    assert statuses(document(result))["github_token"] == "skipped"


def test_a_secret_known_only_to_the_container_is_masked(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "plainsecretvalue42"  # not token-shaped, and not in the orchestrator's environment
    monkeypatch.delenv("GH_TOKEN")
    sandbox = make_sandbox(
        env={"GH_TOKEN": secret}, command=["sh", "-c", 'echo "token is $GH_TOKEN"; exit 1']
    )
    sandbox.wait(timeout=30)
    result = pytester.runpytest(
        "--orchestrator-health", "--orchestrator-sandbox", sandbox.name, "-k", "sandbox"
    )
    assert "last log lines: token is ***" in document(result)["checks"]["sandbox"]["message"]
    assert secret not in result.stdout.str() + result.stderr.str()
