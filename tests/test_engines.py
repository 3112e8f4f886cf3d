"""Several Docker engines through xdist's `--tx`: two real `dockerd` on this machine.

Each worker is bound to its engine by `--tx popen//env:DOCKER_HOST=...`: its agent, its
verification and its stops go there, the state database records the engine of every
attempt, and a later run stops what an interrupted one left on the engine that ran it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from pytest_orchestrator.sandbox.docker import engine_id
from pytest_orchestrator.state import StateStore
from tests.conftest import AGENT_API_KEY, AGENT_GH_TOKEN, attempt_rows, require, task_run_args
from tests.support.messages_server import reply

FIRST = "unix:/var/run/docker.sock"

PLAN = """\
# Milestone {name}

## Task {number}.1: Work on {name}

**Description:**
Do it.

```sh verify
touch verified-{name}
```
"""


@pytest.fixture(autouse=True)
def _env(agent_env: None) -> None:
    """Every test here runs agents with known secrets in the environment."""


def test_an_engine_is_recorded_by_its_endpoint_without_credentials() -> None:
    assert engine_id({}) == "unix:///var/run/docker.sock"
    # The spellings a --tx spec can carry are the engine's usual name.
    assert engine_id({"DOCKER_HOST": "host-a:2375"}) == "tcp://host-a:2375"
    assert engine_id({"DOCKER_HOST": "unix:/run/b/docker.sock"}) == "unix:///run/b/docker.sock"
    assert engine_id({"DOCKER_HOST": "tcp://host-a:2376", "DOCKER_TLS_VERIFY": "1"}) == "tcp://host-a:2376"
    assert engine_id({"DOCKER_HOST": "ssh://deploy:s3cret@host-b"}) == "ssh://deploy@host-b"
    # A spelling the SDK refuses is still recorded and shown: without its password too.
    assert engine_id({"DOCKER_HOST": "deploy:s3cret@host-a:2375"}) == "deploy@host-a:2375"
    assert engine_id({"DOCKER_HOST": "tcp://host-a:2375/"}) == "tcp://host-a:2375"


@pytest.mark.parametrize(
    "endpoint",
    [
        "unix:///var/run/docker.sock",
        "unix:///var/run/docker.sock/",
        "unix:///x//",
        "unix:///a//b",
        "unix:///x.sock ",
        "unix:///var/run/docker.sock\n",
        "unix:///a\tb",
        "unix:///path with spaces/docker.sock",
        "unix:///%41.sock",
        "unix:///",
        "tcp://host-a:2375",
        "tcp://host-a:2375/",
        "tcp://h:2375\n",
        "tcp://10.0.0.1:2376",
        "tcp://host.:2375",
        "tcp://host:0",
        "tcp://host:02375",
        "tcp://host:65535",
        "tcp://HOST:2375",
    ],
)
def test_an_endpoint_recorded_as_it_is_is_what_the_docker_sdk_makes_of_it(endpoint: str) -> None:
    from pytest_orchestrator.sandbox.docker import _parsed_engine_id

    assert engine_id({"DOCKER_HOST": endpoint}) == _parsed_engine_id(endpoint)


def test_the_usual_endpoints_are_recorded_without_importing_the_docker_sdk() -> None:
    # Every xdist worker records the engine of its first attempt at the same moment; the
    # SDK's import there held each first dispatch up by its share of the CPU.
    code = (
        "import sys\n"
        "from pytest_orchestrator.sandbox.docker import engine_id\n"
        "ids = [engine_id({}), engine_id({'DOCKER_HOST': 'tcp://host-a:2375'})]\n"
        "print(ids, 'docker' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['unix:///var/run/docker.sock', 'tcp://host-a:2375'] False"


def test_an_unreachable_engine_is_named_without_its_password() -> None:
    from pytest_orchestrator.sandbox.docker import probe

    found = probe("sandbox", 2.0, {"DOCKER_HOST": "tcp://deploy:s3cret@127.0.0.1:9"})
    assert not found.running
    assert found.message.startswith("docker daemon not reachable at tcp://deploy@127.0.0.1:9: ")
    assert "s3cret" not in found.message


def test_the_sandbox_commands_name_a_failed_engine_without_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import requests

    from pytest_orchestrator.sandbox.docker import engine_error

    monkeypatch.setenv("DOCKER_HOST", "ssh://deploy:s3cret@127.0.0.1:9")
    # A call that failed after the connection was made: the commands' last resort.
    error = engine_error(requests.exceptions.ConnectionError("connection reset"), 5.0)
    assert error is not None
    assert str(error).startswith("docker daemon not reachable at ssh://deploy@127.0.0.1:9: ")
    # And the first call, through the command itself.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest_orchestrator", "sandbox", "status"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("orchestrator: docker daemon not reachable at ssh://deploy@127.0.0.1:9: ")
    assert len(done.stderr.splitlines()) == 1
    assert "s3cret" not in done.stdout + done.stderr


def test_a_tx_spec_whose_docker_host_execnet_cuts_is_refused(pytester: pytest.Pytester) -> None:
    (pytester.path / "plans").mkdir()
    (pytester.path / "plans" / "a.md").write_text(PLAN.format(name="a", number=1))
    result = pytester.runpytest_subprocess("plans", "--tx", "popen//env:DOCKER_HOST=tcp://host-a:2375")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --tx popen//env:DOCKER_HOST=tcp://host-a:2375: execnet splits a spec at '//', so its "
            "worker would get DOCKER_HOST='tcp:'; write the engine without '//': env:DOCKER_HOST=HOST:PORT "
            "(tcp) or env:DOCKER_HOST=unix:/path/to/docker.sock"
        ]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["no xdist", "xdist"])
def test_orphans_on_an_unreachable_engine_are_one_warning_and_the_run_goes_on(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    # This run's own engine is a socket nobody listens on: the task is tried, and fails there.
    here = f"unix://{pytester.path}/dead.sock"
    monkeypatch.setenv("DOCKER_HOST", here)
    gone = "tcp://127.0.0.1:9"
    write_plans(pytester)
    store = StateStore.open(pytester.path / ".orchestrator")
    run_id = store.begin_run("killed")
    for task in ("7.1", "7.2"):
        store.start_attempt(run_id, "plans/old.md", task, dispatch_id=f"d-{task}", engine=gone)
    done = subprocess.Popen(["true"])
    done.wait()
    with store.writing() as conn:
        conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (done.pid, run_id))
    store.close()

    started = time.monotonic()
    result = pytester.runpytest_subprocess("plans/a.md", "-p", "no:randomly", *workers)
    elapsed = time.monotonic() - started
    output = result.stdout.str() + result.stderr.str()
    warnings = [line for line in output.splitlines() if "could not be stopped" in line]
    assert len(warnings) == 1, output[-3000:]
    assert warnings[0].startswith(
        "orchestrator: warning: the agents of tasks 7.1 (plans/old.md), 7.2 (plans/old.md) left running "
        f"on {gone} could not be stopped: docker daemon not reachable at {gone}: "
    ), warnings
    # The run went on: its task was dispatched, and failed on this run's own (dead) engine.
    result.stdout.fnmatch_lines([f"*Task 1.1 *docker daemon not reachable at {here}*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "Traceback" not in output
    assert elapsed < 60
    assert sorted(attempt_rows(pytester.path, "task_id, status")) == [
        ("1.1", "failed"),
        ("7.1", "interrupted"),
        ("7.2", "interrupted"),
    ]


def test_a_refused_tx_spec_is_shown_without_its_password(pytester: pytest.Pytester) -> None:
    (pytester.path / "plans").mkdir()
    (pytester.path / "plans" / "a.md").write_text(PLAN.format(name="a", number=1))
    result = pytester.runpytest_subprocess(
        "plans", "--tx", "popen//env:DOCKER_HOST=ssh://deploy:s3cret@host-b"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --tx popen//env:DOCKER_HOST=ssh://deploy:***@host-b: execnet splits a spec at '//', *"]
    )
    assert "s3cret" not in result.stdout.str() + result.stderr.str()


def test_a_second_engine_that_will_not_stop_leaves_nothing_behind(
    docker_client: Any, busybox_image: str
) -> None:
    from tests.support.engines import EngineError, SecondEngine, first_engine_networking

    engine = SecondEngine()
    try:
        engine.start()
    except EngineError as exc:
        engine.stop()
        require("a second Docker engine", str(exc))
    try:
        engine.load_image(docker_client, busybox_image)
        container = engine.client().containers.run(
            busybox_image, ["sleep", "1000"], detach=True, network_mode="host"
        )
        container.reload()
        running = psutil.Process(container.attrs["State"]["Pid"])
        assert engine.process is not None
        # A dockerd that does not answer SIGTERM (as a hung one): the stop kills it, and it cannot
        # stop its containers itself.
        os.kill(engine.process.pid, signal.SIGSTOP)
    finally:
        engine.stop(grace=1)
    assert not running.is_running() or running.status() == psutil.STATUS_ZOMBIE
    root = str(engine.root)
    left = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(root in part for part in process.info["cmdline"] or ()):
                left.append(process.info["cmdline"])
        except psutil.Error:
            continue
    assert left == []
    with open("/proc/mounts") as mounts:
        assert [line for line in mounts if root in line] == []
    assert not engine.root.exists()
    assert subprocess.run(["ip", "link", "show", engine.bridge], capture_output=True).returncode != 0
    assert first_engine_networking(docker_client, busybox_image) is None


@pytest.fixture
def two_sandboxes(
    agent_sandbox: Callable[..., Any], second_engine: Any
) -> Iterator[Callable[[Any], tuple[Any, Any]]]:
    """The same sandbox (name, image, credentials) on the first engine and on the second."""
    made: list[Any] = []

    def start(server: Any) -> tuple[Any, Any]:
        first = agent_sandbox(server)
        other = second_engine.client().containers.run(
            first.attrs["Config"]["Image"],
            name=first.name,
            detach=True,
            network_mode="host",
            environment=first.attrs["Config"]["Env"],
        )
        made.append(other)
        return first, other

    yield start
    for container in made:
        container.remove(force=True)


def write_plans(pytester: pytest.Pytester) -> None:
    (pytester.path / "plans").mkdir()
    for number, name in ((1, "a"), (2, "b")):
        (pytester.path / "plans" / f"{name}.md").write_text(PLAN.format(name=name, number=number))


def tx_args(second: Any) -> list[str]:
    return ["--tx", f"popen//env:DOCKER_HOST={FIRST}", "--tx", f"popen//env:DOCKER_HOST={second.host}"]


def pytest_argv(sandbox: Any, *args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args, *task_run_args(sandbox), "-rs"]


def execs(client: Any, container: Any, since: float, until: float) -> list[str]:
    """The commands the engine of `client` started in `container` between two times (its exec_start events)."""
    events = client.events(
        since=int(since), until=int(until) + 1, decode=True, filters={"container": container.id}
    )
    return [e["Action"] for e in events if str(e.get("Action", "")).startswith("exec_start")]


def claude_processes(container: Any) -> str:
    """Live claude processes in the container; zombies are dead (its PID 1, sleep, never reaps them)."""
    listing = container.exec_run(["ps", "-eo", "stat=,pid=,args="]).output.decode()
    return "\n".join(p for p in listing.splitlines() if "claude" in p and not p.strip().startswith("Z"))


def has_file(container: Any, path: str) -> bool:
    return container.exec_run(["test", "-e", path]).exit_code == 0


def wait_for(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_two_plans_on_two_engines_each_run_on_their_workers_engine(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    two_sandboxes: Callable[[Any], tuple[Any, Any]],
    second_engine: Any,
    docker_client: Any,
) -> None:
    # Each agent thinks for a while, so the two plans' attempts overlap when they run in parallel.
    server = messages_server(*[reply("STATUS: complete", delay=3) for _ in range(2)])
    first, second = two_sandboxes(server)
    write_plans(pytester)
    since = time.time() - 1
    result = subprocess.run(
        pytest_argv(first, "plans", *tx_args(second_engine)),
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert AGENT_API_KEY not in result.stdout + result.stderr and AGENT_GH_TOKEN not in result.stdout
    # The test's own looks into the containers come after this second, and are not counted.
    time.sleep(max(0.0, int(time.time()) + 1 - time.time()))
    until = time.time() - 0.5

    rows = attempt_rows(pytester.path, "plan, worker, engine, status, started_at, ended_at")
    engines = {plan: engine for plan, _, engine, *_ in rows}
    assert sorted(engines.values()) == sorted([engine_id({}), engine_id({"DOCKER_HOST": second_engine.host})])
    assert len({worker for _, worker, *_ in rows}) == 2
    assert all(status == "completed" for *_, status, _, _ in rows)
    (_, _, _, _, start_a, end_a), (_, _, _, _, start_b, end_b) = rows
    assert start_a < end_b and start_b < end_a, "the two plans did not run at the same time"

    # Each engine saw its own plan's agent and verification, and nothing of the other plan.
    on_first = "plans/a.md" if engines["plans/a.md"] == engine_id({}) else "plans/b.md"
    here, there = ("a", "b") if on_first == "plans/a.md" else ("b", "a")
    for client, container, mine, theirs in (
        (docker_client, first, here, there),
        (second_engine.client(), second, there, here),
    ):
        commands = execs(client, container, since, until)
        assert any(" claude " in f" {c} " or "claude -p" in c for c in commands), commands
        assert any(f"verified-{mine}" in c for c in commands), commands
        assert not any(f"verified-{theirs}" in c for c in commands), commands
        assert has_file(container, f"/workspace/verified-{mine}")
        assert not has_file(container, f"/workspace/verified-{theirs}")

    # The report says where each task ran.
    report = json.loads((pytester.path / "report.json").read_text())
    for test in report["tests"]:
        data = test["metadata"]["orchestrator_task"]
        plan = test["nodeid"].split("::")[0]
        assert data["engine"] == engines[plan]
        assert [a["engine"] for a in data["attempts"]] == [engines[plan]]


@pytest.fixture
def slow_run_on_both(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    two_sandboxes: Callable[[Any], tuple[Any, Any]],
    second_engine: Any,
) -> Iterator[Callable[..., tuple[Any, Any, Any, subprocess.Popen[str]]]]:
    """Start both plans on the two engines, with agents answered only after two minutes: returns
    (server, first sandbox, second sandbox, the run). A run still going afterwards is killed."""
    runs: list[subprocess.Popen[str]] = []

    def start(**popen: Any) -> tuple[Any, Any, Any, subprocess.Popen[str]]:
        server = messages_server(*[reply("STATUS: complete", delay=120) for _ in range(2)])
        first, second = two_sandboxes(server)
        write_plans(pytester)
        run = subprocess.Popen(
            pytest_argv(first, "plans", *tx_args(second_engine)), cwd=pytester.path, text=True, **popen
        )
        runs.append(run)
        return server, first, second, run

    yield start
    for run in runs:
        if run.poll() is None:
            left = [psutil.Process(run.pid), *psutil.Process(run.pid).children(recursive=True)]
            for process in left:
                process.kill()
            psutil.wait_procs(left, timeout=30)


def test_a_resumed_run_stops_the_orphan_on_the_engine_that_ran_it(
    pytester: pytest.Pytester, slow_run_on_both: Callable[..., Any], second_engine: Any
) -> None:
    server, first, second, run = slow_run_on_both(
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for(lambda: len(server.requests) >= 2)
        wait_for(lambda: bool(claude_processes(first) and claude_processes(second)))
    finally:
        workers = psutil.Process(run.pid).children(recursive=True)
        # The controller and its workers, killed at once: nothing of theirs stops the agents.
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    # Until a dead worker is reaped its pid exists, and its run looks alive to the next one.
    wait_for(lambda: not any(psutil.pid_exists(w.pid) for w in workers), timeout=30)
    assert claude_processes(second), "the killed run should have left its agent behind on the second engine"

    # The next run has only the first engine: it must still reach the second to stop the orphan.
    server.add(reply("STATUS: complete"), reply("STATUS: complete"))
    result = subprocess.run(
        pytest_argv(first, "plans"), cwd=pytester.path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:]
    wait_for(lambda: claude_processes(second) == "", timeout=10)
    assert claude_processes(first) == ""
    rows = attempt_rows(pytester.path, "plan, status, engine")
    interrupted = {engine for _, status, engine in rows if status == "interrupted"}
    assert interrupted == {engine_id({}), engine_id({"DOCKER_HOST": second_engine.host})}
    assert sorted((plan, engine) for plan, status, engine in rows if status == "completed") == [
        ("plans/a.md", engine_id({})),
        ("plans/b.md", engine_id({})),
    ]


def test_sigterm_stops_each_workers_agent_on_its_own_engine(
    pytester: pytest.Pytester, slow_run_on_both: Callable[..., Any], second_engine: Any
) -> None:
    _, first, second, run = slow_run_on_both(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for(lambda: bool(claude_processes(first) and claude_processes(second)))
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == pytest.ExitCode.INTERRUPTED, output[-2000:]
    assert claude_processes(first) == ""
    assert claude_processes(second) == ""
    rows = attempt_rows(pytester.path, "status, engine")
    assert sorted(rows) == sorted(
        [("interrupted", engine_id({})), ("interrupted", engine_id({"DOCKER_HOST": second_engine.host}))]
    )
