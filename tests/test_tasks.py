"""Plan tasks as a user runs them, through pytester; no Docker engine and no Claude needed.

The agent is replaced through the dispatch hook by a conftest plugin, which is the
extension point users have. The Docker endpoint points at a socket where nothing
listens, so anything that reaches for the engine fails the way it does when the
daemon is down.
"""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

import pytest

from pytest_orchestrator.agents.claude_code import events, to_result, version_check
from pytest_orchestrator.plan import Criterion, Task
from pytest_orchestrator.prompt import DEFAULT_PROMPT, render_prompt
from pytest_orchestrator.result import parse_final_message
from pytest_orchestrator.retry import retry_reason
from pytest_orchestrator.sandbox import ExecResult
from pytest_orchestrator.state import StateStore
from tests.conftest import attempt_rows

# What the fake agent returns, by task title; the expected totals are computed from it.
OUTCOMES: dict[str, dict[str, Any]] = {
    "Write the parser": {
        "status": "completed",
        "usage": (1200, 2300, 400, 5),
        "cost": 0.125,
        "session": "sess-parser",
        "duration": 3.0,
        "turns": 7,
    },
    "Pick a database": {
        "status": "needs_human",
        "usage": (10, 20, 0, 0),
        "cost": 0.5,
        "session": "sess-db",
        "question": "Which database should we use?",
        "options": ["SQLite", "PostgreSQL"],
        "recommendation": "SQLite",
    },
    "Break the build": {
        "status": "failed",
        "usage": (1, 2, 3, 4),
        "cost": 0.25,
        "session": "sess-break",
        "error": "tests do not pass: ImportError in app",
    },
}

AGENT = f"""
from pathlib import Path

from pytest_orchestrator.result import TaskResult, Usage

OUTCOMES = {OUTCOMES!r}


def pytest_orchestrator_dispatch(task, sandbox, config):
    o = OUTCOMES[task.title]
    return TaskResult(
        task.id,
        o["status"],
        duration_seconds=o.get("duration", 0.0),
        usage=Usage(*o["usage"]),
        cost_usd=o["cost"],
        num_turns=o.get("turns", 0),
        session_id=o["session"],
        question=o.get("question"),
        options=o.get("options"),
        recommendation=o.get("recommendation"),
        error=o.get("error"),
        agent="fake",
    )


def pytest_orchestrator_task_finished(task, result, config):
    with open(Path(str(config.rootpath)) / "finished.log", "a") as log:
        log.write(f"{{Path(task.plan).name}} {{task.id}} {{result.status}}\\n")
"""

PLAN = """\
# Milestone 1: Storage

## Task 1.1: Write the parser
**Type:** Coding
**Files:** `src/parse.py`

Parse the input files.

**Acceptance Criteria:**
- [ ] it parses

## Task 1.2: [P] Pick a database
**Type:** Research

Storage needs a database.

## Task 1.3: Break the build
**Type:** Coding

Something that cannot work.
"""

SPEC = """\
# Tasks: Accounts

## Phase 3: User Story 7

- [ ] T001 [P] [US7] Create the user model in src/models/user.py
- [ ] T002 [US8] Wire the user service in src/services/user.py
"""

STATUS_LINE = r".*\[\d\d:\d\d:\d\d\] Task {id}: {label} \({secs}s, {tokens} tokens, \${cost}\) plans/\w+\.md$"


pytestmark = pytest.mark.usefixtures("dead_docker")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with an ini file, the fake agent and plans/x.md."""
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(AGENT)
    pytester.mkdir("plans")
    (pytester.path / "plans" / "x.md").write_text(PLAN, encoding="utf-8")
    return pytester


def finished_log(pytester: pytest.Pytester) -> list[str]:
    path = pytester.path / "finished.log"
    return sorted(path.read_text().splitlines()) if path.exists() else []


def expected_totals(plans: int = 1) -> dict[str, Any]:
    usages = [o["usage"] for o in OUTCOMES.values()]
    by_status: dict[str, int] = {}
    for o in OUTCOMES.values():
        by_status[o["status"]] = by_status.get(o["status"], 0) + plans
    return {
        "tasks": len(OUTCOMES) * plans,
        "by_status": by_status,
        "input_tokens": sum(u[0] for u in usages) * plans,
        "output_tokens": sum(u[1] for u in usages) * plans,
        "cache_read_tokens": sum(u[2] for u in usages) * plans,
        "cache_creation_tokens": sum(u[3] for u in usages) * plans,
        "tokens": sum(sum(u) for u in usages) * plans,
        "cost_usd": pytest.approx(sum(o["cost"] for o in OUTCOMES.values()) * plans),
        "duration_seconds": pytest.approx(
            sum(o.get("duration", 0) for o in OUTCOMES.values()) * plans, abs=0.05
        ),
    }


def collected_ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


# ---- collection ----


def test_collect_only_lists_tasks_in_document_order(project: pytest.Pytester) -> None:
    (project.path / "plans" / "order.md").write_text(
        "# Order\n\n## Task 3: Third first\n\n## Task 1: Then one\n\n## Task 2: Then two\n"
    )
    tree = project.runpytest("plans/x.md", "--collect-only")
    tree.stdout.fnmatch_lines(
        [
            "*<PlanFile x.md>",
            "*<Task 1.1: Write the parser>",
            "*<Task 1.2: Pick a database>",
            "*<Task 1.3: Break the build>",
        ]
    )
    ids = project.runpytest("plans/x.md", "plans/order.md", "-q", "--collect-only")
    assert ids.ret == 0
    assert collected_ids(ids) == [
        "plans/x.md::1.1",
        "plans/x.md::1.2",
        "plans/x.md::1.3",
        "plans/order.md::3",
        "plans/order.md::1",
        "plans/order.md::2",
    ]


def test_keyword_selects_one_task(project: pytest.Pytester) -> None:
    result = project.runpytest("plans/x.md", "-q", "--collect-only", "-k", "1.2")
    assert collected_ids(result) == ["plans/x.md::1.2"]


@pytest.mark.parametrize("strict", [[], ["--strict-markers"]], ids=["lax", "strict"])
def test_type_and_story_markers_select_tasks(project: pytest.Pytester, strict: list[str]) -> None:
    (project.path / "plans" / "spec.md").write_text(SPEC)
    by_type = project.runpytest("plans", "-q", "--collect-only", "-m", "coding", *strict)
    assert by_type.ret == 0
    assert collected_ids(by_type) == ["plans/x.md::1.1", "plans/x.md::1.3"]
    by_story = project.runpytest("plans", "-q", "--collect-only", "-m", "us7 and parallel", *strict)
    assert by_story.ret == 0
    assert collected_ids(by_story) == ["plans/spec.md::T001"]
    other = project.runpytest("plans", "-q", "--collect-only", "-m", "us8", *strict)
    assert collected_ids(other) == ["plans/spec.md::T002"]


def test_only_markdown_under_plan_dirs_is_collected_when_walking(project: pytest.Pytester) -> None:
    stray = "# Notes\n\n## Task 9.9: Not a plan task\n"
    (project.path / "README.md").write_text(stray)
    project.mkdir("docs")
    (project.path / "docs" / "guide.md").write_text(stray)

    # A bare `pytest` runs the tests, never the plans: no agent is dispatched by accident.
    bare = project.runpytest("-q", "--collect-only")
    assert collected_ids(bare) == []
    dot = project.runpytest(".", "-q", "--collect-only")
    assert collected_ids(dot) == ["plans/x.md::1.1", "plans/x.md::1.2", "plans/x.md::1.3"]
    docs = project.runpytest("docs", "-q", "--collect-only")
    assert docs.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert collected_ids(docs) == []
    # Named on the command line, a markdown file is a plan wherever it lives.
    named = project.runpytest("docs/guide.md", "README.md", "-q", "--collect-only")
    assert collected_ids(named) == ["docs/guide.md::9.9", "README.md::9.9"]


def test_plan_dirs_ini_moves_the_plan_directory(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\norchestrator_plan_dirs = milestones\n")
    project.mkdir("milestones")
    (project.path / "milestones" / "m1.md").write_text("# M1\n\n## Task 4.1: Moved\n")
    result = project.runpytest(".", "-q", "--collect-only")
    assert collected_ids(result) == ["milestones/m1.md::4.1"]


def test_plan_without_tasks_is_a_collection_error(project: pytest.Pytester) -> None:
    (project.path / "plans" / "empty.md").write_text("# Empty\n\nJust prose, no tasks.\n")
    result = project.runpytest("plans/empty.md")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting plans/empty.md*",
            "*empty.md: no tasks found: expected headings like '## Task 1.1: Title'*",
            "*Interrupted: 1 error during collection*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "plan.py" not in result.stdout.str()


def test_duplicate_task_ids_name_both_lines(project: pytest.Pytester) -> None:
    (project.path / "plans" / "dup.md").write_text("# D\n\n## Task 1.1: A\n\n## Task 1.1: B\n")
    result = project.runpytest("plans/dup.md")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*dup.md:5: duplicate task id 1.1 (first at line 3)"])
    assert "Traceback" not in result.stdout.str()


# ---- dispatch through the hook ----


def test_task_results_become_test_outcomes(project: pytest.Pytester) -> None:
    result = project.runpytest("plans/x.md", "-v")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 1, "failed": 1, "needs_human": 1}
    result.stdout.re_match_lines(
        [
            STATUS_LINE.format(id=r"1\.1", label="COMPLETED", secs=3, tokens=r"3\.9k", cost=r"0\.12"),
            STATUS_LINE.format(id=r"1\.2", label="NEEDS_HUMAN", secs=0, tokens=30, cost=r"0\.50"),
            STATUS_LINE.format(id=r"1\.3", label="FAILED", secs=0, tokens=10, cost=r"0\.25"),
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "plans/x.md::1.2 NEEDS_HUMAN*",
            "*Task 1.3 FAILED: tests do not pass: ImportError in app",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert finished_log(project) == [
        "x.md 1.1 completed",
        "x.md 1.2 needs_human",
        "x.md 1.3 failed",
    ]


def test_needs_human_alone_fails_the_run(project: pytest.Pytester) -> None:
    result = project.runpytest("plans/x.md", "-k", "1.2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 needs_human*"])


def test_needs_human_question_reaches_the_terminal(project: pytest.Pytester) -> None:
    result = project.runpytest("plans/x.md", "-k", "1.2")
    result.stdout.fnmatch_lines(
        [
            "*= needs human =*",
            "plans/x.md::1.2: Pick a database",
            "*QUESTION: Which database should we use?",
            "*OPTIONS: SQLite | PostgreSQL",
            "*RECOMMENDATION: SQLite",
            "*Answer with: orchestrator task * 1.2 -g 'your answer'",
        ]
    )


def test_conftest_agent_wins_over_the_builtin_after_a_declining_plugin(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        declining=textwrap.dedent(
            """
            from pathlib import Path


            class Declining:
                def pytest_orchestrator_dispatch(self, task, sandbox, config):
                    with open(Path(str(config.rootpath)) / "declined.log", "a") as log:
                        log.write(task.id + "\\n")
                    return None


            def pytest_configure(config):
                config.pluginmanager.register(Declining(), "declining-agent")
            """
        )
    )
    project.syspathinsert()
    result = project.runpytest("-p", "declining", "plans/x.md", "-k", "1.1")
    assert result.ret == pytest.ExitCode.OK
    assert result.parseoutcomes() == {"passed": 1, "deselected": 2}
    # The declining plugin was asked first and passed the task on.
    assert (project.path / "declined.log").read_text().split() == ["1.1"]
    assert "docker daemon" not in result.stdout.str()


def test_builtin_agent_runs_when_every_plugin_declines(pytester: pytest.Pytester, dead_docker: str) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makeconftest("def pytest_orchestrator_dispatch(task, sandbox, config):\n    return None\n")
    pytester.mkdir("plans")
    (pytester.path / "plans" / "x.md").write_text(PLAN)
    result = pytester.runpytest("plans/x.md", "-k", "1.1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*Task 1.1 *docker daemon not reachable at {dead_docker}*"])
    assert "Traceback" not in result.stdout.str()


# ---- JSON report, xdist ----


def test_json_report_carries_each_result_and_the_totals(project: pytest.Pytester) -> None:
    project.runpytest("plans/x.md", "--json-report", "--json-report-file", "r.json")
    report = json.loads((project.path / "r.json").read_text())
    tests = {t["nodeid"]: t for t in report["tests"]}
    assert sorted(tests) == ["plans/x.md::1.1", "plans/x.md::1.2", "plans/x.md::1.3"]
    titles = dict(zip(["1.1", "1.2", "1.3"], OUTCOMES, strict=True))
    for test in tests.values():
        data = test["metadata"]["orchestrator_task"]
        outcome = OUTCOMES[titles[data["task_id"]]]
        assert data["status"] == outcome["status"]
        assert data["tokens"] == sum(outcome["usage"])
        assert data["cost_usd"] == outcome["cost"]
        assert data["session_id"] == outcome["session"]
        assert data["question"] == outcome.get("question")
        assert data["options"] == outcome.get("options")
        assert data["recommendation"] == outcome.get("recommendation")
        assert data["error"] == outcome.get("error")
        assert data["agent"] == "fake"
    assert tests["plans/x.md::1.2"]["outcome"] == "needs_human"
    assert tests["plans/x.md::1.2"]["call"]["longrepr"].splitlines()[:4] == [
        "Task 1.2 NEEDS_HUMAN",
        "QUESTION: Which database should we use?",
        "OPTIONS: SQLite | PostgreSQL",
        "RECOMMENDATION: SQLite",
    ]
    assert report["summary"]["orchestrator"] == expected_totals()


def test_results_cross_xdist_to_the_controller(project: pytest.Pytester) -> None:
    (project.path / "plans" / "y.md").write_text(PLAN)
    result = project.runpytest("-n", "2", "plans", "--json-report", "--json-report-file", "r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 2, "failed": 2, "needs_human": 2}
    completed = re.compile(
        STATUS_LINE.format(id=r"1\.1", label="COMPLETED", secs=3, tokens=r"3\.9k", cost=r"0\.12")
    )
    assert sum(bool(completed.match(line)) for line in result.outlines) == 2
    report = json.loads((project.path / "r.json").read_text())
    assert report["summary"]["orchestrator"] == expected_totals(plans=2)
    assert all("orchestrator_task" in t["metadata"] for t in report["tests"])
    assert len(finished_log(project)) == 6


# ---- verification ----


def test_verification_without_a_reachable_sandbox_says_so(project: pytest.Pytester, dead_docker: str) -> None:
    (project.path / "plans" / "v.md").write_text(
        "# V\n\n## Task 1.1: Write the parser\nDo it.\n\n```bash verify\ntest -f done.txt\n```\n"
    )
    result = project.runpytest("plans/v.md")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*Task 1.1: FAILED (verification)*",
            "Task 1.1 FAILED: verification exited -1",
            f"verification could not run: docker daemon not reachable at {dead_docker}*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    rows = attempt_rows(project.path, "status, input_tokens, cost_usd, error")
    # The agent's spending is kept even though the task could not be verified.
    assert rows == [("failed", 1200, 0.125, "verification exited -1")]


# ---- state ----


def test_state_db_records_one_attempt_per_task(project: pytest.Pytester) -> None:
    project.runpytest("plans/x.md")
    store = StateStore.read(project.path / ".orchestrator")
    assert store is not None
    try:
        attempts = store.conn.execute(
            "SELECT plan, task_id, title, status, input_tokens, output_tokens, cache_read_tokens, "
            "cache_creation_tokens, cost_usd, num_turns, session_id, error, worker, ended_at "
            "FROM attempts ORDER BY task_id"
        ).fetchall()
        runs = store.conn.execute("SELECT status, ended_at FROM runs").fetchall()
    finally:
        store.close()
    assert len(attempts) == 3
    for row, (title, outcome) in zip(attempts, OUTCOMES.items(), strict=True):
        assert (row["plan"], row["title"], row["status"]) == (
            "plans/x.md",
            title,
            outcome["status"],
        )
        usage = (
            row["input_tokens"],
            row["output_tokens"],
            row["cache_read_tokens"],
            row["cache_creation_tokens"],
        )
        assert usage == outcome["usage"]
        assert row["cost_usd"] == outcome["cost"]
        assert row["num_turns"] == outcome.get("turns", 0)
        assert row["session_id"] == outcome["session"]
        assert row["error"] == outcome.get("error")
        assert row["worker"] == "main"
        assert row["ended_at"] is not None
    assert [r["task_id"] for r in attempts] == ["1.1", "1.2", "1.3"]
    assert len(runs) == 1
    assert runs[0]["status"] == "finished"
    assert runs[0]["ended_at"] is not None


# ---- bad configuration ----


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--orchestrator-max-turns", "0"],
            "*invalid max turns '0' from --orchestrator-max-turns*",
        ),
        (["--orchestrator-prompt-file", "bad.txt"], "*unknown placeholder {nope}*"),
        (["--orchestrator-prompt-file", "missing.txt"], "*invalid prompt file*missing.txt*"),
        (
            ["--orchestrator-claude-max-retries", "-1"],
            "*invalid claude max retries '-1' from --orchestrator-claude-max-retries: expected a whole number >= 0",
        ),
    ],
    ids=["max-turns", "placeholder", "missing-prompt-file", "claude-max-retries"],
)
def test_bad_settings_are_usage_errors(project: pytest.Pytester, args: list[str], message: str) -> None:
    (project.path / "bad.txt").write_text("Do {task_id}: {title} {nope}\n")
    result = project.runpytest("plans/x.md", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (project.path / "finished.log").exists()


# ---- prompt, final message and result: pure logic ----


def make_task(**fields: Any) -> Task:
    base: dict[str, Any] = {
        "id": "2.3",
        "title": "Add the cache",
        "description": "Cache parsed plans; keep {braces} as written.",
        "plan": "plans/m2.md",
        "milestone": "Milestone 2: Speed",
        "files": ("src/cache.py", "tests/test_cache.py"),
        "acceptance_criteria": (Criterion("hits are fast"), Criterion("misses work", checked=True)),
        "implementation_notes": "Use functools.lru_cache.",
    }
    return Task(**{**base, **fields})


def test_default_prompt_holds_the_task_and_the_status_protocol() -> None:
    prompt = render_prompt(make_task(), DEFAULT_PROMPT)
    for text in (
        "task 2.3 of the plan plans/m2.md",
        "# Task 2.3: Add the cache",
        "Cache parsed plans; keep {braces} as written.",
        "Files: src/cache.py, tests/test_cache.py",
        "- [ ] hits are fast\n- [x] misses work",
        "Implementation notes:\nUse functools.lru_cache.",
        "STATUS: complete | needs_human | failed",
        "QUESTION: <your question>",
        "ERROR: <what went wrong>",
    ):
        assert text in prompt
    assert "guidance" not in prompt.lower()


def test_prompt_fills_in_missing_fields() -> None:
    task = make_task(description="", files=(), acceptance_criteria=(), implementation_notes="")
    prompt = render_prompt(task, DEFAULT_PROMPT)
    assert "(no description)" in prompt
    assert "Files: (not specified)" in prompt
    assert "- (none given)" in prompt
    assert "Implementation notes" not in prompt


def test_prompt_carries_guidance() -> None:
    prompt = render_prompt(make_task(), DEFAULT_PROMPT, guidance="Use Redis, not memcached.")
    assert "Additional guidance from a human: Use Redis, not memcached." in prompt


def test_custom_template() -> None:
    template = "{milestone} / {task_id} {title}{guidance}"
    assert render_prompt(make_task(), template) == "Milestone 2: Speed / 2.3 Add the cache\n"
    assert render_prompt(make_task(), template, "go").startswith("Milestone 2: Speed / 2.3 Add the cache")
    assert "from a human: go" in render_prompt(make_task(), template, "go")


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("All done.\nSTATUS: complete", "completed"),
        ("Summary\n\n**STATUS:** complete", "completed"),
        ("STATUS: COMPLETED.", "completed"),
        ("The protocol asks for STATUS: failed\n\nSTATUS: complete", "completed"),
        ("STATUS: needs-human\nQUESTION: q?", "needs_human"),
        ("I changed three files and ran the tests.", None),
        ("", None),
    ],
)
def test_final_message_status(text: str, status: str | None) -> None:
    assert parse_final_message(text).status == status


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("OPTIONS: SQLite | PostgreSQL", ["SQLite", "PostgreSQL"]),
        ("OPTIONS:\n- SQLite\n- PostgreSQL", ["SQLite", "PostgreSQL"]),
        ("OPTIONS:\n1. SQLite\n2. PostgreSQL | MySQL", ["SQLite", "PostgreSQL", "MySQL"]),
        ("OPTIONS: SQLite, PostgreSQL", ["SQLite", "PostgreSQL"]),
    ],
    ids=["pipes", "bullets", "numbered", "commas"],
)
def test_final_message_needs_human(options: str, expected: list[str]) -> None:
    text = (
        "I am stuck.\n\nSTATUS: needs_human\nQUESTION: Which database\nshould we use?\n"
        f"{options}\nRECOMMENDATION: SQLite, it is simpler"
    )
    final = parse_final_message(text)
    assert final.status == "needs_human"
    assert final.question == "Which database should we use?"
    assert final.options == expected
    assert final.recommendation == "SQLite, it is simpler"
    assert final.error is None


def test_final_message_failed_with_error() -> None:
    final = parse_final_message("STATUS: failed\nERROR: tests do not pass:\nImportError in app\n\nBye")
    assert final.status == "failed"
    assert final.error == "tests do not pass: ImportError in app"


def result_event(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Done.\nSTATUS: complete",
        "num_turns": 4,
        "session_id": "sess-1",
        "total_cost_usd": 0.75,
        "usage": {
            "input_tokens": 100,
            "output_tokens": 50,
            "cache_read_input_tokens": 10,
            "cache_creation_input_tokens": 5,
        },
    }
    return {**event, **fields}


def test_to_result_completed_uses_usage() -> None:
    result = to_result("1.1", result_event(), 0, "", 12.5)
    assert (result.status, result.error, result.agent) == ("completed", None, "claude-code")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (100, 50)
    assert (result.usage.cache_read_tokens, result.usage.cache_creation_tokens) == (10, 5)
    assert (result.tokens, result.cost_usd, result.num_turns) == (165, 0.75, 4)
    assert (result.session_id, result.duration_seconds) == ("sess-1", 12.5)


def test_to_result_prefers_model_usage() -> None:
    event = result_event(
        usage={"input_tokens": 0, "output_tokens": 0},
        modelUsage={
            "claude-sonnet": {"inputTokens": 300, "outputTokens": 40, "cacheReadInputTokens": 7},
            "claude-haiku": {"inputTokens": 20, "outputTokens": 2, "cacheCreationInputTokens": 9},
        },
    )
    usage = to_result("1.1", event, 0, "", 1.0).usage
    assert (usage.input_tokens, usage.output_tokens) == (320, 42)
    assert (usage.cache_read_tokens, usage.cache_creation_tokens) == (7, 9)


def test_to_result_max_turns() -> None:
    event = result_event(subtype="error_max_turns", is_error=True, result="", num_turns=50)
    result = to_result("1.1", event, 1, "", 60.0)
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("max turns reached")
    # Spending is still reported for a task that ran out of turns.
    assert (result.num_turns, result.cost_usd, result.session_id) == (50, 0.75, "sess-1")


def test_to_result_is_error() -> None:
    event = result_event(is_error=True, result="API Error: 500 overloaded")
    result = to_result("1.1", event, 1, "", 2.0)
    assert (result.status, result.error) == ("failed", "agent error: API Error: 500 overloaded")


def test_to_result_without_a_result_event_keeps_the_stderr_tail() -> None:
    stderr = "one\ntwo\nstarting\nInvalid API key · Please run /login\n"
    result = to_result("1.1", None, 1, stderr, 0.4)
    assert result.status == "failed"
    assert result.error == (
        "claude exited with code 1 without a result: two | starting | Invalid API key · Please run /login"
    )
    assert to_result("1.1", None, 127, "", 0.1).error == (
        "claude exited with code 127 without a result: no output"
    )


OCI_NOT_FOUND = (
    "OCI runtime exec failed: exec failed: unable to start container process: "
    'exec: "claude": executable file not found in $PATH: unknown\r\n'
)


def test_output_that_is_no_event_explains_a_run_without_a_result() -> None:
    # The engine reports a command it cannot start on the exec's stdout, not its stderr.
    stray: list[str] = []
    chunks = [(OCI_NOT_FOUND.encode(), None), (None, b"token sk-ant-api03-" + b"Zz9" * 12 + b"\n")]
    assert list(events(chunks, stray)) == []
    error = to_result("1.1", None, 126, "".join(stray), 0.1).error
    assert error == (
        "claude exited with code 126 without a result: OCI runtime exec failed: exec failed: unable to "
        'start container process: exec: "claude": executable file not found in $PATH: unknown | token ***'
    )
    assert len(to_result("1.1", None, 1, "x" * 5000, 0.1).error or "") < 600


@pytest.mark.parametrize(
    ("code", "output", "retried"),
    [
        (126, OCI_NOT_FOUND, False),
        (127, "sh: claude: command not found", False),
        (1, "exec /usr/local/bin/claude: no such file or directory", False),
        (137, "", True),
        (1, "Killed", True),
    ],
)
def test_an_agent_that_cannot_start_is_not_retried(code: int, output: str, retried: bool) -> None:
    result = to_result("1.1", None, code, output, 0.1)
    assert result.crashed
    assert (retry_reason(result) == "the agent process crashed") is retried


@pytest.mark.parametrize(
    ("exec_result", "level", "message"),
    [
        (ExecResult(0, "2.1.197 (Claude Code)\n"), "ok", "Claude Code 2.1.197 (claude), in the tested range"),
        (ExecResult(0, "2.2.0 (Claude Code)\n"), "warning", "Claude Code 2.2.0 (claude) is outside"),
        (ExecResult(0, "2.0.99 (Claude Code)\n"), "warning", "Claude Code 2.0.99 (claude) is outside"),
        (
            ExecResult(0, "claude, nightly\n"),
            "warning",
            "`claude --version` printed no version: claude, nightly",
        ),
        (
            ExecResult(126, OCI_NOT_FOUND),
            "error",
            "`claude --version` failed in sandbox 'box' (exit 126): OCI",
        ),
    ],
)
def test_claude_code_version_check(exec_result: ExecResult, level: str, message: str) -> None:
    found_level, found_message = version_check(exec_result, "claude", "box")
    assert found_level == level
    assert found_message.startswith(message), found_message


def test_to_result_needs_human_and_failed_from_the_final_message() -> None:
    asked = to_result(
        "1.1",
        result_event(result="STATUS: needs_human\nQUESTION: A or B?\nOPTIONS: A | B\nRECOMMENDATION: A"),
        0,
        "",
        1.0,
    )
    assert (asked.status, asked.question, asked.options, asked.recommendation) == (
        "needs_human",
        "A or B?",
        ["A", "B"],
        "A",
    )
    failed = to_result("1.1", result_event(result="STATUS: failed"), 0, "", 1.0)
    assert failed.status == "failed"
    assert failed.error == "agent reported STATUS: failed without an ERROR line"


def test_to_result_without_status_line_fails() -> None:
    result = to_result("1.1", result_event(result="I refactored it all.\nBye."), 0, "", 1.0)
    assert result.status == "failed"
    assert result.error == "final message has no STATUS line: I refactored it all."
