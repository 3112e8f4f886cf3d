"""Plan files as pytest collectors and plan tasks as pytest items."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..redact import redact
from ..result import TaskResult, describe_failure
from ..sandbox import SandboxError
from .options import project_root, settings_for

if TYPE_CHECKING:
    from ..plan import Task

RESULT = pytest.StashKey[TaskResult]()
MARKERS = pytest.StashKey[set[str]]()

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


def plan_dirs(config: pytest.Config) -> tuple[Path, ...]:
    """The configured plan directories; the default one while a bad setting waits to be reported."""
    # A bad setting must not turn into a collection traceback; it is reported once, as a
    # usage error, when tasks were collected (pytest_collection_modifyitems).
    try:
        return settings_for(config).plan_dirs
    except pytest.UsageError:
        return (project_root(config) / "plans",)


def is_plan(path: Path, session: pytest.Session) -> bool:
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
    return any(path.is_relative_to(directory.resolve()) for directory in plan_dirs(session.config))


def uses_plans(config: pytest.Config) -> bool:
    """Whether this invocation names plans, or a directory holding or inside a plan directory."""
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return False
    if any(arg.split("::")[0].lower().endswith(".md") for arg in config.args):
        return True
    named = explicit_dirs(config)
    if not named:
        return False
    dirs = [d.resolve() for d in plan_dirs(config)]
    return any(d.is_relative_to(n) or n.is_relative_to(d) for n in named for d in dirs)


class PlanFile(pytest.File):
    """A milestone plan: one item per task, in document order."""

    def collect(self) -> Iterator[TaskItem]:
        """One item per task; a broken plan is a collection error naming its lines."""
        from ..plan import NO_TASKS, PlanError, parse_plan

        root = project_root(self.config)
        if self.path.is_relative_to(root):
            relative = self.path.relative_to(root).as_posix()
        else:
            relative = self.nodeid.split("::")[0] or self.path.name
        try:
            # The rootdir-relative path means something to the agent and in reports; the
            # absolute one is a detail of this machine.
            plan = parse_plan(self.path, relative)
        except PlanError as exc:
            if exc.message.startswith(NO_TASKS) and not self.session.isinitpath(self.path):
                # A README or notes file that pytest walked into is not a broken plan.
                return
            raise self.CollectError(str(exc)) from None
        # Every task of the plan, selected or not: the queue forgets the tasks gone from a plan
        # only when a run collected all of it.
        self.task_ids = tuple(task.id for task in plan.tasks)
        # Markers are immutable, so the tasks of a plan share them rather than build their own.
        markers: dict[str, pytest.MarkDecorator] = {}
        # For `--dist loadgroup`, when a user picks it: a plan is one group too.
        group = pytest.mark.xdist_group(relative)
        for task in plan.tasks:
            item = TaskItem.from_parent(self, name=task.id, task=task, plan_key=relative)
            for name in task_markers(task):
                if name not in markers:
                    register_marker(self.config, name)
                    markers[name] = getattr(pytest.mark, name)
                item.add_marker(markers[name])
            item.add_marker(group)
            yield item


def task_markers(task: Task) -> list[str]:
    """The markers of a task: `task`, its type, its story, and `parallel` when marked [P]."""
    names = ["task"]
    for label in (task.type, task.story):
        if label:
            names.append(marker_name(label))
    if task.parallel:
        names.append("parallel")
    return names


def register_marker(config: pytest.Config, name: str) -> None:
    """Register a plan's marker once per run, so task markers also pass --strict-markers."""
    known = config.stash.setdefault(MARKERS, {"task", "parallel"})
    if name not in known:
        known.add(name)
        config.addinivalue_line("markers", f"{name}: plan task marker")


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

    def __repr__(self) -> str:
        """Shown by --collect-only: the task's id and title."""
        return f"<Task {self.name}: {self.task.title}>"

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the task lives: its heading in the plan."""
        return self.path, self.task.line - 1, f"Task {self.task.id}: {self.task.title}"

    def runtest(self) -> None:
        """Dispatch the task; anything but a completed, verified task fails the item."""
        from ..dispatch import TaskTimeout
        from ..state import StateError
        from .dispatch import dispatch_item

        try:
            result = dispatch_item(self)
        except (pytest.UsageError, StateError, SandboxError, TaskTimeout):
            # Not dispatched: nothing ran that the totals or the webhooks could tell.
            raise
        except Exception as exc:
            # The agent raised: its attempt is recorded as `error`. The run's totals, its status line
            # and the task_failed webhook count it as a failure; pytest shows the traceback.
            failed = TaskResult(self.task.id, "failed", error=redact(f"{type(exc).__name__}: {exc}")[:500])
            self.stash[RESULT] = failed
            self.ihook.pytest_orchestrator_task_finished(task=self.task, result=failed, config=self.config)
            raise
        self.stash[RESULT] = result
        self.ihook.pytest_orchestrator_task_finished(task=self.task, result=result, config=self.config)
        if result.status == "interrupted":
            # The task is reported and recorded; pytest then ends the run with exit status 2.
            self.session.shouldstop = f"interrupted during task {self.task.id}"
        if result.status != "completed" or (result.verification and not result.verification.passed):
            raise TaskFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        """The task's outcome in words, instead of a traceback through the orchestrator."""
        if isinstance(excinfo.value, TaskFailure):
            return describe_failure(self.task.id, excinfo.value.result, self.plan_key)
        from ..dispatch import TaskTimeout
        from ..state import StateError

        if isinstance(excinfo.value, TaskTimeout):
            return f"Task {self.task.id}: TIMEOUT after {excinfo.value.seconds:.0f}s (before dispatch)"
        if isinstance(excinfo.value, SandboxError | StateError):
            return f"Task {self.task.id} was not dispatched: {excinfo.value}"
        return redact(str(super().repr_failure(excinfo, style=style)))
