"""Runs that survive: resume, interrupted attempts, blocking, xdist, retries, budget, dry run, timeouts.

Each run is a real pytest session (pytester, in-process: the plugin restores the signal
handlers it installs) against a real SQLite state database. The agent is a conftest plugin that
follows a script per task and logs every dispatch with the xdist worker that made it.
No Docker engine and no Claude are needed: the Docker endpoint is a dead socket.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.plan import parse_plan
from pytest_orchestrator.prompt import DEFAULT_PROMPT, render_prompt
from pytest_orchestrator.retry import RetryPolicy
from pytest_orchestrator.state import MIGRATIONS, SCHEMA_VERSION, StateError, StateStore

# The script maps "plans/x.md::1.2" (or "*") to the results of successive dispatches;
# the last one repeats. A step may sleep first, to outlast a timeout.
AGENT = """
import json
import os
import time
from pathlib import Path

from pytest_orchestrator.result import TaskResult

DEFAULT = [{"status": "completed"}]


def pytest_orchestrator_dispatch(task, sandbox, config):
    root = Path(str(config.rootpath))
    script = root / "script.json"
    steps = json.loads(script.read_text()) if script.exists() else {}
    key = f"{task.plan}::{task.id}"
    log = root / "dispatched.log"
    earlier = log.read_text().splitlines() if log.exists() else []
    number = sum(1 for line in earlier if line.split()[0] == key)
    with open(log, "a") as out:
        out.write(f"{key} {os.environ.get('PYTEST_XDIST_WORKER', 'main')}\\n")
    plan = steps.get(key) or steps.get("*") or DEFAULT
    step = plan[min(number, len(plan) - 1)]
    time.sleep(step.get("sleep", 0))
    return TaskResult(
        task.id,
        step.get("status", "completed"),
        cost_usd=step.get("cost", 0.0),
        error=step.get("error"),
        question=step.get("question"),
        api_error_status=step.get("api"),
        crashed=step.get("crashed", False),
        agent="scripted",
    )
"""

PLAN = """\
# Milestone 1: Storage

## Task 1.1: Write the parser

Parse the input files.

## Task 1.2: Pick a database

Storage needs a database.

## Task 1.3: Wire the storage

Connect the parser to the database.
"""

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


pytestmark = pytest.mark.usefixtures("dead_docker")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with an ini file, the scripted agent and plans/x.md."""
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(AGENT)
    pytester.mkdir("plans")
    write_plan(pytester, "x.md", PLAN)
    return pytester


def write_plan(pytester: pytest.Pytester, name: str, text: str) -> None:
    (pytester.path / "plans" / name).write_text(text, encoding="utf-8")


def plan_of(milestone: int, titles: list[str]) -> str:
    """A plan whose tasks are `milestone.1`, `milestone.2`, ... with the given titles."""
    body = "".join(f"## Task {milestone}.{n}: {title}\n\nDo it.\n\n" for n, title in enumerate(titles, 1))
    return f"# Milestone {milestone}\n\n{body}"


def script(pytester: pytest.Pytester, steps: dict[str, list[dict[str, Any]]]) -> None:
    (pytester.path / "script.json").write_text(json.dumps(steps), encoding="utf-8")


def dispatched(pytester: pytest.Pytester) -> list[tuple[str, str]]:
    """(nodeid, worker) of every dispatch, in the order they happened."""
    log = pytester.path / "dispatched.log"
    if not log.exists():
        return []
    return [(key, worker) for key, worker in (line.split() for line in log.read_text().splitlines())]


def keys(pytester: pytest.Pytester) -> list[str]:
    return [key for key, _ in dispatched(pytester)]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*args)


def query(pytester: pytest.Pytester, sql: str, *params: Any) -> list[sqlite3.Row]:
    """Rows of `sql` from the project's state database."""
    conn = sqlite3.connect(pytester.path / ".orchestrator" / "state.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(pytester: pytest.Pytester, sql: str, *params: Any) -> int:
    return int(query(pytester, sql, *params)[0][0])


def attempt_rows(pytester: pytest.Pytester, where: str = "1", *params: Any) -> list[tuple[Any, ...]]:
    """(plan, task_id, attempt, status) of the attempts, oldest first."""
    sql = f"SELECT plan, task_id, attempt, status FROM attempts WHERE {where} ORDER BY id"
    return [tuple(r) for r in query(pytester, sql, *params)]


def summary_skips(result: pytest.RunResult) -> list[tuple[str, str]]:
    """(location, reason) from the `-rs` summary, e.g. `SKIPPED [1] plans/x.md:9: reason`."""
    lines = (re.match(r"SKIPPED \[1\] (\S+?:\d+): (.*)$", line) for line in result.outlines)
    return [(m.group(1), m.group(2)) for m in lines if m]


def verbose_skips(result: pytest.RunResult) -> dict[str, str]:
    """nodeid -> skip reason, from `-v` lines such as `plans/x.md::1.2 SKIPPED (reason)`."""
    skips = {}
    for line in result.outlines:
        match = re.match(r"^(\S+::\S+) SKIPPED \((.*)\)\s*(?:\[\s*\d+%\])?$", line)
        if match:
            skips[match.group(1)] = match.group(2)
    return skips


def dead_pid() -> int:
    """A pid with no process behind it on this host."""
    pid = 2**22 + 12345
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


# ---- resume ----


def test_second_run_skips_completed_tasks_and_rerun_dispatches_them(
    project: pytest.Pytester,
) -> None:
    first = run(project, "plans/x.md")
    assert first.ret == pytest.ExitCode.OK
    assert first.parseoutcomes() == {"passed": 3}

    second = run(project, "plans/x.md", "-rs")
    assert second.ret == pytest.ExitCode.OK
    assert second.parseoutcomes() == {"skipped": 3}
    skips = summary_skips(second)
    assert [location for location, _ in skips] == ["plans/x.md:3", "plans/x.md:7", "plans/x.md:11"]
    assert all(re.fullmatch(rf"completed in run 1 at {STAMP}", reason) for _, reason in skips)
    assert keys(project) == ["plans/x.md::1.1", "plans/x.md::1.2", "plans/x.md::1.3"]

    again = run(project, "plans/x.md", "--orchestrator-rerun")
    assert again.parseoutcomes() == {"passed": 3}
    assert len(keys(project)) == 6

    one = run(project, "plans/x.md", "-k", "1.2", "--orchestrator-rerun")
    assert one.parseoutcomes() == {"passed": 1, "deselected": 2}
    assert keys(project)[6:] == ["plans/x.md::1.2"]


def test_skip_names_the_run_and_time_per_task(project: pytest.Pytester) -> None:
    run(project, "plans/x.md", "-k", "1.1")
    run(project, "plans/x.md", "-k", "1.2")
    result = run(project, "plans/x.md", "-v", "-k", "1.1 or 1.2")
    skips = verbose_skips(result)
    assert sorted(skips) == ["plans/x.md::1.1", "plans/x.md::1.2"]
    assert re.fullmatch(rf"completed in run 1 at {STAMP}", skips["plans/x.md::1.1"])
    assert re.fullmatch(rf"completed in run 2 at {STAMP}", skips["plans/x.md::1.2"])


def test_failed_task_is_dispatched_again_in_the_next_run(project: pytest.Pytester) -> None:
    script(project, {"plans/x.md::1.2": [{"status": "failed", "error": "flaky"}, {"status": "completed"}]})
    first = run(project, "plans/x.md", "-v")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    assert first.parseoutcomes() == {"passed": 1, "failed": 1, "skipped": 1}

    second = run(project, "plans/x.md", "-v")
    assert second.ret == pytest.ExitCode.OK
    assert second.parseoutcomes() == {"passed": 2, "skipped": 1}
    assert list(verbose_skips(second)) == ["plans/x.md::1.1"]
    assert keys(project) == [
        "plans/x.md::1.1",
        "plans/x.md::1.2",
        "plans/x.md::1.2",
        "plans/x.md::1.3",
    ]


def test_last_failed_still_selects_the_failed_task(project: pytest.Pytester) -> None:
    script(project, {"plans/x.md::1.3": [{"status": "failed", "error": "broken"}]})
    first = run(project, "plans/x.md")
    assert first.parseoutcomes() == {"passed": 2, "failed": 1}

    result = run(project, "plans/x.md", "--lf")
    assert result.parseoutcomes() == {"failed": 1, "deselected": 2}
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure*"])
    assert keys(project)[3:] == ["plans/x.md::1.3"]


# ---- interrupted attempts ----


def test_attempt_of_a_dead_process_is_marked_interrupted_and_dispatched_again(
    project: pytest.Pytester,
) -> None:
    store = StateStore.open(project.path / ".orchestrator")
    try:
        dead_run = store.begin_run("killed-run")
        dead_attempt = store.start_attempt(dead_run, "plans/x.md", "1.2", "Pick a database", dispatch_id="d1")
        live_run = store.begin_run("live-run")
        live_attempt = store.start_attempt(live_run, "plans/x.md", "1.3", "Wire the storage")
        store.conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead_pid(), dead_run))
        # This test process is alive, so its attempt must be left alone.
        store.conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (os.getpid(), live_run))
    finally:
        store.close()

    result = run(project, "plans/x.md", "-k", "1.2")
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"passed": 1, "deselected": 2}
    assert keys(project) == ["plans/x.md::1.2"]

    (old,) = query(project, "SELECT status, ended_at, error FROM attempts WHERE id = ?", dead_attempt)
    assert old["status"] == "interrupted"
    assert old["ended_at"] is not None
    assert "ended during the attempt" in old["error"]
    (dead,) = query(project, "SELECT status FROM runs WHERE id = ?", dead_run)
    assert dead["status"] == "interrupted"
    (live,) = query(project, "SELECT status FROM attempts WHERE id = ?", live_attempt)
    assert live["status"] == "running"
    assert attempt_rows(project, "task_id = '1.2'") == [
        ("plans/x.md", "1.2", 1, "interrupted"),
        ("plans/x.md", "1.2", 1, "completed"),
    ]


# ---- ordering and blocking within a plan ----


def test_failed_or_waiting_task_blocks_the_rest_of_its_plan(project: pytest.Pytester) -> None:
    write_plan(
        project,
        "x.md",
        "# M1\n\n## Task 1.1: First\n\n## Task 1.2: Second\n\n## Task 1.3: Third\n\n"
        "## Task 1.4: [P] Fourth\n\n## Task 1.5: Fifth\n",
    )
    write_plan(project, "y.md", "# M2\n\n## Task 2.1: Ask\n\n## Task 2.2: Answer\n")
    script(
        project,
        {
            "plans/x.md::1.2": [{"status": "failed", "error": "tests do not pass"}],
            "plans/y.md::2.1": [{"status": "needs_human", "question": "A or B?"}],
        },
    )
    result = run(project, "plans/x.md", "plans/y.md", "-v")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 2, "failed": 1, "needs_human": 1, "skipped": 3}
    assert verbose_skips(result) == {
        "plans/x.md::1.3": "blocked by 1.2 (failed)",
        "plans/x.md::1.5": "blocked by 1.2 (failed)",
        "plans/y.md::2.2": "blocked by 2.1 (needs_human)",
    }
    assert keys(project) == [
        "plans/x.md::1.1",
        "plans/x.md::1.2",
        "plans/x.md::1.4",
        "plans/y.md::2.1",
    ]


def test_tasks_run_in_document_order(project: pytest.Pytester) -> None:
    write_plan(project, "x.md", "# M\n\n## Task 3: Last id first\n\n## Task 1: One\n\n## Task 2: Two\n")
    result = run(project, "plans/x.md")
    assert result.parseoutcomes() == {"passed": 3}
    assert keys(project) == ["plans/x.md::3", "plans/x.md::1", "plans/x.md::2"]


# ---- pytest-xdist ----


def test_xdist_runs_each_plan_on_one_worker_in_order(project: pytest.Pytester) -> None:
    write_plan(project, "x.md", "# A\n\n## Task 1.3: C\n\n## Task 1.1: A\n\n## Task 1.2: B\n")
    write_plan(project, "y.md", plan_of(2, ["D", "E", "F"]))
    result = run(project, "-n", "2", "plans")
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"passed": 6}
    log = dispatched(project)
    for plan, order in (("plans/x.md", ["1.3", "1.1", "1.2"]), ("plans/y.md", ["2.1", "2.2", "2.3"])):
        mine = [(key, worker) for key, worker in log if key.startswith(plan + "::")]
        assert [key.split("::")[1] for key, _ in mine] == order
        workers = {worker for _, worker in mine}
        assert len(workers) == 1 and workers <= {"gw0", "gw1"}, mine


def test_xdist_workers_share_one_run_in_the_state_database(project: pytest.Pytester) -> None:
    for milestone in range(1, 9):
        write_plan(project, f"p{milestone}.md", plan_of(milestone, [f"T{n}" for n in range(5)]))
    (project.path / "plans" / "x.md").unlink()
    result = run(project, "-n", "4", "plans")
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"passed": 40}
    assert count(project, "SELECT COUNT(*) FROM attempts") == 40
    assert count(project, "SELECT COUNT(*) FROM attempts WHERE status = 'completed'") == 40
    assert count(project, "SELECT COUNT(DISTINCT plan || task_id) FROM attempts") == 40
    runs = query(project, "SELECT run_key, status FROM runs")
    assert len(runs) >= 2
    assert len({r["run_key"] for r in runs}) == 1
    assert runs[0]["run_key"]
    assert {r["status"] for r in runs} == {"finished"}
    workers = count(project, "SELECT COUNT(DISTINCT worker) FROM attempts")
    assert workers == len(runs)


# ---- retries ----

API_429 = {"status": "failed", "api": 429, "error": "API Error: 429"}


def test_transient_api_errors_are_retried(project: pytest.Pytester) -> None:
    script(project, {"plans/x.md::1.1": [API_429, API_429, {"status": "completed"}]})
    result = run(
        project,
        "plans/x.md",
        "-k",
        "1.1",
        "--orchestrator-retry-delay",
        "0.01",
        "--json-report",
        "--json-report-file",
        "r.json",
    )
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"passed": 1, "deselected": 2}
    assert attempt_rows(project) == [
        ("plans/x.md", "1.1", 1, "failed"),
        ("plans/x.md", "1.1", 2, "failed"),
        ("plans/x.md", "1.1", 3, "completed"),
    ]
    report = json.loads((project.path / "r.json").read_text())
    (test,) = report["tests"]
    attempts = test["metadata"]["orchestrator_task"]["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status"] for a in attempts] == ["failed", "failed", "completed"]
    for entry in attempts[:2]:
        assert entry["reason"] == "API Error: 429"
        assert re.fullmatch(r"the API answered 429; retrying in \d+\.\ds", entry["retry"])
    assert "retry" not in attempts[2]


def test_a_retried_task_reports_the_time_and_cost_of_every_attempt(project: pytest.Pytester) -> None:
    slow_500 = {**API_429, "api": 500, "error": "API Error: 500", "sleep": 1, "cost": 0.25}
    script(project, {"plans/x.md::1.1": [slow_500, {"status": "completed", "sleep": 1, "cost": 0.5}]})
    args = [
        "plans/x.md",
        "-k",
        "1.1",
        "--orchestrator-retry-delay",
        "1",
        "--json-report",
        "--json-report-file",
        "r.json",
    ]
    result = run(project, *args)
    assert result.ret == pytest.ExitCode.OK
    task = json.loads((project.path / "r.json").read_text())["tests"][0]["metadata"]["orchestrator_task"]
    # Two attempts of 1 s and a wait of 0.5 to 1 s between them.
    assert 2.5 <= task["duration_seconds"] < 5
    assert task["cost_usd"] == pytest.approx(0.75)
    (line,) = [line for line in result.outlines if "Task 1.1: COMPLETED" in line]
    assert re.search(r"COMPLETED \([345]s, 0 tokens, \$0\.75\)", line), line


@pytest.mark.parametrize(
    "step",
    [
        {"status": "failed", "api": 401, "error": "API Error: 401 invalid x-api-key"},
        {"status": "failed", "error": "max turns reached (50)"},
        {"status": "needs_human", "question": "Which one?"},
    ],
    ids=["unauthorized", "max-turns", "needs-human"],
)
def test_lasting_failures_are_not_retried(project: pytest.Pytester, step: dict[str, Any]) -> None:
    script(project, {"plans/x.md::1.1": [step, {"status": "completed"}]})
    result = run(project, "plans/x.md", "-k", "1.1", "--orchestrator-retry-delay", "0.01")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert attempt_rows(project) == [("plans/x.md", "1.1", 1, step["status"])]
    assert keys(project) == ["plans/x.md::1.1"]


def test_crashed_agent_is_retried(project: pytest.Pytester) -> None:
    crash = {"status": "failed", "crashed": True, "error": "claude exited with code 137 without a result"}
    script(project, {"plans/x.md::1.1": [crash, {"status": "completed"}]})
    result = run(project, "plans/x.md", "-k", "1.1", "--orchestrator-retry-delay", "0.01")
    assert result.ret == pytest.ExitCode.OK
    assert attempt_rows(project) == [
        ("plans/x.md", "1.1", 1, "failed"),
        ("plans/x.md", "1.1", 2, "completed"),
    ]


def test_retries_stop_after_retry_attempts(project: pytest.Pytester) -> None:
    script(project, {"plans/x.md::1.1": [{"status": "failed", "api": 529, "error": "API Error: 529"}]})
    result = run(
        project,
        "plans/x.md",
        "-k",
        "1.1",
        "--orchestrator-retry-delay",
        "0.01",
        "--orchestrator-retry-attempts",
        "2",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*Task 1.1 FAILED: API Error: 529"])
    assert attempt_rows(project) == [("plans/x.md", "1.1", 1, "failed"), ("plans/x.md", "1.1", 2, "failed")]


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=3, delay=1.0, factor=2.0, max_delay=60.0)
    ceilings = []
    for attempt in range(1, 11):
        low = policy.backoff(attempt, rng=lambda: 0.0)
        high = policy.backoff(attempt, rng=lambda: 1.0)
        middle = policy.backoff(attempt, rng=lambda: 0.5)
        assert low == high / 2
        assert low < middle < high
        ceilings.append(high)
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert all(0.5 <= policy.backoff(1) <= 1.0 for _ in range(100))


# ---- budget ----

PARALLEL_PLAN = "# M\n\n" + "".join(f"## Task 1.{n}: [P] Part {n}\n\nDo it.\n\n" for n in range(1, 5))


def test_budget_stops_dispatching_once_reached(project: pytest.Pytester) -> None:
    write_plan(project, "x.md", PARALLEL_PLAN)
    script(project, {"*": [{"status": "completed", "cost": 0.30}]})
    result = run(project, "plans/x.md", "-rs", "--orchestrator-max-cost", "0.5")
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"passed": 2, "skipped": 2}
    assert keys(project) == ["plans/x.md::1.1", "plans/x.md::1.2"]
    reason = "budget reached: $0.60 of $0.50 spent in this run"
    # Tasks 1.3 and 1.4 have their headings on lines 11 and 15.
    assert summary_skips(result) == [("plans/x.md:11", reason), ("plans/x.md:15", reason)]
    assert count(project, "SELECT COUNT(*) FROM attempts") == 2


def test_budget_counts_only_this_run(project: pytest.Pytester) -> None:
    write_plan(project, "x.md", PARALLEL_PLAN)
    script(project, {"*": [{"status": "completed", "cost": 0.30}]})
    run(project, "plans/x.md", "--orchestrator-max-cost", "0.5")
    result = run(project, "plans/x.md", "--orchestrator-max-cost", "0.5")
    # Run 1 spent $0.60 already; run 2 starts from zero and dispatches the two left.
    assert result.parseoutcomes() == {"passed": 2, "skipped": 2}
    assert keys(project)[2:] == ["plans/x.md::1.3", "plans/x.md::1.4"]


def test_budget_is_shared_by_the_xdist_workers(project: pytest.Pytester) -> None:
    cost, budget = 0.30, 1.0
    for name, milestone in (("x.md", 1), ("y.md", 2)):
        tasks = "".join(f"## Task {milestone}.{n}: [P] Part {n}\n\nDo it.\n\n" for n in range(1, 7))
        write_plan(project, name, f"# M{milestone}\n\n{tasks}")
    # A short sleep keeps both workers busy at once.
    script(project, {"*": [{"status": "completed", "cost": cost, "sleep": 0.2}]})
    result = run(project, "-n", "2", "plans", "-rs", "--orchestrator-max-cost", str(budget))
    assert result.ret == pytest.ExitCode.OK
    log = dispatched(project)
    assert {worker for _, worker in log} == {"gw0", "gw1"}
    spent = len(log) * cost
    # Each worker may have one task in flight when the other reaches the budget.
    assert budget <= spent <= budget + 2 * cost
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == len(log)
    assert outcomes["skipped"] == 12 - len(log)
    result.stdout.re_match_lines([r".*budget reached: \$\d\.\d\d of \$1\.00 spent in this run$"])


# ---- dry run ----


def test_dry_run_dispatches_nothing(project: pytest.Pytester) -> None:
    result = run(project, "plans/x.md", "-v", "--orchestrator-dry-run")
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"skipped": 3}
    assert not (project.path / "dispatched.log").exists()
    plan = parse_plan(project.path / "plans" / "x.md")
    expected = {
        f"plans/x.md::{task.id}": "dry run: would dispatch, prompt "
        f"{len(render_prompt(dataclasses.replace(task, plan='plans/x.md'), DEFAULT_PROMPT))} chars"
        for task in plan.tasks
    }
    assert verbose_skips(result) == expected
    # A dry run writes no state: with no history, not even the database file.
    assert not (project.path / ".orchestrator" / "state.db").exists()


def test_dry_run_shows_resume_for_completed_tasks(project: pytest.Pytester) -> None:
    run(project, "plans/x.md", "-k", "1.1")
    result = run(project, "plans/x.md", "-v", "--orchestrator-dry-run")
    assert result.parseoutcomes() == {"skipped": 3}
    skips = verbose_skips(result)
    assert re.fullmatch(rf"completed in run 1 at {STAMP}", skips["plans/x.md::1.1"])
    for task_id in ("1.2", "1.3"):
        assert re.fullmatch(
            r"dry run: would dispatch, prompt [1-9]\d* chars", skips[f"plans/x.md::{task_id}"]
        )
    assert keys(project) == ["plans/x.md::1.1"]
    assert count(project, "SELECT COUNT(*) FROM attempts") == 1
    assert count(project, "SELECT COUNT(*) FROM runs") == 1


# ---- task timeout ----

TIMEOUT_PROBE = """
from pathlib import Path

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    marks = {}
    for item in items:
        mark = item.get_closest_marker("timeout")
        marks[item.nodeid] = list(mark.args) if mark else None
    (Path(str(config.rootpath)) / "timeouts.json").write_text(json.dumps(marks))
"""


@pytest.mark.parametrize(
    ("args", "expected"),
    [([], 600.0), (["--orchestrator-task-timeout", "42"], 42.0), (["--timeout", "5"], None)],
    ids=["default", "task-timeout", "pytest-timeout-wins"],
)
def test_each_task_carries_the_task_timeout(
    project: pytest.Pytester, args: list[str], expected: float | None
) -> None:
    project.makeconftest("import json\n" + AGENT + TIMEOUT_PROBE)
    result = run(project, "plans/x.md", "--collect-only", *args)
    assert result.ret == pytest.ExitCode.OK
    marks = json.loads((project.path / "timeouts.json").read_text())
    assert sorted(marks) == ["plans/x.md::1.1", "plans/x.md::1.2", "plans/x.md::1.3"]
    assert set(map(json.dumps, marks.values())) == {json.dumps(None if expected is None else [expected])}


def test_task_outliving_its_timeout_fails_and_is_recorded(project: pytest.Pytester) -> None:
    script(project, {"plans/x.md::1.1": [{"status": "completed", "sleep": 30}]})
    started = time.monotonic()
    result = run(project, "plans/x.md", "-k", "1.1", "--orchestrator-task-timeout", "1")
    assert time.monotonic() - started < 25
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["Task 1.1: TIMEOUT after 1s (agent stopped in the sandbox)"])
    ((status, error),) = query(project, "SELECT status, error FROM attempts")
    assert status == "timeout"
    assert "Timeout" in error


# ---- schema migration ----


def make_v1_database(state_dir: Path, ended_at: float) -> None:
    state_dir.mkdir()
    conn = sqlite3.connect(state_dir / "state.db")
    try:
        conn.executescript(MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO runs (id, started_at, ended_at, status, pid, host) "
            "VALUES (1, ?, ?, 'finished', 1, 'old-host')",
            (ended_at - 60, ended_at),
        )
        conn.execute(
            "INSERT INTO attempts (run_id, plan, task_id, title, status, started_at, ended_at, cost_usd) "
            "VALUES (1, 'plans/x.md', '1.1', 'Write the parser', 'completed', ?, ?, 0.25)",
            (ended_at - 30, ended_at),
        )
        conn.commit()
    finally:
        conn.close()


def test_version_1_database_is_upgraded_and_still_resumes(project: pytest.Pytester) -> None:
    ended_at = 1_700_000_000.0
    state_dir = project.path / ".orchestrator"
    make_v1_database(state_dir, ended_at)

    store = StateStore.open(state_dir)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
        run_columns = {r["name"] for r in store.conn.execute("PRAGMA table_info(runs)")}
        attempt_columns = {r["name"] for r in store.conn.execute("PRAGMA table_info(attempts)")}
        (old,) = store.conn.execute(
            "SELECT * FROM attempts WHERE plan = ? AND task_id = ?", ("plans/x.md", "1.1")
        ).fetchall()
    finally:
        store.close()
    assert "run_key" in run_columns
    assert {"dispatch_id", "engine"} <= attempt_columns
    assert (old["run_id"], old["status"], old["cost_usd"], old["dispatch_id"]) == (1, "completed", 0.25, None)

    result = run(project, "plans/x.md", "-v")
    assert result.ret == pytest.ExitCode.OK
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ended_at))
    assert verbose_skips(result) == {"plans/x.md::1.1": f"completed in run 1 at {stamp}"}
    assert keys(project) == ["plans/x.md::1.2", "plans/x.md::1.3"]
    assert query(project, "SELECT host FROM runs WHERE id = 1")[0]["host"] == "old-host"


def test_newer_database_asks_to_upgrade(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    conn = sqlite3.connect(state_dir / "state.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StateError, match=r"schema version 99, newer than .*: upgrade pytest-orchestrator"):
        StateStore.open(state_dir)
    with pytest.raises(StateError, match=r"schema version 99.*upgrade pytest-orchestrator"):
        StateStore.read(state_dir)


# ---- the dispatch context, xdist modes, and what a run leaves behind ----

CONTEXT_AGENT = """
import json
from pathlib import Path

from pytest_orchestrator import DispatchContext, TaskResult


def pytest_orchestrator_dispatch(task, sandbox, config, context):
    assert isinstance(context, DispatchContext)
    seen = {
        "task": task.id,
        "dispatch_id": context.dispatch_id,
        "guidance": context.guidance,
        "resume": context.resume,
        "max_turns": context.settings.max_turns,
        "prompt_has_guidance": "Use SQLite" in context.render_prompt(task),
    }
    context.on_event({"type": "assistant", "message": {"content": []}})
    with open(Path(str(config.rootpath)) / "context.log", "a") as log:
        log.write(json.dumps(seen) + "\\n")
    return TaskResult(task.id, "completed", session_id=f"session-{task.id}")
"""


def context_log(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (pytester.path / "context.log").read_text().splitlines()]


def test_the_dispatch_hook_gets_the_context_a_third_party_agent_needs(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(CONTEXT_AGENT)
    pytester.mkdir("plans")
    write_plan(pytester, "x.md", PLAN)
    first = pytester.runpytest("plans/x.md", "-k", "1.1", "--orchestrator-max-turns", "7")
    assert first.ret == pytest.ExitCode.OK
    again = pytester.runpytest("plans/x.md", "-k", "1.1", "--orchestrator-guidance", "Use SQLite")
    assert again.ret == pytest.ExitCode.OK

    plain, guided = context_log(pytester)
    assert (plain["guidance"], plain["resume"], plain["max_turns"]) == (None, None, 7)
    assert not plain["prompt_has_guidance"]
    # With guidance the task runs again and resumes the session the state database knows.
    assert (guided["guidance"], guided["resume"], guided["max_turns"]) == ("Use SQLite", "session-1.1", 50)
    assert guided["prompt_has_guidance"]
    # Each attempt row records the dispatch id the agent was given.
    recorded = [r["dispatch_id"] for r in query(pytester, "SELECT dispatch_id FROM attempts ORDER BY id")]
    assert recorded == [plain["dispatch_id"], guided["dispatch_id"]]
    assert len(set(recorded)) == 2


@pytest.mark.parametrize("mode", ["worksteal", "each"])
def test_a_dist_mode_that_would_reorder_a_plan_is_a_usage_error(project: pytest.Pytester, mode: str) -> None:
    result = project.runpytest("plans/x.md", "-n", "2", "--dist", mode)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: --dist {mode} would break the order of a plan's tasks: use --dist loadfile*"]
    )
    assert keys(project) == []


def test_a_run_puts_back_the_signal_handlers_it_installed(project: pytest.Pytester) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    result = project.runpytest("plans/x.md")
    assert result.ret == pytest.ExitCode.OK
    assert keys(project) == ["plans/x.md::1.1", "plans/x.md::1.2", "plans/x.md::1.3"]
    assert {sig: signal.getsignal(sig) for sig in before} == before


# ---- faults ----


def test_an_option_value_outside_the_project_moves_neither_state_nor_plan_keys(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # No config file: pytest reckons its rootdir before plugins add their options, so the
    # report path counts as a path and the rootdir becomes a common ancestor of both.
    pytester.makeconftest(AGENT)
    (pytester.path / "plan.md").write_text(PLAN, encoding="utf-8")
    report = tmp_path_factory.mktemp("reports") / "r.json"
    args = ["plan.md", "--json-report", "--json-report-file", str(report)]
    first = run(pytester, *args)
    assert first.parseoutcomes() == {"passed": 3}
    second = run(pytester, *args)
    assert second.parseoutcomes() == {"skipped": 3}
    assert (pytester.path / ".orchestrator" / "state.db").is_file()
    assert {row[0] for row in query(pytester, "SELECT plan FROM attempts")} == {"plan.md"}
    assert len(keys(pytester)) == 3


def test_a_timeout_reads_like_any_other_outcome(project: pytest.Pytester, tmp_path: Path) -> None:
    # A thread besides the main one is what made pytest-timeout dump every stack.
    project.makeconftest(
        AGENT.replace(
            "    time.sleep(step",
            "    __import__('threading').Thread(target=time.sleep, args=(60,), daemon=True).start()\n    time.sleep(step",
        )
    )
    script(project, {"plans/x.md::1.2": [{"status": "completed", "sleep": 30}]})
    report = tmp_path / "r.json"
    result = run(project, "plans/x.md", "--timeout", "2", "--json-report", "--json-report-file", str(report))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 1, "failed": 1, "skipped": 1}
    text = result.stdout.str()
    assert "Timeout" not in text and "Thread" not in text and "CallInfo" not in text
    assert len(result.outlines) < 40
    result.stdout.fnmatch_lines(
        [
            "*Task 1.2: TIMEOUT (2s, 0 tokens, $0.00) plans/x.md",
            "FAILED plans/x.md::1.2 - Task 1.2: TIMEOUT after 2s (agent stopped in the san*",
        ]
    )
    entry = {t["nodeid"]: t for t in json.loads(report.read_text())["tests"]}["plans/x.md::1.2"]
    assert entry["outcome"] == "failed"
    task = entry["metadata"]["orchestrator_task"]
    assert task["status"] == "timeout"
    assert task["error"] == "TIMEOUT after 2s (agent stopped in the sandbox)"
    assert 1.5 <= task["duration_seconds"] < 10


INTERRUPTING_AGENT = """
import os
import signal
import time

from pytest_orchestrator.result import TaskResult


def pytest_orchestrator_dispatch(task, sandbox, config):
    if task.id == "1.2":
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
    return TaskResult(task.id, "completed")
"""


def test_an_interrupted_task_never_reads_as_passed(project: pytest.Pytester, tmp_path: Path) -> None:
    project.makeconftest(INTERRUPTING_AGENT)
    report, junit = tmp_path / "r.json", tmp_path / "j.xml"
    args = ["plans/x.md", "--json-report", "--json-report-file", str(report), "--junitxml", str(junit)]
    result = run(project, *args)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*Task 1.2: INTERRUPTED (0s, 0 tokens, $0.00) plans/x.md", "*1 passed, 1 interrupted*"]
    )
    data = json.loads(report.read_text())
    assert data["exitcode"] == pytest.ExitCode.INTERRUPTED
    assert [(t["nodeid"], t["outcome"]) for t in data["tests"]] == [
        ("plans/x.md::1.1", "passed"),
        ("plans/x.md::1.2", "interrupted"),
    ]
    assert data["tests"][1]["metadata"]["orchestrator_task"]["status"] == "interrupted"
    cases = re.findall(r"<testcase ([^>]*?)/?>", junit.read_text())
    assert [re.search(r' name="([^"]*)"', c).group(1) for c in cases] == ["1.1", "1.2"]  # type: ignore[union-attr]
    assert "INTERRUPTED after 0s (agent stopped in the sandbox)" in junit.read_text()
    assert attempt_rows(project) == [
        ("plans/x.md", "1.1", 1, "completed"),
        ("plans/x.md", "1.2", 1, "interrupted"),
    ]


FILLING_AGENT = """
import os

from pytest_orchestrator.result import TaskResult


def pytest_orchestrator_dispatch(task, sandbox, config):
    with open(os.environ["FILL"], "ab", buffering=0) as filler:
        try:
            while True:
                filler.write(b"x" * 4096)
        except OSError:
            pass
    return TaskResult(task.id, "completed", cost_usd=0.5)
"""


def test_a_full_disk_loses_no_result_and_stops_dispatching(
    project: pytest.Pytester, tmpfs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmpfs("1m")
    monkeypatch.setenv("FILL", str(state / "filler"))
    project.makeconftest(FILLING_AGENT)
    report = tmp_path / "r.json"
    args = [
        "plans/x.md",
        "--orchestrator-state-dir",
        str(state),
        "--json-report",
        "--json-report-file",
        str(report),
    ]
    result = run(project, *args)
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert "Traceback" not in text and "OperationalError" not in text
    lines = [line for line in result.outlines if line.startswith("orchestrator: not recorded")]
    assert lines == [
        "orchestrator: not recorded in the state database: task 1.1 (plans/x.md) completed: cannot write "
        f"to state database {state}/state.db: database or disk is full; no more tasks are dispatched: "
        "make the state directory writable (free space), then run again"
    ]
    result.stdout.fnmatch_lines(["*Task 1.1: COMPLETED (*s, 0 tokens, $0.50) plans/x.md"])
    tests = json.loads(report.read_text())["tests"]
    assert [(t["nodeid"], t["outcome"]) for t in tests] == [("plans/x.md::1.1", "passed")]
    assert tests[0]["metadata"]["orchestrator_task"]["status"] == "completed"


def start_run(project: pytest.Pytester, *args: str) -> subprocess.Popen[str]:
    """A run in its own process, as from a second terminal or an overlapping cron job."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "plans/x.md", *args]
    return subprocess.Popen(
        command, cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_two_runs_at_once_dispatch_each_task_once(project: pytest.Pytester) -> None:
    # The first task outlasts the second run's start-up on a busy machine.
    script(
        project, {"plans/x.md::1.1": [{"status": "completed", "sleep": 8}], "*": [{"status": "completed"}]}
    )
    first = start_run(project)
    # The second starts once the first holds the plan.
    deadline = time.monotonic() + 30
    while not dispatched(project) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = start_run(project)
    out_second, _ = second.communicate(timeout=60)
    out_first, _ = first.communicate(timeout=60)
    assert first.returncode == 0, out_first
    assert second.returncode == 0, out_second
    assert sorted(keys(project)) == ["plans/x.md::1.1", "plans/x.md::1.2", "plans/x.md::1.3"]
    ((run_id, pid, host),) = query(project, "SELECT id, pid, host FROM runs WHERE id = 1")
    skipped = re.findall(r"SKIPPED \[1\] plans/x.md:\d+: (.*)", out_second)
    assert len(skipped) == 3
    held = f"running in run {run_id} (pid {pid} on {host})"
    assert skipped[0] == held
    # Later tasks are either still held or already completed by the first run.
    assert all(s == held or s.startswith("completed in run 1") for s in skipped)
    assert count(project, "SELECT COUNT(*) FROM leases") == 0


def test_a_waiting_run_takes_the_plan_when_the_holder_ends(project: pytest.Pytester) -> None:
    script(
        project, {"plans/x.md::1.1": [{"status": "completed", "sleep": 8}], "*": [{"status": "completed"}]}
    )
    write_plan(project, "x.md", PLAN + "\n## Task 1.4: Document it\n\nWrite the docs.\n")
    first = start_run(project, "-k", "1.1 or 1.2 or 1.3")
    deadline = time.monotonic() + 30
    while not dispatched(project) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = start_run(project, "--orchestrator-wait")
    out_second, _ = second.communicate(timeout=60)
    first.communicate(timeout=60)
    assert second.returncode == 0, out_second
    assert "waiting for run 1 (pid" in out_second
    # Each task ran once: the first three in the first run, the fourth after the wait.
    assert keys(project) == ["plans/x.md::1.1", "plans/x.md::1.2", "plans/x.md::1.3", "plans/x.md::1.4"]
    assert (
        re.findall(r"SKIPPED \[1\] plans/x.md:\d+: (completed in run 1) at", out_second)
        == ["completed in run 1"] * 3
    )


def test_the_lease_of_a_dead_run_is_taken_over(project: pytest.Pytester) -> None:
    store = StateStore.open(project.path / ".orchestrator")
    try:
        dead_run = store.begin_run("killed-run")
        assert store.lease("plans/x.md", dead_run, "killed-run", lambda pid, host: True, 60) is None
        store.conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead_pid(), dead_run))
    finally:
        store.close()
    result = run(project, "plans/x.md")
    assert result.parseoutcomes() == {"passed": 3}


def test_a_task_ticked_in_the_plan_is_skipped_unless_rerun(project: pytest.Pytester) -> None:
    write_plan(
        project,
        "ticked.md",
        "# Tasks\n\n- [x] T001 Write the parser in src/parse.py\n- [ ] T002 Wire it in src/main.py\n"
        "\n## Task 2.1: Document it ✅ COMPLETED\n\nWrite the docs.\n",
    )
    result = run(project, "plans/ticked.md", "-rs")
    assert result.parseoutcomes() == {"passed": 1, "skipped": 2}
    assert [reason for _, reason in summary_skips(result)] == ["checked in the plan", "checked in the plan"]
    assert keys(project) == ["plans/ticked.md::T002"]
    again = run(project, "plans/ticked.md", "--orchestrator-rerun")
    assert again.parseoutcomes() == {"passed": 3}


def test_a_run_deletes_what_is_older_than_the_retention_as_it_ends(project: pytest.Pytester) -> None:
    """Runs started without the loop or the watchdog (by cron) would otherwise grow the state for good."""
    from pytest_orchestrator.health.history import HealthHistory, HealthRow
    from pytest_orchestrator.metrics.resources import Sample, record
    from pytest_orchestrator.transcripts import transcript_path

    state = project.path / ".orchestrator"
    now = time.time()
    store = StateStore.open(state)
    for age_days in (30, 8, 6):
        at = now - age_days * 86_400
        HealthHistory(store).record(HealthRow(at=at, source="health", status="healthy"))
        record(store, [Sample("process", f"pid 1 @ {at}", "main", 1.0, 1 << 20)], now=at)
    store.close()
    for attempt, age_days in ((1, 8), (2, 6)):
        path = transcript_path(state, attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"type": "user"}\n')
        os.utime(path, (now - age_days * 86_400, now - age_days * 86_400))

    run(project, "plans/x.md", "-k", "1.1").assert_outcomes(passed=1)

    conn = sqlite3.connect(state / "state.db")
    try:
        health = [round((now - at) / 86_400) for (at,) in conn.execute("SELECT at FROM health_checks")]
        samples = [round((now - at) / 86_400) for (at,) in conn.execute("SELECT at FROM resource_samples")]
    finally:
        conn.close()
    # The default retention, 7 days: what is older went; the 6 days old and the run's own stayed.
    assert health == [6]
    assert 6 in samples and all(age in (0, 6) for age in samples) and 0 in samples
    assert not transcript_path(state, 1).exists() and transcript_path(state, 2).exists()
