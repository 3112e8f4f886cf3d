"""Plan files as pytest collectors, plan tasks as pytest items, and what running one means."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .redact import redact
from .result import TaskResult, Verification
from .sandbox import SandboxError

if TYPE_CHECKING:
    from .config import Settings
    from .plan import Task
    from .sandbox import Sandbox
    from .state import StateStore

RESULT = pytest.StashKey["TaskResult"]()
CONTEXT = pytest.StashKey["DispatchContext"]()
RUN_STATE = pytest.StashKey["RunState"]()
SANDBOX = pytest.StashKey["Sandbox"]()

# The attribute crosses pytest-xdist with the report, so the controller sees each result.
REPORT_ATTR = "orchestrator_task"


class TaskFailure(Exception):
    """A task ended without completing; its result says why."""

    def __init__(self, result: TaskResult) -> None:
        super().__init__(result.error or result.status)
        self.result = result


def worker_id() -> str:
    """The pytest-xdist worker running this process, or 'main'."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


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

    def __repr__(self) -> str:
        return f"<Task {self.name}: {self.task.title}>"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.task.line - 1, f"Task {self.task.id}: {self.task.title}"

    def runtest(self) -> None:
        result = run_task(self)
        self.stash[RESULT] = result
        self.ihook.pytest_orchestrator_task_finished(task=self.task, result=result, config=self.config)
        if result.status != "completed" or (result.verification and not result.verification.passed):
            raise TaskFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, TaskFailure):
            return describe_failure(self.task.id, excinfo.value.result, self.plan_key)
        if isinstance(excinfo.value, SandboxError):
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
    if result.status == "completed" and result.verification is not None:
        return (
            f"Task {task_id} FAILED: verification exited {result.verification.exit_code}\n"
            f"{result.verification.output.rstrip()}"
        )
    return f"Task {task_id} FAILED: {result.error or 'no reason given'}"


# ---- running ----


@dataclass
class DispatchContext:
    """What the built-in agent needs beyond the hook's arguments."""

    settings: Settings
    guidance: str | None
    resume: str | None
    on_event: Callable[[dict[str, Any]], None]


def dispatch_context(config: pytest.Config, task: Task) -> DispatchContext:
    """The context of the task being dispatched in this process."""
    return config.stash[CONTEXT]


class RunState:
    """This process's run in the state database, and a heartbeat thread for as long as it lasts."""

    def __init__(self, settings: Settings) -> None:
        from .state import StateStore

        self.settings = settings
        self.store: StateStore = StateStore.open(settings.state_dir)
        self.run_id = self.store.begin_run()
        self.worker = worker_id()
        interval = max(0.5, min(30.0, settings.freeze_threshold / 4))
        self._heartbeat = _Heartbeat(settings.state_dir, self.run_id, self.worker, interval)
        self._heartbeat.start()

    def close(self, status: str) -> None:
        """Stop the heartbeat and record how the run ended."""
        self._heartbeat.stopped.set()
        self._heartbeat.join(timeout=5)
        self.store.end_run(self.run_id, status)
        self.store.close()


class _Heartbeat(threading.Thread):
    def __init__(self, state_dir: Path, run_id: int, worker: str, interval: float) -> None:
        super().__init__(name="orchestrator-heartbeat", daemon=True)
        self.state_dir, self.run_id, self.worker, self.interval = (
            state_dir,
            run_id,
            worker,
            interval,
        )
        self.stopped = threading.Event()

    def run(self) -> None:
        from .state import StateError, StateStore

        # sqlite3 connections belong to one thread, so the heartbeat has its own.
        try:
            store = StateStore.open(self.state_dir)
        except StateError:
            return
        try:
            while not self.stopped.wait(self.interval):
                store.heartbeat(self.run_id, self.worker)
        finally:
            store.close()


def run_state(config: pytest.Config, settings: Settings) -> RunState:
    """This process's RunState, opened on first use."""
    if RUN_STATE not in config.stash:
        config.stash[RUN_STATE] = RunState(settings)
    return config.stash[RUN_STATE]


def sandbox_for(config: pytest.Config, settings: Settings) -> Sandbox:
    """The sandbox handle shared by the tasks of this process; the container is looked up on use."""
    from .sandbox import Sandbox

    if SANDBOX not in config.stash:
        config.stash[SANDBOX] = Sandbox(name=settings.sandbox, timeout=settings.docker_timeout)
    return config.stash[SANDBOX]


def _progress(config: pytest.Config, task_id: str) -> Callable[[dict[str, Any]], None]:
    from .claude import describe_event

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    turns = 0

    def show(event: dict[str, Any]) -> None:
        nonlocal turns
        if event.get("type") == "assistant":
            turns += 1
        line = describe_event(event)
        if line is None or reporter is None or getattr(config, "workerinput", None) is not None:
            return
        # Output capture is on while a test runs; progress must reach the terminal now.
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"    [{task_id}] turn {turns}: {redact(line)}")
        else:
            reporter.write_line(f"    [{task_id}] turn {turns}: {redact(line)}")

    return show


def verify(sandbox: Sandbox, task: Task, settings: Settings) -> Verification:
    """Run the task's verification block in the sandbox's workspace."""
    assert task.verification is not None
    try:
        chunks, exit_code = sandbox.stream(
            [task.verification.lang, "-c", task.verification.code],
            environment={},
            workdir=settings.workspace,
        )
        output = b"".join((out or b"") + (err or b"") for out, err in chunks)
        code = exit_code()
    except SandboxError as exc:
        # The agent's work and spending are real even when the check cannot run.
        return Verification(-1, f"verification could not run: {exc}")
    return Verification(code if code is not None else -1, redact(output.decode("utf-8", "replace")))


def run_task(item: TaskItem) -> TaskResult:
    """Dispatch the item's task, verify it, and record the attempt in the state database."""
    from .plugin import settings_for

    config = item.config
    settings = settings_for(config)
    task = item.task
    state = run_state(config, settings)
    guidance = settings.guidance or None
    resume = state.store.last_session(item.plan_key, task.id) if guidance else None
    sandbox = sandbox_for(config, settings)
    config.stash[CONTEXT] = DispatchContext(settings, guidance, resume, _progress(config, task.id))
    attempt = state.store.start_attempt(state.run_id, item.plan_key, task.id, task.title, worker=state.worker)
    status, error = "error", None
    result: TaskResult | None = None
    try:
        result = item.ihook.pytest_orchestrator_dispatch(task=task, sandbox=sandbox, config=config)
        if result is None:
            raise pytest.UsageError("no plugin implements pytest_orchestrator_dispatch")
        if result.status == "completed" and task.verification is not None:
            result.verification = verify(sandbox, task, settings)
        status = result.status
        if result.verification is not None and not result.verification.passed:
            status = "failed"
            result.error = f"verification exited {result.verification.exit_code}"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        status = "timeout" if "Timeout" in str(exc) else "error"
        error = redact(f"{type(exc).__name__}: {exc}".strip())[:500]
        raise
    finally:
        _record(state.store, attempt, status, result, error)
        del config.stash[CONTEXT]
    return result


def _record(
    store: StateStore, attempt: int, status: str, result: TaskResult | None, error: str | None
) -> None:
    if result is None:
        store.finish_attempt(attempt, status, error=error)
        return
    store.finish_attempt(
        attempt,
        status,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        cache_read_tokens=result.usage.cache_read_tokens,
        cache_creation_tokens=result.usage.cache_creation_tokens,
        cost_usd=result.cost_usd,
        num_turns=result.num_turns,
        session_id=result.session_id or None,
        error=result.error or error,
    )


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
