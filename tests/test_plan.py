"""Unit tests for the plan parser: the seed plans, one plan per tool format, and the edge cases."""

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
# One plan in each format of the tools that write plans, written from their documentation.
PLANS = Path(__file__).resolve().parent / "data" / "plans"


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
        ("### Task 02-01-03: Leading zeros", "02-01-03", "Leading zeros"),
        ("## Task 1.2_1: Alpha", "1.2_1", "Alpha"),
        ("## Task 1.2a.3 - Mixed", "1.2a.3", "Mixed"),
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


@pytest.mark.parametrize("heading", ["## Task 1.x: Half an id", "### Task 2fa setup", "## Task 3..4: Range"])
def test_an_id_that_cannot_be_read_is_an_error_not_half_a_task(heading: str) -> None:
    with pytest.raises(PlanError) as info:
        parse(f"# M\n\n{heading}\n\nBody.\n")
    assert str(info.value).startswith("plans/x.md:3: cannot read the task id")
    assert "1.2_1 or 02-01-03" in str(info.value)


def test_task_headings_of_mixed_levels() -> None:
    plan = parse(
        """\
        # Milestone

        ## Phase 1
        #### Task 1.1: Deep
        **Acceptance Criteria:**
        - [ ] one
        #### Task 1.2: Also deep
        Body of 1.2.

        ## Phase 2
        ### Task 2.1: Shallower
        #### Notes for 2.1
        Still 2.1.
        ### Task 2.2: Sibling
        ##### Task 2.2.1: Deeper inside 2.2
        ## Phase 3
        #### Task 3.1: Deep again
        """
    )
    assert [(t.id, t.line) for t in plan.tasks] == [
        ("1.1", 4),
        ("1.2", 7),
        ("2.1", 11),
        ("2.2", 14),
        ("2.2.1", 15),
        ("3.1", 17),
    ]
    tasks = by_id(plan)
    assert [c.text for c in tasks["1.1"].acceptance_criteria] == ["one"]
    assert tasks["1.2"].description == "Body of 1.2."
    assert tasks["2.1"].description == "#### Notes for 2.1\nStill 2.1."
    assert tasks["2.2"].description == ""


@pytest.mark.parametrize(
    ("heading", "title"),
    [
        ("### Task 1.2: Title ✅ COMPLETED", "Title"),
        ("### Task 1.2: Title ✅", "Title"),
        ("### Task 1.2: Title - ✅ Done", "Title"),
        ("### Task 1.2: Title (completed)", "Title"),
        ("### Task 1.2 ✅ COMPLETED", ""),
    ],
)
def test_a_completed_heading_is_checked_and_loses_its_marker(heading: str, title: str) -> None:
    task = only(f"{heading}\n\nBody.\n")
    assert (task.id, task.title, task.checked) == ("1.2", title, True)


def test_a_completed_heading_ticks_what_is_under_it_only() -> None:
    plan = parse(
        """\
        # Fix Plan
        ## Backlog
        ### Completed
        - [ ] Old item
        ### Task 5: After a Completed sibling
        ## Phase 1 ✅
        - [ ] T001 Done in phase 1
        ## Tasks to get done
        - [ ] New item
        """
    )
    assert [(t.title, t.checked) for t in plan.tasks] == [
        ("Old item", True),
        ("After a Completed sibling", False),
        ("Done in phase 1", True),
        ("New item", False),
    ]


def test_a_status_label_ticks_a_task() -> None:
    plan = parse("## Task 1: A\n**Status**: ✅ Done\n\n## Task 2: B\n**Status**: ⏸️ TODO\n")
    assert [t.checked for t in plan.tasks] == [True, False]


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


def test_new_fields_have_defaults_and_the_task_stays_frozen_and_hashable() -> None:
    task = Task("1", "A")
    assert (task.checked, task.optional, task.priority) == (False, False, None)
    assert hash(task) == hash(Task("1", "A"))
    assert {task, Task("1", "A", checked=True)} == {task, Task("1", "A", checked=True)}
    with pytest.raises(AttributeError):
        task.checked = True  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(task)) == task
    data = Task("1", "A", checked=True, optional=True, priority="P1").to_dict()
    assert (data["checked"], data["optional"], data["priority"]) == (True, True, "P1")


def test_parse_plan_can_name_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.md"
    path.write_text("## Task 1: A\n", encoding="utf-8")
    assert parse_plan(path, "plans/plan.md").tasks[0].plan == "plans/plan.md"
    with pytest.raises(PlanError, match=r"^plans/gone\.md: plan file not found$"):
        parse_plan(tmp_path / "gone.md", "plans/gone.md")


# ---- spec-kit: checklist lines with ids ----


def test_speckit_plan() -> None:
    plan = parse_plan(PLANS / "speckit_tasks.md")
    tasks = by_id(plan)
    assert plan.title == "Tasks: CSV and JSON Export"
    assert [t.id for t in plan.tasks] == [
        "T001", "T002", "T003", "T004", "T005", "T005a", "T005b", "T006",
        "T007", "T008", "T009", "T010", "T011", "T012", "T013", "T014", "T015", "T016",
    ]  # fmt: skip
    assert [t.id for t in plan.tasks if t.checked] == ["T001", "T002", "T004", "T005", "T005a"]
    t005a = tasks["T005a"]
    assert (t005a.title, t005a.files, t005a.line) == (
        "Handle NULL columns in the row iterator in src/export/rows.py",
        ("src/export/rows.py",),
        34,
    )
    assert tasks["T005"].description == "Phase 2: Foundational (Blocking Prerequisites)"
    assert (tasks["T005b"].parallel, tasks["T005b"].checked) == (True, False)
    # "(Priority: P1)" in the phase heading.
    assert {t.id: t.priority for t in plan.tasks if t.priority} == {
        **{f"T0{n:02}": "P1" for n in range(7, 12)},
        **{f"T0{n:02}": "P2" for n in range(12, 15)},
    }
    t009 = tasks["T009"]
    assert (t009.story, t009.files) == ("US1", ("src/export/csv.py",))
    assert (
        t009.description
        == "- Quote fields that contain the delimiter\n- Write a UTF-8 BOM only when `excel=true`"
    )


def test_letter_suffixed_ids_are_tasks_of_their_own() -> None:
    plan = parse(
        """\
        ## Phase 2
        - [x] T005 Parse rows
          more of T005
        - [x] T005a Handle NULL columns
        - [ ] T5.1 Dotted
        - [ ] T006 Register
        """
    )
    assert [(t.id, t.checked) for t in plan.tasks] == [
        ("T005", True),
        ("T005a", True),
        ("T5.1", False),
        ("T006", False),
    ]
    assert plan.tasks[0].description == "more of T005"


@pytest.mark.parametrize("line", ["- [ ] T005_b Underscore", "- [x] T005ab Two letters", "- [ ] T5-1 Dash"])
def test_a_checklist_id_that_cannot_be_read_is_an_error(line: str) -> None:
    with pytest.raises(PlanError) as info:
        parse(f"## Tasks\n- [ ] T004 Before\n{line}\n")
    assert str(info.value).startswith("plans/x.md:3: cannot read the task id")


# ---- Kiro: numbered checklists ----


def test_kiro_plan() -> None:
    plan = parse_plan(PLANS / "kiro_tasks.md")
    tasks = by_id(plan)
    # 1 and 2 have numbered children, so they are groups; 2 appears twice; 3 and 4 have none.
    # 1 also says what to do below it, so it is a task as well; 2 only holds its children.
    assert [t.id for t in plan.tasks] == ["1", "1.1", "1.2", "2.1", "2.2", "2.3", "3", "2.4", "4"]
    assert [t.id for t in plan.tasks if t.optional] == ["1.2", "2.2"]
    assert [t.id for t in plan.tasks if t.checked] == ["1", "1.1"]  # [-] is in progress, not done
    assert tasks["1"].description == (
        "- Create `src/ratelimit/__init__.py` and `src/ratelimit/config.py`\n"
        "- Load limits per route from `config/limits.yaml`\n"
        "- _Requirements: 1.1, 1.2_"
    )
    assert (tasks["1"].checked, tasks["1"].milestone) == (True, "Implementation Plan")
    assert tasks["1.1"].milestone == (
        "Implementation Plan > 1. Set up the rate limiter module and its configuration"
    )
    assert tasks["2.4"].milestone == "Implementation Plan > 2. Enforce limits in the API (continued)"
    assert tasks["1.2"].title == "Write property tests for the token bucket"
    assert tasks["2.1"].description == (
        "- Identify the caller by API key, else by client IP\n"
        "- Return 429 with a `Retry-After` header when the bucket is empty\n\n"
        "- _Requirements: 2.1, 2.2, 3.1_"
    )
    assert tasks["3"].title == "Checkpoint - Ensure all tests pass, ask the user if questions arise."
    assert tasks["4"].milestone == "Implementation Plan"
    assert tasks["4"].description.endswith("- _Requirements: 4.1_")


def test_kiro_items_right_under_the_title() -> None:
    plan = parse(
        """\
        # Implementation Plan

        - [ ] 1. Scaffold
        - [ ] 1.1 Create the package
        - [x] 1.2 Add the CLI entry point
        - [ ]* 1.3 Write smoke tests
        - [ ] 2. Release
        """
    )
    assert [(t.id, t.checked, t.optional) for t in plan.tasks] == [
        ("1.1", False, False),
        ("1.2", True, False),
        ("1.3", False, True),
        ("2", False, False),
    ]
    # No text of its own: the group it belongs to says what it is part of.
    assert plan.tasks[0].description == "1. Scaffold"


def test_numbered_boxes_inside_a_task_are_its_own() -> None:
    task = only(
        """\
        ## Tasks
        ### Task 1: Migrate
        - [ ] 1. Back up the database
        - [ ] 2. Run the migration
        """
    )
    assert task.description == "- [ ] 1. Back up the database\n- [ ] 2. Run the migration"


# ---- ralph: checklists without ids ----

RALPH_IDS = [
    "set-up-basic-project-structure-and-841d",
    "implement-auth-e82a",
    "create-test-framework-and-initial-tests-8c89",
    "add-error-handling-and-validation-9e0d",
    "implement-auth-e82a-2",
    "add-configuration-management-in-src-app-6491",
    "performance-optimization-f805",
    "extended-feature-set-9a2d",
    "write-the-user-documentation-2946",
    "project-initialization-048b",
    "set-up-ci-4dd3",
]


def test_ralph_plan() -> None:
    plan = parse_plan(PLANS / "ralph_fix_plan.md")
    assert [t.id for t in plan.tasks] == RALPH_IDS
    assert [t.priority for t in plan.tasks] == [
        *["P1"] * 3,  # high
        *["P2"] * 3,  # medium
        *["P3"] * 2,  # low
        "P1",  # **Priority:** P1 under "In Progress"
        None,
        None,
    ]
    tasks = by_id(plan)
    assert [t.id for t in plan.tasks if t.checked] == [
        "add-configuration-management-in-src-app-6491",  # ✅
        "project-initialization-048b",  # under "Completed"
        "set-up-ci-4dd3",
    ]
    assert tasks["add-configuration-management-in-src-app-6491"].title == (
        "Add configuration management in src/app/config.py"
    )
    auth = tasks["implement-auth-e82a"]
    # A nested box belongs to its item: a sub-step, not a task.
    assert (
        auth.description
        == "- [ ] Login endpoint returns a session cookie\n- Use bcrypt for the password hashes"
    )
    assert tasks["create-test-framework-and-initial-tests-8c89"].files == ("tests/conftest.py",)
    # Notes, Completion Verification, Evidence Gates and Final Steps hold no tasks.
    assert all("verify" not in t.title and "milestone" not in t.title for t in plan.tasks)


def test_derived_ids_survive_inserting_ticking_and_moving_items() -> None:
    before = parse("## TODO\n- [ ] Implement auth\n- [ ] Write docs\n")
    after = parse(
        "## High Priority\n- [ ] Add rate limits\n- [ ] Write docs\n\n## Completed\n- [x] Implement auth\n"
    )
    assert [t.id for t in before.tasks] == ["implement-auth-e82a", "write-docs-40e0"]
    assert [t.id for t in after.tasks] == ["add-rate-limits-5f12", "write-docs-40e0", "implement-auth-e82a"]
    # Case and spacing are not part of the text.
    assert only("## TODO\n- [ ] implement   AUTH\n").id == "implement-auth-e82a"


def test_derived_ids_of_long_and_non_ascii_text() -> None:
    plan = parse(
        "## Backlog\n"
        "- [ ] Refactor the extraordinarily complicated configuration loader module today\n"
        "- [ ] 扫描项目目录结构\n"
        "- [ ] Café menu\n"
    )
    assert [t.id for t in plan.tasks] == [
        "refactor-the-extraordinarily-complicated-1105",
        "task-ace8",
        "cafe-menu-c197",
    ]


@pytest.mark.parametrize(
    "heading",
    [
        "## Tasks",
        "## TODO",
        "## Backlog",
        "# Fix Plan",
        "## Implementation Plan",
        "## 🔴 High Priority (MANDATORY - Phase 1)",
        "## Priority 2: Core",
        "## Next Steps",
        "## Phase 3: Polish",
        "## In Progress",
        "## Sprint 4",
    ],
)
def test_headings_that_name_work_list_tasks(heading: str) -> None:
    assert len(parse(f"# Team board\n\n{heading}\n\n- [ ] Do the thing\n").tasks) == 1


@pytest.mark.parametrize(
    "text",
    [
        "# Fix Plan\n\n## Review\n- [ ] Do the thing\n",
        "## Tasks\n### Acceptance Criteria\n- [ ] Do the thing\n",
        "## Checklist\n- [ ] Do the thing\n",
        "## Definition of Done\n- [ ] Do the thing\n",
        "## Status\n- [x] Do the thing\n",
        "## Tasks\n### Verification\n- [ ] Do the thing\n",
        "## Requirements\n- [ ] Do the thing\n",
        "## Completion Checklist\n- [ ] Do the thing\n",
        "## Plan review\n- [ ] Do the thing\n",
        # The title names work only for the items right under it.
        "# Milestone 2: Search\n\n## E2E Test Scenario\n- [ ] Do the thing\n",
        # Boxes after a review label are a review.
        "## Tasks\n**Success Criteria:**\n- [ ] Do the thing\n",
        # Nothing names work.
        "# Meeting\n\n## Monday\n- [ ] Do the thing\n",
    ],
)
def test_review_boxes_are_never_tasks(text: str) -> None:
    with pytest.raises(PlanError, match="no tasks found"):
        parse(text)


def test_a_spec_with_only_review_boxes_has_no_tasks() -> None:
    # spec-kit's spec.md: sixteen boxes under "Review & Acceptance Checklist" and "Execution Status".
    path = PLANS / "speckit_spec_review.md"
    assert path.read_text(encoding="utf-8").count("- [") == 16
    with pytest.raises(PlanError, match="no tasks found"):
        parse_plan(path)


def test_criteria_of_a_task_under_a_tasks_heading_stay_criteria() -> None:
    task = only(
        """\
        # Fix Plan

        ## Tasks

        ### Task 1: Login
        **Acceptance Criteria:**
        - [ ] a session cookie is set
        - [x] the password is hashed

        #### Steps
        - [ ] write the handler
        """
    )
    assert [(c.text, c.checked) for c in task.acceptance_criteria] == [
        ("a session cookie is set", False),
        ("the password is hashed", True),
    ]


@pytest.mark.parametrize(
    ("value", "priority"),
    [
        ("P0", "P1"),
        ("P1", "P1"),
        ("p2", "P2"),
        ("P3", "P3"),
        ("P4", "P4"),
        ("High", "P1"),
        ("HIGH", "P1"),
        ("critical", "P1"),
        ("Medium", "P2"),
        ("low", "P3"),
        ("lowest", "P4"),
        ("2", "P2"),
        ("`P1` (blocks the release)", "P1"),
        ("**low**", "P3"),
    ],
)
def test_priority_label(value: str, priority: str) -> None:
    assert only(f"## Task 1: A\n**Priority:** {value}\n").priority == priority


@pytest.mark.parametrize("value", ["soon", "P5", "P-1", "very high", "urgent-ish"])
def test_priority_label_bad_value_is_one_line_naming_the_line(value: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan_text(f"# M\n## Task 1: A\nDo it.\n\n**Priority:** {value}\n", "plans/m.md")
    message = str(caught.value)
    assert message.startswith("plans/m.md:5: task 1: priority ")
    assert "must be P1, P2, P3, P4, high, medium or low" in message and "\n" not in message


def test_plan_priority_applies_to_tasks_without_their_own() -> None:
    plan = parse(
        """\
        # Milestone
        **Priority:** low

        ## Task 1: Inherits the plan's
        Do it.
        ## Task 2: Its own
        **Priority:** P1
        ## High priority
        - [ ] A heading is nearer than the plan
        """
    )
    assert plan.priority == "P3"
    assert [(t.title, t.priority) for t in plan.tasks] == [
        ("Inherits the plan's", "P3"),
        ("Its own", "P1"),
        ("A heading is nearer than the plan", "P1"),
    ]
    assert plan.to_dict()["priority"] == "P3"


def test_plan_without_priority_leaves_tasks_without_one() -> None:
    plan = parse("# M\n## Task 1: A\nDo it.\n")
    assert (plan.priority, plan.tasks[0].priority) == (None, None)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("# M\n**Priority:** whenever\n## Task 1: A\n", 2, "the plan's priority 'whenever' must be"),
        (
            "# M\n**Priority:** P1\n\n**Priority:** P2\n## Task 1: A\n",
            4,
            "the plan's priority is given twice (first at line 2): keep one",
        ),
    ],
)
def test_plan_priority_bad_label(text: str, line: int, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan_text(text, "plans/m.md")
    assert str(caught.value).startswith(f"plans/m.md:{line}: {message}")


def test_priority_from_headings_the_nearest_wins() -> None:
    plan = parse(
        """\
        # Backlog
        ## Low Priority
        - [ ] Tidy up
        ### Task 1: Urgent fix (P1)
        ### Task 2: Inherits
        ## Priority 2: Core
        - [ ] Core work
        """
    )
    assert [(t.title, t.priority) for t in plan.tasks] == [
        ("Tidy up", "P3"),
        ("Urgent fix (P1)", "P1"),
        ("Inherits", "P3"),
        ("Core work", "P2"),
    ]


# ---- get-shit-done: XML tasks ----


def test_gsd_plan() -> None:
    plan = parse_plan(PLANS / "gsd_plan.md")
    assert [t.id for t in plan.tasks] == [
        "1",
        "2",
        "rate-limit-signups-d160",
        "signup-form-wired-to-the-endpoint-d982",
    ]
    one, two, three, checkpoint = plan.tasks
    assert (one.title, one.line, one.type) == ("Create the user model", 41, "auto")
    assert one.files == ("src/models/user.py", "tests/test_user.py")
    assert one.description == (
        "Add a `User` model with `email` (unique, lower-cased) and `password_hash`.\n"
        "Hash with argon2, never store the plain password & never log it.\n"
        "Use the existing `Base` from src/models/base.py."
    )
    assert one.verification == CodeBlock("bash", "python -m pytest tests/test_user.py -q", 47)
    assert one.code_blocks == (one.verification,)
    assert one.acceptance_criteria == (Criterion("User model exists & tests pass"),)

    assert two.files == ("src/api/signup.py", "tests/test_signup.py")
    assert two.description.endswith("(length < 12) with 422.")
    assert two.verification == CodeBlock(
        "bash", "python -m pytest tests/test_signup.py -q && ruff check src/api/signup.py", 61
    )
    assert [c.text for c in two.acceptance_criteria] == [
        "The error message names the rule that failed",
        "`POST /signup` with a new email returns 201",
        "A duplicate email returns 409",
        "Signup works end to end",
    ]

    # A prose <verify> is a criterion, not a script; other elements are notes.
    assert three.verification is None
    assert [c.text for c in three.acceptance_criteria] == [
        "The sixth signup from one address within an hour returns 429",
        "Signup is rate limited",
    ]
    assert three.implementation_notes == "read_first:\nsrc/api/middleware.py"

    assert checkpoint.type == "checkpoint:human-verify"
    assert (checkpoint.title, checkpoint.description) == (
        "Signup form wired to the endpoint",
        "Signup form wired to the endpoint",
    )
    assert [c.text for c in checkpoint.acceptance_criteria] == [
        "Run `npm run dev` and visit /signup",
        "Sign up with a new email; expect a redirect to /welcome",
        'Sign up again with the same email; expect "already registered"',
    ]
    # The <verification> and <success_criteria> boxes after the tasks are not tasks.
    assert all(t.line < 90 for t in plan.tasks)


def gsd(verify: str) -> Task:
    return only(f'<task type="auto">\n<name>Task 1: V</name>\n<verify>{verify}</verify>\n</task>\n')


@pytest.mark.parametrize(
    "command",
    [
        "pytest -q",
        "npm test &amp;&amp; npx tsc --noEmit",
        "./scripts/check.sh",
        "CI=1 uv run pytest tests/test_a.py",
        'test "$(python3 hello.py)" = "Hello"',
        "curl -sf http://localhost:8000/health |\n  jq -e '.ok'",
        "$ make check",
        "for f in a b; do\n  test -f $f\ndone",
    ],
)
def test_gsd_verify_commands_become_the_verification(command: str) -> None:
    task = gsd(command)
    assert task.verification is not None
    assert task.verification.lang == "bash"
    assert "&amp;" not in task.verification.code
    assert task.acceptance_criteria == ()


@pytest.mark.parametrize(
    "prose",
    [
        "All tests pass",
        "- API response times are acceptable\n- No errors in the log",
        "npx vitest run src/lib/auth.test.ts passes; npx tsc --noEmit is clean",
        "`grep -c TODO src/a.py` returns 0",
        "Run the app and check the page",
    ],
)
def test_gsd_verify_prose_becomes_criteria(prose: str) -> None:
    task = gsd(prose)
    assert task.verification is None
    assert task.acceptance_criteria


def test_gsd_entities_cdata_and_a_missing_close() -> None:
    task = only(
        '<task type="auto">\n<name>Task 7: A &lt;b&gt; &#x263A; &#65;</name>\n'
        "<action><![CDATA[keep &amp; as written]]> then &quot;decode&quot;</action>\n</task>\n"
    )
    assert (task.id, task.title) == ("7", "A <b> \u263a A")
    assert task.description == 'keep &amp; as written then "decode"'
    with pytest.raises(PlanError, match=r"plans/x\.md:3: <task> without </task>"):
        parse('# P\n\n<task type="auto">\n<name>Task 1: A</name>\n')


def test_gsd_files_lists() -> None:
    task = only(
        '<task type="auto">\n<name>Task 3: Files</name>\n'
        "<files>\n  - `src/a.py`\n  - src/b.py (new)\n  **/*.test.ts, docs/c.md:10-20\n</files>\n</task>\n"
    )
    assert task.files == ("src/a.py", "src/b.py", "**/*.test.ts", "docs/c.md")
    checkpoint = only(
        '<task type="checkpoint:human-verify">\n<files>n/a — checkpoint task</files>\n</task>\n'
    )
    assert (checkpoint.files, checkpoint.title, checkpoint.id) == ((), "checkpoint", "checkpoint-5c52")


def test_gsd_tasks_in_a_fence_are_examples() -> None:
    plan = parse(
        """\
        ## Task 1: Document the format

        ```xml
        <task type="auto">
          <name>Task 9: Example</name>
        </task>
        ```
        """
    )
    assert [t.id for t in plan.tasks] == ["1"]


# ---- superpowers: task headings with steps ----


def test_superpowers_plan() -> None:
    plan = parse_plan(PLANS / "superpowers_plan.md")
    assert plan.title == "Word Count CLI Implementation Plan"
    assert [(t.id, t.title) for t in plan.tasks] == [
        ("1", "Counting function"),
        ("2", "Command line interface"),
    ]
    one, two = plan.tasks
    assert one.files == ("wordcount/count.py", "tests/test_count.py")
    # "Modify: `pyproject.toml:12-18`" names the file, not the lines.
    assert two.files == ("wordcount/cli.py", "pyproject.toml", "tests/test_cli.py")
    # The steps are the task's own text, with their code.
    assert one.description.startswith("- [ ] **Step 1: Write the failing test**\n\n```python")
    assert "- [ ] **Step 5: Commit**" in one.description
    assert [b.lang for b in one.code_blocks] == ["python", "python", "bash"]
    assert one.verification is None
