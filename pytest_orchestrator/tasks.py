"""Plan files as pytest collectors, plan tasks as pytest items, and what running one means."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .redact import redact
from .result import TaskResult
from .sandbox import SandboxError

if TYPE_CHECKING:
    from .plan import Task

RESULT = pytest.StashKey["TaskResult"]()

# The attribute crosses pytest-xdist with the report, so the controller sees each result.
REPORT_ATTR = "orchestrator_task"


class TaskFailure(Exception):
    """A task ended without completing; its result says why."""

    def __init__(self, result: TaskResult) -> None:
        super().__init__(result.error or result.status)
        self.result = result


# ---- collection ----


EXPLICIT_DIRS = pytest.StashKey[list[Path]]()


def explicit_dirs(config: pytest.Config) -> list[Path]:
    """Directories named on the command line; a bare `pytest` names none."""
    # Asked for every markdown file pytest walks past, so resolved once.
    if EXPLICIT_DIRS not in config.stash:
        found: list[Path] = []
        if config.args_source is pytest.Config.ArgsSource.ARGS:
            base = config.invocation_params.dir
            found = [(base / arg.split("::")[0]).resolve() for arg in config.args]
        config.stash[EXPLICIT_DIRS] = [path for path in found if path.is_dir()]
    return config.stash[EXPLICIT_DIRS]


def is_plan(path: Path, session: pytest.Session, plan_dirs: Callable[[], tuple[Path, ...]]) -> bool:
    """A markdown file named on the command line, or one under a plan directory that pytest
    reached from a directory named on the command line.

    A bare `pytest` never walks into plans: running the tests must not dispatch agents.
    """
    if path.suffix.lower() != ".md":
        return False
    if session.isinitpath(path):
        return True
    named = explicit_dirs(session.config)
    if not any(path.is_relative_to(d) for d in named):
        return False
    return any(path.is_relative_to(directory.resolve()) for directory in plan_dirs())


def uses_plans(config: pytest.Config, plan_dirs: Callable[[], tuple[Path, ...]]) -> bool:
    """Whether this invocation names plans, or a directory holding or inside a plan directory."""
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return False
    if any(arg.split("::")[0].lower().endswith(".md") for arg in config.args):
        return True
    named = explicit_dirs(config)
    if not named:
        return False
    dirs = [d.resolve() for d in plan_dirs()]
    return any(d.is_relative_to(n) or n.is_relative_to(d) for n in named for d in dirs)


def timeout_configured(config: pytest.Config) -> bool:
    """Whether the user set pytest-timeout's timeout, which then wins over task_timeout."""
    try:
        given = config.getoption("timeout", default=None)
        ini = config.getini("timeout")
    except ValueError:
        return True
    return given is not None or bool(ini) or "PYTEST_TIMEOUT" in os.environ


def bound_task_time(items: list[pytest.Item], seconds: float) -> None:
    """Give each task a pytest-timeout marker of `seconds`, unless it has its own."""
    for item in items:
        if isinstance(item, TaskItem) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(seconds))


class PlanFile(pytest.File):
    """A milestone plan: one item per task, in document order."""

    def collect(self) -> Iterator[TaskItem]:
        """One item per task; a broken plan is a collection error naming its lines."""
        from .plan import NO_TASKS, PlanError, parse_plan

        relative = self.nodeid.split("::")[0] or self.path.name
        try:
            plan = parse_plan(self.path)
        except PlanError as exc:
            if exc.message.startswith(NO_TASKS) and not self.session.isinitpath(self.path):
                # A README or notes file that pytest walked into is not a broken plan.
                return
            raise self.CollectError(str(PlanError(relative, exc.line, exc.message))) from None
        for task in plan.tasks:
            # The rootdir-relative path means something to the agent and in reports; the
            # absolute one is a detail of this machine.
            task = dataclasses.replace(task, plan=relative)
            yield TaskItem.from_parent(self, name=task.id, task=task, plan_key=relative)


# Markers pytest and its plugins act on: a plan's `**Type:** xfail` must not make a
# failing task pass.
_RESERVED_MARKERS = frozenset(
    {
        "skip",
        "skipif",
        "xfail",
        "parametrize",
        "usefixtures",
        "filterwarnings",
        "timeout",
        "xdist_group",
        "check",
        "task",
        "parallel",
        "tryfirst",
        "trylast",
        "no_cover",
        "flaky",
    }
)


def marker_name(label: str) -> str:
    """A plan label (type or story) as a marker name usable in `-m`: `Docs Update` -> `docs_update`."""
    name = re.sub(r"\W+", "_", label.strip().lower()).strip("_") or "untyped"
    if name in _RESERVED_MARKERS or name[0].isdigit():
        name = f"type_{name}"
    return name


class TaskItem(pytest.Item):
    """One task of a plan; running it dispatches the task to the agent."""

    def __init__(self, *, task: Task, plan_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.plan_key = plan_key
        self._add_markers()

    def _add_markers(self) -> None:
        names = ["task"]
        for label in (self.task.type, self.task.story):
            if label:
                names.append(marker_name(label))
        if self.task.parallel:
            names.append("parallel")
        for name in names:
            # Registered first so task markers also pass --strict-markers.
            self.config.addinivalue_line("markers", f"{name}: plan task marker")
            self.add_marker(name)
        # Under `--dist loadgroup` all tasks of a plan go to one worker, in order.
        self.add_marker(pytest.mark.xdist_group(self.plan_key))

    def __repr__(self) -> str:
        """Shown by --collect-only: the task's id and title."""
        return f"<Task {self.name}: {self.task.title}>"

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the task lives: its heading in the plan."""
        return self.path, self.task.line - 1, f"Task {self.task.id}: {self.task.title}"

    def runtest(self) -> None:
        """Dispatch the task; anything but a completed, verified task fails the item."""
        from .runner import run_task

        result = run_task(self)
        self.stash[RESULT] = result
        self.ihook.pytest_orchestrator_task_finished(task=self.task, result=result, config=self.config)
        if result.status != "completed" or (result.verification and not result.verification.passed):
            raise TaskFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """The task's outcome in words, instead of a traceback through the orchestrator."""
        if isinstance(excinfo.value, TaskFailure):
            return describe_failure(self.task.id, excinfo.value.result, self.plan_key)
        from .state import StateError

        if isinstance(excinfo.value, SandboxError | StateError):
            return f"Task {self.task.id} was not dispatched: {excinfo.value}"
        return redact(str(super().repr_failure(excinfo, style=style)))


def describe_failure(task_id: str, result: TaskResult, plan: str = "PLAN") -> str:
    """The failure text shown by pytest for a task that did not complete."""
    if result.status == "needs_human":
        lines = [f"Task {task_id} NEEDS_HUMAN"]
        lines.append(f"QUESTION: {result.question or '(none given)'}")
        if result.options:
            lines.append("OPTIONS: " + " | ".join(result.options))
        if result.recommendation:
            lines.append(f"RECOMMENDATION: {result.recommendation}")
        lines.append(f"Answer with: orchestrator task {plan} {task_id} -g 'your answer'")
        return "\n".join(lines)
    if result.verification is not None and not result.verification.passed:
        return (
            f"Task {task_id} FAILED: verification exited {result.verification.exit_code}\n"
            f"{result.verification.output.rstrip()}"
        )
    return f"Task {task_id} FAILED: {result.error or 'no reason given'}"


# ---- reporting ----


def status_line(task_id: str, result: TaskResult, when: float | None = None, plan: str = "") -> str:
    """The seed's one line per task: `[12:00:01] Task 1.1: COMPLETED (45s, 3.2k tokens, $0.02)`."""
    stamp = time.strftime("%H:%M:%S", time.localtime(when))
    label = result.status.upper()
    if result.verification is not None and not result.verification.passed:
        label = "FAILED (verification)"
    tokens = f"{result.tokens / 1000:.1f}k" if result.tokens >= 1000 else str(result.tokens)
    return (
        f"[{stamp}] Task {task_id}: {label} "
        f"({result.duration_seconds:.0f}s, {tokens} tokens, ${result.cost_usd:.2f})"
        + (f" {plan}" if plan else "")
    )


def skip_line(task_id: str, reason: str, when: float | None = None, plan: str = "") -> str:
    """The line for a task that was not dispatched, e.g. `Task 1.2: SKIPPED (blocked by 1.1 (failed))`."""
    stamp = time.strftime("%H:%M:%S", time.localtime(when))
    if reason.startswith("dry run: "):
        label, reason = "DRY RUN", reason.removeprefix("dry run: ")
    else:
        label = "SKIPPED"
    return f"[{stamp}] Task {task_id}: {label} ({reason})" + (f" {plan}" if plan else "")
