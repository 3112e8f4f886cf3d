"""`orchestrator sandbox up | reset | down | shell | status` against a real engine and a real build.

The image is built from the packaged Dockerfile on a Debian base that debootstrap made and
the engine has locally (no registry here), with the host's Claude Code CLI copied in.
Every command runs as the user runs it, in a subprocess; every container and volume a test
names is removed after it, and no secret value may appear in anything a command printed.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.sandbox.image import INPUTS_LABEL, ensure_image, image_inputs, recorded_inputs
from pytest_orchestrator.sandbox.lifecycle import SANDBOX_LABEL
from pytest_orchestrator.sandbox.workspace import plan_slug
from tests.conftest import AGENT_API_KEY, AGENT_GH_TOKEN, require
from tests.support.messages_server import reply, tool_use

OAUTH_TOKEN = "sk-ant-oat01-" + "SbxOauth" * 5
CREDENTIALS_JSON = '{"claudeAiOauth": {"accessToken": "sk-ant-oat01-' + "SbxFile" * 6 + '"}}'
SECRETS = (AGENT_API_KEY, AGENT_GH_TOKEN, OAUTH_TOKEN, "SbxFile" * 6)


@pytest.fixture(scope="session")
def sandbox_base(docker_client: Any) -> str:
    """The Debian base with the sandbox's tools (debootstrap; .ci/setup imports it)."""
    from tests.support.debian_image import ImageBuildError, ensure_base_image

    try:
        return ensure_base_image()
    except ImageBuildError as exc:
        require("the Debian base image for sandbox builds", f"{exc} (.ci/setup imports it)")
        raise


@pytest.fixture(scope="session")
def claude_binary() -> Path:
    """The host's Claude Code binary, which the tests copy into the image."""
    from tests.support.debian_image import ImageBuildError, find_claude_binary

    try:
        return find_claude_binary()
    except ImageBuildError as exc:
        require("the Claude Code CLI", str(exc))
        raise


@pytest.fixture(scope="session")
def sandbox_image(docker_client: Any, sandbox_base: str, claude_binary: Path) -> str:
    """The image `up --base-image BASE --claude-binary CLAUDE` makes: built once, for every worker."""
    from tests.support.debian_image import build_lock

    inputs = image_inputs("/workspace", sandbox_base, None, claude_binary)
    with build_lock(inputs.tag):
        ensure_image(docker_client, inputs)
    return inputs.tag


@dataclass
class Cli:
    """Runs `orchestrator sandbox ...` in a subprocess and keeps everything it printed."""

    cwd: Path
    env: dict[str, str]
    names: list[str] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)

    def name(self) -> str:
        """A container name of this test's own, removed with its volume afterwards."""
        name = f"orch-sbx-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "pytest_orchestrator", "sandbox", *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.printed.append(done.stdout + done.stderr)
        return done

    def assert_no_secrets(self) -> None:
        everything = "\n".join(self.printed)
        for secret in SECRETS:
            assert secret not in everything


@pytest.fixture
def cli(clean_env: None, docker_client: Any, tmp_path: Path) -> Iterator[Cli]:
    env = {**os.environ, "ANTHROPIC_API_KEY": AGENT_API_KEY, "GH_TOKEN": AGENT_GH_TOKEN}
    env.pop("GITHUB_TOKEN", None)
    env.pop("CLAUDE_CODE_OAUTH_TOKEN", None)
    runner = Cli(tmp_path, env)
    yield runner
    for name in runner.names:
        for kind, found in (("containers", name), ("volumes", f"{name}-workspace")):
            try:
                getattr(docker_client, kind).get(found).remove(force=True)
            except Exception:
                pass
    runner.assert_no_secrets()


def build_args(base: str, binary: Path) -> list[str]:
    return ["--base-image", base, "--claude-binary", str(binary)]


def shell(container: Any, command: str) -> str:
    code, output = container.exec_run(["sh", "-c", command])
    assert code == 0, output
    return str(output.decode().strip())


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """A failure ends with one line on stderr (after any build progress), never a traceback."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("orchestrator: ")]
    assert len(errors) == 1, done.stderr
    assert done.stderr.rstrip().endswith(errors[0]), done.stderr
    return errors[0]


@pytest.fixture
def base_alias(docker_client: Any, sandbox_base: str) -> Iterator[str]:
    """The base under a name of this test's own: new build inputs, so `up` runs a real build."""
    tag = f"t{uuid.uuid4().hex[:10]}"
    docker_client.images.get(sandbox_base).tag("orchestrator-sandbox-base", tag)
    alias = f"orchestrator-sandbox-base:{tag}"
    yield alias
    for image in docker_client.images.list(filters={"label": INPUTS_LABEL}):
        if recorded_inputs(image.labels).get("base_image") == alias:
            for container in docker_client.containers.list(all=True, filters={"ancestor": image.id}):
                container.remove(force=True)
            docker_client.images.remove(image.id, force=True)
    docker_client.images.remove(alias)


def test_up_builds_the_image_starts_the_sandbox_and_waits_until_healthy(
    cli: Cli, docker_client: Any, base_alias: str, claude_binary: Path, sandbox_image: str
) -> None:
    name = cli.name()
    done = cli.run("up", "--name", name, *build_args(base_alias, claude_binary))

    assert done.returncode == 0, done.stdout + done.stderr
    version = re.match(r"\S+", subprocess.check_output([str(claude_binary), "--version"], text=True))
    assert version is not None
    tag = re.search(
        rf"created from (orchestrator-sandbox:{re.escape(version.group(0))}-[0-9a-f]{{12}}) \(built\)",
        done.stdout,
    )
    assert tag, done.stdout
    assert "credentials passed: ANTHROPIC_API_KEY, GH_TOKEN" in done.stdout
    assert "Step 1/" in done.stderr  # the build's progress
    assert "Health: healthy" in done.stdout
    for check in ("sandbox", "claude_code", "claude_auth", "github_token"):
        assert re.search(rf"✓ {check}\s", done.stdout), done.stdout
    container = docker_client.containers.get(name)
    attrs = container.attrs
    assert attrs["Config"]["Image"] == tag.group(1)
    assert attrs["HostConfig"]["Init"] is True
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["Config"]["Labels"][SANDBOX_LABEL] == "1"
    record = json.loads(attrs["Config"]["Labels"][INPUTS_LABEL])
    assert (record["base_image"], record["claude_version"], record["user"]) == (
        base_alias,
        version.group(0),
        "agent",
    )
    [mount] = [m for m in attrs["Mounts"] if m["Destination"] == "/workspace"]
    assert (mount["Type"], mount["Name"]) == ("volume", f"{name}-workspace")
    assert shell(container, "id -un; pwd") == "agent\n/workspace"
    assert shell(container, "claude --version").startswith(version.group(0))
    for tool in ("git", "python3", "bash", "rg", "ps"):
        shell(container, f"command -v {tool}")
    shell(container, "touch /workspace/written && test -O /workspace/written")
    # The credentials arrived by name, with the caller's values.
    assert shell(container, "printenv GH_TOKEN") == AGENT_GH_TOKEN
    assert shell(container, "printenv ANTHROPIC_API_KEY") == AGENT_API_KEY


def test_up_again_leaves_it_running_starts_it_when_stopped_and_names_other_inputs(
    cli: Cli, docker_client: Any, sandbox_base: str, claude_binary: Path, sandbox_image: str
) -> None:
    name = cli.name()
    first = cli.run("up", "--name", name, "--wait", "0", *build_args(sandbox_base, claude_binary))
    assert first.returncode == 0, first.stderr
    assert f"created from {sandbox_image} (reused)" in first.stdout
    container_id = docker_client.containers.get(name).id

    # Its time is measured by `python tests/bench/bench_sandbox_up.py`, not asserted here.
    again = cli.run("up", "--name", name)

    assert (again.returncode, again.stdout.strip()) == (0, f"sandbox container '{name}' is already running")
    docker_client.containers.get(name).stop(timeout=1)
    restarted = cli.run("up", "--name", name)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert f"sandbox container '{name}' started" in restarted.stdout
    assert "Health: healthy" in restarted.stdout
    assert docker_client.containers.get(name).id == container_id

    other = cli.run("up", "--name", name, "--network", "host")
    line = one_error_line(other)
    assert line == (
        f"orchestrator: sandbox container '{name}' was made from different inputs (network default → host): "
        "recreate it with `orchestrator sandbox reset` (add --keep-workspace to keep its files)"
    )
    assert docker_client.containers.get(name).attrs["HostConfig"]["NetworkMode"] != "host"
    version = sandbox_image.split(":")[1].rsplit("-", 1)[0]
    newer = one_error_line(cli.run("up", "--name", name, "--claude-version", "2.1.999"))
    assert f"'{name}' was made from different inputs (Claude Code {version} → 2.1.999)" in newer


def test_reset_recreates_it_with_an_empty_workspace_and_the_same_image_and_credentials(
    cli: Cli, docker_client: Any, sandbox_base: str, claude_binary: Path, sandbox_image: str
) -> None:
    name = cli.name()
    assert (
        cli.run("up", "--name", name, "--wait", "0", *build_args(sandbox_base, claude_binary)).returncode == 0
    )
    before = docker_client.containers.get(name)
    shell(before, "echo kept > /workspace/notes.txt")

    # The caller no longer has the token: the container's own travels to the new one.
    done = cli.run("reset", "--name", name, env={"GH_TOKEN": ""})

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"workspace volume '{name}-workspace' emptied" in done.stderr
    assert "Health: healthy" in done.stdout
    after = docker_client.containers.get(name)
    assert after.id != before.id
    assert after.image.id == before.image.id
    assert shell(after, "ls -A /workspace") == ""
    assert shell(after, "printenv GH_TOKEN") == AGENT_GH_TOKEN

    shell(after, "echo kept > /workspace/notes.txt")
    kept = cli.run("reset", "--name", name, "--keep-workspace", "--wait", "0")
    assert kept.returncode == 0, kept.stderr
    newest = docker_client.containers.get(name)
    assert newest.id != after.id
    assert shell(newest, "cat /workspace/notes.txt") == "kept"


def test_down_removes_it_and_the_health_check_says_to_run_sandbox_up(
    cli: Cli, docker_client: Any, sandbox_base: str, claude_binary: Path, sandbox_image: str, tmp_path: Path
) -> None:
    import docker

    name = cli.name()
    assert (
        cli.run("up", "--name", name, "--wait", "0", *build_args(sandbox_base, claude_binary)).returncode == 0
    )

    done = cli.run("down", "--name", name)

    assert (done.returncode, done.stdout.strip()) == (
        0,
        f"sandbox container '{name}' stopped and removed; its options go with it: `orchestrator sandbox up "
        f"--base-image {sandbox_base} --claude-binary {claude_binary}` makes the same one again",
    )
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)
    docker_client.volumes.get(f"{name}-workspace")  # kept without --volumes
    health = subprocess.run(
        [sys.executable, "-m", "pytest", "--orchestrator-health", "-p", "no:cacheprovider", "-k", "sandbox"],
        cwd=tmp_path,
        env={**cli.env, "ORCHESTRATOR_SANDBOX": name},
        capture_output=True,
        text=True,
        timeout=120,
    )
    document = json.loads(health.stdout)
    assert health.returncode == 1
    assert document["checks"]["sandbox"]["message"].startswith(
        f"sandbox container '{name}' does not exist: create it with `orchestrator sandbox up --name {name}`"
    )
    gone = cli.run("down", "--name", name, "--volumes")
    assert (
        gone.stdout.strip() == f"no sandbox container '{name}'; workspace volume '{name}-workspace' removed"
    )
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(f"{name}-workspace")


def test_credentials_are_in_the_sandbox_and_status_shows_only_their_names(
    cli: Cli, docker_client: Any, sandbox_base: str, claude_binary: Path, sandbox_image: str, tmp_path: Path
) -> None:
    env_file = tmp_path / "sandbox.env"
    env_file.write_text(
        f"# the sandbox's own\nCLAUDE_CODE_OAUTH_TOKEN={OAUTH_TOKEN}\nGITHUB_TOKEN\nLOG_LEVEL=debug\n"
    )
    login = tmp_path / "credentials.json"
    login.write_text(CREDENTIALS_JSON)
    login.chmod(0o644)
    name = cli.name()

    done = cli.run(
        "up",
        "--name",
        name,
        "--env-file",
        str(env_file),
        "--claude-credentials",
        str(login),
        *build_args(sandbox_base, claude_binary),
        env={"GITHUB_TOKEN": AGENT_GH_TOKEN},
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "credentials passed: ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN, GH_TOKEN, GITHUB_TOKEN"
        in done.stdout
    )
    assert "✓ claude_auth   credentials file /home/agent/.claude/.credentials.json" in done.stdout
    container = docker_client.containers.get(name)
    assert shell(container, "printenv CLAUDE_CODE_OAUTH_TOKEN") == OAUTH_TOKEN
    assert shell(container, "printenv GITHUB_TOKEN; printenv LOG_LEVEL") == f"{AGENT_GH_TOKEN}\ndebug"
    assert shell(container, "cat ~/.claude/.credentials.json") == CREDENTIALS_JSON
    assert container.exec_run(["sh", "-c", "echo x >> ~/.claude/.credentials.json"]).exit_code != 0

    text = cli.run("status", "--name", name)
    as_json = cli.run("status", "--name", name, "--json")

    assert (text.returncode, as_json.returncode) == (0, 0)
    assert (
        "Credentials: ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN, GH_TOKEN, GITHUB_TOKEN; credentials file from "
        in text.stdout
    )
    assert re.search(r"Status:\s+✓ Running \(up \d+s, 0 restarts\)", text.stdout), text.stdout
    assert f"Workspace:   /workspace (volume {name}-workspace)" in text.stdout
    document = json.loads(as_json.stdout)
    assert document["credentials"] == [
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "GH_TOKEN",
        "GITHUB_TOKEN",
    ]
    assert document["credentials_file"] == str(login)
    assert document["image"] == sandbox_image
    assert (document["state"], document["running"], document["made_here"]) == ("running", True, True)
    assert document["workspace"] == {"target": "/workspace", "kind": "volume", "source": f"{name}-workspace"}
    assert document["inputs"]["claude_version"] in sandbox_image
    cli.assert_no_secrets()
    # Nor in what the container itself logged.
    logs = container.logs().decode()
    assert not any(secret in logs for secret in SECRETS)


def test_an_image_of_your_own_is_used_as_it_is_and_remembered(
    cli: Cli, docker_client: Any, agent_image: str, sandbox_base: str
) -> None:
    name = cli.name()
    done = cli.run("up", "--name", name, "--image", agent_image, "--wait", "0")

    assert done.returncode == 0, done.stderr
    assert f"created from {agent_image} (reused)" in done.stdout
    assert "Step " not in done.stderr  # nothing was built
    container = docker_client.containers.get(name)
    assert container.attrs["Config"]["Image"] == agent_image
    assert cli.run("up", "--name", name).stdout.strip() == f"sandbox container '{name}' is already running"
    other = one_error_line(cli.run("up", "--name", name, "--base-image", sandbox_base))
    assert f"(image {agent_image} → orchestrator-sandbox:" in other
    container.stop(timeout=1)
    stopped = cli.run("status", "--name", name)
    assert stopped.returncode == 1
    assert re.search(rf"Status:\s+✗ Exited \(sandbox container '{name}' exited with code", stopped.stdout)


def test_a_container_the_tool_did_not_make_is_left_alone(
    cli: Cli, make_sandbox: Callable[..., Any], docker_client: Any, sandbox_base: str, claude_binary: Path
) -> None:
    theirs = make_sandbox()
    for action in (["up", *build_args(sandbox_base, claude_binary)], ["reset"], ["down", "--volumes"]):
        line = one_error_line(cli.run(action[0], "--name", theirs.name, *action[1:]))
        assert line.startswith(
            f"orchestrator: a container named '{theirs.name}' exists that `orchestrator sandbox` did not make"
        )
        assert f"`docker rm -f {theirs.name}`" in line
    theirs.reload()
    assert theirs.status == "running"
    status = cli.run("status", "--name", theirs.name)
    assert "(not made by orchestrator sandbox)" in status.stdout


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no engine", "docker daemon not reachable at unix://"),
        (
            "no base",
            "base image 'orchestrator-no-such-base:x' is not on this Docker engine and cannot be pulled (",
        ),
        ("missing binary", "--claude-binary {tmp}/nothing does not exist"),
        ("text binary", "--claude-binary {tmp}/notes.txt is not an executable file"),
        ("script binary", "--claude-binary {tmp}/claude.sh is not a native executable"),
        ("missing workspace", "--workspace {tmp}/absent does not exist"),
        ("bad env file", "--env-file {tmp}/bad.env:2: expected NAME=value"),
        ("failed build", "the image build failed at step "),
    ],
)
def test_bad_input_is_one_line(
    cli: Cli,
    tmp_path: Path,
    sandbox_base: str,
    claude_binary: Path,
    busybox_image: str,
    case: str,
    expected: str,
) -> None:
    (tmp_path / "notes.txt").write_text("not a program\n")
    script = tmp_path / "claude.sh"
    script.write_text("#!/bin/sh\necho 2.1.197\n")
    script.chmod(0o755)
    (tmp_path / "bad.env").write_text(f"A=1\nnot a name={OAUTH_TOKEN}\n")
    args = {
        "no base": ["--base-image", "orchestrator-no-such-base:x", "--claude-binary", str(claude_binary)],
        "missing binary": ["--claude-binary", str(tmp_path / "nothing")],
        "text binary": ["--claude-binary", str(tmp_path / "notes.txt")],
        "script binary": ["--claude-binary", str(script)],
        "missing workspace": [
            "--workspace",
            str(tmp_path / "absent"),
            *build_args(sandbox_base, claude_binary),
        ],
        "bad env file": ["--env-file", str(tmp_path / "bad.env"), *build_args(sandbox_base, claude_binary)],
        # busybox has neither the tools nor apt-get: the first RUN step fails.
        "failed build": ["--base-image", busybox_image, "--claude-version", "2.1.197"],
    }.get(case, [])
    env = {"DOCKER_HOST": f"unix://{tmp_path}/dead.sock"} if case == "no engine" else None
    name = cli.name()

    line = one_error_line(cli.run("up", "--name", name, *args, env=env))

    assert line.startswith("orchestrator: " + expected.format(tmp=tmp_path)), line
    if case == "failed build":
        assert "returned a non-zero code: 1; last lines: " in line
        assert (
            "the base image lacks git python3 bash ripgrep procps ca-certificates and has no apt-get" in line
        )
    if case == "no engine":
        assert "start it with `sudo systemctl start docker`" in line
    else:
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"name=^{name}$"], capture_output=True, text=True
        )
        assert listed.stdout.strip() == ""  # nothing half-made


def test_ctrl_c_during_the_build_leaves_nothing_behind(
    cli: Cli, docker_client: Any, base_alias: str, claude_binary: Path, sandbox_image: str
) -> None:
    name = cli.name()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_orchestrator",
            "sandbox",
            "up",
            "--name",
            name,
            *build_args(base_alias, claude_binary),
        ],
        cwd=cli.cwd,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "building orchestrator-sandbox:" in line:
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=120)
    cli.printed.append(out + err + "".join(seen))

    assert process.returncode == 130, "".join(seen) + err
    assert "orchestrator: interrupted" in err
    assert docker_client.containers.list(all=True, filters={"name": f"^{name}$"}) == []
    record_of = [
        json.loads(i.labels[INPUTS_LABEL]) for i in docker_client.images.list(filters={"label": INPUTS_LABEL})
    ]
    assert not any(r.get("base_image") == base_alias for r in record_of)


@pytest.mark.parametrize("through", ["docker CLI", "Docker SDK"])
def test_shell_opens_in_the_workspace_as_the_sandbox_user(
    cli: Cli, sandbox_base: str, claude_binary: Path, sandbox_image: str, through: str
) -> None:
    name = cli.name()
    assert (
        cli.run("up", "--name", name, "--wait", "0", *build_args(sandbox_base, claude_binary)).returncode == 0
    )
    env = dict(cli.env)
    if through == "Docker SDK":
        env["PATH"] = str(Path(sys.executable).parent)  # no docker CLI to be found

    pid, terminal = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes the command
        os.chdir(cli.cwd)
        os.execve(
            sys.executable,
            [sys.executable, "-m", "pytest_orchestrator", "sandbox", "shell", "--name", name],
            env,
        )
    os.write(terminal, b"pwd; id -un; echo answer-$((6 * 7)); exit 5\n")
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([terminal], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # the command ended and closed the terminal
            break
        if not chunk:
            break
        output += chunk
    if time.monotonic() >= deadline:  # a shell that never ended must not hang the suite
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    # Without the terminal's control sequences (bracketed paste, the window title) and CRs.
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", output.decode(errors="replace"))
    text = text.replace("\r", "")

    assert os.waitstatus_to_exitcode(status) == 5, text
    assert re.search(r"^/workspace$", text, re.MULTILINE), text
    assert re.search(r"^agent$", text, re.MULTILINE), text
    assert "answer-42" in text


def test_plans_in_parallel_work_in_directories_of_their_own(
    cli: Cli,
    docker_client: Any,
    sandbox_base: str,
    claude_binary: Path,
    sandbox_image: str,
    messages_server: Callable[..., Any],
    pytester: pytest.Pytester,
) -> None:
    def respond(body: dict[str, Any]) -> Any:
        content = body["messages"][-1].get("content")
        if isinstance(content, list) and any(block.get("type") == "tool_result" for block in content):
            return reply("Recorded the directory.\nSTATUS: complete")
        return tool_use("Bash", {"command": "pwd > where.txt", "description": "Record the directory"})

    server = messages_server(respond=respond)
    env_file = cli.cwd / "model.env"
    env_file.write_text(f"ANTHROPIC_BASE_URL={server.url}\nCLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1\n")
    name = cli.name()
    up = cli.run(
        "up",
        "--name",
        name,
        "--network",
        "host",
        "--env-file",
        str(env_file),
        *build_args(sandbox_base, claude_binary),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    plans = pytester.path / "plans"
    plans.mkdir()
    for plan in ("alpha", "beta"):
        (plans / f"{plan}.md").write_text(
            f"# {plan}\n\n## Task 1.1: Record where it works\n\n**Description:**\nWrite where.txt.\n\n"
            '```bash verify\ntest "$(cat where.txt)" = "$(pwd)"\n```\n'
        )

    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "plans",
        "--orchestrator-sandbox",
        name,
        "--orchestrator-workspace",
        "/workspace/{plan}",
        "-p",
        "no:cacheprovider",
    )

    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=2)
    container = docker_client.containers.get(name)
    found = shell(container, 'for f in /workspace/*/where.txt; do echo "$f $(cat "$f")"; done')
    expected = sorted(
        f"/workspace/{slug}/where.txt /workspace/{slug}"
        for slug in (plan_slug("plans/alpha.md"), plan_slug("plans/beta.md"))
    )
    assert sorted(found.splitlines()) == expected
    cli.printed.append(result.stdout.str() + result.stderr.str())
