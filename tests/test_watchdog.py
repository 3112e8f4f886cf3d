"""The watchdog: real processes, real containers, real probes; time kept short by the config.

Each test writes an orchestrator.yaml, runs the watchdog loop in a thread of this process
(signals stay the test runner's), and reads what it did from the state database and its log.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.config_file import ConfigFileError, load
from pytest_orchestrator.monitor.component import (
    Event,
    ProbeTrack,
    RestartBudget,
    Status,
    transition,
)
from pytest_orchestrator.monitor.config import Backoff, ProbeSpec, RestartLimit, watchdog_spec
from pytest_orchestrator.monitor.probes import ProbeResult
from pytest_orchestrator.monitor.watchdog import Watchdog
from pytest_orchestrator.state import StateError, StateStore
from pytest_orchestrator.state.components import ComponentRow, ComponentStore

pytestmark = pytest.mark.usefixtures("clean_env")

FAST = """\
watchdog:
  period: 0.5
  stop_timeout: 2
  backoff: {initial: 0.2, factor: 2, max: 0.5, reset_after: 600}
  restart_limit: {count: %(limit)d, window: 60}
components:
  sandbox: {enabled: false}
"""

# /healthz answers 500 while the file `sick` exists, /ready 503 while `unready` does.
SERVER = """\
import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        flag = {"/healthz": "sick", "/ready": "unready"}.get(self.path)
        code = 500 if flag and os.path.exists(flag) else 200
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass

print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Running:
    """A watchdog running in a thread, and what it recorded."""

    def __init__(self, root: Path, text: str, sandbox: str = "orchestrator-sandbox") -> None:
        self.root = root
        (root / "orchestrator.yaml").write_text(text, encoding="utf-8")
        spec = watchdog_spec(load(root / "orchestrator.yaml", os.environ), sandbox, root)
        self.state = root / ".orchestrator"
        self.watchdog = Watchdog(spec, self.state, docker_timeout=10)
        self.thread = threading.Thread(target=self.watchdog.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.watchdog.stopping.set()
        self.thread.join(60)
        assert not self.thread.is_alive()

    def rows(self) -> dict[str, ComponentRow]:
        try:
            store = StateStore.read(self.state)
        except StateError:
            return {}  # being created by the watchdog right now
        if store is None:
            return {}
        try:
            return {r.name: r for r in ComponentStore(store).components()}
        finally:
            store.close()

    def log(self) -> str:
        path = self.state / "logs" / "watchdog.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def until(self, predicate: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached in {timeout}s; log:\n{self.log()}")
            time.sleep(0.05)


@pytest.fixture
def watchdog(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def start(body: str, limit: int = 10, with_sandbox: bool = False, **kwargs: Any) -> Running:
        text = FAST % {"limit": limit} + textwrap.indent(textwrap.dedent(body), "  ")
        if with_sandbox:
            text = text.replace("  sandbox: {enabled: false}\n", "")
        run = Running(tmp_path, text, **kwargs)
        running.append(run)
        return run

    yield start
    for run in running:
        if run.thread.is_alive():
            run.stop()


def component(run: Running, name: str) -> Any:
    return run.watchdog.components[name]


# ---- the loop against real processes ----


def test_a_killed_process_is_restarted_after_its_backoff(watchdog: Callable[..., Running]) -> None:
    run = watchdog("sleeper:\n  command: [sleep, '1000']\n")
    run.until(lambda: component(run, "sleeper").status is Status.RUNNING, what="running")
    first = component(run, "sleeper").runtime.pid
    killed = time.monotonic()
    os.kill(first, signal.SIGKILL)
    run.until(lambda: component(run, "sleeper").restarts == 1, what="a restart")
    run.until(lambda: component(run, "sleeper").status is Status.RUNNING, what="running again")
    # Detection within a round (0.25 s) plus a backoff of at most 0.2 s, with room for a busy machine.
    assert time.monotonic() - killed < 3
    assert component(run, "sleeper").runtime.pid != first
    run.until(lambda: run.rows()["sleeper"].restarts == 1, what="the restart recorded")
    row = run.rows()["sleeper"]
    assert (row.status, row.last_restart_reason) == ("RUNNING", "killed by signal 9")
    assert "sleeper: killed by signal 9; restart 1 in " in run.log()
    status = orchestrator(run.root, "status", "--json")
    import json

    (shown,) = [c for c in json.loads(status.stdout)["components"] if c["name"] == "sleeper"]
    assert (shown["status"], shown["restarts"], shown["last_restart_reason"]) == (
        "RUNNING",
        1,
        "killed by signal 9",
    )
    second = component(run, "sleeper").runtime.pid
    run.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)
    assert run.rows()["sleeper"].status == "STOPPED"


def test_a_process_that_always_exits_is_fatal_until_restarted(watchdog: Callable[..., Running]) -> None:
    run = watchdog("crasher:\n  command: [sh, -c, 'echo boom; exit 3']\n", limit=2)
    run.until(lambda: component(run, "crasher").status is Status.FATAL, what="FATAL")
    assert component(run, "crasher").restarts == 2
    assert "FATAL crasher: exited with code 3; more than 2 restarts in 60s" in run.log()
    assert "`orchestrator restart crasher`" in run.log()
    time.sleep(1)
    assert component(run, "crasher").restarts == 2  # FATAL means no more restarts
    run.until(lambda: run.rows()["crasher"].status == "FATAL", what="FATAL recorded")
    store = StateStore.open(run.state)
    try:
        assert ComponentStore(store).request("crasher", "restart")
    finally:
        store.close()
    run.until(lambda: "crasher: restart requested" in run.log(), what="the request taken")
    run.until(lambda: component(run, "crasher").restarts >= 3, what="a restart after the request")
    # The budget starts over: it takes the limit again to be FATAL.
    run.until(lambda: component(run, "crasher").status is Status.FATAL, what="FATAL again")
    assert (run.state / "logs" / "crasher.log").read_text().count("boom") >= 4


def test_a_failing_liveness_restarts_and_a_failing_readiness_only_degrades(
    watchdog: Callable[..., Running], tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "server.py").write_text(SERVER)
    run = watchdog(
        f"""\
        web:
          command: [{sys.executable}, server.py, "{port}"]
          startup: {{tcp: "127.0.0.1:{port}", period: 0.2, timeout: 0.1, failure_threshold: 50}}
          liveness: {{http: "http://127.0.0.1:{port}/healthz", period: 0.3, timeout: 0.2, failure_threshold: 2}}
          readiness: {{http: "http://127.0.0.1:{port}/ready", period: 0.3, timeout: 0.2, failure_threshold: 1}}
        """
    )
    run.until(
        lambda: run.rows().get("web") is not None and run.rows()["web"].health == "healthy", what="healthy"
    )
    (tmp_path / "unready").touch()
    run.until(lambda: run.rows()["web"].health == "not_ready", what="not ready")
    time.sleep(1.5)  # five readiness periods: readiness never restarts
    assert component(run, "web").restarts == 0
    (tmp_path / "unready").unlink()
    (tmp_path / "sick").touch()
    run.until(lambda: component(run, "web").restarts == 1, what="a restart")
    assert f"web: liveness failed 2 times: GET http://127.0.0.1:{port}/healthz: 500; restart 1" in run.log()
    (tmp_path / "sick").unlink()
    run.until(
        lambda: run.rows()["web"].health == "healthy" and run.rows()["web"].restarts == 1, what="healthy"
    )


def test_a_startup_probe_holds_liveness_off_until_its_log_line(watchdog: Callable[..., Running]) -> None:
    run = watchdog(
        """\
        slow:
          command: [sh, -c, "sleep 1.5; echo 'listening on 8080'; sleep 1000"]
          startup: {log_line: "^listening on \\\\d+$", period: 0.2, timeout: 0.1, failure_threshold: 50}
          liveness: {exec: ["false"], period: 0.2, timeout: 0.1, failure_threshold: 1}
        """
    )
    run.until(lambda: "slow.startup: passed" in run.log(), what="the startup probe passed")
    run.until(lambda: "slow.liveness: failed" in run.log(), what="liveness failed")
    log = run.log()
    # No liveness probe ran before the line appeared.
    assert log.index("slow.startup: passed") < log.index("slow.liveness: failed")
    assert "slow: liveness failed 1 times: exit 1; restart 1" in log


def test_a_process_that_is_not_found_is_one_line_and_backs_off(watchdog: Callable[..., Running]) -> None:
    run = watchdog("ghost:\n  command: [no-such-command-here]\n", limit=1)
    run.until(lambda: component(run, "ghost").status is Status.FATAL, what="FATAL")
    assert "ghost: cannot start: command not found: no-such-command-here; restart 1" in run.log()


# ---- containers ----


def test_a_hung_exec_probe_is_stopped_in_the_container_and_delays_nothing(
    watchdog: Callable[..., Running], make_sandbox: Callable[..., Any]
) -> None:
    box = make_sandbox()
    run = watchdog(
        f"""\
        box:
          container: {box.name}
          liveness: {{exec: [sleep, "60"], period: 1.5, timeout: 1, failure_threshold: 100}}
        ticker:
          command: [sleep, "1000"]
          liveness: {{pid: true, period: 0.2, timeout: 0.1}}
        """
    )
    run.until(
        lambda: component(run, "box").tracks["liveness"].failures >= 2,
        what="two hung probes",
    )
    ticks = component(run, "ticker").tracks["liveness"].successes
    # Two probes of 1 s each hung; the ticker's 0.2 s probe kept its pace meanwhile.
    assert ticks >= 5  # a probe held up by the hung ones would have run twice at most
    last = component(run, "box").tracks["liveness"].last
    assert last is not None and last.message == "timed out after 1s (stopped)"
    assert last.duration < 2.5
    run.stop()
    time.sleep(0.5)
    ps = box.exec_run(["ps", "-o", "args"]).output.decode()
    assert "sleep 60" not in ps


def test_the_sandbox_stopped_or_paused_by_hand_runs_again(
    watchdog: Callable[..., Running], make_sandbox: Callable[..., Any]
) -> None:
    box = make_sandbox()
    run = watchdog(
        """\
        sandbox:
          liveness: {container: true, period: 0.3, timeout: 2, failure_threshold: 2}
        """,
        with_sandbox=True,
        sandbox=box.name,
    )
    # The built-in sandbox component, its container named by the sandbox setting.
    assert component(run, "sandbox").spec.container == box.name
    run.until(lambda: component(run, "sandbox").status is Status.RUNNING, what="running")
    box.stop(timeout=1)
    run.until(lambda: component(run, "sandbox").restarts == 1, what="a restart")
    run.until(lambda: (box.reload() or box.status) == "running", what="the container running again")
    box.pause()
    run.until(lambda: component(run, "sandbox").restarts == 2, what="a second restart")
    run.until(lambda: (box.reload() or box.status) == "running", what="unpaused")
    assert "sandbox: liveness failed 2 times: sandbox container " in run.log()
    assert "is paused" in run.log()
    # `orchestrator restart sandbox` restarts a container that runs, too.
    box.reload()
    started = box.attrs["State"]["StartedAt"]
    run.until(lambda: run.rows().get("sandbox") is not None, what="recorded")
    store = StateStore.open(run.state)
    try:
        assert ComponentStore(store).request("sandbox", "restart")
    finally:
        store.close()
    run.until(
        lambda: (box.reload() or box.attrs["State"]["StartedAt"]) != started, what="a restarted container"
    )
    run.until(lambda: component(run, "sandbox").status is Status.RUNNING, what="running after the request")
    run.stop()
    box.reload()
    # The watchdog did not bring the sandbox up at its start, so it leaves it running.
    assert box.status == "running"


# ---- the pieces, without processes ----


def test_transitions_are_one_table() -> None:
    assert transition(Status.STOPPED, Event.START) is Status.STARTING
    assert transition(Status.RUNNING, Event.FAILED) is Status.BACKOFF
    assert transition(Status.BACKOFF, Event.GAVE_UP) is Status.FATAL
    assert transition(Status.FATAL, Event.CLEAR) is Status.STOPPED
    with pytest.raises(ValueError, match="a FATAL component cannot take 'start'"):
        transition(Status.FATAL, Event.START)


def test_probe_thresholds_are_kubernetes() -> None:
    track = ProbeTrack(ProbeSpec("readiness", "tcp", ("h", 1), success_threshold=2, failure_threshold=3))
    ok, bad = ProbeResult(True, "", 0), ProbeResult(False, "", 0)
    assert [track.record(r, 0) for r in (bad, bad, bad, bad, ok, ok, ok)] == [
        None,
        None,
        False,
        None,
        None,
        True,
        None,
    ]


def test_the_restart_limit_triggers_even_when_the_backoff_outlasts_the_window() -> None:
    budget = RestartBudget(Backoff(1, 2, 60, 600), RestartLimit(count=3, window=10), rng=lambda: 1.0)
    now, gave_up = 0.0, False
    delays = []
    while not gave_up:
        gave_up = budget.failed(now)
        if not gave_up:
            delays.append(budget.delay())
            now += budget.delay() + 20  # each restart outside the window of the last
    assert delays == [1, 2, 4]
    assert budget.failed_starts == 4
    budget.healthy(running_since=0, now=600)
    assert budget.failed_starts == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "web:\n    command: [x]\n    liveness: {htp: 'x'}\n",
            "orchestrator.yaml:10: unknown key 'htp' (did you mean 'http'?)",
        ),
        (
            "web:\n    command: [x]\n    liveness: {http: 'x', tcp: 'h:1'}\n",
            "orchestrator.yaml:10: a probe needs exactly one of",
        ),
        ("web:\n    liveness: {tcp: 'h:1'}\n", "orchestrator.yaml:8: component 'web' needs a command"),
        (
            "web:\n    command: [x]\n    restart: sometimes\n",
            "orchestrator.yaml:10: restart must be one of always, on-failure, never",
        ),
        (
            "web:\n    command: [x]\n  web:\n    command: [y]\n",
            "orchestrator.yaml:10: 'web' is given twice (first at line 8)",
        ),
        (
            "web:\n    command: [x]\n    liveness: {tcp: 'nohost'}\n",
            "orchestrator.yaml:10: tcp must be HOST:PORT",
        ),
        (
            "web:\n    command: [x]\n    liveness: {grpc: 'h:1'}\n",
            "orchestrator.yaml:10: grpc probes are not supported",
        ),
    ],
)
def test_config_errors_name_the_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "orchestrator.yaml").write_text(FAST % {"limit": 3} + "  " + body)
    with pytest.raises(ConfigFileError) as caught:
        watchdog_spec(load(tmp_path / "orchestrator.yaml", {}), "s", tmp_path)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_probe_timeout_not_shorter_than_its_period_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.yaml").write_text(
        FAST % {"limit": 3} + "  web:\n    command: [x]\n    liveness: {tcp: 'h:1', period: 1, timeout: 2}\n"
    )
    spec = watchdog_spec(load(tmp_path / "orchestrator.yaml", {}), "s", tmp_path)
    assert spec.warnings == (
        "orchestrator.yaml:10: web.liveness timeout 2s is not shorter than its period 1s",
    )


def test_configured_probes_are_health_checks_selected_with_k(
    pytester: pytest.Pytester, dead_docker: str
) -> None:
    port = free_port()
    pytester.makefile(
        ".yaml",
        orchestrator=f"""\
components:
  mcp:
    command: [{sys.executable}, -m, http.server, "{port}"]
    liveness: {{tcp: "127.0.0.1:{port}"}}
    readiness: {{http: "http://127.0.0.1:{port}/missing"}}
  web:
    command: [sleep, "1"]
    liveness: {{pid: true}}
""",
    )
    import json
    import subprocess

    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        result = pytester.runpytest("--orchestrator-health", "-k", "mcp")
    finally:
        server.terminate()
        server.wait()
    document = json.loads(result.stdout.str())
    assert list(document["checks"]) == ["mcp.liveness", "mcp.readiness"]
    assert document["checks"]["mcp.liveness"] == {
        **document["checks"]["mcp.liveness"],
        "status": "ok",
        "level": "error",
    }
    readiness = document["checks"]["mcp.readiness"]
    assert (readiness["status"], readiness["level"]) == ("failed", "warning")
    assert readiness["message"] == f"http probe failed: GET http://127.0.0.1:{port}/missing: 404"
    # A failed readiness only degrades: CI passes.
    assert (document["status"], result.ret) == ("degraded", 0)


def orchestrator(cwd: Path, *args: str, timeout: float = 120) -> Any:
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "pytest_orchestrator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_up_and_down_leave_no_process_or_container_behind(
    tmp_path: Path, make_sandbox: Callable[..., Any]
) -> None:
    import psutil

    stopped = make_sandbox()
    stopped.stop(timeout=1)
    marker = f"{100000 + os.getpid() % 1000}"
    (tmp_path / "orchestrator.yaml").write_text(
        FAST % {"limit": 3}
        + f"  box:\n    container: {stopped.name}\n"
        + "".join(f"  worker{n}:\n    command: [sleep, '{marker}']\n" for n in range(3))
    )
    up = orchestrator(tmp_path, "up")
    assert up.returncode == 0, up.stderr
    assert re.fullmatch(r"watchdog started \(pid \d+\)\n", up.stdout)
    pid = int(re.findall(r"\d+", up.stdout)[0])
    again = orchestrator(tmp_path, "up")
    assert (again.returncode, again.stdout) == (0, f"watchdog already running (pid {pid})\n")
    watched = orchestrator(tmp_path, "watch")
    assert watched.returncode == 1
    assert (
        watched.stderr
        == f"orchestrator: a watchdog is already running here (pid {pid}): stop it with `orchestrator down`\n"
    )
    sleepers = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]
    assert len(sleepers) == 3
    stopped.reload()
    assert stopped.status == "running"
    down = orchestrator(tmp_path, "down")
    assert (down.returncode, down.stdout) == (0, f"watchdog stopped (pid {pid})\n")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]] == []
    stopped.reload()
    assert stopped.status == "exited"  # the watchdog started it, so `down` stopped it
    assert orchestrator(tmp_path, "down").stdout == "no watchdog is running here\n"
    restart = orchestrator(tmp_path, "restart", "worker0")
    assert (restart.returncode, restart.stderr) == (
        1,
        "orchestrator: no watchdog is running here: start it with `orchestrator up`\n",
    )


def test_watchdog_commands_read_bad_config_as_one_line(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.yaml").write_text("watchdog:\n  perod: 10\n")
    result = orchestrator(tmp_path, "up")
    assert (result.returncode, result.stdout) == (2, "")
    assert (
        result.stderr == "orchestrator: orchestrator.yaml:2: unknown key 'perod' (did you mean 'period'?)\n"
    )


def test_a_locked_state_database_and_an_unwritable_log_do_not_stop_the_watchdog(
    watchdog: Callable[..., Running], tmp_path: Path
) -> None:
    import io
    import sqlite3

    from pytest_orchestrator.monitor.watchdog import WatchdogLog

    run = watchdog("sleeper:\n  command: [sleep, '1000']\n")
    run.until(
        lambda: run.rows().get("sleeper") is not None and run.rows()["sleeper"].status == "RUNNING",
        what="running",
    )
    lock = sqlite3.connect(run.state / "state.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        os.kill(component(run, "sleeper").runtime.pid, signal.SIGKILL)
        # Restarted while the database is locked: the records wait, the component does not.
        run.until(
            lambda: (
                component(run, "sleeper").restarts == 1 and component(run, "sleeper").status is Status.RUNNING
            ),
            what="restart",
        )
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert "state: cannot write to state database" in run.log()
    run.until(lambda: run.rows()["sleeper"].restarts == 1, what="the restart recorded once unlocked")

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    stderr = io.StringIO()
    log = WatchdogLog(blocked / "watchdog.log", fallback=stderr)
    log("first")
    log("second")
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 3
    assert "cannot write " in lines[0] and lines[0].endswith(": logging to stderr")
    assert lines[1].endswith(" first") and lines[2].endswith(" second")


def test_sighup_reloads_the_config(tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.yaml"
    base = FAST % {"limit": 3}
    config.write_text(base + "  one:\n    command: [sleep, '1001']\n  two:\n    command: [sleep, '1002']\n")

    def load() -> Any:
        return watchdog_spec(load_file(config, {}), "s", tmp_path)

    from pytest_orchestrator.config_file import load as load_file

    wd = Watchdog(load(), tmp_path / ".orchestrator", load=load)
    thread = threading.Thread(target=wd.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while (
            not all(m.status is Status.RUNNING for m in wd.components.values())
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        one = wd.components["one"]
        config.write_text(
            base + "  one:\n    command: [sleep, '1001']\n  three:\n    command: [sleep, '1003']\n"
        )
        wd.reload_requested = True  # what SIGHUP sets
        while "three" not in wd.components and time.monotonic() < deadline:
            time.sleep(0.05)
        while wd.components["three"].status is not Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(wd.components) == ["one", "three"]
        assert wd.components["one"] is one  # unchanged: kept running, not restarted
        assert one.restarts == 0
    finally:
        wd.stopping.set()
        thread.join(30)
    log = (tmp_path / ".orchestrator" / "logs" / "watchdog.log").read_text()
    assert "config reloaded" in log and "two: stopped" in log and "three: starting" in log


def test_a_new_watchdog_stops_what_a_killed_one_left_running(tmp_path: Path) -> None:
    import psutil

    marker = f"{200000 + os.getpid() % 1000}"
    config = tmp_path / "orchestrator.yaml"
    config.write_text(FAST % {"limit": 3} + f"  worker:\n    command: [sleep, '{marker}']\n")
    spec = watchdog_spec(load(config, {}), "s", tmp_path)
    first = Watchdog(spec, tmp_path / ".orchestrator")
    first.open()
    try:
        deadline = time.monotonic() + 10
        while first.components["worker"].status is not Status.RUNNING and time.monotonic() < deadline:
            first.round(time.monotonic())
            time.sleep(0.05)
        first._record_all(force=True)
        orphan = first.components["worker"].runtime.pid
        # The first watchdog dies without stopping anything (SIGKILL): its worker runs on.
        second = Watchdog(spec, tmp_path / ".orchestrator")
        second.open()
        try:
            while second.components["worker"].status is not Status.RUNNING and time.monotonic() < deadline:
                second.round(time.monotonic())
                time.sleep(0.05)
            sleepers = [
                p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]
            ]
            assert sleepers == [second.components["worker"].runtime.pid]
            assert orphan not in sleepers
        finally:
            second.close()
    finally:
        first.pool.shutdown(wait=False)
    assert (
        f"worker: stopping pid {orphan}, left running by an earlier watchdog"
        in (tmp_path / ".orchestrator" / "logs" / "watchdog.log").read_text()
    )


def test_up_refuses_a_missing_command_or_a_port_in_use_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.yaml").write_text(
        FAST % {"limit": 3} + "  ghost:\n    command: [no-such-command-here]\n"
    )
    result = orchestrator(tmp_path, "up")
    assert (result.returncode, result.stdout) == (2, "")
    assert (
        result.stderr == "orchestrator: orchestrator.yaml:8: ghost: command not found: no-such-command-here\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "orchestrator.yaml").write_text(
            FAST % {"limit": 3}
            + f"  web:\n    command: [sleep, '1']\n    liveness: {{tcp: '127.0.0.1:{port}'}}\n"
        )
        result = orchestrator(tmp_path, "watch")
    assert result.returncode == 2
    assert result.stderr == (
        f"orchestrator: orchestrator.yaml:10: web: port {port} on 127.0.0.1 is already in use: "
        "stop what listens there, or give the component another port\n"
    )
    assert not (tmp_path / ".orchestrator" / "watchdog.pid").exists()
