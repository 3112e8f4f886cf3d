"""The queue: priority levels and the age boost, dispatch by plan score (with and without -n), and
`orchestrator queue` over a state with known rows.

The runs are real pytest sessions with the scripted agent of test_runs (no Docker, no Claude)
on a real SQLite state; the view runs as the operator runs it, in a subprocess that must never
import pytest (test_views' runner).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_orchestrator.config_file import ConfigFileError, load
from pytest_orchestrator.loop import RUNNING, QueueRow, QueueStore, queue_spec
from pytest_orchestrator.loop.due import NOT_YET
from pytest_orchestrator.priority import (
    Pending,
    QueueSpec,
    age_boost,
    base_score,
    grouped,
    level,
    plan_order,
    score,
)
from pytest_orchestrator.state import StateStore
from tests.test_runs import dispatched, plan_of, project, script, write_plan
from tests.test_views import _env, orchestrator

__all__ = ["project"]

HOUR = 3600.0


# ---- levels and scores ----


def test_one_ordering_p1_highest_and_the_words_map_onto_it() -> None:
    assert [level(v) for v in ("P1", "high", "p2", "Medium", "P3", "LOW", "P4")] == [
        "P1", "P1", "P2", "P2", "P3", "P3", "P4",
    ]  # fmt: skip
    scores = [base_score(v) for v in ("P1", "P2", "P3", "P4")]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4
    # No level counts as medium, the level of ordinary work.
    assert base_score(None) == base_score("P2")
    # A queue recorded before levels holds words.
    assert [base_score(w) for w in ("high", "medium", "low")] == scores[:3]
    assert [level(v) for v in ("P5", "soon", "", "very high")] == [None] * 4


def test_the_age_boost_grows_with_the_wait_at_its_rate_up_to_its_cap() -> None:
    spec = QueueSpec(age_boost_per_hour=12.0, age_boost_cap=30.0)
    assert age_boost(0.0, spec) == 0.0
    assert age_boost(-5.0, spec) == 0.0  # a clock step back never lowers a task
    assert age_boost(1.5 * HOUR, spec) == pytest.approx(18.0)
    assert age_boost(2.5 * HOUR, spec) == 30.0
    assert age_boost(100 * HOUR, spec) == 30.0
    assert score("P3", 1.5 * HOUR, spec) == pytest.approx(base_score("P3") + 18.0)
    assert score(None, 0.0, spec) == base_score("P2")


def test_an_old_task_rises_above_a_fresh_one_of_the_level_above_only_past_the_gap() -> None:
    now = 1_000_000.0
    step = base_score("P1") - base_score("P2")
    fresh_p1 = Pending("plans/new.md", "1", "P1", now)
    spec = QueueSpec(age_boost_per_hour=step / 10, age_boost_cap=step * 2)
    # Nine hours: still below; eleven hours: above.
    assert plan_order([fresh_p1, Pending("plans/old.md", "1", "P2", now - 9 * HOUR)], now, spec) == [
        "plans/new.md",
        "plans/old.md",
    ]
    assert plan_order([fresh_p1, Pending("plans/old.md", "1", "P2", now - 11 * HOUR)], now, spec) == [
        "plans/old.md",
        "plans/new.md",
    ]
    # With the default cap of one level, an old P2 task only ties with a fresh P1 one, and the
    # tie goes to the task that waited longer.
    assert plan_order([fresh_p1, Pending("plans/old.md", "1", "P2", now - 50 * HOUR)], now, QueueSpec()) == [
        "plans/old.md",
        "plans/new.md",
    ]


def test_the_plan_holding_the_best_task_goes_first_and_keeps_its_own_order() -> None:
    now = 5_000.0
    tasks = [
        Pending("plans/a.md", "1", "P3", now),
        Pending("plans/a.md", "2", "P1", now),
        Pending("plans/b.md", "1", "P2", now),
        Pending("plans/c.md", "1", "P2", now),
    ]
    order = plan_order(tasks, now, QueueSpec())
    # b and c tie: the plan met first goes first.
    assert order == ["plans/a.md", "plans/b.md", "plans/c.md"]
    items = [("plans/c.md", "1"), ("plans/a.md", "1"), ("plans/b.md", "1"), ("plans/a.md", "2")]
    assert grouped(items, lambda item: item[0], ["plans/b.md", "plans/a.md"]) == [
        ("plans/b.md", "1"),
        ("plans/a.md", "1"),
        ("plans/a.md", "2"),
        ("plans/c.md", "1"),  # a plan not in the order keeps its place after the others
    ]


# ---- the config section ----


def _spec(tmp_path: Path, text: str) -> QueueSpec:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(text, encoding="utf-8")
    return queue_spec(load(path, {}))


def test_the_queue_section_sets_the_rate_and_cap(tmp_path: Path) -> None:
    assert _spec(tmp_path, "queue:\n  age_boost_per_hour: 2.5\n  age_boost_cap: 40\n") == QueueSpec(2.5, 40.0)
    assert _spec(tmp_path, "freeze_threshold: 10\n") == QueueSpec()
    assert queue_spec(None) == QueueSpec()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "queue:\n  age_boost_per_hour: 1\n  age_boost_cap: -3\n",
            "orchestrator.yaml:3: age_boost_cap must be a finite number >= 0, not -3",
        ),
        (
            "queue:\n  age_boost_per_hour: fast\n",
            "orchestrator.yaml:2: age_boost_per_hour must be a number, not 'fast'",
        ),
        (
            "queue:\n  age_boost_rate: 1\n",
            "orchestrator.yaml:2: unknown key 'age_boost_rate' (did you mean 'age_boost_cap'?)",
        ),
        ("queue: 3\n", "orchestrator.yaml:1: queue must be a mapping"),
    ],
)
def test_a_bad_queue_section_is_one_line_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        _spec(tmp_path, text)
    assert str(caught.value) == message


# ---- dispatch follows the score, on real runs ----


def _plan(name: str, tasks: int, plan_label: str | None = None, labels: dict[int, str] | None = None) -> str:
    head = f"# {name}\n\n" + (f"**Priority:** {plan_label}\n\n" if plan_label else "")
    body = ""
    for n in range(1, tasks + 1):
        label = (labels or {}).get(n)
        body += f"## Task {n}: {name} {n}\n\nDo it.\n\n" + (f"**Priority:** {label}\n\n" if label else "")
    return head + body


def _plans(project: pytest.Pytester) -> None:
    """a: no level (P2); b: the plan says P4; c: its first task low, its second P1."""
    (project.path / "plans" / "x.md").unlink()
    write_plan(project, "a.md", _plan("a", 2))
    write_plan(project, "b.md", _plan("b", 1, "P4"))
    write_plan(project, "c.md", _plan("c", 2, labels={1: "low", 2: "P1"}))


def test_without_n_the_plan_holding_the_best_task_runs_first_in_its_own_order(
    project: pytest.Pytester,
) -> None:
    _plans(project)
    result = project.runpytest("plans")
    result.assert_outcomes(passed=5)
    assert [key for key, _ in dispatched(project)] == [
        "plans/c.md::1",  # its P1 task lifts the plan; the plan's order keeps its low task first
        "plans/c.md::2",
        "plans/a.md::1",
        "plans/a.md::2",
        "plans/b.md::1",
    ]


def test_an_old_queued_task_rises_by_its_age_boost(project: pytest.Pytester) -> None:
    _plans(project)
    (project.path / "orchestrator.yaml").write_text(
        "queue:\n  age_boost_per_hour: 10\n  age_boost_cap: 250\n", encoding="utf-8"
    )
    # b's task has waited 30 hours: P4 (100) + 250 (capped) = 350, above a's 300, below c's 400.
    store = StateStore.open(project.path / ".orchestrator")
    QueueStore(store).replace(
        ["plans/b.md"],
        [QueueRow("plans/b.md", "1", "b 1", "P4", 0, 0.0, NOT_YET)],
        now=time.time() - 30 * HOUR,
    )
    store.close()
    project.runpytest("plans").assert_outcomes(passed=5)
    assert [key for key, _ in dispatched(project)] == [
        "plans/c.md::1",
        "plans/c.md::2",
        "plans/b.md::1",
        "plans/a.md::1",
        "plans/a.md::2",
    ]


def test_with_n_higher_priority_plans_are_handed_to_the_workers_first(project: pytest.Pytester) -> None:
    (project.path / "plans" / "x.md").unlink()
    # Collected a, b, c, d; by level d, c, b, a. The largest plan is the lowest one: xdist's own
    # reordering (largest scope first) would hand it out first.
    write_plan(project, "a.md", _plan("a", 4, "P4"))
    write_plan(project, "b.md", _plan("b", 2, "P3"))
    write_plan(project, "c.md", _plan("c", 3, "P2"))
    write_plan(project, "d.md", _plan("d", 2, "P1"))
    script(
        project,
        {
            **{f"plans/d.md::{n}": [{"sleep": 0.1}] for n in (1, 2)},
            **{f"plans/c.md::{n}": [{"sleep": 1.0}] for n in (1, 2, 3)},
            "plans/a.md::4": [{"status": "failed", "error": "tests fail"}],
        },
    )
    result = project.runpytest_subprocess("plans", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=10, failed=1)
    order = [key for key, _ in dispatched(project)]
    workers = dict(dispatched(project))
    # Each worker's first task is of one of the two highest plans. (Not the run's first two
    # tasks: one worker may start late and find the other already done with d.)
    firsts: dict[str, str] = {}
    for key, worker in dispatched(project):
        firsts.setdefault(worker, key)
    assert set(firsts.values()) == {"plans/d.md::1", "plans/c.md::1"}
    # b is handed out before a, to the worker that finished d while c still ran.
    assert order.index("plans/b.md::1") < order.index("plans/a.md::1")
    for plan, count in (("a", 4), ("b", 2), ("c", 3), ("d", 2)):
        mine = [key for key in order if key.startswith(f"plans/{plan}.md")]
        assert mine == [f"plans/{plan}.md::{n}" for n in range(1, count + 1)]
        assert len({workers[key] for key in mine}) == 1
    # The run recorded the queue (no loop needed) and took each task out when it completed.
    store = StateStore.read(project.path / ".orchestrator")
    assert store is not None
    pending = QueueStore(store).pending()
    store.close()
    assert [(r.plan, r.task_id, r.priority, r.reason) for r in pending] == [
        ("plans/a.md", "4", "P4", "failed: tests fail")
    ]


# Between the first worker's collection and the second's, another run (of the same plans, started
# at the same minute) writes the queue: here it is the second worker that ages plan b's tasks by
# 30 hours, once the first has recorded the queue.
ANOTHER_RUN = """

import sqlite3 as _sqlite3
import time as _time

import pytest as _pytest


@_pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw1":
        db = str(session.config.rootpath / ".orchestrator" / "state.db")
        deadline = _time.monotonic() + 60
        while _time.monotonic() < deadline:
            try:
                conn = _sqlite3.connect(db, timeout=30)
                try:
                    found = conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
                    if found:
                        with conn:
                            conn.execute(
                                "UPDATE queue SET enqueued_at = enqueued_at - 30 * 3600 "
                                "WHERE plan = 'plans/b.md'"
                            )
                        (session.config.rootpath / "aged").write_text(str(found))
                        break
                finally:
                    conn.close()
            except _sqlite3.OperationalError:
                pass
            _time.sleep(0.05)
    return (yield)
"""


def test_with_n_every_worker_orders_the_plans_alike_while_another_run_writes_the_queue(
    project: pytest.Pytester,
) -> None:
    (project.path / "plans" / "x.md").unlink()
    write_plan(project, "a.md", _plan("a", 2))
    write_plan(project, "b.md", _plan("b", 2))
    conftest = project.path / "conftest.py"
    conftest.write_text(conftest.read_text() + ANOTHER_RUN)
    result = project.runpytest_subprocess("plans", "-n", "2", "-p", "no:cacheprovider")
    assert (project.path / "aged").exists()
    # Read by each worker, the aged rows put b first in the second worker only: xdist refused
    # the run ("Different tests were collected between gw0 and gw1").
    assert "Different tests were collected" not in result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=4)
    for plan in ("a", "b"):
        mine = [key for key, _ in dispatched(project) if key.startswith(f"plans/{plan}.md")]
        assert mine == [f"plans/{plan}.md::1", f"plans/{plan}.md::2"]


# ---- `orchestrator queue` ----


def _seed(project: Path) -> float:
    """Queue rows, finished attempts (in and out of the 24h window) and one running; the seeding time."""
    now = time.time()
    store = StateStore.open(project / "state")
    queue = QueueStore(store)
    rows = [
        # plan, task, priority, waited, reason
        ("plans/a.md", "1", "P3", 5 * HOUR, NOT_YET),
        ("plans/a.md", "2", "P1", 5 * HOUR, NOT_YET),
        ("plans/b.md", "1", "P2", 10 * HOUR, NOT_YET),
        ("plans/c.md", "1", None, 1 * HOUR, "budget reached: $5.00 of $5.00"),
        ("plans/c.md", "2", "P1", 0.5 * HOUR, "blocked by 1"),
        ("plans/d.md", "1", "P4", 2 * HOUR, RUNNING),
    ]
    # Plans recorded in another order than the view's (it orders them by score), each plan's tasks
    # in plan order.
    recorded = sorted(rows, key=lambda row: (-ord(row[0][-4]), row[1]))
    for position, (plan, task, priority, waited, reason) in enumerate(recorded):
        queue.replace(
            [], [QueueRow(plan, task, f"{plan} {task}", priority, position, 0.0, reason)], now - waited
        )
    with store.writing() as conn:
        conn.execute(
            "INSERT INTO runs (id, started_at, status, run_key) VALUES (1, ?, 'finished', 'k1')",
            (now - 9000,),
        )
        conn.execute(
            "INSERT INTO runs (id, started_at, status, run_key) VALUES (2, ?, 'running', 'k2')", (now - 60,)
        )
        attempts = [
            # run, plan, task, started, ended, worker
            (1, "plans/z.md", "1", now - 3000, now - 2900, "gw0"),  # 100 s
            (1, "plans/z.md", "2", now - 3000, now - 2800, "gw1"),  # 200 s
            (1, "plans/y.md", "1", now - 2000, now - 1700, "gw0"),  # 300 s
            (1, "plans/w.md", "1", now - 30 * HOUR, now - 30 * HOUR + 5000, "gw2"),  # outside 24h
            (2, "plans/d.md", "1", now - 50, None, "main"),  # running
        ]
        conn.executemany(
            "INSERT INTO attempts (run_id, plan, task_id, started_at, ended_at, status, worker) "
            "VALUES (?, ?, ?, ?, ?, CASE WHEN ? IS NULL THEN 'running' ELSE 'completed' END, ?)",
            [(r, p, t, s, e, e, w) for r, p, t, s, e, w in attempts],
        )
    store.close()
    return now


@pytest.fixture
def state_project(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\norchestrator_state_dir = state\n")
    (tmp_path / "orchestrator.yaml").write_text("queue:\n  age_boost_per_hour: 20\n  age_boost_cap: 150\n")
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "a.md").write_text(
        "# A\n\n## Task 1: a one\n\nParse the input.\n\n**Files:** `src/parse.py`\n\n"
        "## Task 2: a two\n\nStore it.\n\n**Priority:** P1\n"
    )
    return tmp_path


def test_queue_json_gives_the_dispatch_order_scores_waits_and_etas(state_project: Path) -> None:
    seeded = _seed(state_project)
    ran = orchestrator(state_project, "queue", "--json")
    assert (ran.code, ran.err) == (0, "")
    doc = json.loads(ran.out)
    now = doc["now"]
    assert seeded <= now <= seeded + 60
    # Attempts that ended in the last 24 hours: (100 + 200 + 300) / 3; the busiest run used 2 workers.
    latency = 200.0
    assert doc["average_latency"] == pytest.approx(latency)
    assert doc["workers"] == 2
    tasks = doc["tasks"]
    # Scores: base (P1 400, P2 300, P3 200, P4 100) + min(150, 20 an hour).
    # a: max(200 + 100, 400 + 100) = 500; b: 300 + min(150, 200) = 450; c: max(300 + 20, 400 + 10) = 410.
    assert [(t["plan"], t["task_id"]) for t in tasks] == [
        ("plans/a.md", "1"),
        ("plans/a.md", "2"),
        ("plans/b.md", "1"),
        ("plans/c.md", "1"),
        ("plans/c.md", "2"),
    ]
    waited = [now - seeded + w for w in (5 * HOUR, 5 * HOUR, 10 * HOUR, 1 * HOUR, 0.5 * HOUR)]
    assert [t["waited"] for t in tasks] == pytest.approx(waited, abs=1e-3)
    expected_scores = [200 + 20 * waited[0] / HOUR, 400 + 20 * waited[1] / HOUR, 450.0]
    expected_scores += [300 + 20 * waited[3] / HOUR, 400 + 20 * waited[4] / HOUR]
    assert [t["score"] for t in tasks] == pytest.approx(expected_scores, abs=1e-3)
    assert [t["priority"] for t in tasks] == ["P3", "P1", "P2", None, "P1"]
    assert [t["reason"] for t in tasks] == [
        NOT_YET,
        NOT_YET,
        NOT_YET,
        "budget reached: $5.00 of $5.00",
        "blocked by 1",
    ]
    # d's task runs on one worker since 50 s: it ends at its start + 200. a takes the free worker
    # now, its two tasks one after the other; b the worker d frees; c is held back (budget, blocked).
    d_done = seeded - 50 + latency
    etas = [(t["eta_start"], t["eta_done"]) for t in tasks]
    assert etas[0] == pytest.approx((now, now + latency), abs=1e-3)
    assert etas[1] == pytest.approx((now + latency, now + 2 * latency), abs=1e-3)
    assert etas[2] == pytest.approx((d_done, d_done + latency), abs=1e-3)
    assert etas[3:] == [(None, None), (None, None)]
    assert [(t["plan"], t["task_id"], t["eta_done"]) for t in doc["running"]] == [
        ("plans/d.md", "1", pytest.approx(d_done, abs=1e-3))
    ]
    assert "description" not in tasks[0]


def test_queue_verbose_adds_description_and_files_and_tolerates_a_vanished_plan(state_project: Path) -> None:
    _seed(state_project)
    doc = json.loads(orchestrator(state_project, "queue", "--json", "--verbose").out)
    details = {(t["plan"], t["task_id"]): (t["description"], t["files"]) for t in doc["tasks"]}
    assert details[("plans/a.md", "1")] == ("Parse the input.", ["src/parse.py"])
    assert details[("plans/a.md", "2")] == ("Store it.", [])
    assert details[("plans/b.md", "1")] == (None, [])  # no such plan file any more
    ran = orchestrator(state_project, "queue", "--verbose")
    assert ran.code == 0
    assert "files: src/parse.py" in ran.out and "| Parse the input." in ran.out
    assert "plan file not found or unreadable" in ran.out


def test_queue_text_lists_the_tasks_in_dispatch_order(state_project: Path) -> None:
    _seed(state_project)
    ran = orchestrator(state_project, "queue")
    assert (ran.code, ran.err) == (0, "")
    lines = ran.out.splitlines()
    assert lines[0].startswith("5 pending, 1 running  (estimate: 3m a task on 2 workers)")
    assert "plans/d.md 1" in lines[1] and "running" in lines[1]
    assert lines[2].split()[:9] == ["#", "PLAN", "TASK", "PRI", "SCORE", "WAITED", "START", "DONE", "REASON"]
    table = [line.split() for line in lines[3:]]
    assert [(cells[1], cells[2], cells[3]) for cells in table] == [
        ("plans/a.md", "1", "P3"),
        ("plans/a.md", "2", "P1"),
        ("plans/b.md", "1", "P2"),
        ("plans/c.md", "1", "-"),
        ("plans/c.md", "2", "P1"),
    ]
    assert table[2][4] == "450.0" and table[2][5] == "10h" and " ".join(table[4][8:]) == "blocked by 1"


def test_a_task_whose_run_stopped_beating_is_shown_stale_and_holds_no_worker(state_project: Path) -> None:
    seeded = _seed(state_project)
    store = StateStore.open(state_project / "state")
    QueueStore(store).replace(
        [], [QueueRow("plans/e.md", "1", "plans/e.md 1", None, 9, 0.0, RUNNING)], seeded - HOUR
    )
    with store.writing() as conn:
        # d's run was SIGKILLed two hours ago; e's attempt is as old, but its run beats on.
        conn.execute("UPDATE attempts SET started_at = ? WHERE plan = 'plans/d.md'", (seeded - 2 * HOUR,))
        conn.execute(
            "INSERT INTO attempts (run_id, plan, task_id, started_at, status, worker) "
            "VALUES (2, 'plans/e.md', '1', ?, 'running', 'gw1')",
            (seeded - 2 * HOUR,),
        )
        conn.execute("INSERT INTO heartbeats (run_id, worker, at) VALUES (2, 'gw1', ?)", (seeded - 5,))
    store.close()

    doc = json.loads(orchestrator(state_project, "queue", "--json").out)
    running = {t["plan"]: t for t in doc["running"]}
    assert [running["plans/d.md"]["stale"], running["plans/e.md"]["stale"]] == [True, False]
    assert running["plans/d.md"]["reason"].startswith("no heartbeat for 2h")
    assert running["plans/d.md"]["reason"].endswith(
        ": its run was killed or froze; the next run dispatches it again"
    )
    assert running["plans/d.md"]["eta_done"] is None
    assert running["plans/e.md"]["eta_done"] == pytest.approx(doc["now"], abs=1)  # overdue: ends now

    text = orchestrator(state_project, "queue").out.splitlines()
    assert text[0].startswith("5 pending, 2 running")
    stale = next(line for line in text if "plans/d.md 1" in line)
    assert "no heartbeat for 2h" in stale and "running" not in stale.split("plans/d.md 1", 1)[1][:12]


def test_queue_without_state_says_so_and_a_bad_section_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\norchestrator_state_dir = state\n")
    ran = orchestrator(tmp_path, "queue")
    assert (ran.code, ran.out) == (0, "")
    assert ran.err.strip().startswith("orchestrator: no state here yet")
    assert len(ran.err.strip().splitlines()) == 1
    ran = orchestrator(tmp_path, "queue", "--json")
    assert ran.code == 0 and ran.err.strip().startswith("orchestrator: no state here yet")
    empty = json.loads(ran.out)
    assert (empty["tasks"], empty["running"], empty["depth"], empty["average_latency"]) == ([], [], 0, None)
    (tmp_path / "orchestrator.yaml").write_text("queue:\n  age_boost_cap: lots\n")
    ran = orchestrator(tmp_path, "queue", "--json")
    assert ran.code == 2
    assert ran.err.strip() == "orchestrator: orchestrator.yaml:2: age_boost_cap must be a number, not 'lots'"


def _watch(state_project: Path, *args: str) -> tuple[bytes, bytes]:
    """What `queue --watch` printed in about 1.5 s, stopped with Ctrl-C; it must exit 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_orchestrator", "queue", "--watch", "--interval", "0.2", *args],
        cwd=state_project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    return out, err


def test_queue_watch_refreshes_in_place_and_ctrl_c_exits_0(state_project: Path) -> None:
    _seed(state_project)
    out, err = _watch(state_project)
    frames = out.decode().split("\033[H\033[2J")
    assert frames[0] == "" and len(frames) >= 3
    assert all(frame.startswith("5 pending, 1 running") for frame in frames[1:-1])
    assert b"Traceback" not in err


def test_queue_watch_json_prints_one_document_a_line(state_project: Path) -> None:
    _seed(state_project)
    out, err = _watch(state_project, "--json")
    lines = out.decode().splitlines()
    assert len(lines) >= 2 and b"\033" not in out
    assert all(json.loads(line)["depth"] == 5 for line in lines)


def test_a_dry_run_shows_the_order_a_run_would_take(project: pytest.Pytester) -> None:
    _plans(project)
    result = project.runpytest("plans", "--orchestrator-dry-run", "-v")
    shown = [line.split()[0] for line in result.outlines if line.startswith("plans/") and "SKIPPED" in line]
    assert shown == ["plans/c.md::1", "plans/c.md::2", "plans/a.md::1", "plans/a.md::2", "plans/b.md::1"]
    assert dispatched(project) == []


# ---- what a run leaves in the queue ----

RAISING_AGENT = """
from pytest_orchestrator.result import TaskResult


def pytest_orchestrator_dispatch(task, sandbox, config):
    if task.id == "1.1":
        raise RuntimeError("the agent blew up")
    return TaskResult(task.id, "failed", error="push refused for TOKEN_PLACEHOLDER")
"""


def test_a_dispatch_that_raised_leaves_its_task_pending_and_no_secret_anywhere(
    project: pytest.Pytester,
) -> None:
    # A token-shaped string the agent hook puts in its error: masked without being in our env.
    token = "ghp_" + "Q7" * 18
    project.makeconftest(RAISING_AGENT.replace("TOKEN_PLACEHOLDER", token))
    write_plan(project, "y.md", plan_of(2, ["Push it"]))
    result = project.runpytest("plans/x.md::1.1", "plans/y.md::2.1")
    assert result.parseoutcomes()["failed"] == 2
    assert token not in result.stdout.str()
    state = project.path / ".orchestrator"
    store = StateStore.read(state)
    assert store is not None
    try:
        errors = [r[0] for r in store.conn.execute("SELECT error FROM attempts ORDER BY id")]
        reasons = dict(store.conn.execute("SELECT task_id, reason FROM queue").fetchall())
    finally:
        store.close()
    assert errors == ["RuntimeError: the agent blew up", "push refused for ***"]
    # The task whose agent raised waits again, with why; nothing is left running.
    assert reasons["1.1"] == "error: RuntimeError: the agent blew up"
    assert reasons["2.1"] == "failed: push refused for ***"
    ran = orchestrator(project.path, "queue", "--json")
    assert ran.code == 0 and token not in ran.out
    document = json.loads(ran.out)
    assert document["running"] == []
    assert {t["task_id"] for t in document["tasks"]} >= {"1.1", "2.1"}


def test_the_rows_of_a_deleted_or_renamed_plan_leave_the_queue_at_the_next_run(
    project: pytest.Pytester,
) -> None:
    project.makeconftest(
        "from pytest_orchestrator.result import TaskResult\n\n\n"
        "def pytest_orchestrator_dispatch(task, sandbox, config):\n"
        "    return TaskResult(task.id, 'failed', error='not today')\n"
    )
    write_plan(project, "y.md", plan_of(2, ["Push it"]))
    write_plan(project, "z.md", plan_of(3, ["Tag it"]))
    write_plan(project, "w.md", plan_of(4, ["Wait"]))
    # A plan named from outside the project: its key is not a path under the project root.
    elsewhere = project.path.parent / f"{project.path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "o.md").write_text(plan_of(5, ["Outside"]), encoding="utf-8")
    project.runpytest("plans", str(elsewhere / "o.md"))

    def queued() -> set[str]:
        store = StateStore.read(project.path / ".orchestrator")
        assert store is not None
        try:
            return {str(r[0]) for r in store.conn.execute("SELECT DISTINCT plan FROM queue")}
        finally:
            store.close()

    everything = {"plans/w.md", "plans/x.md", "plans/y.md", "plans/z.md", "o.md"}
    assert queued() == everything
    (project.path / "plans" / "y.md").unlink()
    (project.path / "plans" / "z.md").rename(project.path / "plans" / "tags.md")
    # Collecting only queues what it found (tags.md), and forgets nothing.
    project.runpytest("plans", "--collect-only")
    assert queued() == everything | {"plans/tags.md"}
    # One task of x, named alone, from the plans directory: the plans left out of the run that
    # are still there keep their rows, the outside one too; the two gone are forgotten.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project.path / "plans")
        project.runpytest("x.md::1.1", "--rootdir", str(project.path))
    assert queued() == {"plans/w.md", "plans/x.md", "plans/tags.md", "o.md"}
    store = StateStore.read(project.path / ".orchestrator")
    assert store is not None
    try:
        x_tasks = {
            str(r[0]) for r in store.conn.execute("SELECT task_id FROM queue WHERE plan = 'plans/x.md'")
        }
    finally:
        store.close()
    # x's other tasks, not named in that run, are still queued.
    assert x_tasks == {"1.1", "1.2", "1.3"}
    project.runpytest("plans")
    assert queued() == {"plans/w.md", "plans/x.md", "plans/tags.md", "o.md"}
    # The outside plan is gone: there is no telling from this project, its rows stay.
    (elsewhere / "o.md").unlink()
    project.runpytest("plans")
    assert "o.md" in queued()
    # The project moved (a CI cache restored elsewhere): every path it recorded is gone, but
    # they are not this project's paths any more, so nothing is forgotten.
    moved = project.path.parent / f"{project.path.name}-moved"
    shutil.copytree(project.path, moved)
    shutil.rmtree(project.path / "plans")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(moved)
        project.runpytest("plans/x.md::1.1", "--rootdir", str(moved))
        store = StateStore.read(moved / ".orchestrator")
        assert store is not None
        try:
            rows = {(str(r[0]), str(r[1])) for r in store.conn.execute("SELECT plan, task_id FROM queue")}
        finally:
            store.close()
    assert {plan for plan, _ in rows} == {"plans/w.md", "plans/x.md", "plans/tags.md", "o.md"}
    assert {task for plan, task in rows if plan == "plans/x.md"} == {"1.1", "1.2", "1.3"}


def test_the_rows_of_the_last_plan_go_when_it_is_deleted(project: pytest.Pytester) -> None:
    project.makeconftest(
        "from pytest_orchestrator.result import TaskResult\n\n\n"
        "def pytest_orchestrator_dispatch(task, sandbox, config):\n"
        "    return TaskResult(task.id, 'failed', error='not today')\n"
    )
    project.runpytest("plans")
    state = project.path / ".orchestrator"

    def queued() -> list[str]:
        store = StateStore.read(state)
        assert store is not None
        try:
            return [str(r[0]) for r in store.conn.execute("SELECT task_id FROM queue ORDER BY task_id")]
        finally:
            store.close()

    assert queued() == ["1.1", "1.2", "1.3"]
    (project.path / "plans" / "x.md").unlink()
    project.runpytest("plans", "--collect-only")
    assert queued() == ["1.1", "1.2", "1.3"]
    project.runpytest("plans")
    assert queued() == []
    # A project without a state database gets none from a run that found no plan.
    shutil.rmtree(state)
    project.runpytest("plans")
    assert not state.exists()
