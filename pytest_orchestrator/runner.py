"""Running a task: whether to dispatch it at all, the attempts with their retries, and the record.

Before dispatch a task may be skipped: already completed in an earlier run (resume),
blocked by an earlier task of its plan, over the run's budget, or a dry run. Each
dispatch is an attempt row in the state database; transient failures are retried
with exponential backoff and jitter.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .redact import redact
from .result import TaskResult, Verification
from .sandbox import SandboxError, SandboxTransportError

if TYPE_CHECKING:
    from .config import Settings
    from .plan import Task
    from .sandbox import Sandbox
    from .state import Interrupted, StateStore
    from .tasks import TaskItem

CONTEXT = pytest.StashKey["DispatchContext"]()
RUN_STATE = pytest.StashKey["RunState"]()
SANDBOX = pytest.StashKey["Sandbox"]()
RUN_KEY = pytest.StashKey[str]()
RUN_KEY_INPUT = "orchestrator_run_key"


def worker_id() -> str:
    """The pytest-xdist worker running this process, or 'main'."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def run_key(config: pytest.Config) -> str:
    """The key shared by the controller and the workers of one pytest invocation."""
    if RUN_KEY not in config.stash:
        workerinput = getattr(config, "workerinput", None) or {}
        config.stash[RUN_KEY] = workerinput.get(RUN_KEY_INPUT) or uuid.uuid4().hex
    return config.stash[RUN_KEY]


@dataclass
class DispatchContext:
    """What the built-in agent needs beyond the hook's arguments."""

    settings: Settings
    guidance: str | None
    resume: str | None
    on_event: Callable[[dict[str, Any]], None]
    dispatch_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def dispatch_context(config: pytest.Config, task: Task) -> DispatchContext:
    """The context of the task being dispatched in this process."""
    return config.stash[CONTEXT]


# ---- the run in the state database ----


def _pid_alive(pid: int, host: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunState:
    """This process's run in the state database, its heartbeat, and what blocks each plan."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        from .state import StateStore

        self.settings = settings
        self.key = run_key(config)
        self.worker = worker_id()
        self.blocked: dict[str, tuple[str, str]] = {}
        self.interrupted: list[Interrupted] = []
        self.run_id = 0
        self._heartbeat: _Heartbeat | None = None
        if config.getoption("orchestrator_dry_run"):
            # A dry run reads the state to explain its decisions and writes nothing.
            self.store: StateStore = StateStore.read(settings.state_dir) or StateStore.empty()
            return
        self.store = StateStore.open(settings.state_dir)
        self.interrupted = self.store.reap_interrupted(_pid_alive, settings.freeze_threshold)
        self.run_id = self.store.begin_run(self.key)
        interval = max(0.5, min(30.0, settings.freeze_threshold / 4))
        self._heartbeat = _Heartbeat(settings.state_dir, self.run_id, self.worker, interval)
        self._heartbeat.start()
        _install_signal_handlers()

    def close(self, status: str) -> None:
        """Stop the heartbeat and record how the run ended."""
        if self._heartbeat is not None:
            self._heartbeat.stopped.set()
            self._heartbeat.join(timeout=5)
            self.store.end_run(self.run_id, status)
        self.store.close()


class _Heartbeat(threading.Thread):
    def __init__(self, state_dir: Path, run_id: int, worker: str, interval: float) -> None:
        super().__init__(name="orchestrator-heartbeat", daemon=True)
        self.state_dir, self.run_id, self.worker = state_dir, run_id, worker
        self.interval = interval
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


def _ending(exc: BaseException) -> str:
    """How an attempt that raised ended: interrupted, timeout (pytest-timeout) or error."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return "timeout" if "Timeout" in str(exc) else "error"


def _exit_now(signum: int, frame: Any) -> None:
    os._exit(int(pytest.ExitCode.INTERRUPTED))


def _interrupt(signum: int, frame: Any) -> None:
    # The first signal unwinds the running task, which stops its agent in the sandbox and
    # records the attempt; a second one, during that cleanup, exits at once.
    signal.signal(signal.SIGINT, _exit_now)
    signal.signal(signal.SIGTERM, _exit_now)
    raise KeyboardInterrupt


def _children() -> list[int]:
    """Pids of this process's direct children (the xdist workers), from /proc."""
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.append(int(stat.parent.name))
    return found


def _interrupt_workers(signum: int, frame: Any) -> None:
    # SIGTERM reaches only the controller; the workers, which run the agents, get what
    # Ctrl-C would have sent them, so each stops its agent and records the attempt.
    for pid in _children():
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:
            pass
    _interrupt(signum, frame)


def install_controller_signal_handlers() -> None:
    """On an xdist controller running plans: SIGTERM interrupts the workers like Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt_workers)


def _install_signal_handlers() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)


def run_state(config: pytest.Config, settings: Settings) -> RunState:
    """This process's RunState, opened on first use; stale agents of dead runs are stopped."""
    if RUN_STATE not in config.stash:
        state = RunState(config, settings)
        config.stash[RUN_STATE] = state
        sandbox = sandbox_for(config, settings)
        for stale in state.interrupted:
            if stale.dispatch_id:
                sandbox.stop_quietly(stale.dispatch_id)
    return config.stash[RUN_STATE]


def sandbox_for(config: pytest.Config, settings: Settings) -> Sandbox:
    """The sandbox handle shared by the tasks of this process; the container is looked up on use."""
    from .sandbox import Sandbox

    if SANDBOX not in config.stash:
        config.stash[SANDBOX] = Sandbox(name=settings.sandbox, timeout=settings.docker_timeout)
    return config.stash[SANDBOX]


# ---- before dispatch ----


def skip_reason(item: TaskItem, state: RunState, settings: Settings) -> str | None:
    """Why the task is not dispatched in this run, or None."""
    task = item.task
    # Guidance asks for another run of the task, whatever an earlier run achieved.
    if not item.config.getoption("orchestrator_rerun") and not settings.guidance:
        done = state.store.completed(item.plan_key, task.id)
        if done is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(done.at))
            return f"completed in run {done.run_id} at {stamp}"
    blocker = state.blocked.get(item.plan_key)
    if blocker is not None and not task.parallel:
        return f"blocked by {blocker[0]} ({blocker[1]})"
    if settings.max_cost:
        spent = state.store.run_cost(state.key)
        if spent >= settings.max_cost:
            return f"budget reached: ${spent:.2f} of ${settings.max_cost:.2f} spent in this run"
    return None


# ---- retries ----


def retry_reason(result: TaskResult) -> str | None:
    """Why a failed attempt is worth another try, or None when it is not transient."""
    if result.status != "failed" or result.verification is not None:
        return None
    status = result.api_error_status
    if status is not None and (status in (408, 409, 429) or status >= 500):
        return f"the API answered {status}"
    if "overloaded" in (result.error or "").lower():
        return "the API is overloaded"
    if result.crashed:
        return "the agent process crashed"
    return None


def backoff(attempt: int, settings: Settings, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential, capped, with full jitter."""
    ceiling = min(settings.retry_max_delay, settings.retry_delay * settings.retry_factor ** (attempt - 1))
    return ceiling * (0.5 + 0.5 * rng())


# ---- dispatch ----


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
        text = f"    [{task_id}] turn {turns}: {redact(line)}"
        # Output capture is on while a test runs; progress must reach the terminal now.
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(text)
        else:
            reporter.write_line(text)

    return show


def verify(sandbox: Sandbox, task: Task, settings: Settings) -> Verification:
    """Run the task's verification block in the sandbox's workspace."""
    assert task.verification is not None
    try:
        with sandbox.stream(
            [task.verification.lang, "-c", task.verification.code], workdir=settings.workspace
        ) as (chunks, exit_code):
            output = b"".join((out or b"") + (err or b"") for out, err in chunks)
            code = exit_code()
    except SandboxError as exc:
        # The agent's work and spending are real even when the check cannot run.
        return Verification(-1, f"verification could not run: {exc}")
    return Verification(code if code is not None else -1, redact(output.decode("utf-8", "replace")))


def _attempt(item: TaskItem, state: RunState, settings: Settings, number: int) -> TaskResult:
    """One dispatch of the task, recorded as one attempt row."""
    config, task = item.config, item.task
    guidance = settings.guidance or None
    resume = state.store.last_session(item.plan_key, task.id) if guidance else None
    context = DispatchContext(settings, guidance, resume, _progress(config, task.id))
    config.stash[CONTEXT] = context
    attempt = state.store.start_attempt(
        state.run_id,
        item.plan_key,
        task.id,
        task.title,
        attempt=number,
        worker=state.worker,
        dispatch_id=context.dispatch_id,
    )
    status, error, result = "error", None, None
    try:
        sandbox = sandbox_for(config, settings)
        try:
            result = item.ihook.pytest_orchestrator_dispatch(task=task, sandbox=sandbox, config=config)
        except SandboxTransportError as exc:
            result = TaskResult(task.id, "failed", error=str(exc), crashed=True)
        if result is None:
            raise pytest.UsageError("no plugin implements pytest_orchestrator_dispatch")
        if result.status == "completed" and task.verification is not None:
            result.verification = verify(sandbox, task, settings)
            if not result.verification.passed:
                result.status = "failed"
                result.error = f"verification exited {result.verification.exit_code}"
        status = result.status
    except BaseException as exc:
        status = _ending(exc)
        error = redact(f"{type(exc).__name__}: {exc}".strip())[:500]
        raise
    finally:
        _record(state.store, attempt, status, result, error)
        del config.stash[CONTEXT]
    return result


def run_task(item: TaskItem) -> TaskResult:
    """Dispatch the item's task, retrying transient failures; skip it when it should not run."""
    from .plugin import settings_for

    config, task = item.config, item.task
    settings = settings_for(config)
    state = run_state(config, settings)
    reason = skip_reason(item, state, settings)
    if reason is not None:
        pytest.skip(reason)
    if config.getoption("orchestrator_dry_run"):
        from .claude import render_prompt

        prompt = render_prompt(task, settings.prompt_template, settings.guidance or None)
        pytest.skip(f"dry run: would dispatch, prompt {len(prompt)} chars")
    history: list[dict[str, Any]] = []
    try:
        for number in range(1, settings.retry_attempts + 1):
            started = time.monotonic()
            result = _attempt(item, state, settings, number)
            why = retry_reason(result)
            entry = {
                "attempt": number,
                "status": result.status,
                "duration_seconds": round(time.monotonic() - started, 3),
                "reason": result.error or result.status,
            }
            history.append(entry)
            if why is None or number == settings.retry_attempts:
                break
            delay = backoff(number, settings)
            entry["retry"] = f"{why}; retrying in {delay:.1f}s"
            time.sleep(delay)
    except BaseException as exc:
        if not task.parallel:
            state.blocked.setdefault(item.plan_key, (task.id, _ending(exc)))
        raise
    result.attempts = history
    if result.status != "completed" and not task.parallel:
        state.blocked.setdefault(item.plan_key, (task.id, result.status))
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
