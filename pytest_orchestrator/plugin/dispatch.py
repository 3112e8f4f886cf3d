"""Dispatch of a task item: the run's record and sandbox, skips, the hook call, progress lines.

The domain work (resume, blocking, attempts, retries, recording) is `pytest_orchestrator.dispatch`;
this module adapts it to pytest: a skip is `pytest.skip`, the agent is the dispatch hook.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from .. import sandbox as sandboxes
from ..dispatch import DispatchContext, NoAgent, ending, run_task, skip_reason, stop_left_behind
from ..loop import RUNNING, QueueStore
from ..redact import redact
from ..result import DRY_RUN_PREFIX, TaskResult
from ..state import RunRecord, StateError
from . import xdist
from .beat import beat
from .bugs import monitor_for, report_bugs
from .interrupts import Interrupts
from .options import settings_for
from .output import write_now
from .rounds import round_start

if TYPE_CHECKING:
    from ..plan import Task
    from ..sandbox import Sandbox
    from ..settings import Settings
    from .items import TaskItem

RUN = pytest.StashKey[RunRecord]()
SANDBOX = pytest.StashKey["Sandbox"]()
INTERRUPTS = pytest.StashKey[Interrupts]()
# A worker's lines for the controller's terminal (a worker has none): they cross xdist with the
# next report of a task, as the attribute `reporting.LINES_ATTR`.
WORKER_LINES = pytest.StashKey[list[str]]()


def run_record(config: pytest.Config, settings: Settings) -> RunRecord:
    """This process's run, opened on first use; agents that dead runs left behind are stopped."""
    if RUN not in config.stash:
        from ..metrics.sampler import ResourceSampler

        dry_run = bool(config.getoption("orchestrator_dry_run"))
        worker = xdist.worker_id(config)
        # One process samples the sandbox container, so its figures are not counted twice.
        container = settings.sandbox if worker in ("main", "gw0") else None
        run = RunRecord(
            settings.state_dir,
            xdist.run_key(config),
            worker,
            settings.freeze_threshold,
            dry_run=dry_run,
            sample=ResourceSampler(worker, container=container, docker_timeout=settings.docker_timeout),
        )
        config.stash[RUN] = run
        if run.writes:
            interrupts = config.stash.get(INTERRUPTS, None)
            if interrupts is not None:
                interrupts.while_dispatching()
        if run.interrupted:
            engines = xdist.engine_environs(config)
            for line in stop_left_behind(run, sandbox_for(config, settings), engines):
                tell(config, f"orchestrator: warning: {redact(line)}")
    return config.stash[RUN]


def tell(config: pytest.Config, line: str) -> None:
    """A line on the terminal now, or, from an xdist worker, on the controller's with the next report."""
    if xdist.workerinput(config) is None:
        write_now(config, line)
    else:
        config.stash.setdefault(WORKER_LINES, []).append(line)


def sandbox_for(config: pytest.Config, settings: Settings) -> Sandbox:
    """The sandbox handle shared by the tasks of this process; the container is looked up on use."""
    if SANDBOX not in config.stash:
        config.stash[SANDBOX] = sandboxes.attach(settings.sandbox, settings.docker_timeout)
    return config.stash[SANDBOX]


def prune_past_retention(config: pytest.Config, run: RunRecord) -> None:
    """Delete the crash, health and resource rows and the transcripts older than the retention.

    The loop and the watchdog do it once a day; a run does it as it ends, so that runs started
    without either (by cron, say) keep the state directory bounded: each attempt adds a
    transcript of up to `transcript_max_bytes`, each process a resource sample a half minute.
    """
    from ..crashes.store import CrashStore
    from ..transcripts import prune

    before = time.time() - monitor_for(config).retention_days * 86_400
    try:
        CrashStore(run.store).prune(before)
    except StateError:
        # Not the run's record: the writes that are say what is wrong with the state.
        return
    prune(run.state_dir, before)


def close_run(session: pytest.Session, exitstatus: int) -> None:
    """Record how this process's run ended; a run whose end was not recorded exits non-zero."""
    run = session.config.stash.get(RUN, None)
    if run is None:
        return
    # A loop's round leaves it to the loop, which prunes once a day.
    if run.writes and xdist.worker_id(session.config) in ("main", "gw0") and round_start() is None:
        prune_past_retention(session.config, run)
    run.close("interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "finished")
    if run.unrecorded:
        # A task's lost record was already told; the run's own end failing too adds nothing.
        if session.shouldfail:
            run.unrecorded.clear()
        stop_if_unrecorded(session, run)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def progress(config: pytest.Config, task_id: str) -> Callable[[dict[str, Any]], None]:
    """The event callback: a line per agent turn or tool call, on the terminal as it happens."""
    from ..agents.claude_code import describe_event

    # xdist shows no worker output; the lines would only cost time there.
    shown = xdist.workerinput(config) is None
    turns = 0

    def show(event: dict[str, Any]) -> None:
        nonlocal turns
        if event.get("type") == "system" and event.get("subtype") == "init":
            turns = 0  # a new attempt's agent
        if event.get("type") == "assistant":
            turns += 1
        beat(config)
        line = describe_event(event)
        if line is not None and shown:
            write_now(config, f"    [{task_id}] turn {turns}: {redact(line)}")

    return show


def dispatch_item(item: TaskItem) -> TaskResult:
    """Dispatch the item's task through the dispatch hook; skip it when it should not run."""
    config, task = item.config, item.task
    settings = settings_for(config)
    try:
        run = run_record(config, settings)
    except StateError as exc:
        # Every other task would fail the same way.
        item.session.shouldfail = f"orchestrator: {exc}"
        raise
    rerun = bool(config.getoption("orchestrator_rerun"))
    reason = skip_reason(task, item.plan_key, run, settings, rerun=rerun)
    if reason is not None:
        waits = reason.startswith(("blocked by", "budget reached"))
        queue_wait(run, item, reason if waits else None)
        pytest.skip(reason)
    if config.getoption("orchestrator_dry_run"):
        prompt = DispatchContext(settings, settings.guidance or None).render_prompt(task)
        pytest.skip(f"{DRY_RUN_PREFIX}would dispatch, prompt {len(prompt)} chars")
    if not hold_plan(item, run):
        # The run that held the plan may have done this task meanwhile.
        reason = skip_reason(task, item.plan_key, run, settings, rerun=rerun)
        if reason is not None:
            pytest.skip(reason)

    queue_wait(run, item, RUNNING)

    def agent(task: Task, sandbox: Sandbox, context: DispatchContext) -> TaskResult | None:
        result: TaskResult | None = item.ihook.pytest_orchestrator_dispatch(
            task=task, sandbox=sandbox, config=config, context=context
        )
        return result

    # What the queue says once the dispatch is over: nothing when done, why otherwise; never
    # RUNNING for an attempt that raised.
    after: str | None = "error: the dispatch ended without a result"
    try:
        result = run_task(
            task,
            item.plan_key,
            run,
            sandbox_for(config, settings),
            agent,
            settings,
            progress(config, task.id),
        )
        done = result.status == "completed"
        after = None if done else f"{result.status}: {result.error or 'no details'}"[:200]
        return result
    except NoAgent:
        raise pytest.UsageError("no plugin implements pytest_orchestrator_dispatch") from None
    except StateError as exc:
        run.unrecorded.append(f"task {task.id} ({item.plan_key}) was not dispatched: {exc}")
        raise
    except BaseException as exc:
        after = redact(f"{ending(exc)}: {type(exc).__name__}: {exc}".strip())[:200]
        raise
    finally:
        queue_wait(run, item, after)
        report_bugs(config, run, lambda line: write_now(config, line))
        stop_if_unrecorded(item.session, run)


def queue_wait(run: RunRecord, item: TaskItem, reason: str | None) -> None:
    """The task's place in the queue: why it waits, RUNNING while it runs, or gone once done."""
    if not run.writes:
        return
    queue = QueueStore(run.store)
    try:
        if reason is None:
            queue.take(item.plan_key, item.task.id)
        else:
            queue.wait(item.plan_key, item.task.id, reason)
    except StateError:
        # The attempt's own write tells, and stops the run.
        return


LEASE_POLL = 1.0


def hold_plan(item: TaskItem, run: RunRecord) -> bool:
    """Take the item's plan for this run: True at once, False after waiting for another run.

    Without --orchestrator-wait, a plan that another live run holds skips its tasks.
    """
    holder = run.lease(item.plan_key)
    if holder is None:
        return True
    if not item.config.getoption("orchestrator_wait"):
        pytest.skip(f"running in {holder}")
    write_now(item.config, f"    [{item.task.id}] waiting for {holder}, which holds {item.plan_key}")
    while holder is not None:
        time.sleep(LEASE_POLL)
        holder = run.lease(item.plan_key)
    return False


def stop_if_unrecorded(session: pytest.Session, run: RunRecord) -> None:
    """After a failed state write: say what was not recorded, and dispatch nothing more."""
    if not run.unrecorded:
        return
    # Without the record, a later run cannot tell what this one did: stop before it does more.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    while run.unrecorded:
        line = (
            f"orchestrator: not recorded in the state database: {run.unrecorded.pop(0)}; "
            "no more tasks are dispatched: make the state directory writable (free space), then run again"
        )
        if reporter is not None:
            reporter.write_line(line, red=True)
        session.shouldfail = line


class ClaudeCodeAgent:
    """The built-in implementation of the dispatch hook: Claude Code in the sandbox."""

    @pytest.hookimpl(trylast=True)
    def pytest_orchestrator_dispatch(
        self, task: Task, sandbox: Sandbox, context: DispatchContext
    ) -> TaskResult:
        """Run `task` with Claude Code in the sandbox."""
        from ..agents import claude_code

        return claude_code.run(task, sandbox, context)
