"""`--orchestrator-loop`: rounds until the stop file or a signal, its heartbeat, and the queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.loop import LoopStore, QueueStore
from pytest_orchestrator.loop.due import TaskHistory, decide, waiting
from pytest_orchestrator.plan import Task
from pytest_orchestrator.state import StateStore
from tests.test_runs import PLAN, keys, project, script

pytestmark = pytest.mark.usefixtures("dead_docker")

# The project of the runs' tests: an ini file, the scripted agent, plans/x.md.
__all__ = ["project"]


@pytest.fixture
def start_loop(project: pytest.Pytester) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `pytest plans --orchestrator-loop` in the project, as a user would; killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(poll: float = 0.5, *args: str, config: str = "") -> subprocess.Popen[bytes]:
        (project.path / "orchestrator.yaml").write_text(
            f"freeze_threshold: 10\nloop:\n  poll_interval: {poll}\n{config}", encoding="utf-8"
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "plans", "--orchestrator-loop", "-p", "no:cacheprovider", *args],
            cwd=project.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}")


def state(project: pytest.Pytester) -> StateStore:
    store = StateStore.read(project.path / ".orchestrator")
    assert store is not None
    return store


def loop_row(project: pytest.Pytester) -> Any:
    # While the loop creates the database, there is no row yet.
    store = StateStore.read(project.path / ".orchestrator")
    if store is None:
        return None
    try:
        return LoopStore(store).row()
    finally:
        store.close()


def test_the_loop_picks_up_a_task_appended_to_a_plan_and_ends_on_the_stop_file(
    project: pytest.Pytester, start_loop: Callable[..., subprocess.Popen[bytes]]
) -> None:
    loop = start_loop(0.5, "--json-report", "--json-report-file", "report.json")
    wait_for(lambda: len(keys(project)) == 3, what="the first round")
    with open(project.path / "plans" / "x.md", "a", encoding="utf-8") as plan:
        plan.write("\n## Task 1.4: Document the storage\n\nWrite the docs.\n")
    wait_for(lambda: len(keys(project)) == 4, what="the appended task")
    report = project.path / "report.json"
    wait_for(lambda: report.exists() and "1.4" in report.read_text(), what="the round's JSON report")
    stop = project.path / ".orchestrator" / "stop"
    stop.touch()
    output = loop.communicate(timeout=60)[0].decode()

    assert loop.returncode == 0, output
    # Each task once: a later round leaves out what is done.
    assert keys(project) == [f"plans/x.md::1.{n}" for n in (1, 2, 3, 4)]
    assert "orchestrator loop: stopped (stop file" in output
    assert not stop.exists(), "the stop file is consumed, so the next start does not stop at once"
    row = loop_row(project)
    assert row.status == "stopped" and row.round >= 2


def test_the_loop_and_its_rounds_sample_their_resources(
    project: pytest.Pytester, start_loop: Callable[..., subprocess.Popen[bytes]]
) -> None:
    loop = start_loop(0.5)
    wait_for(lambda: len(keys(project)) == 3, what="the first round")
    (project.path / ".orchestrator" / "stop").touch()
    loop.communicate(timeout=60)
    store = state(project)
    rows = store.conn.execute(
        "SELECT kind, name, subject, run_id, cpu_seconds FROM resource_samples"
    ).fetchall()
    runs = [r[0] for r in store.conn.execute("SELECT id FROM runs")]
    store.close()
    # The loop's own process, and each round's run (the engine is unreachable: no container).
    looping = [r for r in rows if r["name"] == "loop"]
    assert looping and all(f" pid {loop.pid} @ " in r["subject"] and r["run_id"] is None for r in looping)
    rounds = [r for r in rows if r["name"] == "main"]
    assert {r["run_id"] for r in rounds} == set(runs)
    assert {r["kind"] for r in rows} == {"process"}
    assert all(r["cpu_seconds"] > 0 for r in rows)


def test_an_idle_loop_starts_no_round_until_a_plan_changes(
    project: pytest.Pytester, start_loop: Callable[..., subprocess.Popen[bytes]]
) -> None:
    loop = start_loop(0.2)
    # Round 1 does the three tasks, round 2 finds nothing due; then no round starts.
    wait_for(lambda: (r := loop_row(project)) and r.round == 2 and r.status == "waiting", what="round 2")
    time.sleep(3)
    assert loop_row(project).round == 2, "a round started although nothing changed"
    with open(project.path / "plans" / "x.md", "a", encoding="utf-8") as plan:
        plan.write("\n## Task 1.4: Document the storage\n\nWrite the docs.\n")
    wait_for(lambda: len(keys(project)) == 4, what="the appended task")
    assert loop_row(project).round == 3
    loop.terminate()
    loop.wait(timeout=30)


def test_sigterm_stops_the_running_task_records_it_and_ends_the_loop(
    project: pytest.Pytester, start_loop: Callable[..., subprocess.Popen[bytes]]
) -> None:
    script(project, {"plans/x.md::1.1": [{"sleep": 60}]})
    loop = start_loop(0.5)
    wait_for(lambda: keys(project) == ["plans/x.md::1.1"], what="the dispatch of 1.1")
    time.sleep(0.5)
    loop.send_signal(signal.SIGTERM)
    output = loop.communicate(timeout=30)[0].decode()

    assert loop.returncode == 2, output
    store = state(project)
    rows = store.conn.execute("SELECT task_id, status FROM attempts").fetchall()
    store.close()
    assert [tuple(r) for r in rows] == [("1.1", "interrupted")]
    assert "orchestrator loop: stopped (SIGTERM)" in output
    assert loop_row(project).status == "stopped"


def test_a_loop_stuck_in_a_task_stops_beating_and_beats_while_it_waits(
    project: pytest.Pytester, start_loop: Callable[..., subprocess.Popen[bytes]]
) -> None:
    # The scripted agent blocks in 1.1 for 6s: no event, no task boundary, so no beat.
    script(project, {"plans/x.md::1.1": [{"sleep": 6}]})
    loop = start_loop(30)
    wait_for(lambda: keys(project) == ["plans/x.md::1.1"], what="the dispatch of 1.1")
    time.sleep(4)
    stuck = loop_row(project)
    assert time.time() - stuck.last_poll_at >= 3.5, "a side thread must not keep a stuck loop looking alive"
    # Then the round ends, and the loop waits 30s for the next one, beating every second.
    wait_for(lambda: len(keys(project)) == 3, what="the end of the round")
    waiting_since = wait_for(lambda: (r := loop_row(project)) and r.status == "waiting" and r, what="waiting")
    time.sleep(3)
    assert loop_row(project).last_poll_at > waiting_since.last_poll_at + 1.5
    loop.terminate()
    loop.wait(timeout=30)


def test_a_failed_task_waits_for_its_delay_and_the_queue_says_why(
    project: pytest.Pytester, start_loop: Callable[..., subprocess.Popen[bytes]]
) -> None:
    script(project, {"plans/x.md::1.2": [{"status": "failed", "error": "tests fail"}]})
    loop = start_loop(0.3)
    wait_for(lambda: (r := loop_row(project)) and r.round >= 4, what="four rounds")
    (project.path / ".orchestrator" / "stop").touch()
    loop.communicate(timeout=60)

    dispatched = keys(project)
    assert dispatched.count("plans/x.md::1.1") == 1
    # Rounds come every 0.3s; the delay after failures doubles from 0.3s, so 1.2 was tried
    # in fewer rounds than there were, and 1.3 never, as 1.2 blocks it.
    assert "plans/x.md::1.3" not in dispatched
    assert 1 <= dispatched.count("plans/x.md::1.2") < loop_row(project).round
    store = state(project)
    queue = {row.task_id: row.reason for row in QueueStore(store).pending()}
    store.close()
    assert queue["1.3"].startswith("blocked by 1.2")
    # Just failed, or waiting for its delay, depending on where the stop fell.
    assert queue["1.2"] == "failed: tests fail" or (
        queue["1.2"].startswith("failed in ") and "due again at" in queue["1.2"]
    )


def test_a_bad_loop_section_is_one_usage_error(
    project: pytest.Pytester, start_loop: Callable[..., subprocess.Popen[bytes]]
) -> None:
    loop = start_loop(-1)
    output = loop.communicate(timeout=60)[0].decode()
    assert loop.returncode == 4
    assert "orchestrator.yaml:3: poll_interval must be a finite number > 0, not -1" in output
    assert "Traceback" not in output


# ---- the round's decisions, without processes ----


def task(number: str, parallel: bool = False, checked: bool = False) -> Task:
    return Task(id=number, title=f"Task {number}", parallel=parallel, checked=checked)


def test_delay_after_failures_doubles_from_the_poll_interval_up_to_an_hour() -> None:
    def history(failures: int) -> TaskHistory:
        return TaskHistory(None, failures, 1000.0, "failed")

    assert waiting(history(1), 1000 + 29, 30, False) is not None
    assert waiting(history(1), 1000 + 30, 30, False) is None
    assert waiting(history(3), 1000 + 119, 30, False) is not None
    assert waiting(history(3), 1000 + 120, 30, False) is None
    assert waiting(history(20), 1000 + 3599, 30, False) is not None
    assert waiting(history(20), 1000 + 3600, 30, False) is None
    assert waiting(TaskHistory(None, 1, 1000.0, "interrupted"), 1001, 30, False) is None
    assert waiting(TaskHistory(None, 1, 1000.0, "needs_human"), 9e9, 30, False) is not None
    assert waiting(TaskHistory(None, 1, 1000.0, "needs_human"), 1001, 30, True) is None


def test_done_tasks_are_left_out_and_a_waiting_task_blocks_its_plan_but_not_parallel_ones() -> None:
    tasks = [("p", task("1")), ("p", task("2")), ("p", task("3", parallel=True)), ("p", task("4"))]
    tasks += [("q", task("1", checked=True)), ("q", task("2"))]
    histories = {
        ("p", "1"): TaskHistory(5.0, 0, None, "completed"),
        ("p", "2"): TaskHistory(None, 1, 10.0, "failed"),
    }
    decisions = decide(tasks, histories, now=11.0, poll_interval=30)
    got = [(d.plan, d.task.id, d.dispatch, d.done, d.reason) for d in decisions]
    assert got == [
        ("p", "1", False, True, None),
        (
            "p",
            "2",
            False,
            False,
            "failed in 1 rounds; due again at " + time.strftime("%H:%M:%S", time.localtime(40)),
        ),
        ("p", "3", True, False, "not yet reached"),
        ("p", "4", False, False, "blocked by 2"),
        ("q", "1", False, True, None),
        ("q", "2", True, False, "not yet reached"),
    ]
    rerun = decide(tasks, histories, now=11.0, poll_interval=30, rerun=True)
    assert all(d.dispatch for d in rerun)


def test_task_histories_count_failed_runs_since_the_last_completion(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    run = store.begin_run("k")
    for status, at in (("failed", 1.0), ("completed", 2.0), ("failed", 3.0), ("error", 4.0)):
        attempt = store.start_attempt(run, "p", "1", now=at)
        store.finish_attempt(attempt, status, now=at)
    other = store.begin_run("k2")
    attempt = store.start_attempt(other, "p", "1", now=5.0)
    store.finish_attempt(attempt, "timeout", now=5.0)
    assert store.task_histories(before=10.0)[("p", "1")] == (2.0, 2, 5.0, "timeout")
    assert store.task_histories(before=3.5)[("p", "1")] == (2.0, 1, 3.0, "failed")
    store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--orchestrator-rerun",),
            "--orchestrator-rerun dispatches again once: run it without --orchestrator-loop",
        ),
        (
            ("--orchestrator-guidance", "use SQLite"),
            "guidance (--orchestrator-guidance, ORCHESTRATOR_GUIDANCE",
        ),
        (("--orchestrator-dry-run",), "--orchestrator-loop cannot be combined with --orchestrator-dry-run"),
        (("--collect-only",), "--orchestrator-loop cannot be combined with --collect-only"),
        (("--orchestrator-health",), "--orchestrator-loop cannot be combined with --orchestrator-health"),
    ],
)
def test_what_would_redo_every_task_every_round_is_refused(
    project: pytest.Pytester,
    start_loop: Callable[..., subprocess.Popen[bytes]],
    args: tuple[str, ...],
    message: str,
) -> None:
    loop = start_loop(0.5, *args)
    output = loop.communicate(timeout=60)[0].decode()
    assert loop.returncode == 4
    assert message in output
    assert keys(project) == []


def test_the_budget_holds_across_the_loops_rounds(
    project: pytest.Pytester, start_loop: Callable[..., subprocess.Popen[bytes]]
) -> None:
    script(project, {"*": [{"cost": 1.0}]})
    loop = start_loop(0.3, "--orchestrator-max-cost", "0.5")
    wait_for(lambda: (r := loop_row(project)) and r.round >= 3, what="three rounds")
    (project.path / ".orchestrator" / "stop").touch()
    loop.communicate(timeout=60)
    # One task reached the budget; the rounds after it are the same run, so none spends more.
    assert keys(project) == ["plans/x.md::1.1"]


def test_a_run_with_k_keeps_the_rest_of_the_plan_in_the_queue(project: pytest.Pytester) -> None:
    script(project, {"plans/x.md::1.1": [{"status": "failed", "error": "tests fail"}]})
    project.runpytest("plans")
    project.runpytest("plans", "-k", "1.1")
    store = state(project)
    queue = [row.task_id for row in QueueStore(store).pending()]
    store.close()
    assert queue == ["1.1", "1.2", "1.3"]


def test_a_killed_loop_is_gone_not_frozen(tmp_path: Path) -> None:
    from pytest_orchestrator.health.orchestrator import loop_freeze
    from pytest_orchestrator.loop import LoopRow

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    row = LoopRow(dead.pid, socket.gethostname(), 0.0, 0.0, 3, "running", 30.0)
    assert loop_freeze(row, 300, now=10_000.0) is None
    alive = LoopRow(os.getpid(), socket.gethostname(), 0.0, 0.0, 3, "running", 30.0)
    assert loop_freeze(alive, 300, now=10_000.0) is not None


def test_rounds_with_xdist_collect_alike_and_do_each_task_once(
    project: pytest.Pytester, start_loop: Callable[..., subprocess.Popen[bytes]]
) -> None:
    (project.path / "plans" / "y.md").write_text(PLAN.replace("Milestone 1", "Milestone 2"), encoding="utf-8")
    loop = start_loop(0.3, "-n", "2")
    wait_for(lambda: len(keys(project)) == 6, what="the first round")
    # Later rounds leave everything out on both workers; xdist would stop on different lists.
    wait_for(lambda: (r := loop_row(project)) and r.round >= 2 and r.status == "waiting", what="round 2")
    (project.path / ".orchestrator" / "stop").touch()
    output = loop.communicate(timeout=60)[0].decode()
    assert loop.returncode == 0, output
    assert "Different tests were collected" not in output
    assert sorted(keys(project)) == sorted(f"plans/{p}.md::1.{n}" for p in "xy" for n in (1, 2, 3))
