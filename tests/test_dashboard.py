"""`orchestrator dashboard` over a real state database with known rows, run as the operator runs it.

The rows are written through the stores the orchestrator itself uses. This test process plays
the live run, loop and watchdog (alive on this host, with fresh heartbeats). Every command runs
in a subprocess with `-X importtime`, which must show no pytest module.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.health.history import HealthRow, record
from pytest_orchestrator.loop import RUNNING, LoopStore, QueueRow, QueueStore
from pytest_orchestrator.priority import QueueSpec, score
from pytest_orchestrator.result import Usage
from pytest_orchestrator.state import StateStore
from pytest_orchestrator.state.components import ComponentRow, ComponentStore
from pytest_orchestrator.views.dashboard import snapshot
from tests.test_views import SECRET, Ran, _dead_pid, _env, _imported, orchestrator

# Finished attempts, oldest first: (plan, task, status, ended this long ago, duration, cost).
FINISHED = [
    ("plans/old.md", "9.9", "completed", 3 * 3600, 50, 0.01),
    ("plans/old.md", "9.8", "failed", 2 * 3600, 70, 0.02),
    ("plans/alpha.md", "1.1", "completed", 3000, 125, 0.41),
    ("plans/alpha.md", "1.2", "failed", 2700, 61, 0.12),
    ("plans/alpha.md", "1.3", "completed", 2400, 300, 1.05),
    ("plans/beta.md", "1.1", "completed", 2100, 42, 0.07),
    ("plans/beta.md", "1.2", "timeout", 1800, 900, 2.50),
    ("plans/alpha.md", "1.4", "completed", 1500, 95, 0.33),
    ("plans/alpha.md", "1.5", "completed", 1200, 80, 0.29),
    ("plans/beta.md", "1.3", "completed", 900, 33, 0.05),
    ("plans/beta.md", "1.4", "interrupted", 600, 12, 0.01),
    ("plans/alpha.md", "1.6", "completed", 300, 150, 0.52),
]
# In the last hour: ten finished, seven completed, one failed and one timed out (failures), one interrupted.
LAST_HOUR = FINISHED[2:]
QUEUED = [f"3.{n}" for n in range(1, 8)]


def seed(state_dir: Path) -> dict[str, Any]:
    """A state with all a frame shows: what was written, for the expectations."""
    now = time.time()
    store = StateStore.open(state_dir)
    run = store.begin_run("dashboard-test", now=now - 4000)
    for n, (plan, task, status, ago, duration, cost) in enumerate(FINISHED):
        attempt = store.start_attempt(run, plan, task, f"Task {task}", now=now - ago - duration)
        store.finish_attempt(
            attempt,
            status,
            input_tokens=1000 * (n + 1),
            output_tokens=100,
            cost_usd=cost,
            num_turns=3,
            error=f"it broke: {SECRET}" if status == "failed" else None,
            now=now - ago,
        )
    parser = store.start_attempt(run, "plans/gamma.md", "2.1", "Add the parser", worker="gw0", now=now - 125)
    store.attempt_progress(parser, 3, Usage(input_tokens=4000, output_tokens=200))
    docs = store.start_attempt(run, "plans/gamma.md", "2.2", "Write the docs", worker="gw1", now=now - 40)
    store.attempt_progress(docs, 1, Usage(input_tokens=700, output_tokens=100))
    store.heartbeat(run, "gw0", now=now - 2)
    store.heartbeat(run, "gw1", now=now - 1)

    queue = QueueStore(store)
    rows = [QueueRow("plans/gamma.md", "2.1", "Add the parser", "P1", 0, now, RUNNING)]
    rows += [
        QueueRow("plans/delta.md", task, f"Queued {task}", "P2", n, now, "not yet reached")
        for n, task in enumerate(QUEUED, 1)
    ]
    queue.replace(["plans/gamma.md", "plans/delta.md"], rows, now=now - 600)
    queue.wait("plans/delta.md", "3.1", "blocked by 2.1 (running)")

    loop = LoopStore(store)
    loop.started(poll_interval=30, now=now - 7200)
    loop.beat(round=7, status="waiting", now=now - 3)

    components = ComponentStore(store)
    components.started("orchestrator.yaml", period=10)
    components.save(
        ComponentRow(
            "sandbox", "container", "RUNNING", "healthy", container="box", restarts=2, started_at=now
        )
    )
    components.save(ComponentRow("mcp", "process", "BACKOFF", "unknown", restarts=1, message="exit 3"))
    record(
        store,
        HealthRow(
            at=now - 30, source="watchdog", status="degraded", checks={"sandbox": "ok", "disk": "warn"}
        ),
    )
    store.close()
    return {"now": now, "run": run, "pid": os.getpid()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose state directory is `state/`."""
    (tmp_path / "pytest.ini").write_text("[pytest]\norchestrator_state_dir = state\n")
    return tmp_path


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


# The attempt started 40 s before the seed; the command reads it a few seconds later on a
# loaded machine.
ELAPSED_40S = re.compile(r"[45]\ds")


def _row(lines: list[str], *cells: str | re.Pattern[str]) -> str:
    """The one table line holding all of `cells` (text, or a pattern), in order."""
    pattern = re.compile(r"\W+".join(c.pattern if isinstance(c, re.Pattern) else re.escape(c) for c in cells))
    found = [line for line in lines if pattern.search(line)]
    assert len(found) == 1, (cells, found)
    return found[0]


def test_one_frame_shows_the_known_state(project: Path) -> None:
    seeded = seed(project / "state")
    ran = orchestrator(project, "dashboard", "--once")
    assert (ran.code, ran.err) == (0, "")
    assert "\033[" not in ran.out  # piped: no colour
    assert SECRET not in ran.out
    lines = _lines(ran.out)
    assert lines[0].startswith("Orchestrator: RUNNING")
    assert f"  the loop is waiting (round 7, pid {seeded['pid']})" in lines
    assert "  the watchdog keeps 2 component(s)" in lines
    assert "  1 task run(s) in progress" in lines
    text = "\n".join(lines)
    assert re.search(r"^Loop\s+waiting, last poll [3-9]s ago, round 7$", text, re.M)
    assert re.search(r"^Health\s+degraded \(watchdog, 3\ds ago, not ok: disk\)$", text, re.M)
    assert re.search(rf"^Watchdog\s+running \(pid {seeded['pid']}, up \d+s\)$", text, re.M)
    # The last hour, in the metrics' terms: throughput counts completions, the error rate failures
    # (failed or timed out) among the finished attempts.
    assert re.search(
        r"^Last hour\s+10 finished \(7 completed, 2 failed\), 7\.0 tasks/h, error rate 20\.0%$", text, re.M
    )
    # The components, as `orchestrator status` reads them.
    _row(lines, "mcp", "BACKOFF", "unknown", "1", "exit 3")
    _row(lines, "sandbox", "RUNNING", "healthy", "2")
    # Active tasks: plan, task, title, worker, elapsed, turns and tokens so far.
    assert "Active tasks (2)" in ran.out
    _row(lines, "plans/gamma.md", "2.1", "Add the parser", "gw0", "2m", "3", "4.2k")
    _row(lines, "plans/gamma.md", "2.2", "Write the docs", "gw1", ELAPSED_40S, "1", "800")
    # The head of the queue, in dispatch order; the running task is not pending.
    assert "Queue (first 5 of 7 pending)" in ran.out
    # Its score, the level's points and the age boost of ten minutes (`orchestrator queue`'s).
    points = f"P2 ({score('P2', 600, QueueSpec()):.0f})"
    blocked = _row(
        lines, "1", "plans/delta.md", "3.1", "Queued 3.1", points, "10m", "blocked by 2.1 (running)"
    )
    assert blocked.endswith("│ -                   │")  # a blocked task has no estimate
    for n, task in enumerate(QUEUED[1:5], 2):
        line = _row(lines, str(n), "plans/delta.md", task, f"Queued {task}", points, "10m", "not yet reached")
        assert re.search(r"\d\d:\d\d:\d\d - \d\d:\d\d:\d\d", line)
    assert "3.6" not in ran.out and "3.7" not in ran.out
    # The last ten attempts, newest first, with status, duration, tokens and cost.
    assert "Latest 10 attempts" in ran.out
    shown = [line for line in lines if re.match(r"^\W*\d\d:\d\d:\d\d ", line)]
    assert len(shown) == 10
    for line, (plan, task, status, _, duration, cost) in zip(shown, reversed(LAST_HOUR), strict=True):
        assert re.search(
            rf"{plan}\W+{re.escape(task)}\W+{status}\W+{_span(duration)}\W+.*\${cost:.2f}\W*$", line
        )
    assert "plans/old.md" not in ran.out


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _span(seconds: int) -> str:
    return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m"


def test_json_gives_the_frames_data(project: Path) -> None:
    seeded = seed(project / "state")
    ran = orchestrator(project, "dashboard", "--json")
    assert (ran.code, ran.err) == (0, "")
    document = json.loads(ran.out)
    assert SECRET not in ran.out
    assert document["state"] == "running"
    assert document["loop"]["status"] == "waiting" and document["loop"]["round"] == 7
    assert document["health"]["status"] == "degraded"
    assert document["health"]["checks"] == {"sandbox": "ok", "disk": "warn"}
    assert [c["name"] for c in document["watchdog"]["components"]] == ["mcp", "sandbox"]
    active = document["active"]
    assert [(a["task_id"], a["worker"], a["num_turns"], a["tokens"]) for a in active] == [
        ("2.1", "gw0", 3, 4200),
        ("2.2", "gw1", 1, 800),
    ]
    assert active[0]["elapsed"] == pytest.approx(125, abs=5)
    assert active[0]["run_id"] == seeded["run"] and not active[0]["stale"]
    assert document["last_hour"] == {
        "window": 3600.0,
        "finished": 10,
        "completed": 7,
        "failed": 2,
        "throughput_per_hour": pytest.approx(7.0),
        "error_rate": pytest.approx(0.2),
    }
    assert document["queue"]["depth"] == 7
    head = document["queue"]["head"]
    assert [q["task_id"] for q in head] == QUEUED[:5]
    assert head[0]["waited"] == pytest.approx(600, abs=5)
    assert [q["score"] for q in head] == pytest.approx([score("P2", 600, QueueSpec())] * 5, abs=0.1)
    # The estimate: the average latency of the last 24 hours, one task after another in the plan
    # (`orchestrator queue`'s); the blocked task has none.
    latency = sum(d for *_, d, _ in FINISHED) / len(FINISHED)
    assert head[0]["eta_start"] is None and head[0]["eta_done"] is None
    starts = [_epoch(q["eta_start"]) for q in head[1:]]
    dones = [_epoch(q["eta_done"]) for q in head[1:]]
    assert [d - s for s, d in zip(starts, dones, strict=True)] == pytest.approx([latency] * 4, abs=0.01)
    assert starts[1:] == pytest.approx(dones[:-1], abs=0.01)
    finished = document["finished"]
    assert [(f["task_id"], f["status"]) for f in finished] == [(t, s) for _, t, s, *_ in reversed(LAST_HOUR)]
    assert [f["duration"] for f in finished] == pytest.approx([d for *_, d, _ in reversed(LAST_HOUR)])
    assert [f["cost_usd"] for f in finished] == pytest.approx([c for *_, c in reversed(LAST_HOUR)])
    failed = next(f for f in finished if f["status"] == "failed")
    assert failed["error"] == "it broke: ***"
    # The JSON and the frame come from one snapshot: the same document the web page gets.
    store = StateStore.read(project / "state")
    assert store is not None
    try:
        direct = snapshot(store, time.time()).as_dict()
    finally:
        store.close()
    assert direct.keys() == document.keys()
    assert direct["finished"] == [dict(f, ended_at=f["ended_at"]) for f in finished]


def test_a_dead_loop_and_a_stale_attempt_are_errors(project: Path) -> None:
    seed(project / "state")
    store = StateStore.open(project / "state")
    dead = _dead_pid()
    store.conn.execute("UPDATE loop SET pid = ?", (dead,))
    store.conn.execute("UPDATE heartbeats SET at = at - 1000 WHERE worker = 'gw1'")
    store.close()
    ran = orchestrator(project, "dashboard", "--once")
    assert ran.code == 0
    lines = _lines(ran.out)
    assert lines[0].startswith("Orchestrator: ERROR")
    assert f"  the loop (pid {dead}) is gone without recording its stop" in lines
    assert "  attempt(s) without a heartbeat for over 300s: 2.2 (plans/gamma.md)" in lines
    _row(lines, "2.2", "Write the docs", "gw1", ELAPSED_40S, "(no heartbeat)")
    document = json.loads(orchestrator(project, "dashboard", "--json").out)
    assert document["state"] == "error"
    assert [a["stale"] for a in document["active"]] == [False, True]


def test_everything_stopped_is_stopped(project: Path) -> None:
    state = project / "state"
    store = StateStore.open(state)
    run = store.begin_run("k")
    attempt = store.start_attempt(run, "plans/a.md", "1.1", "One")
    store.finish_attempt(attempt, "completed", cost_usd=0.25)
    store.end_run(run, "finished")
    LoopStore(store).started(poll_interval=5)
    LoopStore(store).stopped()
    store.close()
    ran = orchestrator(project, "dashboard", "--once")
    lines = _lines(ran.out)
    assert lines[0].startswith("Orchestrator: STOPPED")
    assert "  nothing is running" in lines
    assert "Active tasks: none" in lines and "Queue: empty" in lines
    _row(lines, "plans/a.md", "1.1", "completed", "0s", "0", "$0.25")


def test_no_state_is_one_clear_line_and_creates_nothing(project: Path) -> None:
    ran = orchestrator(project, "dashboard", "--once")
    assert (ran.code, ran.err) == (0, "")
    assert (
        _lines(ran.out)[1]
        == "  no orchestrator state here yet: run a plan (`pytest plans/`) or start the loop"
    )
    document = json.loads(orchestrator(project, "dashboard", "--json").out)
    assert (document["has_state"], document["state"], document["active"]) == (False, "stopped", [])
    assert not (project / "state").exists()


def test_bad_input_is_one_line_and_exit_2(project: Path) -> None:
    ran = orchestrator(project, "dashboard", "--refresh", "0")
    assert ran.code == 2
    assert ran.err.splitlines()[-1] == (
        "orchestrator dashboard: error: argument --refresh: expected a number of seconds > 0, not '0'"
    )
    (project / "orchestrator.yaml").write_text("dashboard:\n  refresh: soon\n")
    ran = orchestrator(project, "dashboard", "--once")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err == "orchestrator: orchestrator.yaml:2: refresh must be a number, not 'soon'"
    (project / "orchestrator.yaml").write_text("dashboard:\n  refrsh: 2\n")
    assert orchestrator(project, "dashboard", "--once").err == (
        "orchestrator: orchestrator.yaml:2: unknown key 'refrsh' (did you mean 'refresh'?)"
    )


def test_an_unreadable_state_is_one_line(project: Path) -> None:
    (project / "state").mkdir()
    (project / "state" / "state.db").write_text("not a database, but long enough to have a header" * 10)
    ran = orchestrator(project, "dashboard", "--once")
    assert ran.code == 1
    assert ran.err.startswith("orchestrator: cannot read state database ") and "\n" not in ran.err
    assert ran.err.endswith("state.db: file is not a database")


def test_reading_never_writes_the_state(project: Path) -> None:
    seed(project / "state")
    database = project / "state" / "state.db"
    before = (database.read_bytes(), database.stat().st_mtime_ns)
    assert orchestrator(project, "dashboard", "--once").code == 0
    assert orchestrator(project, "dashboard", "--json").code == 0
    assert (database.read_bytes(), database.stat().st_mtime_ns) == before
    # SQLite gives a reader of a WAL database an empty log to look at, nothing more.
    wal = project / "state" / "state.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


class _Screen:
    """`orchestrator dashboard` on a pseudo-terminal, its output collected as it comes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        leader, follower = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest_orchestrator", "dashboard", *args],
            cwd=cwd,
            env=_env({"COLUMNS": "160", "LINES": "60", "TERM": "xterm-256color"}),
            stdin=follower,
            stdout=follower,
            stderr=subprocess.PIPE,
        )
        os.close(follower)
        self.leader = leader
        self.output = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.leader, 65536)
            except OSError:  # EIO: the other side closed
                return
            if not chunk:
                return
            self.output += chunk

    def wait_for(self, count: int, marker: bytes, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.output.count(marker) < count:
            assert time.monotonic() < deadline, self.output.decode(errors="replace")[-2000:]
            time.sleep(0.05)

    def interrupt(self) -> Ran:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=10)
        self.reader.join(timeout=5)
        os.close(self.leader)
        assert self.process.stderr is not None
        return Ran(code, self.output.decode(errors="replace"), self.process.stderr.read().decode())


def test_the_live_screen_redraws_in_colour_and_ctrl_c_exits_0(project: Path) -> None:
    seed(project / "state")
    screen = _Screen(project, "--refresh", "0.3")
    try:
        # A frame per refresh: the header is drawn again each time.
        screen.wait_for(3, b"Orchestrator: ")
    finally:
        ran = screen.interrupt()
    assert (ran.code, ran.err) == (0, "")
    assert "\033[?1049h" in ran.out and "\033[?1049l" in ran.out  # the full screen, given back
    assert re.search(r"\033\[[0-9;]*32m" + re.escape("RUNNING"), ran.out)  # green running
    assert re.search(r"\033\[[0-9;]*33m" + re.escape("3.1"), ran.out)  # yellow pending
    assert re.search(r"\033\[[0-9;]*31m" + re.escape("failed"), ran.out)  # red error
    assert "every 0.3s (Ctrl-C ends)" in ran.out


def test_without_a_terminal_it_prints_a_frame_per_refresh_from_the_config_file(project: Path) -> None:
    seed(project / "state")
    (project / "orchestrator.yaml").write_text("dashboard:\n  refresh: 0.2\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_orchestrator", "dashboard"],
        cwd=project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    frames: list[float] = []
    for line in process.stdout:
        if line.startswith(b"Orchestrator: RUNNING"):
            frames.append(time.monotonic())
        if len(frames) == 4:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert (process.returncode, err) == (0, b"")
    assert len(frames) == 4
    # Three refreshes of 0.2 s and their frames: far less than one of the default 5 s.
    assert frames[-1] - frames[0] < 4.5
    assert b"\033[" not in out


SNAPSHOT = """
import json, time
from pathlib import Path
from pytest_orchestrator.state import StateStore
from pytest_orchestrator.views.dashboard import snapshot
print(json.dumps(snapshot(StateStore.read(Path("state")), time.time()).as_dict()))
"""


def test_rich_is_imported_by_the_dashboard_command_only(project: Path) -> None:
    seed(project / "state")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", SNAPSHOT],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules, _ = _imported(done.stderr)
    assert json.loads(done.stdout)["state"] == "running"
    assert "pytest_orchestrator.views.dashboard" in modules and "pytest_orchestrator.metrics" in modules
    # The web page renders the same snapshot: it pays for neither rich nor pytest.
    assert not [m for m in modules if m.split(".")[0] in ("rich", "pytest", "_pytest", "pluggy")]
    assert "rich" not in _modules(project, "status")
    assert "rich" in _modules(project, "dashboard", "--once")


def _modules(project: Path, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pytest_orchestrator", *args],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules, _ = _imported(done.stderr)
    assert modules
    return {m.split(".")[0] for m in modules}
