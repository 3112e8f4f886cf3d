"""Runs that survive, end to end: the real Claude Code CLI in the Debian sandbox, real SQLite.

Kills, signals, throttling, parallel plans and budgets, against the scripted Messages API.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_orchestrator.state import StateStore
from tests.conftest import task_run_args
from tests.support.messages_server import error, reply


@pytest.fixture(autouse=True)
def _env(agent_env: None) -> None:
    """Every test here runs agents with known secrets in the environment."""


def plan_text(tasks: list[str], title: str = "Milestone") -> str:
    lines = [f"# {title}", ""]
    for heading in tasks:
        lines += [f"## Task {heading}", "", "**Description:**", "Do it.", ""]
    return "\n".join(lines)


def write_plan(pytester: pytest.Pytester, name: str, tasks: list[str]) -> str:
    directory = pytester.path / "plans"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(plan_text(tasks))
    return f"plans/{name}"


def attempts(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    store = StateStore.read(pytester.path / ".orchestrator")
    assert store is not None
    try:
        rows = store.conn.execute(
            "SELECT plan, task_id, attempt, status, worker, started_at, cost_usd, error "
            "FROM attempts ORDER BY id"
        ).fetchall()
    finally:
        store.close()
    return [dict(r) for r in rows]


def pytest_args(sandbox: Any, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args, *task_run_args(sandbox), "-rs"]


def wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def claude_processes(sandbox: Any) -> str:
    """Live claude processes in the sandbox; zombies are dead (the sandbox PID 1, sleep, never reaps them)."""
    listing = sandbox.exec_run(["ps", "-eo", "stat=,pid=,args="]).output.decode()
    return "\n".join(
        line for line in listing.splitlines() if "claude" in line and not line.strip().startswith("Z")
    )


def test_sigkill_mid_task_then_rerun_redoes_only_the_interrupted_task(
    pytester: pytest.Pytester, messages_server: Callable[..., Any], agent_sandbox: Callable[..., Any]
) -> None:
    server = messages_server(reply("STATUS: complete"), reply("STATUS: complete", delay=120))
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, "m.md", ["1.1: First", "1.2: Second", "1.3: Third"])
    run = subprocess.Popen(
        pytest_args(sandbox, plan), cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    wait_for(lambda: len(server.requests) >= 2)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert claude_processes(sandbox), "the killed run should have left its agent behind"

    server.add(reply("STATUS: complete"), reply("STATUS: complete"))
    result = subprocess.run(
        pytest_args(sandbox, plan), cwd=pytester.path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout
    assert "SKIPPED [1] plans/m.md:3: completed in run 1 at " in result.stdout, result.stdout[-600:]
    rows = attempts(pytester)
    assert [(r["task_id"], r["status"]) for r in rows] == [
        ("1.1", "completed"),
        ("1.2", "interrupted"),
        ("1.2", "completed"),
        ("1.3", "completed"),
    ]
    # The agent the killed run left behind was stopped by the next run.
    assert claude_processes(sandbox) == ""


def test_two_throttled_answers_then_success_is_three_attempts(
    pytester: pytest.Pytester, messages_server: Callable[..., Any], agent_sandbox: Callable[..., Any]
) -> None:
    server = messages_server(error(429), error(429), reply("STATUS: complete"))
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, "t.md", ["1.1: Throttled"])
    result = subprocess.run(
        # Claude Code's own retries off: each answer ends an attempt.
        pytest_args(
            sandbox, plan, "--orchestrator-retry-delay", "0.1", "--orchestrator-claude-max-retries", "0"
        ),
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    assert [(r["attempt"], r["status"]) for r in attempts(pytester)] == [
        (1, "failed"),
        (2, "failed"),
        (3, "completed"),
    ]
    report = json.loads((pytester.path / "report.json").read_text())
    history = report["tests"][0]["metadata"]["orchestrator_task"]["attempts"]
    assert [h["attempt"] for h in history] == [1, 2, 3]
    assert history[0]["retry"].startswith("the API answered 429; retrying in ")
    assert "429" in history[0]["reason"]
    assert len(server.requests) == 3


def test_two_plans_run_in_parallel_each_in_order(
    pytester: pytest.Pytester, messages_server: Callable[..., Any], agent_sandbox: Callable[..., Any]
) -> None:
    server = messages_server(*[reply("STATUS: complete") for _ in range(6)])
    sandbox = agent_sandbox(server)
    write_plan(pytester, "a.md", ["1.1: A one", "1.2: A two", "1.3: A three"])
    write_plan(pytester, "b.md", ["2.1: B one", "2.2: B two", "2.3: B three"])
    result = subprocess.run(
        pytest_args(sandbox, "plans", "-n", "2"),
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    rows = attempts(pytester)
    for plan, ids in (("plans/a.md", ["1.1", "1.2", "1.3"]), ("plans/b.md", ["2.1", "2.2", "2.3"])):
        mine = [r for r in rows if r["plan"] == plan]
        assert [r["task_id"] for r in sorted(mine, key=lambda r: r["started_at"])] == ids
        assert len({r["worker"] for r in mine}) == 1
        assert all(r["status"] == "completed" for r in mine)
    assert {r["worker"] for r in rows} == {"gw0", "gw1"}


def test_the_budget_stops_dispatch(
    pytester: pytest.Pytester, messages_server: Callable[..., Any], agent_sandbox: Callable[..., Any]
) -> None:
    # 100k input tokens at Claude Code's default-model price ($5 / MTok) cost $0.50 a task.
    costly = {"input_tokens": 100_000, "output_tokens": 0}
    server = messages_server(*[reply("STATUS: complete", usage=costly) for _ in range(3)])
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, "b.md", ["1.1: [P] One", "1.2: [P] Two", "1.3: [P] Three"])
    result = subprocess.run(
        pytest_args(sandbox, plan, "--orchestrator-max-cost", "0.6"),
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    assert "budget reached: $1.00 of $0.60 spent in this run" in result.stdout
    assert [r["task_id"] for r in attempts(pytester)] == ["1.1", "1.2"]
    assert len(server.requests) == 2


def test_sigterm_mid_task_stops_the_agent_and_keeps_the_report(
    pytester: pytest.Pytester, messages_server: Callable[..., Any], agent_sandbox: Callable[..., Any]
) -> None:
    server = messages_server(reply("STATUS: complete"), reply("STATUS: complete", delay=120))
    sandbox = agent_sandbox(server)
    plan = write_plan(pytester, "s.md", ["1.1: Quick", "1.2: Slow"])
    run = subprocess.Popen(
        pytest_args(sandbox, plan),
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: len(server.requests) >= 2)
    wait_for(lambda: bool(claude_processes(sandbox)))
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
    assert claude_processes(sandbox) == ""
    assert [(r["task_id"], r["status"]) for r in attempts(pytester)] == [
        ("1.1", "completed"),
        ("1.2", "interrupted"),
    ]
    report = json.loads((pytester.path / "report.json").read_text())
    assert report["exitcode"] == pytest.ExitCode.INTERRUPTED
    finished = {
        t["nodeid"]: (t["outcome"], t["metadata"]["orchestrator_task"]["status"])
        for t in report["tests"]
        if "metadata" in t
    }
    # The interrupted task is reported as such, never as passed.
    assert finished == {
        f"{plan}::1.1": ("passed", "completed"),
        f"{plan}::1.2": ("interrupted", "interrupted"),
    }
    assert [t["outcome"] for t in report["tests"]] == ["passed", "interrupted"]
    assert "Task 1.2: INTERRUPTED" in output


def test_sigterm_to_an_xdist_controller_stops_the_agents_on_its_workers(
    pytester: pytest.Pytester, messages_server: Callable[..., Any], agent_sandbox: Callable[..., Any]
) -> None:
    server = messages_server(*[reply("STATUS: complete", delay=120) for _ in range(2)])
    sandbox = agent_sandbox(server)
    write_plan(pytester, "a.md", ["1.1: Slow A"])
    write_plan(pytester, "b.md", ["2.1: Slow B"])
    run = subprocess.Popen(
        pytest_args(sandbox, "plans", "-n", "2"),
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: len(server.requests) >= 2)
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
    assert claude_processes(sandbox) == ""
    assert sorted((r["task_id"], r["status"]) for r in attempts(pytester)) == [
        ("1.1", "interrupted"),
        ("2.1", "interrupted"),
    ]
    assert json.loads((pytester.path / "report.json").read_text())["exitcode"] == pytest.ExitCode.INTERRUPTED


CONFTEST_AGENT = """
import time
from pytest_orchestrator import TaskResult


def pytest_orchestrator_dispatch(task, sandbox, config, context):
    # A third-party agent: its process is started through the hook's sandbox with no marker
    # of its own, yet carries the dispatch id the state database records.
    with sandbox.stream(["sh", "-c", "echo started; exec sleep 300"], workdir="/") as (chunks, code):
        for out, err in chunks:
            pass
    return TaskResult(task.id, "completed")
"""


def sleepers(container: Any) -> list[str]:
    listing = container.exec_run(["ps", "-o", "pid,stat,args"]).output.decode()
    return [line for line in listing.splitlines() if "sleep 300" in line and " Z " not in f" {line} "]


def test_a_conftest_agent_left_behind_by_sigkill_is_stopped_by_the_next_run(
    pytester: pytest.Pytester, make_sandbox: Callable[..., Any]
) -> None:
    container = make_sandbox(command=["sleep", "infinity"], init=True)
    pytester.makeconftest(CONFTEST_AGENT)
    plan = write_plan(pytester, "m.md", ["1.1: Wait"])
    argv = [sys.executable, "-m", "pytest", plan, "--orchestrator-sandbox", container.name]
    run = subprocess.Popen(
        argv,
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: bool(sleepers(container)))
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert sleepers(container), "the killed run should have left its agent's process behind"
    store = StateStore.read(pytester.path / ".orchestrator")
    assert store is not None
    try:
        (dispatch_id,) = [r[0] for r in store.conn.execute("SELECT dispatch_id FROM attempts")]
    finally:
        store.close()
    (pid,) = [line.split()[0] for line in sleepers(container)]
    environ = container.exec_run(["cat", f"/proc/{pid}/environ"]).output.decode()
    assert f"ORCHESTRATOR_DISPATCH_ID={dispatch_id}" in environ.split("\0")

    pytester.makeconftest(CONFTEST_AGENT.replace("exec sleep 300", "true"))
    result = subprocess.run(argv, cwd=pytester.path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout
    wait_for(lambda: not sleepers(container), timeout=10)
