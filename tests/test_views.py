"""`orchestrator status` and `orchestrator logs`, run as the operator runs them, against state built by hand.

Every command runs in a subprocess with `-X importtime`, and every run checks that pytest
was never imported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.state import StateStore
from pytest_orchestrator.state.components import ComponentRow, ComponentStore, ProbeRow

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-ant-api03-" + "Vi3wsKey" * 5
PYTEST_MODULES = ("pytest", "_pytest", "pluggy", "xdist")


@dataclass
class Ran:
    code: int
    out: str
    err: str


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORCHESTRATOR_", "OTEL_")) and k not in ("NO_COLOR", "FORCE_COLOR", "PYTHONPATH")
    }
    env.update(PYTHONPATH=str(REPO), TZ="UTC", COLUMNS="200")
    env.update(extra or {})
    return env


def _imported(stderr: str) -> tuple[list[str], str]:
    """The modules `-X importtime` reported, and the rest of stderr."""
    modules, rest = [], []
    for line in stderr.splitlines():
        if line.startswith("import time:"):
            modules.append(line.rsplit("|", 1)[-1].strip())
        else:
            rest.append(line)
    return modules, "\n".join(rest)


def _assert_no_pytest(modules: list[str]) -> None:
    assert modules, "importtime reported nothing"
    assert not [m for m in modules if m.split(".")[0] in PYTEST_MODULES]


def orchestrator(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Ran:
    """Run `orchestrator ARGS` in `cwd`; pytest must never be imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pytest_orchestrator", *args],
        cwd=cwd,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    modules, err = _imported(done.stderr)
    _assert_no_pytest(modules)
    return Ran(done.returncode, done.stdout, err)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose state directory is `state/`."""
    (tmp_path / "pytest.ini").write_text("[pytest]\norchestrator_state_dir = state\n")
    return tmp_path


def _store(project: Path) -> ComponentStore:
    return ComponentStore(StateStore.open(project / "state"))


def _live_watchdog(rows: ComponentStore, up: float = 8100) -> None:
    # This test process is the watchdog: alive on this host, with a fresh heartbeat.
    rows.started("orchestrator.yaml")
    rows.store.conn.execute("UPDATE watchdog SET started_at = ?", (time.time() - up,))


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


SANDBOX = ComponentRow(
    "sandbox",
    "container",
    "RUNNING",
    "healthy",
    container="orchestrator-sandbox",
    restarts=2,
    last_restart_reason="liveness failed 3 times: exit 1",
)


def _healthy(rows: ComponentStore) -> None:
    now = time.time()
    rows.save(dataclasses.replace(SANDBOX, started_at=now - 8040, last_restart_at=now - 300))
    rows.save(ComponentRow("mcp", "process", "RUNNING", "healthy", pid=4321, started_at=now - 125))
    rows.save_probe(ProbeRow("sandbox", "liveness", "container", True, "running", 0.012, now - 3, 5, 0))
    rows.save_probe(ProbeRow("sandbox", "readiness", "exec", True, f"ok {SECRET}", 0.2, now - 4, 1, 0))
    rows.save_probe(ProbeRow("mcp", "startup", "http", None))
    rows.save_probe(ProbeRow("sandbox", "startup", "exec", True, "exit 0", 0.05, now - 100, 1, 0))


# ---- status ----


def test_status_shows_the_watchdog_and_a_block_per_component(project: Path) -> None:
    rows = _store(project)
    _live_watchdog(rows)
    _healthy(rows)
    ran = orchestrator(project, "status")
    assert (ran.code, ran.err) == (0, "")
    expected = [
        "Orchestrator Status:",
        "─" * 37,
        f"Watchdog: ✓ Running (pid {os.getpid()}, up 2h 15m)",
        "",
        "mcp:",
        "  Status:    ✓ Running",
        "  Health:    ✓ Healthy",
        "  PID:       4321",
        "  Uptime:    2m",
        "  Restarts:  0",
        "",
        "sandbox:",
        "  Status:    ✓ Running",
        "  Health:    ✓ Healthy",
        "  Container: orchestrator-sandbox",
        "  Uptime:    2h 14m",
        "  Restarts:  2 (last 5m ago: liveness failed 3 times: exit 1)",
    ]
    assert ran.out.splitlines() == expected
    assert "\033[" not in ran.out  # piped: no colour


def test_verbose_adds_each_probes_last_result_and_counters_with_secrets_masked(project: Path) -> None:
    rows = _store(project)
    _live_watchdog(rows)
    _healthy(rows)
    ran = orchestrator(project, "status", "--verbose")
    assert ran.code == 0
    lines = ran.out.splitlines()
    at = re.compile(r"at \d\d:\d\d:\d\d")
    probes = [at.sub("at HH:MM:SS", line) for line in lines if line.startswith("    ")]
    assert probes == [
        "    startup  http  ? not run  -  -  successes 0/1  failures 0/3",
        "    startup    exec       ✓ ok  50 ms   at HH:MM:SS  successes 1/1  failures 0/3  exit 0",
        "    liveness   container  ✓ ok  12 ms   at HH:MM:SS  successes 5/1  failures 0/3  running",
        "    readiness  exec       ✓ ok  200 ms  at HH:MM:SS  successes 1/1  failures 0/3  ok ***",
    ]
    assert lines.count("  Probes:") == 2
    assert SECRET not in ran.out


def test_json_is_one_document_and_the_status_gates_the_exit(project: Path) -> None:
    rows = _store(project)
    _live_watchdog(rows)
    _healthy(rows)
    healthy = orchestrator(project, "status", "--json")
    document = json.loads(healthy.out)
    assert (healthy.code, document["status"]) == (0, "healthy")
    assert document["watchdog"]["running"] is True
    assert document["watchdog"]["pid"] == os.getpid()
    sandbox = document["components"][1]
    assert sandbox["name"] == "sandbox" and sandbox["status"] == "RUNNING" and sandbox["restarts"] == 2
    assert [p["role"] for p in sandbox["probes"]] == ["startup", "liveness", "readiness"]
    assert sandbox["probes"][2]["message"] == "ok ***"
    assert SECRET not in healthy.out

    rows.save(ComponentRow("mcp", "process", "BACKOFF", "unknown", restarts=1, next_start_at=time.time() + 9))
    degraded = orchestrator(project, "status", "--json")
    assert (degraded.code, json.loads(degraded.out)["status"]) == (1, "degraded")
    assert re.search(
        r"  Status:    ⟳ Restarting \(next start in [1-9]s\)\n", orchestrator(project, "status").out
    )

    rows.save(ComponentRow("mcp", "process", "FATAL", "unhealthy", message=f"gave up: {SECRET}"))
    unhealthy = orchestrator(project, "status")
    assert unhealthy.code == 1
    assert "  Status:    ✗ FATAL" in unhealthy.out
    assert "  Health:    ✗ Unhealthy" in unhealthy.out
    assert "  Message:   gave up: ***" in unhealthy.out
    assert json.loads(orchestrator(project, "status", "--json").out)["status"] == "unhealthy"


@pytest.mark.parametrize("how", ["dead pid", "stale heartbeat", "stopped"])
def test_without_a_live_watchdog_the_rows_are_shown_as_last_recorded(project: Path, how: str) -> None:
    rows = _store(project)
    _live_watchdog(rows)
    _healthy(rows)
    if how == "dead pid":
        rows.store.conn.execute("UPDATE watchdog SET pid = ?", (_dead_pid(),))
        reason = "process gone"
    elif how == "stale heartbeat":
        rows.store.conn.execute("UPDATE watchdog SET heartbeat_at = ?", (time.time() - 95,))
        reason = "no heartbeat for 1m"
    else:
        rows.stopped()
        reason = ""
    ran = orchestrator(project, "status")
    assert ran.code == 1
    lines = ran.out.splitlines()
    watchdog = lines[2]
    assert watchdog.startswith("Watchdog: ✗ Not running")
    assert watchdog.endswith(f": {reason})") if reason else watchdog == "Watchdog: ✗ Not running"
    assert re.fullmatch(
        r"sandbox: \(as last recorded at \d\d:\d\d:\d\d\)", next(x for x in lines if x.startswith("sandbox:"))
    )
    document = json.loads(orchestrator(project, "status", "--json").out)
    assert document["status"] == "unhealthy"
    assert all(c["as_last_recorded"] for c in document["components"])


def test_no_state_at_all_says_how_to_start_the_watchdog(project: Path) -> None:
    message = "orchestrator: no watchdog has run here: start it with `orchestrator up`"
    ran = orchestrator(project, "status")
    assert (ran.code, ran.out, ran.err) == (1, "", message)
    assert not (project / "state").exists()  # read-only: nothing created
    as_json = orchestrator(project, "status", "--json")
    assert json.loads(as_json.out) == {"watchdog": None, "components": [], "status": "unhealthy"}
    assert (as_json.code, as_json.err) == (1, message)
    # A state database that task runs wrote, without any watchdog row, is no watchdog either.
    StateStore.open(project / "state").close()
    assert orchestrator(project, "status").err == message


def test_a_bad_setting_is_one_line_and_exit_2(project: Path) -> None:
    (project / "orchestrator.yaml").write_text("docker_timeout: soon\n")
    ran = orchestrator(project, "status")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err == (
        "orchestrator: invalid docker timeout 'soon' from orchestrator.yaml:1: expected a finite number > 0"
    )
    assert orchestrator(project, "status", "--config", "missing.yaml").err == (
        "orchestrator: config file missing.yaml from --config not found"
    )


def _on_a_terminal(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_orchestrator", *args],
        cwd=cwd,
        env=_env(env),
        stdout=follower,
        stderr=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(project: Path) -> None:
    rows = _store(project)
    _live_watchdog(rows)
    _healthy(rows)
    coloured = _on_a_terminal(project, "status")
    assert "\033[32m✓ Running\033[0m" in coloured
    assert "\033[" not in _on_a_terminal(project, "status", env={"NO_COLOR": "1"})
    assert "\033[" not in orchestrator(project, "status").out


# ---- logs ----


def _logs(project: Path) -> Path:
    logs = project / "state" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def test_one_log_shows_its_last_lines_reaching_into_the_rotated_files(project: Path) -> None:
    logs = _logs(project)
    (logs / "api.log").write_text("".join(f"line {i}\n" for i in range(100)))
    ran = orchestrator(project, "logs", "api", "-n", "3")
    assert (ran.code, ran.out, ran.err) == (0, "line 97\nline 98\nline 99\n", "")
    assert orchestrator(project, "logs", "api").out.splitlines() == [f"line {i}" for i in range(50, 100)]

    (logs / "api.log.2").write_text("oldest\n")
    (logs / "api.log.1").write_text("older 1\nolder 2\n")
    (logs / "api.log").write_text("new 1\nnew 2\n")
    assert orchestrator(project, "logs", "api", "-n", "5").out.splitlines() == [
        "oldest",
        "older 1",
        "older 2",
        "new 1",
        "new 2",
    ]


def test_all_interleaves_by_each_lines_own_time_else_its_files_order(project: Path) -> None:
    logs = _logs(project)
    (logs / "watchdog.log").write_text(
        "2026-11-23T14:05:01.100 watchdog started\n"
        "2026-11-23T14:05:03.000 api: liveness failed: exit 1\n"
        "2026-11-23T14:05:05.000 api: restarted\n"
    )
    (logs / "api.log").write_text(
        "booting\n"  # before its file's first timestamp: goes with it
        "2026-11-23T14:05:02.000Z serving\n"
        "Traceback (most recent call last):\n"  # untimed: stays with the line before
        f"ValueError: bad key {SECRET}\n"
        "2026-11-23T14:05:04+00:00 serving again\n"
    )
    plain = logs / "plain.log"
    plain.write_text("no time 1\nno time 2\n")
    # A log without timestamps counts as written when last modified: here, 14:05:04.5 UTC.
    stamp = 1795442704.5  # 2026-11-23T14:05:04.5Z
    os.utime(plain, (stamp, stamp))
    ran = orchestrator(project, "logs", "--all")
    assert ran.code == 0, ran.err
    assert ran.out.splitlines() == _EXPECTED_ALL
    assert SECRET not in ran.out
    # Without names it is the same; `-n` counts lines per log.
    assert orchestrator(project, "logs").out == ran.out
    assert orchestrator(project, "logs", "api", "watchdog", "-n", "1").out.splitlines() == [
        "api      | 2026-11-23T14:05:04+00:00 serving again",
        "watchdog | 2026-11-23T14:05:05.000 api: restarted",
    ]


_EXPECTED_ALL = [
    "watchdog | 2026-11-23T14:05:01.100 watchdog started",
    "api      | booting",
    "api      | 2026-11-23T14:05:02.000Z serving",
    "api      | Traceback (most recent call last):",
    "api      | ValueError: bad key ***",
    "watchdog | 2026-11-23T14:05:03.000 api: liveness failed: exit 1",
    "api      | 2026-11-23T14:05:04+00:00 serving again",
    "plain    | no time 1",
    "plain    | no time 2",
    "watchdog | 2026-11-23T14:05:05.000 api: restarted",
]


def test_an_unknown_name_lists_the_known_ones(project: Path) -> None:
    _logs(project)
    rows = _store(project)
    rows.save(ComponentRow("mcp", "process"))
    (_logs(project) / "old.log").write_text("x\n")
    ran = orchestrator(project, "logs", "nope")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err == "orchestrator: no log named 'nope': known names are mcp, old, watchdog"


def test_a_named_log_not_written_yet_says_so(project: Path) -> None:
    _store(project).save(ComponentRow("mcp", "process"))
    ran = orchestrator(project, "logs", "mcp")
    assert ran.code == 1
    assert ran.err == f"orchestrator: mcp has no log yet ({project / 'state' / 'logs' / 'mcp.log'})"


class _Follow:
    """`orchestrator logs -f` running, its stdout read line by line."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "pytest_orchestrator", "logs", "-f", *args],
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, *wanted: str, timeout: float = 10) -> None:
        got = [self.lines.get(timeout=timeout) for _ in wanted]
        assert got == list(wanted)

    def interrupt(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=10)
        assert self.process.stderr is not None
        modules, err = _imported(self.process.stderr.read())
        _assert_no_pytest(modules)
        return code, err


@pytest.fixture
def follow(project: Path) -> Iterator[Callable[..., _Follow]]:
    started: list[_Follow] = []

    def start(*args: str) -> _Follow:
        started.append(_Follow(project, *args))
        return started[-1]

    yield start
    for f in started:
        if f.process.poll() is None:
            f.process.kill()
            f.process.wait()


def test_follow_survives_rotation_and_truncation_and_ctrl_c_ends_quietly(
    project: Path, follow: Callable[..., _Follow]
) -> None:
    logs = _logs(project)
    log = logs / "api.log"
    log.write_text("old\nlast\n")
    tail = follow("api", "-n", "1")
    tail.expect("last")
    with log.open("a") as f:
        f.write(f"appended {SECRET}\npart")
    tail.expect("appended ***")
    with log.open("a") as f:
        f.write("ial\nbefore rotation\n")
    log.rename(logs / "api.log.1")
    log.write_text("after rotation\n")
    tail.expect("partial", "before rotation", "after rotation")
    time.sleep(0.5)
    log.write_text("")  # truncated in place
    time.sleep(0.5)
    log.write_text("started over\n")
    tail.expect("started over")
    code, err = tail.interrupt()
    assert (code, err) == (0, "")


def test_follow_waits_for_a_log_not_written_yet(project: Path, follow: Callable[..., _Follow]) -> None:
    logs = _logs(project)
    _store(project).save(ComponentRow("mcp", "process"))
    (logs / "watchdog.log").write_text("2026-11-23T14:05:01.000 started\n")
    tail = follow("mcp", "watchdog")
    tail.expect("watchdog | 2026-11-23T14:05:01.000 started")
    (logs / "mcp.log").write_text("hello\n")
    tail.expect("mcp      | hello")
    assert tail.interrupt() == (0, "")


# ---- a container component: its Docker log ----


def test_a_container_components_log_is_its_docker_log_masked(
    project: Path, make_sandbox: Callable[..., Any], follow: Callable[..., _Follow]
) -> None:
    container = make_sandbox(
        command=["sh", "-c", f"echo first; echo token {SECRET}; echo third; sleep 300"],
    )
    deadline = time.time() + 10
    while b"third" not in container.logs() and time.time() < deadline:
        time.sleep(0.1)
    rows = _store(project)
    rows.save(ComponentRow("sandbox", "container", "RUNNING", container=container.name))
    ran = orchestrator(project, "logs", "sandbox", "-n", "2")
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["token ***", "third"]
    assert lines[0].split(" ", 1)[0].endswith("Z")  # Docker's own timestamp
    assert SECRET not in ran.out

    (_logs(project) / "watchdog.log").write_text("1999-01-01T00:00:00.000Z watchdog started\n")
    both = orchestrator(project, "logs", "--all", "-n", "1")
    assert both.out.splitlines()[0] == "watchdog | 1999-01-01T00:00:00.000Z watchdog started"
    assert both.out.splitlines()[1].startswith("sandbox  | ")
    assert both.out.splitlines()[1].endswith(" third")

    tail = follow("sandbox", "-n", "1")
    got = tail.lines.get(timeout=10)
    assert got.endswith(" third")
    container.exec_run(["sh", "-c", "echo later > /proc/1/fd/1"])
    assert tail.lines.get(timeout=10).endswith(" later")
    assert tail.interrupt() == (0, "")


def test_a_missing_container_is_one_line(project: Path, docker_client: Any) -> None:
    _store(project).save(ComponentRow("sandbox", "container", container="orch-test-no-such-container"))
    ran = orchestrator(project, "logs", "sandbox")
    assert ran.code == 1
    assert ran.err == (
        "orchestrator: sandbox: container 'orch-test-no-such-container' not found: is the watchdog "
        "running? (`orchestrator status`)"
    )


def test_an_unreachable_docker_engine_is_one_line_saying_what_to_do(project: Path, tmp_path: Path) -> None:
    _store(project).save(ComponentRow("sandbox", "container", container="orchestrator-sandbox"))
    (_logs(project) / "watchdog.log").write_text("2026-11-23T14:05:01.000 started\n")
    endpoint = f"unix://{tmp_path}/dead.sock"
    ran = orchestrator(project, "logs", "--all", env={"DOCKER_HOST": endpoint})
    assert ran.code == 1
    assert ran.err.startswith(f"orchestrator: sandbox: docker daemon not reachable at {endpoint}: start it")
    assert len(ran.err.splitlines()) == 1
    # The other logs are still shown.
    assert ran.out == "watchdog | 2026-11-23T14:05:01.000 started\n"


def test_a_watchdog_with_a_long_period_is_not_stale_between_its_beats(project: Path) -> None:
    rows = _store(project)
    _live_watchdog(rows)
    _healthy(rows)
    # Beats every 60 s: 95 s of silence is less than three missed beats.
    rows.store.conn.execute("UPDATE watchdog SET period = 60, heartbeat_at = ?", (time.time() - 95,))
    ran = orchestrator(project, "status")
    assert ran.out.splitlines()[2].startswith("Watchdog: ✓ Running")
    rows.store.conn.execute("UPDATE watchdog SET period = 60, heartbeat_at = ?", (time.time() - 200,))
    assert orchestrator(project, "status").out.splitlines()[2].startswith("Watchdog: ✗ Not running")


def test_no_log_at_all_says_how_to_start_the_watchdog(project: Path) -> None:
    ran = orchestrator(project, "logs")
    assert (ran.code, ran.out) == (1, "")
    assert (
        ran.err == "orchestrator: no log has been written here yet: start the watchdog with `orchestrator up`"
    )
