"""The health monitor end to end: crashes of a real agent process in a real sandbox, their root
cause and fingerprint, and the one bug report they file (to a file, and to a scripted GitHub)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.state import StateStore
from tests.conftest import AGENT_API_KEY, AGENT_GH_TOKEN
from tests.support.github_server import GitHubServer

# The agent in the sandbox: it loads a skill from the workspace, whose import is broken, and
# it shows the key it was given on its way down, as careless programs do.
AGENT = """\
#!/usr/bin/env python3
import os, sys
sys.path.insert(0, "/workspace")
print("starting agent with key " + os.environ.get("ANTHROPIC_API_KEY", ""), file=sys.stderr)
from skills import loader
"""
LOADER = """\
def helper():
    pass


from skills.registry import load_all  # noqa
"""

PLAN = """\
# Milestone 1: Skills

## Task 1.1: Load the skills

Load every skill.
"""


@pytest.fixture
def broken_agent(make_sandbox: Callable[..., Any], agent_image: str) -> Any:
    """A sandbox whose `claude` is a Python program that dies with an ImportError."""
    sandbox = make_sandbox(image=agent_image, env={"ANTHROPIC_API_KEY": AGENT_API_KEY})
    script = (
        "mkdir -p /workspace/skills && touch /workspace/skills/__init__.py /workspace/skills/registry.py && "
        f"printf '%s' {_quote(LOADER)} > /workspace/skills/loader.py && "
        f"printf '%s' {_quote(AGENT)} > /usr/local/bin/broken-claude && chmod +x /usr/local/bin/broken-claude"
    )
    result = sandbox.exec_run(["sh", "-c", script])
    assert result.exit_code == 0, result.output
    return sandbox


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def run_tasks(project: Path, sandbox: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "plans",
            "-p",
            "no:cacheprovider",
            "--orchestrator-sandbox",
            sandbox.name,
            "--orchestrator-claude-command",
            "/usr/local/bin/broken-claude",
            "--orchestrator-retry-delay",
            "0.1",
            "--json-report",
            "--json-report-file",
            "report.json",
            *args,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.usefixtures("agent_env")
def test_an_import_error_three_times_files_one_report_with_its_root_cause(
    tmp_path: Path, broken_agent: Any
) -> None:
    project = tmp_path / "project"
    (project / "plans").mkdir(parents=True)
    (project / "plans" / "skills.md").write_text(PLAN, encoding="utf-8")
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    with GitHubServer() as github:
        (project / "orchestrator.yaml").write_text(
            f"monitor:\n  bug_tracker: {{kind: github, repo: acme/agents, api_url: '{github.url}'}}\n",
            encoding="utf-8",
        )
        first = run_tasks(project, broken_agent)
        # The fourth crash, within the hour: recorded, and no second report.
        second = run_tasks(
            project, broken_agent, "--orchestrator-retry-attempts", "1", "--orchestrator-rerun"
        )

    assert first.returncode == 1, first.stdout + first.stderr
    assert "orchestrator: BUG-001 (High)" in first.stdout
    assert "BUG-" not in second.stdout, second.stdout
    store = StateStore.read(project / ".orchestrator")
    assert store is not None
    crashes = [dict(r) for r in store.conn.execute("SELECT * FROM agent_crashes ORDER BY id")]
    reports = [dict(r) for r in store.conn.execute("SELECT * FROM bug_reports")]
    store.close()

    assert len(crashes) == 4
    assert {c["fingerprint"] for c in crashes} == {crashes[0]["fingerprint"]}
    assert [c["respawned"] for c in crashes] == [1, 1, 0, 0]
    first_crash = crashes[0]
    assert first_crash["kind"] == "task" and first_crash["subject"] == "1.1"
    assert first_crash["plan"] == "plans/skills.md"
    assert first_crash["error_type"] == "ImportError"
    assert first_crash["root_cause"].startswith("ImportError: cannot import name 'load_all'")
    assert "skills/loader.py" in json.loads(first_crash["files"])
    assert first_crash["exit_code"] == 1

    assert len(reports) == 1 and reports[0]["number"] == 1 and reports[0]["crashes"] == 3
    bug_files = sorted((project / ".orchestrator" / "bugs").iterdir())
    assert [p.name for p in bug_files] == ["BUG-001.md"]
    text = bug_files[0].read_text(encoding="utf-8")
    assert "ImportError: cannot import name 'load_all'" in text
    assert "skills/loader.py" in text
    assert "plans/skills.md" in text

    # GitHub got one issue, labelled by the priority of an ImportError.
    posts = [r for r in github.received if r.method == "POST"]
    assert [r.path for r in posts] == ["/repos/acme/agents/issues"]
    assert posts[0].body["labels"] == ["bug", "priority:high"]
    assert "ImportError" in posts[0].body["body"]
    assert posts[0].headers["Authorization"] == f"Bearer {AGENT_GH_TOKEN}"

    # Nothing secret anywhere: rows, files, requests, the report, the output.
    report = (project / "report.json").read_text(encoding="utf-8")
    leaks = [json.dumps(crashes), json.dumps(reports), text, report, first.stdout, second.stdout]
    leaks += [json.dumps(r.body) for r in github.received]
    for place in leaks:
        assert AGENT_API_KEY not in place
        assert AGENT_GH_TOKEN not in place
    assert "starting agent with key ***" in first_crash["log_tail"]


FREEZING_AGENT = """
import time
from pathlib import Path

from pytest_orchestrator.result import TaskResult


def pytest_orchestrator_dispatch(task, sandbox, config):
    root = Path(str(config.rootpath))
    with open(root / "dispatched.log", "a") as log:
        log.write(task.id + "\\n")
    marker = root / "froze-once"
    if task.id == "1.1" and not marker.exists():
        marker.touch()
        while True:  # a dispatch that never returns, and never says a word
            time.sleep(3600)
    return TaskResult(task.id, "completed")
"""

RUNNER_CONFIG = """\
freeze_threshold: 3
loop:
  poll_interval: 1
watchdog:
  period: 0.5
components:
  sandbox:
    enabled: false
  runner:
    command: [{python}, -m, pytest, plans, --orchestrator-loop, -p, no:cacheprovider]
"""


@pytest.mark.usefixtures("dead_docker")
def test_a_frozen_loop_is_restarted_by_the_watchdog_its_task_redone_and_a_critical_report_filed(
    tmp_path: Path,
) -> None:
    from tests.test_runs import PLAN as THREE_TASKS

    project = tmp_path / "project"
    (project / "plans").mkdir(parents=True)
    (project / "plans" / "x.md").write_text(THREE_TASKS, encoding="utf-8")
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (project / "conftest.py").write_text(FREEZING_AGENT, encoding="utf-8")
    (project / "orchestrator.yaml").write_text(RUNNER_CONFIG.format(python=sys.executable), encoding="utf-8")
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "pytest_orchestrator", "watch"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        dispatched = project / "dispatched.log"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if dispatched.exists() and dispatched.read_text().split() == ["1.1", "1.1", "1.2", "1.3"]:
                break
            time.sleep(0.2)
        else:
            log = (project / ".orchestrator" / "logs" / "watchdog.log").read_text()
            raise AssertionError(f"the task was not redone: {dispatched.read_text()!r}\n{log}")
    finally:
        watchdog.terminate()
        watchdog.wait(timeout=60)

    store = StateStore.read(project / ".orchestrator")
    assert store is not None
    attempts = [
        tuple(r) for r in store.conn.execute("SELECT task_id, status, started_at FROM attempts ORDER BY id")
    ]
    runner = store.conn.execute(
        "SELECT restarts, last_restart_at, last_restart_reason FROM components"
    ).fetchone()
    crashes = [dict(r) for r in store.conn.execute("SELECT * FROM agent_crashes")]
    reports = [dict(r) for r in store.conn.execute("SELECT * FROM bug_reports")]
    rounds = [dict(r) for r in store.conn.execute("SELECT * FROM health_checks WHERE source = 'watchdog'")]
    store.close()

    # The watchdog's health history: its restart is an action, on a row of its own.
    acted = [r for r in rounds if "restarted runner: liveness failed" in r["actions"]]
    assert len(acted) == 1 and json.loads(acted[0]["checks"]).keys() == {"runner"}
    assert [(task, status) for task, status, _ in attempts] == [
        ("1.1", "interrupted"),
        ("1.1", "completed"),
        ("1.2", "completed"),
        ("1.3", "completed"),
    ]
    assert runner["restarts"] == 1
    assert "liveness failed 1 times: the loop's last poll" in runner["last_restart_reason"]
    # The runner's built-in liveness probe is the loop's heartbeat against freeze_threshold.
    # The loop last beat as 1.1 started: restarted within the threshold plus one period, plus
    # the watchdog's tick twice (a probe is submitted and collected on its rounds), plus
    # generous slack for a loaded machine. Measured on a quiet one: 3.8 to 4.0s.
    frozen_for = runner["last_restart_at"] - attempts[0][2]
    assert 3.0 <= frozen_for <= 3.0 + 0.5 + 2 * 0.25 + 3.0, frozen_for
    assert [c["kind"] for c in crashes] == ["component"] and crashes[0]["subject"] == "runner"
    freeze = [r for r in reports if r["category"] == "freeze"]
    assert len(freeze) == 1 and freeze[0]["priority"] == "Critical"
    text = (project / ".orchestrator" / "bugs" / f"BUG-{freeze[0]['number']:03d}.md").read_text()
    assert "frozen" in text.lower() and "runner" in text


def test_a_frozen_runners_crashes_file_no_crash_report_beside_the_freeze_report(tmp_path: Path) -> None:
    from pytest_orchestrator.crashes.config import MonitorSpec
    from pytest_orchestrator.crashes.record import component_crash
    from pytest_orchestrator.monitor.crashes import Monitor

    lines: list[str] = []
    monitor = Monitor(tmp_path, MonitorSpec(), lines.append)
    for _ in range(3):
        frozen = component_crash(
            "runner", reason="liveness failed 1 times: the loop's last poll 9s ago", log=""
        )
        monitor.crashed(frozen, report=False)
        monitor.frozen("runner", "liveness failed 1 times: the loop's last poll 9s ago", "")
    for _ in range(3):
        log = "Traceback (most recent call last):\nKeyError: 'x'\n"
        monitor.crashed(component_crash("web", reason="exited with code 1", log=log, exit_code=1))
    store = StateStore.read(tmp_path)
    assert store is not None
    reports = sorted((r["category"], r["priority"]) for r in store.conn.execute("SELECT * FROM bug_reports"))
    crashes = store.conn.execute("SELECT COUNT(*) FROM agent_crashes").fetchone()[0]
    store.close()
    assert crashes == 6
    assert reports == [("crash", "Medium"), ("freeze", "Critical")]
