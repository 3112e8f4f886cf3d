"""Plan files as pytest collectors, plan tasks as pytest items, and what running one means."""

from __future__ import annotations

import dataclasses
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


def is_plan(path: Path, session: pytest.Session, plan_dirs: Callable[[], tuple[Path, ...]]) -> bool:
    """A markdown file named on the command line, or one under a configured plan directory."""
    if path.suffix.lower() != ".md":
        return False
    if session.isinitpath(path):
        return True
    return any(path.is_relative_to(directory) for directory in plan_dirs())


class PlanFile(pytest.File):
    """A milestone plan: one item per task, in document order."""

    def collect(self) -> Iterator[TaskItem]:
        from .plan import PlanError, parse_plan

        relative = self.nodeid.split("::")[0] or self.path.name
        try:
            plan = parse_plan(self.path)
        except PlanError as exc:
            raise self.CollectError(str(PlanError(relative, exc.line, exc.message))) from None
        for task in plan.tasks:
            # The rootdir-relative path means something to the agent and in reports; the
            # absolute one is a detail of this machine.
            task = dataclasses.replace(task, plan=relative)
            yield TaskItem.from_parent(self, name=task.id, task=task, plan_key=relative)


class TaskItem(pytest.Item):
    """One task of a plan; running it dispatches the task to the agent."""

    def __init__(self, *, task: Task, plan_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.plan_key = plan_key
        self._add_markers()

    def _add_markers(self) -> None:
        names = ["task"]
        if self.task.type:
            names.append(self.task.type.lower())
        if self.task.story:
            names.append(self.task.story.lower())
        if self.task.parallel:
            names.append("parallel")
        for name in names:
            # Registered first so task markers also pass --strict-markers.
            self.config.addinivalue_line("markers", f"{name}: plan task marker")
            self.add_marker(name)
        # Under `--dist loadgroup` all tasks of a plan go to one worker, in order.
        self.add_marker(pytest.mark.xdist_group(self.plan_key))

    def __repr__(self) -> str:
        return f"<Task {self.name}: {self.task.title}>"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.task.line - 1, f"Task {self.task.id}: {self.task.title}"

    def runtest(self) -> None:
        from .runner import run_task

        result = run_task(self)
        self.stash[RESULT] = result
        self.ihook.pytest_orchestrator_task_finished(task=self.task, result=result, config=self.config)
        if result.status != "completed" or (result.verification and not result.verification.passed):
            raise TaskFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
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
