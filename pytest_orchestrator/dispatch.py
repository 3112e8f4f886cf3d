"""Dispatching a task: whether to run it at all, its attempts with their retries, and the record.

Before dispatch a task may be skipped: already completed in an earlier run (resume),
blocked by an earlier task of its plan, or over the run's budget. Each dispatch is an
attempt row in the state database, carrying the dispatch id that marks every process
the agent starts; transient failures are retried with backoff (`retry`).
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .progress import AttemptProgress, beat_interval
from .prompt import render_prompt
from .redact import redact
from .result import TaskResult, TaskStatus, Usage, Verification
from .retry import retry_reason
from .sandbox import SandboxError, SandboxTransportError
from .sandbox.workspace import per_plan, prepare, workspace_for
from .state import StateError

if TYPE_CHECKING:
    from .crashes import Crash
    from .plan import Task
    from .sandbox import Sandbox
    from .settings import Settings
    from .state import Interrupted, RunRecord, StateStore

Event = dict[str, Any]


def _ignore(event: Event) -> None:
    return None


@dataclass
class DispatchContext:
    """What an agent needs beyond the task and the sandbox: settings, guidance, resume, progress."""

    settings: Settings
    guidance: str | None = None
    # The agent session to resume (with guidance), when the state database knows one.
    resume: str | None = None
    # Called with each agent event as it happens, for progress lines.
    on_event: Callable[[Event], None] = _ignore
    # Recorded with the attempt; every process started through the dispatch's sandbox
    # carries it, so they can be stopped after the orchestrator itself was killed.
    dispatch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The directory the agent and the verification work in: the workspace setting, with
    # `{plan}` filled in for the task's plan (the workspace's root when there is no plan).
    workspace: str = ""

    def __post_init__(self) -> None:
        if not self.workspace:
            self.workspace = workspace_for(self.settings.workspace, None)

    def render_prompt(self, task: Task) -> str:
        """The task's prompt, from the configured template, with the guidance if any."""
        return render_prompt(task, self.settings.prompt_template, self.guidance)


# An agent runs one dispatch of a task to its end; None means it declined the task.
Agent = Callable[["Task", "Sandbox", DispatchContext], "TaskResult | None"]


class NoAgent(Exception):
    """No agent took the task."""


class TaskTimeout(Exception):
    """The task outlived its time limit; raised into the dispatch by the run's timer."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Timeout >{seconds:g}s")
        self.seconds = seconds


# ---- before dispatch ----


def skip_reason(task: Task, plan_key: str, run: RunRecord, settings: Settings, *, rerun: bool) -> str | None:
    """Why the task is not dispatched in this run, or None."""
    # Agents tick their own boxes: a re-run of the plan must not do those tasks again.
    if task.checked and not rerun:
        return "checked in the plan"
    # Guidance asks for another run of the task, whatever an earlier run achieved.
    if not rerun and not settings.guidance:
        done = run.store.completed(plan_key, task.id)
        if done is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(done.at))
            return f"completed in run {done.run_id} at {stamp}"
    blocker = run.blocked.get(plan_key)
    if blocker is not None and not task.parallel:
        return f"blocked by {blocker[0]} ({blocker[1]})"
    if settings.max_cost:
        spent = run.store.run_cost(run.key)
        if spent >= settings.max_cost:
            return f"budget reached: ${spent:.2f} of ${settings.max_cost:.2f} spent in this run"
    return None


def stop_left_behind(
    run: RunRecord, sandbox: Sandbox, engines: Mapping[str, Mapping[str, str]] | None = None
) -> list[str]:
    """Stop the agents that the runs found dead when `run` opened left behind, each on the engine
    that ran it; returns a line for each engine where they could not be stopped.

    `engines` maps an engine to the Docker variables that reach it (the run's `--tx` specs);
    an engine not in it is reached with this process's settings and its recorded endpoint.
    """
    by_engine: dict[str, list[Interrupted]] = {}
    for stale in run.interrupted:
        if stale.dispatch_id:
            by_engine.setdefault(stale.engine or sandbox.engine, []).append(stale)
    failures: list[str] = []
    for engine, orphans in by_engine.items():
        handle = sandbox.on_engine(engine, (engines or {}).get(engine))
        for index, stale in enumerate(orphans):
            try:
                handle.stop_marked(stale.dispatch_id or "")
            except SandboxError as exc:
                # The stop finds its agent by a marker and cannot miss one: what fails is the engine
                # or its sandbox, so the engine's other orphans would only wait for the same error.
                left = orphans[index:]
                tasks = ", ".join(f"{o.task_id} ({o.plan})" for o in left)
                whose = f"the agent of task {tasks}" if len(left) == 1 else f"the agents of tasks {tasks}"
                failures.append(f"{whose} left running on {engine} could not be stopped: {exc}")
                break
    return failures


# ---- dispatch ----


def ending(exc: BaseException) -> str:
    """How an attempt that raised ended: interrupted, timeout (ours or pytest-timeout's) or error."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return "timeout" if isinstance(exc, TaskTimeout) or "Timeout" in str(exc) else "error"


def _stopped(status: str, exc: BaseException, elapsed: float, agent_running: bool) -> str:
    """The error text of a task stopped by its timer or a signal, as the status line tells it."""
    seconds = exc.seconds if isinstance(exc, TaskTimeout) else elapsed
    where = "agent stopped in the sandbox" if agent_running else "no agent was running"
    return f"{status.upper()} after {seconds:.0f}s ({where})"


def verify(sandbox: Sandbox, task: Task, directory: str) -> Verification:
    """Run the task's verification block in the task's workspace directory."""
    assert task.verification is not None
    argv = [task.verification.lang, "-c", task.verification.code]
    try:
        with sandbox.stream(argv, workdir=directory) as (chunks, exit_code):
            output = b"".join((out or b"") + (err or b"") for out, err in chunks)
            code = exit_code()
    except SandboxError as exc:
        # The agent's work and spending are real even when the check cannot run.
        return Verification(-1, f"verification could not run: {exc}")
    return Verification(code if code is not None else -1, redact(output.decode("utf-8", "replace")))


def _attempt(
    task: Task,
    plan_key: str,
    run: RunRecord,
    sandbox: Sandbox,
    agent: Agent,
    context: DispatchContext,
    number: int,
) -> tuple[TaskResult, int]:
    """One dispatch of the task, recorded as one attempt row; returns its result and row id."""
    attempt = run.store.start_attempt(
        run.run_id,
        plan_key,
        task.id,
        task.title,
        attempt=number,
        worker=run.worker,
        dispatch_id=context.dispatch_id,
        engine=sandbox.engine,
    )
    if run.writes:
        # Turns and tokens so far, for the dashboard, on the beat the loop's heartbeat keeps.
        progress = AttemptProgress(run.store, attempt, beat_interval(context.settings.freeze_threshold))
        context.on_event = progress.wrap(context.on_event)
    bound = sandbox.for_dispatch(context.dispatch_id)
    status, error, result = "error", None, None
    transcript = None
    if run.writes and context.settings.transcript_max_bytes:
        from .transcripts import TranscriptWriter, transcript_path

        transcript = TranscriptWriter(
            transcript_path(run.state_dir, attempt), context.settings.transcript_max_bytes
        )
        context.on_event = transcript.tee(context.on_event)
    try:
        try:
            if per_plan(context.settings.workspace):
                prepare(bound, context.workspace)
            result = agent(task, bound, context)
        except SandboxError as exc:
            # Only a failed connection to the engine is worth another attempt: a stopped or
            # missing container waits for someone to start it.
            result = TaskResult(
                task.id, "failed", error=str(exc), crashed=isinstance(exc, SandboxTransportError)
            )
        if result is None:
            raise NoAgent(f"no agent took task {task.id}")
        redact_result(result)
        if result.status == "completed" and task.verification is not None:
            result.verification = verify(bound, task, context.workspace)
            if not result.verification.passed:
                result.status = "failed"
                result.error = f"verification exited {result.verification.exit_code}"
        status = result.status
    except BaseException as exc:
        status = ending(exc)
        error = redact(f"{type(exc).__name__}: {exc}".strip())[:500]
        # A timeout or Ctrl-C may leave processes an agent started with `exec` running.
        bound.stop_quietly(context.dispatch_id)
        if status != "interrupted":
            from .crashes.record import task_crash

            log = "" if status == "timeout" else "".join(traceback.format_exception(exc))
            record_crash(
                run,
                task_crash(
                    task.id,
                    plan_key,
                    status=status,
                    error=error,
                    log=log,
                    exit_code=None,
                    workspace=context.workspace,
                    attempt_id=attempt,
                ),
            )
        raise
    finally:
        if transcript is not None:
            transcript.close()
        try:
            _record(run.store, attempt, status, result, error)
        except StateError as exc:
            # The agent's work is done and paid for: the result still reaches the report.
            run.unrecorded.append(f"task {task.id} ({plan_key}) {status}: {exc}")
    return result, attempt


def redact_result(result: TaskResult) -> None:
    """Mask secrets in what an agent wrote: any dispatch hook's result reaches the database and the report."""
    result.error = redact(result.error) if result.error else result.error
    result.question = redact(result.question) if result.question else result.question
    result.recommendation = redact(result.recommendation) if result.recommendation else result.recommendation
    result.options = [redact(option) for option in result.options] if result.options else result.options
    result.output = redact(result.output)
    result.log = redact(result.log)


def is_crash(result: TaskResult) -> bool:
    """An agent that died without a result, or an attempt that ended in error or timeout."""
    return result.crashed or result.status in ("error", "timeout")


def record_crash(run: RunRecord, crash: Crash) -> None:
    """Record a crash; its fingerprint is kept for the bug reports the run then considers."""
    if not run.writes:
        return
    from .crashes.store import CrashStore

    try:
        CrashStore(run.store).record(crash)
    except StateError as exc:
        run.unrecorded.append(f"the crash of {crash.subject} ({crash.error_type}): {exc}")
        return
    run.crashed.append(crash.fingerprint)


def run_task(
    task: Task,
    plan_key: str,
    run: RunRecord,
    sandbox: Sandbox,
    agent: Agent,
    settings: Settings,
    on_event: Callable[[Event], None] = _ignore,
    sleep: Callable[[float], None] = time.sleep,
) -> TaskResult:
    """Dispatch the task to `agent`, retrying transient failures; every attempt is recorded.

    The result is the last attempt's, with the duration, tokens and cost of all of them: the
    agent's own duration for an attempt where it gave one, the clock's otherwise, and the
    waits between attempts.
    """
    guidance = settings.guidance or None
    policy = settings.retry_policy
    history: list[dict[str, Any]] = []
    spent, cost, usage = 0.0, 0.0, Usage()
    phase = time.monotonic()  # when the running attempt, or the wait, began
    number = 0
    try:
        for number in range(1, policy.attempts + 1):
            phase = time.monotonic()
            # A retry resumes the session the previous attempt started, when it recorded one.
            resume = run.store.last_session(plan_key, task.id) if guidance else None
            context = DispatchContext(
                settings, guidance, resume, on_event, workspace=workspace_for(settings.workspace, plan_key)
            )
            result, attempt = _attempt(task, plan_key, run, sandbox, agent, context, number)
            took = time.monotonic() - phase
            spent += result.duration_seconds or took
            cost += result.cost_usd
            usage = usage + result.usage
            why = retry_reason(result)
            entry: dict[str, Any] = {
                "attempt": number,
                "status": result.status,
                "duration_seconds": round(took, 3),
                "reason": result.error or result.status,
                "engine": sandbox.engine,
            }
            history.append(entry)
            last = why is None or number == policy.attempts
            if is_crash(result):
                # Imported on the first crash: the root-cause parser costs every run's start-up.
                from .crashes.record import task_crash

                record_crash(
                    run,
                    task_crash(
                        task.id,
                        plan_key,
                        status=result.status,
                        error=result.error,
                        log=result.log,
                        exit_code=result.exit_code,
                        workspace=context.workspace,
                        attempt_id=attempt,
                        respawned=not last,
                    ),
                )
            if last:
                break
            delay = policy.backoff(number)
            entry["retry"] = f"{why}; retrying in {delay:.1f}s"
            phase = time.monotonic()
            sleep(delay)
            spent += time.monotonic() - phase
    except (TaskTimeout, KeyboardInterrupt) as exc:
        # A result like any other, so the report and the status line tell what happened; the
        # caller ends the run after an interruption.
        status: TaskStatus = "timeout" if isinstance(exc, TaskTimeout) else "interrupted"
        running = len(history) < number
        took = time.monotonic() - phase
        spent += took
        if running:
            history.append(
                {
                    "attempt": number,
                    "status": status,
                    "duration_seconds": round(took, 3),
                    "reason": status,
                    "engine": sandbox.engine,
                }
            )
        result = TaskResult(task.id, status, error=_stopped(status, exc, spent, running))
    except BaseException as exc:
        if not task.parallel:
            run.blocked.setdefault(plan_key, (task.id, ending(exc)))
        raise
    result.attempts = history
    result.engine = sandbox.engine
    result.duration_seconds = round(spent, 3)
    result.cost_usd = cost
    result.usage = usage
    if result.status != "completed" and not task.parallel:
        run.blocked.setdefault(plan_key, (task.id, result.status))
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
