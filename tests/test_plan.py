"""Unit tests for the plan parser: the five seed plans, and the edge cases of the format."""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import pytest

from pytest_orchestrator.plan import (
    CodeBlock,
    Criterion,
    Plan,
    PlanError,
    Task,
    parse_plan,
    parse_plan_text,
)

# The five specification documents, copied verbatim: they are the real-world plan formats.
SEEDS = Path(__file__).resolve().parent / "data" / "seeds"


def seed(prefix: str) -> Path:
    """The seed plan whose name starts with `prefix`."""
    (found,) = SEEDS.glob(f"{prefix}_*.txt")
    return found


def parse(text: str, path: str = "plans/x.md") -> Plan:
    return parse_plan_text(textwrap.dedent(text), path)


def only(text: str) -> Task:
    (task,) = parse(text).tasks
    return task


def by_id(plan: Plan) -> dict[str, Task]:
    return {task.id: task for task in plan.tasks}


# ---- seed 000: "## Task 1.1:" headings, front matter, trailing non-task sections ----


def test_seed_000_tasks_and_titles() -> None:
    plan = parse_plan(seed("000"))
    assert plan.title == "Milestone 1: Health Check Command"
    assert [(t.id, t.title) for t in plan.tasks] == [
        ("1.1", "Create health module with data classes"),
        ("1.2", "Implement individual check functions"),
        ("1.3", "Implement get_health() aggregator"),
        ("1.4", "Add health CLI command"),
        ("1.5", "Add telemetry to health checks"),
    ]
    # Line numbers count the front matter.
    assert plan.tasks[0].line == 14
    assert {t.milestone for t in plan.tasks} == {plan.title}


def test_seed_000_task_fields() -> None:
    tasks = by_id(parse_plan(seed("000")))
    task = tasks["1.2"]
    assert task.files == ("orchestrator/health.py",)
    assert task.type == "CODING"
    assert task.description.startswith("Implement the four check functions: `check_sandbox()`")
    assert task.implementation_notes.startswith("- Use `subprocess.run()` with `timeout=5`")
    assert len(task.tests) == 9
    assert task.tests[0] == "check_sandbox() returns ok when container running (mock subprocess)"
    assert task.verification is None
    assert tasks["1.1"].tests[0] == "`orchestrator/tests/test_health.py`"
    assert tasks["1.1"].implementation_notes.startswith("```python\nfrom dataclasses import")
    assert [b.lang for b in tasks["1.1"].code_blocks] == ["python"]
    assert tasks["1.4"].files == ("orchestrator/cli.py",)


def test_seed_000_acceptance_criteria() -> None:
    task = by_id(parse_plan(seed("000")))["1.3"]
    assert task.acceptance_criteria == (
        Criterion("Dependency ordering works correctly", False),
        Criterion("Skipped status used for dependent checks", False),
        Criterion("Overall status calculation correct", False),
        Criterion("Unit tests pass", False),
    )


def test_seed_000_sections_after_the_last_task_are_not_absorbed() -> None:
    last = parse_plan(seed("000")).tasks[-1]
    texts = [c.text for c in last.acceptance_criteria]
    assert texts == [
        "Traces visible in Jaeger when OTLP enabled",
        "Metrics exposed for Prometheus",
        "No errors when OTLP disabled",
        "Unit tests pass",
    ]
    assert "No Python exceptions in any scenario" not in texts  # E2E Test Scenario
    assert "All tasks complete and committed" not in texts  # Completion Checklist
    assert [b.lang for b in last.code_blocks] == ["python"]


# ---- seed 001: "### Task 2.1:" under "## Tasks", example plans inside fences ----


def test_seed_001_tasks_ignore_the_embedded_example_plans() -> None:
    plan = parse_plan(seed("001"))
    assert [t.id for t in plan.tasks] == [f"2.{n}" for n in range(1, 10)]
    assert "1.1" not in by_id(plan)
    assert plan.tasks[3].title == "Create Plan Parser"


def test_seed_001_files_list() -> None:
    task = parse_plan(seed("001")).tasks[0]
    assert task.files == (
        "orchestrator/__init__.py",
        "orchestrator/__main__.py",
        "orchestrator/py.typed",
        "pyproject.toml",
    )
    assert task.type == "CODING"
    assert task.description == "Set up the orchestrator as a Python package with entry point."


def test_seed_001_example_input_stays_a_code_block() -> None:
    task = by_id(parse_plan(seed("001")))["2.4"]
    (example,) = task.code_blocks
    assert example.lang == "markdown"
    assert example.line == 198
    assert "## Task 1.1: Create hello.py" in example.code
    assert task.acceptance_criteria[0].text == "Parses task ID from header"


def test_seed_001_nested_fences_in_a_markdown_example() -> None:
    # health_check.md (a ```markdown block) contains a ```bash block of its own.
    task = by_id(parse_plan(seed("001")))["2.9"]
    assert [c.text for c in task.acceptance_criteria] == [
        "hello_world.md is parseable by plan_parser",
        "health_check.md has 3 tasks with clear criteria",
        "E2E test section is present",
    ]
    assert [(b.lang, b.line) for b in task.code_blocks] == [("markdown", 518), ("markdown", 535)]
    assert task.code_blocks[1].code.rstrip().endswith("# orchestrator.health_check span exists\n```")


# ---- seed 003: spec-kit checklist lines ----


def test_seed_003_checklist_tasks() -> None:
    plan = parse_plan(seed("003"))
    tasks = by_id(plan)
    assert [t.id for t in plan.tasks] == [f"T{n:03}" for n in range(1, 47)]
    t001 = tasks["T001"]
    assert t001.title == "Create OrchestratorDashboard class in src/orchestrator/dashboard.py"
    assert (t001.parallel, t001.story, t001.line) == (True, "US7", 70)
    assert t001.files == ("src/orchestrator/dashboard.py",)
    assert t001.description == (
        "Phase 3: User Story 7 - Orchestrator Dashboard (Priority: P5 - Platinum Tier)"
        " > Implementation for User Story 7"
    )
    assert (tasks["T002"].parallel, tasks["T002"].story) == (False, "US7")
    assert tasks["T030"].story == "US10"
    # "(tasks/hour)" is not a path.
    assert tasks["T014"].files == ("src/orchestrator/metrics.py",)
    t037 = tasks["T037"]
    assert (t037.parallel, t037.story, t037.files) == (True, None, ("config/orchestrator.yaml",))
    assert t037.description == "Phase 7: Polish & Cross-Cutting Concerns"
    assert tasks["T043"].files == ("tests/integration/test_orchestrator_e2e.py",)


# ---- seed 004: "## Task 1:" headings without labels ----


def test_seed_004_numeric_ids_and_unlabelled_description() -> None:
    plan = parse_plan(seed("004"))
    assert plan.title == "Tasks"
    assert [(t.id, t.title) for t in plan.tasks][::4] == [
        ("1", "Design Health Check Interface"),
        ("5", "Fix .log vs .err Confusion"),
    ]
    first, second = plan.tasks[:2]
    assert first.description.startswith("Define the health check interface following Kubernetes")
    assert "- [ ] Define `Component` interface" in first.description
    assert first.acceptance_criteria[0] == Criterion(
        "Clear interface that works for all component types (process, Docker)", False
    )
    # "### 2.1 ..." sub-headings stay inside Task 2.
    assert "### 2.3 agent-runner (Docker) Health Checks" in second.description
    assert len(second.acceptance_criteria) == 4


def test_seed_002_has_no_tasks() -> None:
    path = seed("002")
    with pytest.raises(PlanError, match="no tasks found") as info:
        parse_plan(path)
    assert str(path) in str(info.value)


# ---- task headings ----


@pytest.mark.parametrize(
    ("heading", "task_id", "title"),
    [
        ("## Task 1.1: Create hello.py", "1.1", "Create hello.py"),
        ("### Task 2.10 - Ten", "2.10", "Ten"),
        ("#### Task 3a — Letters", "3a", "Letters"),
        ("## Task 4. Dot", "4", "Dot"),
        ("## Task 5.2.1 No separator", "5.2.1", "No separator"),
        ("## **Task 6:** Bold", "6", "Bold"),
        ("## task 7: lower case ##", "7", "lower case"),
        ("## Task 8", "8", ""),
    ],
)
def test_heading_formats(heading: str, task_id: str, title: str) -> None:
    task = only(f"# M\n\n{heading}\n\nBody.\n")
    assert (task.id, task.title, task.line, task.description) == (task_id, title, 3, "Body.")


@pytest.mark.parametrize(
    "heading", ["## Tasks", "## Task list", "# Task 1: top level", "## 2.1 Checks", "##Task 1: x"]
)
def test_headings_that_are_not_tasks(heading: str) -> None:
    with pytest.raises(PlanError, match="no tasks found"):
        parse(f"{heading}\n\ntext\n")


def test_tags_on_a_heading() -> None:
    task = only("## Task 1: [P] [us3] Tagged\n")
    assert (task.title, task.parallel, task.story) == ("Tagged", True, "US3")


# ---- sections ----


def test_section_ends_at_a_rule_and_at_a_higher_heading() -> None:
    plan = parse(
        """\
        # Milestone

        ### Task 1: One
        **Acceptance Criteria:**
        - [ ] one

        #### Details
        - [ ] still one

        ---

        - [ ] after the rule

        ### Task 2: Two
        **Acceptance Criteria:**
        - [ ] two

        ## Completion Checklist
        - [ ] not a criterion of task 2
        """
    )
    one, two = plan.tasks
    assert [c.text for c in one.acceptance_criteria] == ["one"]
    assert "#### Details\n- [ ] still one" in one.description
    assert [c.text for c in two.acceptance_criteria] == ["two"]


def test_labels_and_their_values() -> None:
    task = only(
        """\
        ## Task 1: Labels
        **Files**: `a.py`, `pkg/b.py`
        **Type:** `RESEARCH`
        **Status**: TODO

        This prose follows an inline label after a blank line, so it is the description.

        **Tests:**
        - test one
        - [x] test two

        **Acceptance Criteria:**
        - [x] done
        - [X] also done
        - [ ] open, and
          continued on the next line
        * plain bullet

        **Implementation Notes:**
        - note

        ```python
        print("hi")
        ```
        """
    )
    assert task.files == ("a.py", "pkg/b.py")
    assert task.type == "RESEARCH"
    assert task.description.startswith("This prose follows an inline label")
    assert task.tests == ("test one", "test two")
    assert task.acceptance_criteria == (
        Criterion("done", True),
        Criterion("also done", True),
        Criterion("open, and continued on the next line", False),
        Criterion("plain bullet", False),
    )
    assert task.implementation_notes == '- note\n\n```python\nprint("hi")\n```'
    assert task.code_blocks == (CodeBlock("python", 'print("hi")', 22),)


def test_description_label_wins_over_other_text() -> None:
    task = only(
        """\
        ## Task 1: D
        Intro that is not the description.

        **Description:** Inline start
        and its second line.

        A second paragraph.

        **File:** hello.py
        """
    )
    assert task.description == "Inline start\nand its second line.\n\nA second paragraph."
    assert task.files == ("hello.py",)


def test_files_bullets_with_comments() -> None:
    task = only(
        """\
        ## Task 1: F
        **Files:**
        - `pyproject.toml` (add the entry point)
        - docs/guide.md - new
        - `a.py`
        - `a.py`
        """
    )
    assert task.files == ("pyproject.toml", "docs/guide.md", "a.py")


# ---- fences ----


def test_headings_in_fences_are_not_tasks() -> None:
    plan = parse(
        """\
        ## Task 1: Real

        ```markdown
        ## Task 9: In a backtick fence
        ```

        ~~~
        ## Task 8: In a tilde fence
        ```
        ## Task 7: A backtick line does not close a tilde fence
        ~~~

        ````
        ```
        ## Task 6: A shorter fence does not close a longer one
        ```
        ````

        ## Task 2: Also real
        """
    )
    assert [t.id for t in plan.tasks] == ["1", "2"]
    assert [(b.lang, b.line) for b in plan.tasks[0].code_blocks] == [
        ("markdown", 3),
        ("", 7),
        ("", 13),
    ]
    assert (
        plan.tasks[0].code_blocks[2].code
        == "```\n## Task 6: A shorter fence does not close a longer one\n```"
    )


def test_an_unclosed_fence_runs_to_the_end() -> None:
    plan = parse("## Task 1: A\n\n```bash\necho\n## Task 2: swallowed\n")
    (task,) = plan.tasks
    assert task.code_blocks == (CodeBlock("bash", "echo\n## Task 2: swallowed\n", 3),)


def test_indented_fence_content_is_dedented() -> None:
    task = only("- [ ] T001 Do it in a.py\n  ```bash\n  echo hi\n  ```\n")
    assert task.code_blocks == (CodeBlock("bash", "echo hi", 2),)


# ---- front matter, line endings, BOM ----


def test_front_matter_crlf_and_bom() -> None:
    text = "\ufeff---\r\ndesign: d.md\r\n---\r\n\r\n# M\r\n\r\n## Task 1: A\r\n**File:** `a.py`\r\n"
    plan = parse_plan_text(text, "p.md")
    assert plan.title == "M"
    (task,) = plan.tasks
    assert (task.line, task.title, task.files) == (7, "A", ("a.py",))


def test_old_mac_line_endings() -> None:
    (task,) = parse_plan_text("## Task 1: A\r\rtext\r", "p.md").tasks
    assert task.description == "text"


def test_a_leading_rule_is_not_front_matter() -> None:
    plan = parse("---\n# Title\n\n## Task 1: A\n\n---\n\n## Task 2: B\n")
    assert plan.title == "Title"
    assert [t.id for t in plan.tasks] == ["1", "2"]


# ---- checklist tasks ----


def test_checklist_lines() -> None:
    plan = parse(
        """\
        ## Phase 1
        ### Story
        - [ ] T001 [P] [US7] Create Dash in src/orchestrator/dashboard.py
        - [x] T002 Compute (tasks/hour), e.g. see https://example.com/a.py and `README.md`
          **Verify:**
          ```sh
          test -f README.md
          ```
        - [ ] Not a task: no id
        - [ ] T003: Write tests/test_dash.py.
        """
    )
    one, two, three = plan.tasks
    assert (one.id, one.parallel, one.story) == ("T001", True, "US7")
    assert one.title == "Create Dash in src/orchestrator/dashboard.py"
    assert one.files == ("src/orchestrator/dashboard.py",)
    assert one.description == "Phase 1 > Story"
    assert (two.parallel, two.story, two.files) == (False, None, ("README.md",))
    assert two.verification == CodeBlock("sh", "test -f README.md", 6)
    assert (three.id, three.title, three.files) == (
        "T003",
        "Write tests/test_dash.py.",
        ("tests/test_dash.py",),
    )


def test_checklist_task_ends_at_a_less_indented_line() -> None:
    plan = parse("## Tasks\n- [ ] T001 A\n  more of T001\n\n```bash\ntrue\n```\nafter\n")
    (task,) = plan.tasks
    assert task.code_blocks == ()
    assert task.description == "more of T001"


# ---- verification ----


@pytest.mark.parametrize(
    ("fence", "lang"),
    [("```bash verify", "bash"), ("```sh verify", "sh"), ("~~~Bash verify", "bash")],
)
def test_verify_info_string(fence: str, lang: str) -> None:
    closing = fence[:3]
    task = only(f"## Task 1: V\n\n{fence}\npytest -q\n{closing}\n")
    assert task.verification == CodeBlock(lang, "pytest -q", 3)
    assert task.code_blocks == (task.verification,)


@pytest.mark.parametrize("label", ["**Verify:**", "**Verification:**", "**Verification**:"])
def test_verify_label(label: str) -> None:
    task = only(f"## Task 1: V\n\n{label}\n\n```bash\nmake check\n```\n\n```bash\nnot this\n```\n")
    assert task.verification == CodeBlock("bash", "make check", 5)


def test_a_shell_block_not_directly_after_the_label_is_not_verification() -> None:
    task = only("## Task 1: V\n\n**Verification:** run the suite:\n\nsee below\n\n```bash\nx\n```\n")
    assert task.verification is None


def test_two_verification_blocks_name_both_lines() -> None:
    text = "## Task 1.1: V\n```bash verify\na\n```\n**Verify:**\n```sh\nb\n```\n"
    with pytest.raises(PlanError) as info:
        parse(text)
    assert str(info.value) == (
        "plans/x.md:6: task 1.1 has a second verification block (first at line 2); keep one"
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("## Task 1: V\n```python verify\nx\n```\n", r"plans/x\.md:2"),
        ("## Task 1: V\n**Verify:**\n```\nmake\n```\n", r"plans/x\.md:3"),
    ],
)
def test_verification_must_be_a_shell(text: str, where: str) -> None:
    with pytest.raises(PlanError, match=rf"^{where}: task 1: .*write ```bash or ```sh"):
        parse(text)


def test_verification_outside_any_task() -> None:
    with pytest.raises(PlanError, match=r"plans/x\.md:3: verification block outside any task"):
        parse("# M\n\n```bash verify\ntrue\n```\n\n## Task 1: A\n")


# ---- errors ----


def test_duplicate_ids() -> None:
    with pytest.raises(PlanError) as info:
        parse("## Task 1.1: A\n\n## Task 2: B\n\n## Task 1.1: C\n")
    assert str(info.value) == "plans/x.md:5: duplicate task id 1.1 (first at line 1)"
    assert (info.value.path, info.value.line) == ("plans/x.md", 5)


def test_no_tasks() -> None:
    with pytest.raises(PlanError) as info:
        parse("# Just notes\n\n- [ ] a todo\n")
    assert str(info.value).startswith("plans/x.md: no tasks found")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"missing\.md: plan file not found$"):
        parse_plan(tmp_path / "missing.md")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="is a directory, not a plan file"):
        parse_plan(tmp_path)


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod cannot lock root out, so the OS error is raised directly.
    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(PlanError, match=r"x\.md: permission denied"):
        parse_plan(tmp_path / "x.md")


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "x.md"
    path.write_bytes(b"## Task 1: A\n\x00\x01\x02")
    with pytest.raises(PlanError, match=r"x\.md:2: binary file"):
        parse_plan(path)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.md"
    path.write_bytes(b"## Task 1: A\n\ncaf\xe9\n")
    with pytest.raises(PlanError, match=r"x\.md:3: not valid UTF-8 \(byte 0xe9\)"):
        parse_plan(path)


def test_plan_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(PlanError("p.md", 3, "boom")))
    assert (str(error), error.line) == ("p.md:3: boom", 3)


# ---- the model ----


def test_parse_plan_keeps_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("plan.md").write_text("# M\n\n## Task 1: A\n", encoding="utf-8")
    plan = parse_plan(Path("plan.md"))
    assert (plan.path, plan.tasks[0].plan, plan.tasks[0].milestone) == ("plan.md", "plan.md", "M")


def test_to_dict_is_json() -> None:
    text = "# M\n\n## Task 1: A\n**Files:** `a.py`\n**Acceptance Criteria:**\n- [x] c\n"
    plan = parse(text + "```bash verify\ntrue\n```\n")
    data = json.loads(json.dumps(plan.to_dict()))
    (task,) = data["tasks"]
    assert data["title"] == "M"
    assert task["files"] == ["a.py"]
    assert task["verification"] == {"lang": "bash", "code": "true", "line": 7}
    assert task["code_blocks"] == [task["verification"]]
    assert task["acceptance_criteria"] == [{"text": "c", "checked": True}]
