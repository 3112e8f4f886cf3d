"""The health document's `issues`, `metrics` and `critical` status, the health history, and the zombie check.

`pytest --orchestrator-health` runs in a subprocess over state databases seeded with real
SQLite through the stores the orchestrator itself writes with (crashes parsed from real logs,
bug reports filed by the desk). The Docker endpoint is a dead socket, except for the zombie
check, which runs against real containers: one whose PID 1 never reaps, one with an init.
"""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.crashes.bugs import BugDesk
from pytest_orchestrator.crashes.config import MonitorSpec
from pytest_orchestrator.crashes.model import Crash
from pytest_orchestrator.crashes.record import component_crash, task_crash
from pytest_orchestrator.crashes.store import CrashStore
from pytest_orchestrator.health.history import HealthHistory, HealthRow
from pytest_orchestrator.loop import LoopStore
from pytest_orchestrator.sandbox.zombies import describe, parse_stat
from pytest_orchestrator.state import StateStore
from tests.conftest import remount_read_only

HOUR = 3600.0
SECRET = "ghp_" + "Hm7Zq" * 8
IMPORT_LOG = textwrap.dedent(
    """\
    starting agent for task 1.1
    Traceback (most recent call last):
      File "/workspace/app/main.py", line 12, in run
        import foo
    ImportError: No module named 'foo'
    """
)


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def document(result: pytest.RunResult) -> dict[str, Any]:
    """stdout parsed as JSON: it must be the health document and nothing else."""
    return json.loads("\n".join(result.outlines))


def health(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    """`pytest --orchestrator-health` in its own process, as CI runs it."""
    result = pytester.runpytest_subprocess("--orchestrator-health", "-p", "no:cacheprovider", *args)
    everything = result.stdout.str() + result.stderr.str()
    assert SECRET not in everything
    assert "Traceback" not in result.stderr.str()
    return result, document(result)


def open_state(pytester: pytest.Pytester) -> StateStore:
    return StateStore.open(pytester.path / ".orchestrator")


def at(crash: Crash, when: float) -> Crash:
    crash.at = when
    return crash


def import_error(when: float, *, respawned: bool, task: str = "1.1") -> Crash:
    crash = task_crash(
        task,
        "plans/x.md",
        status="failed",
        error="agent exited 1",
        log=IMPORT_LOG,
        exit_code=1,
        workspace="/workspace",
        respawned=respawned,
    )
    return at(crash, when)


def oom(when: float, *, name: str = "web", pid: int = 4242) -> Crash:
    crash = component_crash(
        name,
        reason="exited",
        log="Killed",
        exit_code=137,
        pid=pid,
        oom_killed=True,
        respawned=True,
    )
    return at(crash, when)


@pytest.fixture(autouse=True)
def _clean(clean_env: None) -> None:
    """Nothing of the caller's orchestrator settings reaches the runs."""


# Docker unreachable, for every test but those that start containers.
no_docker = pytest.mark.usefixtures("dead_docker")


# ---- issues and metrics ----


@no_docker
def test_issues_and_metrics_come_from_the_state(pytester: pytest.Pytester) -> None:
    now = time.time()
    store = open_state(pytester)
    run = store.begin_run()
    store.start_attempt(run, "plans/x.md", "3.1", "Parser", now=now - 60)
    store.start_attempt(run, "plans/y.md", "1.1", "Lexer", now=now - 30)
    # Task 1.1 completed once, three hours ago; since then it crashes, respawned twice, then given up.
    done = store.start_attempt(run, "plans/x.md", "1.1", now=now - 3 * HOUR)
    store.finish_attempt(done, "completed", now=now - 3 * HOUR + 60)
    crashes = CrashStore(store)
    for when, respawned in ((now - 1800, True), (now - 1200, True), (now - 600, False)):
        crashes.record(import_error(when, respawned=respawned))
    # Task 2.1 crashed five hours ago, was respawned and then completed: a successful respawn.
    crashes.record(import_error(now - 5 * HOUR, respawned=True, task="2.1"))
    later = store.start_attempt(run, "plans/x.md", "2.1", now=now - 5 * HOUR + 10)
    store.finish_attempt(later, "completed", now=now - 5 * HOUR + 60)
    # Two days ago: outside every window.
    crashes.record(import_error(now - 48 * HOUR, respawned=True, task="9.9"))
    crashes.record(oom(now - 300))
    # Written as an older version might have, without the redaction the recorder applies now.
    crashes.record(
        Crash(
            kind="component",
            subject="mcp",
            at=now - 100,
            error_type="Exited",
            message=f"server exited: token {SECRET} refused",
            fingerprint="Exited:mcp",
            pid=977,
        )
    )
    desk = BugDesk(store, MonitorSpec(), pytester.path / ".orchestrator")
    bug = desk.consider(import_error(now, respawned=False).fingerprint)
    assert bug is not None and desk.file(bug) is not None
    loop = LoopStore(store)
    loop.started(30, now=now - 100)
    loop.beat(round=4, status="waiting", now=now - 12)
    store.heartbeat(run, now=now)
    store.close()

    result, doc = health(pytester, "--orchestrator-check", "orchestrator")

    assert (result.ret, doc["status"]) == (0, "healthy")
    assert doc["checks"]["orchestrator"]["status"] == "ok"
    metrics = doc["metrics"]
    age = metrics.pop("orchestrator_last_poll_age")
    assert 12 <= age < 12 + 60
    assert metrics == {
        "active_agents": 2,
        "crashed_agents_last_hour": 5,
        # Of the three respawned task crashes in a day, only 2.1's task completed afterwards.
        "respawn_success_rate": round(1 / 3, 4),
        "orchestrator_last_poll": iso(now - 12),
    }
    mcp, web, task = doc["issues"]
    assert mcp == {
        "type": "component_crash",
        "component": "mcp",
        "plan": None,
        "pid": 977,
        "error": "Exited: server exited: token *** refused",
        "action_taken": "none",
        "bug_reported": False,
        "bug_number": None,
        "count": 1,
        "last_seen": iso(now - 100),
    }
    assert web["type"] == "component_crash"
    assert (web["component"], web["pid"], web["action_taken"]) == ("web", 4242, "restarted")
    assert web["error"].startswith("OOMKilled: ")
    assert (web["count"], web["last_seen"], web["bug_reported"]) == (1, iso(now - 300), False)
    assert task["type"] == "agent_crash"
    assert (task["task"], task["plan"], task["pid"]) == ("1.1", "plans/x.md", None)
    assert task["error"].startswith(
        "ImportError: No module named 'foo' (at /workspace/app/main.py:12 in run)"
    )
    # The latest crash was the last attempt: nothing was done about it but the report.
    assert task["action_taken"] == "none"
    assert (task["bug_reported"], task["bug_number"]) == (True, 1)
    assert (task["count"], task["last_seen"]) == (3, iso(now - 600))

    # The sections are the orchestrator check's: a run about the sandbox alone has neither.
    result, doc = health(pytester, "-m", "sandbox")
    assert "issues" not in doc and "metrics" not in doc
    assert doc["status"] == "unhealthy"


@no_docker
def test_no_state_is_no_news(pytester: pytest.Pytester) -> None:
    result, doc = health(pytester, "-k", "orchestrator")
    assert (result.ret, doc["status"], doc["issues"]) == (0, "healthy", [])
    assert doc["metrics"] == {
        "active_agents": 0,
        "crashed_agents_last_hour": 0,
        "respawn_success_rate": None,
        "orchestrator_last_poll": None,
        "orchestrator_last_poll_age": None,
    }
    # A health run reads the state; it does not create one.
    assert not (pytester.path / ".orchestrator").exists()
    result.stderr.fnmatch_lines(["orchestrator: health history not recorded: no state database in *"])


# ---- critical ----


@no_docker
def test_a_frozen_loop_is_critical(pytester: pytest.Pytester) -> None:
    now = time.time()
    store = open_state(pytester)
    loop = LoopStore(store)
    loop.started(30, now=now - 1000)
    loop.beat(round=7, status="running", now=now - 400)
    desk = BugDesk(store, MonitorSpec(), pytester.path / ".orchestrator")
    bug = desk.freeze("the loop", "no poll for 400s")
    assert bug is not None and desk.file(bug) is not None
    store.close()

    result, doc = health(pytester, "-k", "orchestrator")

    assert (result.ret, doc["status"]) == (1, "critical")
    check = doc["checks"]["orchestrator"]
    assert check["status"] == "failed"
    assert check["message"].startswith("orchestrator loop frozen: no poll for 40")
    assert f"(threshold 300s) while running in round 7, pid {os.getpid()} on " in check["message"]
    (issue,) = doc["issues"]
    assert issue["error"].startswith("orchestrator loop frozen: no poll for 40")
    assert {k: v for k, v in issue.items() if k != "error"} == {
        "type": "orchestrator_freeze",
        "component": "loop",
        "plan": None,
        "pid": os.getpid(),
        "action_taken": "none",
        "bug_reported": True,
        "bug_number": 1,
        "count": 1,
        "last_seen": iso(now - 400),
    }
    assert doc["metrics"]["orchestrator_last_poll"] == iso(now - 400)
    result.stderr.fnmatch_lines(["orchestrator: critical: orchestrator loop frozen: no poll for 40*"])

    # The threshold is the freeze_threshold setting.
    result, doc = health(pytester, "-k", "orchestrator", "--orchestrator-freeze-threshold", "600")
    assert (result.ret, doc["status"], doc["issues"]) == (0, "healthy", [])

    # A loop that stopped polls no more, and is not frozen.
    store = open_state(pytester)
    LoopStore(store).stopped()
    store.close()
    result, doc = health(pytester, "-k", "orchestrator")
    assert (result.ret, doc["status"], doc["issues"]) == (0, "healthy", [])


@no_docker
def test_more_than_ten_crashes_an_hour_is_critical(pytester: pytest.Pytester) -> None:
    now = time.time()
    store = open_state(pytester)
    crashes = CrashStore(store)
    for n in range(11):
        crashes.record(oom(now - 60 - n * 60, pid=1000 + n))
    # An hour and more ago: not counted.
    for n in range(5):
        crashes.record(oom(now - HOUR - 60 - n * 60))
    store.close()

    result, doc = health(pytester, "-k", "orchestrator")
    assert (result.ret, doc["status"]) == (1, "critical")
    # Every check passed: the status is the monitor's.
    assert doc["checks"]["orchestrator"]["status"] == "ok"
    assert doc["metrics"]["crashed_agents_last_hour"] == 11
    (issue,) = doc["issues"]
    assert (issue["type"], issue["count"], issue["pid"]) == ("component_crash", 11, 1000)
    result.stderr.fnmatch_lines(["orchestrator: critical: 11 crashes in the last hour, more than 10"])

    # Critical outranks unhealthy (the sandbox check fails on the dead socket).
    result, doc = health(pytester)
    assert doc["checks"]["sandbox"]["status"] == "failed"
    assert (result.ret, doc["status"]) == (1, "critical")

    # The limit is the config file's monitor.critical_crashes_per_hour: 11 is not more than 11.
    (pytester.path / "orchestrator.yaml").write_text("monitor:\n  critical_crashes_per_hour: 11\n")
    result, doc = health(pytester, "-k", "orchestrator")
    assert (result.ret, doc["status"]) == (0, "healthy")
    assert doc["metrics"]["crashed_agents_last_hour"] == 11


@no_docker
def test_a_bad_monitor_section_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "orchestrator.yaml").write_text("monitor:\n  critical_crashes_per_hour: many\n")
    result = pytester.runpytest_subprocess("--orchestrator-health")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: *orchestrator.yaml:2*critical_crashes_per_hour must be a whole number*"]
    )
    assert result.outlines == [] or not "".join(result.outlines).strip().startswith("{")


# ---- the health history ----


def history_rows(state: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(state / "state.db")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM health_checks ORDER BY id")]
    finally:
        conn.close()


@no_docker
def test_each_health_run_appends_one_history_row(pytester: pytest.Pytester) -> None:
    now = time.time()
    state = pytester.path / ".orchestrator"
    store = open_state(pytester)
    run = store.begin_run()
    store.start_attempt(run, "plans/x.md", "3.1", now=now - 60)
    store.heartbeat(run, now=now)
    crashes = CrashStore(store)
    for when in (now - 900, now - 600, now - 300):
        crashes.record(import_error(when, respawned=True))
    desk = BugDesk(store, MonitorSpec(), state)
    bug = desk.consider(import_error(now, respawned=False).fingerprint)
    assert bug is not None and desk.file(bug) is not None
    LoopStore(store).started(30, now=now - 45)
    store.close()

    _, first = health(pytester, "-k", "orchestrator")
    _, second = health(pytester, "-k", "orchestrator or sandbox or zombies")
    rows = history_rows(state)
    assert len(rows) == 2
    for row, doc in zip(rows, (first, second), strict=True):
        assert row["at"] == pytest.approx(datetime.fromisoformat(doc["timestamp"]).timestamp())
        assert (row["source"], row["status"]) == ("health", doc["status"])
        assert json.loads(row["checks"]) == {name: c["status"] for name, c in doc["checks"].items()}
        assert (row["active_agents"], row["crashed_agents"]) == (1, 3)
        assert 45 <= row["last_poll_age"] < 45 + 60
        assert (json.loads(row["actions"]), json.loads(row["bugs_reported"])) == ([], [1])
    assert json.loads(rows[0]["checks"]) == {"orchestrator": "ok"}
    assert json.loads(rows[1]["checks"]) == {
        "sandbox": "failed",
        "orchestrator": "ok",
        "zombies": "skipped",
    }
    assert (rows[0]["status"], rows[1]["status"]) == ("healthy", "unhealthy")
    # The zombie check was skipped with the sandbox down: nothing was counted.
    assert rows[1]["zombie_processes"] is None

    # Under xdist only the controller writes; a run that checks nothing writes nothing.
    health(pytester, "-k", "orchestrator", "-n", "2")
    assert len(history_rows(state)) == 3
    pytester.runpytest_subprocess("--orchestrator-health", "--collect-only")
    pytester.runpytest_subprocess("--orchestrator-health", "--orchestrator-check", "bogus")
    assert len(history_rows(state)) == 3
    latest = HealthHistory(StateStore.read(state) or pytest.fail("no state")).latest("health")
    assert latest is not None and latest.id == history_rows(state)[-1]["id"]


@no_docker
def test_a_health_run_deletes_the_history_older_than_the_retention(pytester: pytest.Pytester) -> None:
    """`orchestrator serve` runs the checks on each /healthz scrape: without a watchdog, nothing else prunes."""
    now = time.time()
    state = pytester.path / ".orchestrator"
    store = open_state(pytester)
    history = HealthHistory(store)
    for age_days in (30, 9, 6):
        history.record(HealthRow(at=now - age_days * 86_400, source="health", status="healthy"))
    store.close()

    health(pytester, "-k", "orchestrator")
    ages = sorted(round((now - row["at"]) / 86_400) for row in history_rows(state))
    # The default retention, 7 days: the rows of 30 and 9 days ago went, this run's row came.
    assert ages == [0, 6]

    (pytester.path / "orchestrator.yaml").write_text("monitor:\n  retention_days: 3\n")
    health(pytester, "-k", "orchestrator")
    assert sorted(round((now - row["at"]) / 86_400) for row in history_rows(state)) == [0, 0]


@no_docker
def test_a_read_only_state_still_gives_the_document(pytester: pytest.Pytester, tmpfs: Any) -> None:
    now = time.time()
    state = tmpfs("2m")
    store = StateStore.open(state)
    CrashStore(store).record(oom(now - 120))
    LoopStore(store).started(30, now=now - 20)
    store.close()
    # WAL leftovers are folded back on close: the mount holds the database alone.
    assert sorted(p.name for p in state.iterdir()) == ["state.db"]
    remount_read_only(state)

    result, doc = health(pytester, "-k", "orchestrator", "--orchestrator-state-dir", str(state))

    assert (result.ret, doc["status"]) == (0, "healthy")
    assert doc["metrics"]["crashed_agents_last_hour"] == 1
    assert doc["metrics"]["orchestrator_last_poll"] == iso(now - 20)
    assert [i["component"] for i in doc["issues"]] == ["web"]
    result.stderr.fnmatch_lines(
        ["orchestrator: warning: health history not recorded: cannot open state database *"]
    )


def test_a_watchdog_round_is_recorded_once_a_minute_while_nothing_changes(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    history = HealthHistory(store)
    t0 = 1_800_000_000.0
    ok = HealthRow(at=t0, source="watchdog", status="healthy", checks={"sandbox": "healthy"})

    assert history.record_round(ok, now=t0) is not None
    # The same a few seconds later: skipped.
    assert history.record_round(replace(ok, at=t0 + 5), now=t0 + 5) is None
    # A change is written at once, and so is its recovery.
    sick = replace(ok, at=t0 + 10, status="unhealthy", checks={"sandbox": "unhealthy"})
    assert history.record_round(sick, now=t0 + 10) is not None
    assert history.record_round(replace(ok, at=t0 + 15), now=t0 + 15) is not None
    # A round that acted is written, whatever the status.
    acted = replace(ok, at=t0 + 20, actions=("restarted sandbox",))
    assert history.record_round(acted, now=t0 + 20) is not None
    # Another source's rows do not count; a health run is always recorded.
    assert history.record(replace(ok, at=t0 + 25, source="health")) > 0
    assert history.record_round(replace(ok, at=t0 + 30), now=t0 + 30) is None
    # A minute after the last watchdog row, the same again.
    assert history.record_round(replace(ok, at=t0 + 80), now=t0 + 80) is not None

    rows = store.conn.execute("SELECT at, source, status, actions FROM health_checks ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [
        (t0, "watchdog", "healthy", "[]"),
        (t0 + 10, "watchdog", "unhealthy", "[]"),
        (t0 + 15, "watchdog", "healthy", "[]"),
        (t0 + 20, "watchdog", "healthy", '["restarted sandbox"]'),
        (t0 + 25, "health", "healthy", "[]"),
        (t0 + 80, "watchdog", "healthy", "[]"),
    ]
    latest = history.latest("watchdog")
    assert latest is not None and (latest.at, latest.checks) == (t0 + 80, {"sandbox": "healthy"})
    assert history.latest("health") == replace(ok, at=t0 + 25, source="health", id=5)
    store.close()


# ---- zombies in the sandbox ----


@pytest.mark.parametrize(
    ("init", "command", "count", "advice"),
    [
        # PID 1 is `sleep`, which reaps nothing: the background sleep ends as a zombie.
        (
            False,
            "sleep 0.1 & exec sleep 1000",
            1,
            "children of pid 1 (sleep): its PID 1 does not reap orphans",
        ),
        # The orphan of a subshell goes to PID 1, here docker-init, which reaps it.
        (True, "(sleep 0.1 &); exec sleep 1000", 0, None),
        # An init reaps orphans only: a live parent that never waits keeps its zombie.
        (True, "sleep 0.1 & exec sleep 1000", 1, "which never waited for them"),
    ],
    ids=["no-init", "init", "init-but-a-parent-never-waits"],
)
def test_defunct_processes_in_the_sandbox_degrade_the_health(
    pytester: pytest.Pytester,
    make_sandbox: Callable[..., Any],
    init: bool,
    command: str,
    count: int,
    advice: str | None,
) -> None:
    sandbox = make_sandbox(command=["sh", "-c", command], init=init)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = sandbox.exec_run(["sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null"]).output.decode()
        if count == 0 or " Z " in found:
            break
        time.sleep(0.1)
    time.sleep(0.3)  # the background sleep has ended, reaped or not
    open_state(pytester).close()

    result, doc = health(
        pytester, "--orchestrator-sandbox", sandbox.name, "-k", "sandbox or zombies or orchestrator"
    )

    check = doc["checks"]["zombies"]
    assert check["level"] == "warning"
    assert check["metrics"] == {"zombie_processes": count}
    assert doc["metrics"]["zombie_processes"] == count
    (row,) = history_rows(pytester.path / ".orchestrator")
    assert row["zombie_processes"] == count
    if count == 0:
        assert (result.ret, doc["status"], check["status"]) == (0, "healthy", "ok")
        assert check["message"] == f"no defunct processes in sandbox '{sandbox.name}'"
        assert doc["issues"] == []
        return
    # A warning: degraded, and exit 0.
    assert (result.ret, doc["status"], check["status"]) == (0, "degraded", "failed")
    assert check["message"].startswith(
        f"1 defunct (zombie) process in sandbox '{sandbox.name}', children of pid "
    )
    assert advice in check["message"]
    assert "`docker run --init ...`" in check["message"]
    (issue,) = doc["issues"]
    assert issue == {
        "type": "zombie_processes",
        "component": sandbox.name,
        "plan": None,
        "pid": None,
        "error": check["message"],
        "action_taken": "none",
        "bug_reported": False,
        "bug_number": None,
        "count": 1,
        "last_seen": issue["last_seen"],
    }
    assert datetime.fromisoformat(issue["last_seen"]) <= datetime.now(UTC)
    # Selected by its own name, as every check is.
    _, doc = health(pytester, "--orchestrator-sandbox", sandbox.name, "--orchestrator-check", "zombies")
    assert list(doc["checks"]) == ["zombies"]
    assert doc["checks"]["zombies"]["metrics"] == {"zombie_processes": 1}


def test_proc_stat_names_may_hold_spaces_and_parentheses() -> None:
    text = "1 (sleep) S 0 1 1 0 -1\n7 (my (odd) name) Z 1 1 1 0\n12 (sh) S 0 12\ngarbage\n"
    found = parse_stat(text)
    assert [(p.pid, p.name, p.state, p.ppid) for p in found] == [
        (1, "sleep", "S", 0),
        (7, "my (odd) name", "Z", 1),
        (12, "sh", "S", 0),
    ]
    count, message = describe(found, "box")
    assert count == 1
    assert message.startswith("1 defunct (zombie) process in sandbox 'box', children of pid 1 (sleep): ")
