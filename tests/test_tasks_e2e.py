"""Plan tasks end to end: the real Claude Code CLI in a real Debian sandbox, against a scripted model.

Only the model is a script (a Messages API server on loopback); the CLI, the Docker
engine, the container, the state database and the OTLP export are real.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.state import StateStore
from tests.conftest import AGENT_API_KEY, AGENT_GH_TOKEN, attempt_rows, task_run_args
from tests.support.messages_server import error, hang, reply, tool_use

REPO = Path(__file__).resolve().parents[1]
HELLO = tool_use("Write", {"file_path": "/workspace/hello.py", "content": 'print("Hello, World!")\n'})


@pytest.fixture(autouse=True)
def _env(agent_env: None) -> None:
    """Every test here runs agents with known secrets in the environment."""


def copy_plan(pytester: pytest.Pytester, name: str) -> str:
    target = pytester.path / "plans"
    target.mkdir(exist_ok=True)
    shutil.copy(REPO / "plans" / name, target / name)
    return f"plans/{name}"


def write_plan(pytester: pytest.Pytester, text: str, name: str = "x.md") -> str:
    target = pytester.path / "plans"
    target.mkdir(exist_ok=True)
    (target / name).write_text(text)
    return f"plans/{name}"


def run(pytester: pytest.Pytester, sandbox: Any, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    result = pytester.runpytest_subprocess(*args, *task_run_args(sandbox))
    report_path = pytester.path / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    everything = result.stdout.str() + result.stderr.str() + (report_path.read_text() if report else "")
    assert AGENT_API_KEY not in everything and AGENT_GH_TOKEN not in everything
    return result, report


def task_data(report: dict[str, Any], nodeid: str) -> dict[str, Any]:
    test = next(t for t in report["tests"] if t["nodeid"] == nodeid)
    return dict(test["metadata"]["orchestrator_task"])


ONE_TASK = """\
# Milestone

## Task 1.1: {title}

**Description:**
Do the thing.

**Acceptance Criteria:**
- [ ] It is done
"""


def test_hello_world_runs_with_the_real_cli(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    server = messages_server(
        tool_use(
            HELLO.name,
            HELLO.input,
            usage={"input_tokens": 1000, "output_tokens": 50, "cache_read_input_tokens": 200},
        ),
        reply(
            "Created hello.py.\nSTATUS: complete",
            usage={"input_tokens": 1100, "output_tokens": 10, "cache_creation_input_tokens": 30},
        ),
    )
    sandbox = agent_sandbox(server)
    plan = copy_plan(pytester, "hello_world.md")

    result, report = run(pytester, sandbox, plan)

    assert result.ret == 0, result.stdout.str()
    assert sandbox.exec_run(["python3", "/workspace/hello.py"]).output == b"Hello, World!\n"
    data = task_data(report, f"{plan}::1.1")
    assert data["status"] == "completed"
    assert data["verification"] == {"exit_code": 0, "output": "", "passed": True}
    assert data["usage"] == {
        "input_tokens": 2100,
        "output_tokens": 60,
        "cache_read_tokens": 200,
        "cache_creation_tokens": 30,
    }
    assert data["tokens"] == 2390
    # Claude Code prices its default model at $5 / $25 / $0.50 / $6.25 per million tokens.
    assert data["cost_usd"] == pytest.approx((2100 * 5 + 60 * 25 + 200 * 0.5 + 30 * 6.25) / 1e6)
    assert data["num_turns"] == 2
    assert re.fullmatch(r"[0-9a-f-]{36}", data["session_id"])
    assert report["summary"]["orchestrator"]["tokens"] == 2390
    assert "[1.1] turn 1: tool: Write /workspace/hello.py" in result.stdout.str()
    result.stdout.re_match_lines([r"\[\d\d:\d\d:\d\d\] Task 1\.1: COMPLETED \(\d+s, 2\.4k tokens, \$0\.01\)"])
    # The prompt carried the task and the protocol.
    prompt = json.dumps(server.requests[0]["messages"])
    for expected in (
        "Task 1.1: Create hello.py",
        "plans/hello_world.md",
        "Hello, World!",
        "STATUS: complete",
    ):
        assert expected in prompt
    store = StateStore.read(pytester.path / ".orchestrator")
    assert store is not None
    row = store.conn.execute("SELECT status, input_tokens, cost_usd, session_id FROM attempts").fetchall()
    assert [tuple(r) for r in row] == [
        ("completed", 2100, pytest.approx(data["cost_usd"]), data["session_id"])
    ]


def test_verification_failure_fails_the_task(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    wrong = tool_use("Write", {"file_path": "/workspace/hello.py", "content": 'print("Goodbye")\n'})
    sandbox = agent_sandbox(messages_server(wrong, reply("STATUS: complete")))
    plan = copy_plan(pytester, "hello_world.md")
    result, report = run(pytester, sandbox, plan)
    assert result.ret == 1
    data = task_data(report, f"{plan}::1.1")
    assert data["verification"]["passed"] is False
    assert data["verification"]["exit_code"] == 1
    result.stdout.fnmatch_lines(["*Task 1.1 FAILED: verification exited 1*"])


def test_needs_human_then_guidance_resumes_the_session(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    server = messages_server(
        reply(
            "I need a decision.\nSTATUS: needs_human\nQUESTION: Which web framework?\n"
            "OPTIONS: flask | fastapi\nRECOMMENDATION: fastapi"
        )
    )
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, ONE_TASK.format(title="Build the API"))
    result, report = run(pytester, sandbox, plan)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*Task 1.1: NEEDS_HUMAN*",
            "*= needs human =*",
            f"{plan}::1.1: Build the API",
            "  QUESTION: Which web framework?",
            "  OPTIONS: flask | fastapi",
            "  RECOMMENDATION: fastapi",
            "*1 needs_human*",
        ]
    )
    data = task_data(report, f"{plan}::1.1")
    assert (data["status"], data["question"], data["options"], data["recommendation"]) == (
        "needs_human",
        "Which web framework?",
        ["flask", "fastapi"],
        "fastapi",
    )

    server.add(reply("Used fastapi.\nSTATUS: complete"))
    result = pytester.run(
        "orchestrator",
        "task",
        plan,
        "1.1",
        "-g",
        "use fastapi",
        "--orchestrator-sandbox",
        sandbox.name,
    )
    assert result.ret == 0, result.stdout.str()
    resumed = json.dumps(server.requests[-1]["messages"])
    assert "Which web framework?" in resumed  # the earlier conversation came back: a resumed session
    assert "use fastapi" in resumed


def test_agent_reports_failure(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    sandbox = agent_sandbox(messages_server(reply("STATUS: failed\nERROR: the disk is read-only")))
    plan = write_plan(pytester, ONE_TASK.format(title="Write files"))
    result, report = run(pytester, sandbox, plan)
    assert result.ret == 1
    assert task_data(report, f"{plan}::1.1")["error"] == "the disk is read-only"
    result.stdout.fnmatch_lines(["*Task 1.1 FAILED: the disk is read-only*"])


def test_final_message_without_status(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    sandbox = agent_sandbox(messages_server(reply("All done, I think.")))
    plan = write_plan(pytester, ONE_TASK.format(title="Vague"))
    result, report = run(pytester, sandbox, plan)
    assert result.ret == 1
    assert (
        task_data(report, f"{plan}::1.1")["error"] == "final message has no STATUS line: All done, I think."
    )


@pytest.mark.parametrize("status", [500, 429])
def test_api_errors_fail_the_task_after_claude_retries(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
    status: int,
) -> None:
    server = messages_server(
        error(status, headers={"retry-after": "0"}), error(status, headers={"retry-after": "0"})
    )
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, ONE_TASK.format(title="Throttled"))
    result, report = run(
        pytester,
        sandbox,
        plan,
        "--orchestrator-retry-attempts",
        "1",
        "--orchestrator-claude-max-retries",
        "1",
    )
    assert result.ret == 1
    data = task_data(report, f"{plan}::1.1")
    assert data["status"] == "failed"
    assert data["error"].startswith("agent error: API Error")
    assert str(status) in data["error"]
    assert len(server.requests) == 2  # Claude Code retried once, as configured


def test_api_error_then_success_passes(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    server = messages_server(error(529, headers={"retry-after": "0"}), reply("STATUS: complete"))
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, ONE_TASK.format(title="Overloaded once"))
    result, _ = run(pytester, sandbox, plan, "--orchestrator-claude-max-retries", "1")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*API error 529, retry 1/1*"])


def test_max_turns_fails_with_the_reason(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    sandbox = agent_sandbox(messages_server(HELLO, HELLO, reply("STATUS: complete")))
    plan = write_plan(pytester, ONE_TASK.format(title="Too long"))
    result, report = run(pytester, sandbox, plan, "--orchestrator-max-turns", "1")
    assert result.ret == 1
    assert task_data(report, f"{plan}::1.1")["error"].startswith("max turns reached")


def test_a_hung_agent_is_stopped_inside_the_sandbox(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    server = messages_server(hang(120))
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, ONE_TASK.format(title="Hangs"))
    started = time.monotonic()
    result, _ = run(pytester, sandbox, plan, "--timeout", "8")
    assert time.monotonic() - started < 60
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*Task 1.1: TIMEOUT after 8s (agent stopped in the sandbox)*"])
    assert "Thread" not in result.stdout.str()
    listing = sandbox.exec_run(["ps", "-eo", "stat=,pid=,args="]).output.decode()
    # Zombies are dead processes that the container's PID 1 (sleep) never reaps.
    left = [line for line in listing.splitlines() if "claude" in line and not line.strip().startswith("Z")]
    assert left == [], f"claude still running in the sandbox: {left}"
    store = StateStore.read(pytester.path / ".orchestrator")
    assert store is not None
    assert store.conn.execute("SELECT status FROM attempts").fetchone()[0] == "timeout"


def test_a_hostile_title_is_never_run_by_a_shell(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    title = "$(touch /tmp/pwned) `touch /tmp/pwned2` \"quoted\" 'single'; touch /tmp/pwned3"
    server = messages_server(reply("STATUS: complete"))
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, ONE_TASK.format(title=title))
    result, _ = run(pytester, sandbox, plan)
    assert result.ret == 0
    assert sandbox.exec_run(["sh", "-c", "ls /tmp/pwned*"]).exit_code != 0
    assert title in json.dumps(server.requests[0]["messages"], ensure_ascii=False).replace('\\"', '"')


def test_state_says_working_while_the_task_runs(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    server = messages_server(reply("STATUS: complete", delay=6))
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, ONE_TASK.format(title="Slow"))
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=run(pytester, sandbox, plan)))
    runner.start()
    deadline = time.monotonic() + 30
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    health = subprocess.run(
        ["pytest", "--orchestrator-health", "-k", "orchestrator", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
    )
    runner.join()
    message = json.loads(health.stdout)["checks"]["orchestrator"]["message"]
    assert message.startswith(f"working on task 1.1 ({plan}), started ")
    assert outcome["result"][0].ret == 0
    after = subprocess.run(
        ["pytest", "--orchestrator-health", "-k", "orchestrator", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        capture_output=True,
        text=True,
    )
    assert json.loads(after.stdout)["checks"]["orchestrator"]["message"] == "idle"


def test_task_telemetry_reaches_an_otlp_receiver(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.otlp_receiver import OTLPReceiver

    sandbox = agent_sandbox(messages_server(HELLO, reply("STATUS: complete")))
    plan = copy_plan(pytester, "hello_world.md")
    with OTLPReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        result, report = run(pytester, sandbox, plan)
        assert result.ret == 0
        data = task_data(report, f"{plan}::1.1")
        spans = [s for s in receiver.spans() if s.name == "orchestrator.task"]
        assert len(spans) == 1
        attributes = spans[0].attributes
        assert attributes["task.id"] == "1.1"
        assert attributes["task.title"] == "Create hello.py"
        assert attributes["task.status"] == "completed"
        assert attributes["claude.tokens"] == data["tokens"]
        assert attributes["claude.cost_usd"] == pytest.approx(data["cost_usd"])
        assert attributes["claude.session_id"] == data["session_id"]
        assert attributes["claude.num_turns"] == 2
        assert attributes["task.engine"] == data["engine"] == "unix:///var/run/docker.sock"
        assert attributes["gen_ai.system"] == "anthropic"
        assert attributes["gen_ai.usage.input_tokens"] == data["usage"]["input_tokens"]
        assert attributes["gen_ai.usage.output_tokens"] == data["usage"]["output_tokens"]
        assert receiver.metric("orchestrator_tasks_total").value(status="completed") == 1
        assert receiver.metric("orchestrator_tokens_total").value() == data["tokens"]
        assert receiver.metric("orchestrator_cost_usd_total").value() == pytest.approx(data["cost_usd"])
        exported = json.dumps([s.attributes for s in receiver.spans()])
        assert AGENT_API_KEY not in exported and AGENT_GH_TOKEN not in exported


def test_a_sandbox_without_claude_fails_once_with_the_reason(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any]
) -> None:
    sandbox = make_sandbox()  # busybox: no claude in it
    plan = write_plan(pytester, ONE_TASK.format(title="Nobody home"))
    result, report = run(pytester, sandbox, plan, "--orchestrator-retry-delay", "0.1")
    assert result.ret == 1
    data = task_data(report, f"{plan}::1.1")
    assert "executable file not found" in data["error"], data["error"]
    assert data["error"].startswith("claude exited with code 126 without a result: ")
    # Another attempt would meet the same missing command.
    assert attempt_rows(pytester.path, "attempt, status") == [(1, "failed")]
    assert len(data["attempts"]) == 1


def test_a_sandbox_stopped_during_the_task_says_so_and_is_not_retried(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    server = messages_server(hang(60))
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, ONE_TASK.format(title="Interrupted by the host"))
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(result=run(pytester, sandbox, plan)))
    runner.start()
    deadline = time.monotonic() + 60
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.requests, "the agent never called the model"
    sandbox.kill()
    runner.join(timeout=120)
    result, report = outcome["result"]
    assert result.ret == 1
    error_text = task_data(report, f"{plan}::1.1")["error"]
    assert error_text.startswith(
        f"sandbox container '{sandbox.name}' stopped (exit code 137): "
        f"start it with `docker start {sandbox.name}`"
    ), error_text
    assert "daemon not reachable" not in result.stdout.str()
    assert attempt_rows(pytester.path, "attempt, status") == [(1, "failed")]


def test_a_mebibyte_task_dispatches_whole(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    # Linux limits one argv element to 128 KiB; the prompt must travel another way.
    marker = "END-OF-THE-LONG-TASK-7f3a"
    body = "\n".join(f"line {n}: " + "lorem ipsum dolor sit amet " * 3 for n in range(12_000))
    assert len(body) > 1024 * 1024
    server = messages_server(reply("STATUS: complete"))
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, ONE_TASK.format(title="Long").replace("Do the thing.", f"{body}\n{marker}"))
    result, report = run(pytester, sandbox, plan)
    assert result.ret == 0, result.stdout.str()[-2000:]
    received = json.dumps(server.requests[0]["messages"])
    assert marker in received
    assert received.count("lorem ipsum dolor sit amet") == 36_000


def test_claude_codes_own_retries_are_bounded(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    server = messages_server(*[error(500, headers={"retry-after": "0"}) for _ in range(60)])
    # Nothing in the container bounds the CLI's retries: the orchestrator must.
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, ONE_TASK.format(title="Server down"))
    result, report = run(pytester, sandbox, plan, "--orchestrator-retry-delay", "0.1")
    assert result.ret == 1
    data = task_data(report, f"{plan}::1.1")
    assert len(data["attempts"]) == 3
    # Three attempts, each the first call and Claude Code's two retries of it.
    assert len(server.requests) == 3 * 3
