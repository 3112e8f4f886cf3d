"""The numbers of a window (`window()`, `orchestrator metrics`) against hand-computed figures.

The state is a real SQLite database written through the stores the orchestrator writes with:
twelve finished attempts of two plans inside a two-hour window, with known latencies, costs
and tokens, and rows just outside it that must not count. The command runs as the operator
runs it, in a subprocess that must never import pytest (test_views' runner).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_orchestrator.crashes.model import Crash
from pytest_orchestrator.crashes.store import CrashStore
from pytest_orchestrator.metrics import FINISHED, Resources, Sample, Window, window
from pytest_orchestrator.metrics.resources import record
from pytest_orchestrator.state import StateStore
from tests.test_views import orchestrator

HOUR = 3600.0
MIB = 2**20
PLAN_A = "plans/a.md"
PLAN_B = "plans/b.md"


@dataclass(frozen=True)
class Row:
    plan: str
    task: str
    attempt: int
    status: str
    latency: float
    cost: float
    tokens: tuple[int, int, int, int]  # input, output, cache read, cache creation


# Ended inside the window, one a minute from its start.
INSIDE = (
    Row(PLAN_A, "1.1", 1, "failed", 10, 0.10, (100, 10, 0, 0)),
    Row(PLAN_A, "1.1", 2, "completed", 20, 0.20, (200, 20, 0, 0)),
    Row(PLAN_A, "1.2", 1, "completed", 30, 0.30, (300, 30, 0, 0)),
    Row(PLAN_A, "1.3", 1, "timeout", 40, 0.40, (400, 40, 0, 0)),
    Row(PLAN_A, "1.3", 2, "failed", 50, 0.50, (500, 50, 0, 0)),
    Row(PLAN_A, "1.3", 3, "completed", 60, 0.60, (600, 60, 1000, 0)),
    Row(PLAN_A, "1.4", 1, "completed", 70, 0.70, (700, 70, 0, 0)),
    Row(PLAN_A, "1.5", 1, "completed", 80, 0.80, (800, 80, 0, 0)),
    Row(PLAN_A, "1.6", 1, "completed", 90, 0.90, (900, 90, 0, 0)),
    Row(PLAN_A, "1.7", 1, "completed", 100, 1.00, (1000, 100, 0, 500)),
    Row(PLAN_B, "2.1", 1, "completed", 300, 2.00, (2000, 200, 0, 0)),
    Row(PLAN_B, "2.2", 1, "needs_human", 500, 0.50, (500, 50, 0, 0)),
)


def crash(at: float, plan: str | None) -> Crash:
    return Crash(
        kind="task" if plan else "component",
        subject="1.1" if plan else "mcp",
        at=at,
        error_type="RuntimeError",
        message="boom",
        fingerprint="RuntimeError:x",
        plan=plan,
    )


def seed(state_dir: Path, since: float, until: float) -> None:
    """The attempts, crashes, queue and resource samples of a window [since, until)."""
    store = StateStore.open(state_dir)
    run = store.begin_run(now=since - HOUR)
    for index, row in enumerate(INSIDE):
        ended = since + 60 * (index + 1)
        attempt = store.start_attempt(run, row.plan, row.task, attempt=row.attempt, now=ended - row.latency)
        tokens_in, tokens_out, cache_read, cache_creation = row.tokens
        store.finish_attempt(
            attempt,
            row.status,
            cost_usd=row.cost,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cache_read_tokens=cache_read,
            cache_creation_tokens=cache_creation,
            now=ended,
        )
    # Outside: ended before the window, and ended at its end (the end is not in it).
    before = store.start_attempt(run, "plans/c.md", "3.1", now=since - 1000)
    store.finish_attempt(before, "completed", cost_usd=9.0, input_tokens=9999, now=since - 1)
    after = store.start_attempt(run, "plans/c.md", "3.2", now=until - 1000)
    store.finish_attempt(after, "failed", cost_usd=9.0, now=until)
    # Running: started in the window, not finished.
    store.start_attempt(run, PLAN_A, "1.8", now=since + 30)
    crashes = CrashStore(store)
    for at, plan in ((since + 10, PLAN_A), (since + 20, PLAN_A), (since + 30, None), (since - 10, PLAN_A)):
        crashes.record(crash(at, plan))
    with store.writing() as conn:
        conn.executemany(
            "INSERT INTO queue (plan, task_id, position, enqueued_at, reason) VALUES (?, ?, ?, ?, 'pending')",
            [(PLAN_A, "1.9", 1, since), (PLAN_A, "1.10", 2, since), (PLAN_B, "2.3", 3, since)],
        )
    process = "host pid 10 @ 1.00"
    container = "container abc @ 2026-11-23T10:00:00Z"
    for at, subject, kind, cpu, memory in (
        (since - 60, process, "process", 5.0, 90 * MIB),
        (since + 60, process, "process", 7.0, 100 * MIB),
        (since + 120, process, "process", 9.5, 150 * MIB),
        (since + 90, container, "container", 2.0, 300 * MIB),
        (since + 150, container, "container", 6.0, 200 * MIB),
        (until + 3 * HOUR, process, "process", 100.0, 999 * MIB),
    ):
        record(
            store, [Sample(kind, subject, "main" if kind == "process" else "sandbox", cpu, memory)], now=at
        )
    store.close()


def test_window_matches_the_hand_computed_figures(tmp_path: Path) -> None:
    since = time.time() - 10 * HOUR
    until = since + 2 * HOUR
    seed(tmp_path, since, until)
    store = StateStore.read(tmp_path)
    assert store is not None
    found = window(store.conn, since, until)
    store.close()
    assert (found.since, found.until, found.plan) == (since, until, None)
    # 8 completed, 2 failed, 1 timeout, 1 needs_human; the running attempt apart.
    assert found.tasks_by_status == {
        "completed": 8,
        "failed": 2,
        "timeout": 1,
        "needs_human": 1,
        "running": 1,
    }
    assert (found.finished, found.completed, found.failed, found.pending) == (12, 8, 3, 3)
    # 8 completed in 2 hours.
    assert found.throughput_per_hour == pytest.approx(4.0)
    # Latencies 10, 20, ..., 100, 300, 500: the sum 550 + 800 over 12; nearest rank: p50 is the
    # 6th (ceil 0.5 * 12), p95 the 12th (ceil 11.4).
    assert found.latency_avg == pytest.approx(1350 / 12)
    assert (found.latency_p50, found.latency_p95) == (pytest.approx(60), pytest.approx(500))
    # failed + timeout over finished.
    assert found.error_rate == pytest.approx(3 / 12)
    # input 5500 + 2500, output 550 + 250, cache read 1000, cache creation 500; cost 5.50 + 2.50.
    assert found.tokens_total == 10300
    assert found.tokens_per_task == pytest.approx(10300 / 12)
    assert found.cost_usd_total == pytest.approx(8.0)
    assert found.cost_usd_per_task == pytest.approx(8.0 / 12)
    assert (found.retries, found.crashes) == (3, 3)
    # The process used 9.5 - 5.0 CPU seconds (its reading before the window counts from there);
    # the container started in the window: 6.0. Peaks: 150 MiB and 300 MiB.
    assert found.resources == Resources(
        samples=4,
        processes=1,
        process_cpu_seconds=pytest.approx(4.5),
        process_peak_rss_bytes=150 * MIB,
        containers=1,
        container_cpu_seconds=pytest.approx(6.0),
        container_peak_memory_bytes=300 * MIB,
    )


def test_a_plan_window_counts_only_that_plan(tmp_path: Path) -> None:
    since = time.time() - 10 * HOUR
    until = since + 2 * HOUR
    seed(tmp_path, since, until)
    store = StateStore.read(tmp_path)
    assert store is not None
    a, b = window(store.conn, since, until, PLAN_A), window(store.conn, since, until, PLAN_B)
    store.close()
    assert a.tasks_by_status == {"completed": 7, "failed": 2, "timeout": 1, "running": 1}
    assert (a.finished, a.failed, a.pending, a.retries, a.crashes) == (10, 3, 2, 3, 2)
    assert a.throughput_per_hour == pytest.approx(3.5)
    # 10 .. 100: p50 the 5th, p95 the 10th (ceil 9.5).
    assert (a.latency_avg, a.latency_p50, a.latency_p95) == (pytest.approx(55), 50, 100)
    assert a.error_rate == pytest.approx(0.3)
    assert (a.tokens_total, a.cost_usd_total) == (7550, pytest.approx(5.5))
    assert a.cost_usd_per_task == pytest.approx(0.55)
    assert b.tasks_by_status == {"completed": 1, "needs_human": 1}
    assert (b.finished, b.failed, b.error_rate, b.latency_p50, b.latency_p95) == (2, 0, 0.0, 300, 500)
    assert (b.cost_usd_total, b.tokens_total, b.crashes, b.pending) == (pytest.approx(2.5), 2750, 0, 1)


def test_an_attempt_that_raised_counts_alike_in_metrics_and_prometheus(tmp_path: Path) -> None:
    """`error` (the agent raised) is an ended status: the error rate and /metrics count it alike."""
    from pytest_orchestrator.server.collector import StateCollector

    store = StateStore.open(tmp_path)
    run = store.begin_run(now=1000)
    for n, status in enumerate(("completed", "error", "failed", "completed"), start=1):
        attempt = store.start_attempt(run, PLAN_A, f"1.{n}", now=1000 + 100 * n)
        store.finish_attempt(attempt, status, now=1000 + 100 * n + 10)
    found = window(store.conn, 0, 10_000)
    store.close()
    assert found.tasks_by_status == {"completed": 2, "error": 1, "failed": 1}
    assert (found.finished, found.failed, found.error_rate) == (4, 2, 0.5)
    assert found.latency_avg == pytest.approx(10)
    families = {m.name: m for m in StateCollector(tmp_path).collect()}
    ended = sum(s.value for s in families["orchestrator_tasks"].samples if s.name.endswith("_total"))
    assert ended == found.finished


def test_the_run_browser_counts_failed_as_the_metrics_do(tmp_path: Path) -> None:
    """/api/runs' `failed` is the window's: a question or an interrupted run is no failure."""
    from pytest_orchestrator.views.runs import run_summary, runs

    store = StateStore.open(tmp_path)
    run = store.begin_run(now=1000)
    statuses = ("completed", "failed", "error", "timeout", "needs_human", "interrupted")
    for n, status in enumerate(statuses, start=1):
        attempt = store.start_attempt(run, PLAN_A, f"1.{n}", now=1000 + 100 * n)
        store.finish_attempt(attempt, status, now=1000 + 100 * n + 10)
    store.start_attempt(run, PLAN_A, "1.9", now=2000)
    numbers = window(store.conn, 0, 10_000)
    listed, summary = runs(store)[0], run_summary(store, run)
    store.close()
    assert summary is not None
    assert (listed["attempts"], listed["completed"], listed["running"]) == (7, 1, 1)
    assert listed["failed"] == summary["failed"] == numbers.failed == 3


def test_pending_leaves_out_the_running_task_as_every_view_does(tmp_path: Path) -> None:
    """The queue keeps a running task's row: metrics, task_backlog, `queue` and /metrics agree."""
    from pytest_orchestrator.metrics.health import HealthThresholds, last_completion, task_backlog
    from pytest_orchestrator.server.collector import StateCollector
    from pytest_orchestrator.views.queue import snapshot

    store = StateStore.open(tmp_path)
    with store.writing() as conn:
        conn.executemany(
            "INSERT INTO queue (plan, task_id, position, enqueued_at, reason) VALUES (?, ?, ?, ?, ?)",
            [(PLAN_A, "1.1", 0, 100.0, "running"), (PLAN_A, "1.2", 1, 100.0, "pending")],
        )
    numbers = window(store.conn, 0, 1000)
    backlog = task_backlog(store.conn, HealthThresholds(task_backlog=0))
    silence = last_completion(store.conn, HealthThresholds(last_completion=60), now=10_000)
    queue = snapshot(store, 1000)
    store.close()
    families = {m.name: m for m in StateCollector(tmp_path).collect()}
    depth = families["orchestrator_queue_depth"].samples[0].value
    assert (numbers.pending, backlog.value, queue.as_dict()["depth"], depth) == (1, 1, 1, 1)
    assert silence.message.startswith("1 task pending")


def test_an_empty_window_has_no_rates(tmp_path: Path) -> None:
    seed(tmp_path, time.time() - 10 * HOUR, time.time() - 8 * HOUR)
    store = StateStore.read(tmp_path)
    assert store is not None
    found = window(store.conn, time.time() - 20 * HOUR, time.time() - 15 * HOUR)
    store.close()
    # The attempt running now started after this window: nothing at all.
    assert found.tasks_by_status == {}
    assert found.finished == 0
    assert (found.error_rate, found.latency_avg, found.latency_p50, found.latency_p95) == (
        None,
        None,
        None,
        None,
    )
    assert (found.tokens_per_task, found.cost_usd_per_task, found.throughput_per_hour) == (None, None, 0.0)


def test_percentiles_are_nearest_rank_for_every_count(tmp_path: Path) -> None:
    """Against a sort in Python, for windows of 1 to 40 attempts with unordered latencies."""
    store = StateStore.open(tmp_path)
    run = store.begin_run(now=0)
    latencies = [(n * 37) % 101 + n / 1000 for n in range(1, 41)]
    for n, latency in enumerate(latencies, start=1):
        attempt = store.start_attempt(run, PLAN_A, str(n), now=1000 * n - latency)
        store.finish_attempt(attempt, FINISHED[n % len(FINISHED)], now=1000 * n)
    for count in range(1, 41):
        found = window(store.conn, 0, 1000 * count + 1)
        ranked = sorted(latencies[:count])
        assert found.latency_p50 == pytest.approx(ranked[-(-count // 2) - 1])
        assert found.latency_p95 == pytest.approx(ranked[-(-count * 95 // 100) - 1])
    store.close()


def test_as_dict_is_json_ready_and_whole(tmp_path: Path) -> None:
    since = time.time() - 10 * HOUR
    seed(tmp_path, since, since + 2 * HOUR)
    store = StateStore.read(tmp_path)
    assert store is not None
    found = window(store.conn, since, since + 2 * HOUR)
    store.close()
    document = json.loads(json.dumps(found.as_dict()))
    assert datetime.fromisoformat(document["since"]).timestamp() == pytest.approx(since, abs=0.001)
    assert document["hours"] == 2.0
    assert document["resources"]["container_peak_memory_bytes"] == 300 * MIB
    fields = set(Window.__dataclass_fields__)
    assert fields <= set(document)
    assert document["tasks_by_status"] == found.tasks_by_status


# ---- the command ----


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose state directory is `state/`."""
    (tmp_path / "pytest.ini").write_text("[pytest]\norchestrator_state_dir = state\n")
    return tmp_path


def seed_recent(project: Path) -> str:
    """The seeded window ending 10 minutes ago; its start as `--since` gives the command all of it.

    The command's window ends now: the attempt that ended as the seeded window did is in it.
    """
    since = time.time() - 2 * HOUR - 600
    seed(project / "state", since, since + 2 * HOUR)
    return datetime.fromtimestamp(since, UTC).isoformat()


def test_json_gives_the_numbers(project: Path) -> None:
    start = seed_recent(project)
    ran = orchestrator(project, "metrics", "--since", start, "--json")
    assert (ran.code, ran.err) == (0, "")
    document = json.loads(ran.out)
    since = datetime.fromisoformat(document["since"]).timestamp()
    until = datetime.fromisoformat(document["until"]).timestamp()
    assert since == pytest.approx(datetime.fromisoformat(start).timestamp(), abs=0.001)
    assert since + 2 * HOUR + 600 <= until <= time.time()
    # The seeded window's twelve, and the failed attempt of plans/c.md that ended at its end.
    assert document["tasks_by_status"] == {
        "completed": 8,
        "failed": 3,
        "timeout": 1,
        "needs_human": 1,
        "running": 1,
    }
    assert (document["finished"], document["completed"], document["failed"]) == (13, 8, 4)
    assert document["throughput_per_hour"] == pytest.approx(8 / ((until - since) / HOUR), rel=1e-4)
    # Latencies 10 .. 100, 300, 500, 1000: p50 the 7th (ceil 6.5), p95 the 13th (ceil 12.35).
    assert document["latency_avg"] == pytest.approx(2350 / 13)
    assert (document["latency_p50"], document["latency_p95"]) == (pytest.approx(70), pytest.approx(1000))
    assert document["error_rate"] == pytest.approx(4 / 13)
    assert (document["tokens_total"], document["cost_usd_total"]) == (10300, pytest.approx(17.0))
    assert document["cost_usd_per_task"] == pytest.approx(17.0 / 13)
    assert (document["retries"], document["crashes"], document["pending"]) == (3, 3, 3)
    assert document["resources"]["process_cpu_seconds"] == pytest.approx(4.5)
    assert document["plan"] is None


def test_the_terminal_view_shows_the_same_numbers(project: Path) -> None:
    start = seed_recent(project)
    ran = orchestrator(project, "metrics", "--since", start, "--plan", PLAN_A)
    assert (ran.code, ran.err) == (0, "")
    lines = ran.out.splitlines()
    assert re.fullmatch(rf"Metrics since \d\d:\d\d:\d\d \(2h 10m\), plan {PLAN_A}", lines[0])
    as_json = json.loads(orchestrator(project, "metrics", "--since", start, "--plan", PLAN_A, "--json").out)
    assert lines[2:] == [
        "Tasks        10 finished (7 completed, 2 failed, 1 timeout); 1 running; 2 pending",
        f"Throughput   {as_json['throughput_per_hour']:.2f} completed per hour",
        "Latency      avg 55.0s  p50 50.0s  p95 1m 40s",
        "Error rate   30.0 % (3 of 10 failed)",
        "Tokens       7,550 total, 755 per task",
        "Cost         $5.50 total, $0.5500 per task",
        "Retries      3",
        "Crashes      2",
        "Resources    1 orchestrator processes: 4.5 CPU s, peak RSS 150.0 MiB",
        "             1 sandbox containers: 6.0 CPU s, peak memory 300.0 MiB",
    ]
    # 7 completed in the 2 h 10 min to now.
    assert as_json["throughput_per_hour"] == pytest.approx(7 / 2.1667, rel=1e-3)
    assert (as_json["finished"], as_json["failed"], as_json["pending"], as_json["plan"]) == (10, 3, 2, PLAN_A)
    assert as_json["error_rate"] == pytest.approx(0.3)


def test_an_unknown_plan_is_one_line_and_exit_2(project: Path) -> None:
    seed_recent(project)
    ran = orchestrator(project, "metrics", "--plan", "plans/nope.md")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err == (
        f"orchestrator: no attempts of plan 'plans/nope.md' in {project / 'state' / 'state.db'}: "
        "give a plan as the runs recorded it (plans/a.md, plans/b.md, plans/c.md)"
    )


def test_a_plan_only_queued_is_known_with_its_pending_tasks(project: Path) -> None:
    seed_recent(project)
    store = StateStore.open(project / "state")
    with store.writing() as conn:
        conn.execute(
            "INSERT INTO queue (plan, task_id, position, enqueued_at, reason) VALUES (?, '9.1', 9, 0, 'pending')",
            ("plans/new.md",),
        )
    store.close()
    ran = orchestrator(project, "metrics", "--plan", "plans/new.md", "--json")
    assert (ran.code, ran.err) == (0, "")
    document = json.loads(ran.out)
    assert (document["plan"], document["finished"], document["pending"]) == ("plans/new.md", 0, 1)


@pytest.mark.parametrize("value", ["3x", "24", "yesterday", ""])
def test_a_bad_since_is_one_line_and_exit_2(project: Path, value: str) -> None:
    ran = orchestrator(project, "metrics", f"--since={value}")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err.splitlines()[-1] == (
        "orchestrator metrics: error: argument --since: expected a time span (90s, 30m, 24h, 7d) or an "
        f"ISO date/time (2026-11-23, 2026-11-23T14:00), not {value!r}"
    )


def test_no_state_is_one_line_and_an_empty_document(project: Path) -> None:
    message = f"orchestrator: no metrics: there is no state database in {project / 'state'} yet"
    ran = orchestrator(project, "metrics")
    assert (ran.code, ran.out, ran.err) == (0, "", message)
    as_json = orchestrator(project, "metrics", "--json")
    assert (as_json.code, as_json.err) == (0, message)
    document = json.loads(as_json.out)
    assert (document["finished"], document["tasks_by_status"], document["error_rate"]) == (0, {}, None)
    assert not (project / "state").exists()


def test_a_since_in_the_future_is_one_line_and_exit_2(project: Path) -> None:
    ran = orchestrator(project, "metrics", "--since", "2999-01-01", "--json")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err.splitlines()[-1] == (
        "orchestrator metrics: error: argument --since: '2999-01-01' is in the future: give a time "
        "before now, or a span such as 24h"
    )


def test_an_attempt_that_raised_is_finished_and_failed(tmp_path: Path) -> None:
    # `error` is what an attempt that raised records: its agent died, its sandbox went away.
    # The operator counts it among the finished and the failed, as the error rate's alarm must.
    now = time.time()
    store = StateStore.open(tmp_path)
    run = store.begin_run(now=now - HOUR)
    for status in ("completed", "error", "error", "completed"):
        attempt = store.start_attempt(run, PLAN_A, "1.1", now=now - 120)
        store.finish_attempt(attempt, status, now=now - 60)
    found = window(store.conn, now - HOUR, now)
    store.close()
    assert found.tasks_by_status == {"completed": 2, "error": 2}
    assert (found.finished, found.error_rate) == (4, 0.5)
