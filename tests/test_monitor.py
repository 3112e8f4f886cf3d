"""The health monitor end to end: crashes of a real agent process in a real sandbox, their root
cause and fingerprint, and the one bug report they file (to a file, and to a scripted GitHub)."""

from __future__ import annotations

import json
import subprocess
import sys
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
