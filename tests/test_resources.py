"""Resource samples (T045): real psutil figures of a real process, real Docker stats of a real container.

Each figure is checked against the kernel's own account of it, read independently: a process's
/proc/PID/stat and statm, and the container's cgroup (cpuacct.usage on cgroup v1, cpu.stat on v2).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.metrics import window
from pytest_orchestrator.metrics.sampler import ResourceSampler, container_sample, process_sample
from pytest_orchestrator.state import RunRecord, StateStore

MIB = 2**20
BURN = textwrap.dedent(
    """\
    import sys, time
    # 0.6 s of CPU, then 80 MiB touched, then wait to be read.
    while time.process_time() < 0.6:
        pass
    ballast = bytearray(80 * 2**20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    print("ready", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def busy_process() -> Iterator[subprocess.Popen[str]]:
    """A process that used 0.6 s of CPU and holds 80 MiB, waiting to be sampled."""
    process = subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.kill()
        process.wait()


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime, fields 14 and 15 of stat(5), counted after the command's closing paren.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_process_sample_is_the_kernel_s_account_of_it(busy_process: subprocess.Popen[str]) -> None:
    pid = busy_process.pid
    sample = process_sample("gw0", pid)
    assert sample is not None
    assert (sample.kind, sample.name) == ("process", "gw0")
    assert f" pid {pid} @ " in sample.subject
    assert sample.cpu_seconds >= 0.6
    # The process sleeps now: its CPU time stands still, and its RSS nearly so.
    assert sample.cpu_seconds == pytest.approx(proc_cpu_seconds(pid), abs=0.02)
    assert sample.memory_bytes >= 80 * MIB
    assert sample.memory_bytes == pytest.approx(proc_rss_bytes(pid), abs=MIB)
    # The same life is the same subject; a process that is gone has no sample.
    again = process_sample("gw0", pid)
    assert again is not None and again.subject == sample.subject
    busy_process.kill()
    busy_process.wait()
    assert process_sample("gw0", pid) is None


def cgroup_cpu_seconds(container: Any) -> float:
    """The container's CPU time from its own cgroup, read inside it."""
    code, out = container.exec_run(
        [
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null || grep usage_usec /sys/fs/cgroup/cpu.stat",
        ]
    )
    assert code == 0, out
    text = out.decode().split()
    # cgroup v1 counts nanoseconds; v2's cpu.stat says `usage_usec N`.
    return int(text[-1]) / 1e6 if text[0] == "usage_usec" else int(text[0]) / 1e9


@pytest.fixture
def busy_sandbox(make_sandbox: Callable[..., Any], docker_client: Any) -> Any:
    """A running sandbox container that has used some CPU in a shell loop."""
    container = make_sandbox()
    code, out = container.exec_run(["sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
    assert code == 0, out
    return docker_client.containers.get(container.name)


def test_a_container_sample_is_its_cgroup_s_account_of_it(busy_sandbox: Any, docker_client: Any) -> None:
    sample = container_sample(busy_sandbox)
    after = cgroup_cpu_seconds(busy_sandbox)
    assert sample is not None
    assert (sample.kind, sample.name) == ("container", busy_sandbox.name)
    assert sample.subject.startswith(f"container {busy_sandbox.id[:12]} @ ")
    assert sample.cpu_seconds > 0.05
    # Read after the sample, the cgroup has counted the reading's own `cat` as well: a little more.
    assert sample.cpu_seconds <= after <= sample.cpu_seconds + 0.2
    assert 0 < sample.memory_bytes
    assert sample.memory_limit is None or sample.memory_bytes <= sample.memory_limit
    busy_sandbox.stop(timeout=1)
    busy_sandbox.reload()
    assert container_sample(busy_sandbox) is None


def test_a_run_samples_itself_and_its_sandbox_at_its_heartbeat(
    tmp_path: Path, busy_sandbox: Any, docker_client: Any
) -> None:
    sampler = ResourceSampler("main", container=busy_sandbox.name, docker_timeout=10, interval=0.0)
    started = time.time()
    # A heartbeat every 0.5 s.
    run = RunRecord(tmp_path, uuid.uuid4().hex, "main", 2.0, sample=sampler)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        store = StateStore.read(tmp_path)
        assert store is not None
        kinds = {r[0] for r in store.conn.execute("SELECT DISTINCT kind FROM resource_samples")}
        store.close()
        if kinds == {"process", "container"}:
            break
        time.sleep(0.2)
    run.close("finished")
    store = StateStore.read(tmp_path)
    assert store is not None
    rows = store.conn.execute("SELECT kind, name, run_id, subject FROM resource_samples").fetchall()
    found = window(store.conn, started, time.time() + 1).resources
    store.close()
    assert {(r["kind"], r["name"], r["run_id"]) for r in rows} == {
        ("process", "main", run.run_id),
        ("container", busy_sandbox.name, run.run_id),
    }
    me = process_sample("x")
    assert me is not None
    assert {r["subject"] for r in rows if r["kind"] == "process"} == {me.subject}
    assert (found.processes, found.containers) == (1, 1)
    # This process's RSS, and the container's CPU time: its loop ran before the first sample.
    assert found.process_peak_rss_bytes is not None and found.process_peak_rss_bytes > 10 * MIB
    assert found.container_cpu_seconds == pytest.approx(cgroup_cpu_seconds(busy_sandbox), abs=0.2)


def test_the_sampler_keeps_its_pace(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    sampler = ResourceSampler("loop", interval=60.0)
    for _ in range(3):
        sampler(store)
    assert store.conn.execute("SELECT COUNT(*) FROM resource_samples").fetchone()[0] == 1
    # The run's last figures are taken whatever the pace.
    sampler(store, None, True)
    rows = store.conn.execute("SELECT kind, name, cpu_seconds FROM resource_samples ORDER BY id").fetchall()
    store.close()
    assert [(r[0], r[1]) for r in rows] == [("process", "loop"), ("process", "loop")]
    assert rows[1][2] >= rows[0][2] > 0


def test_an_unreachable_engine_costs_the_container_sample_only(tmp_path: Path, dead_docker: str) -> None:
    sampler = ResourceSampler("main", container="orch-test-none", docker_timeout=2, interval=0.0)
    started = time.monotonic()
    samples = sampler.readings()
    assert time.monotonic() - started < 5
    assert [s.kind for s in samples] == ["process"]


def test_a_sampler_that_raises_never_stops_the_heartbeat(tmp_path: Path) -> None:
    """A run whose beats stopped would look dead to the next run: a failed sample is only skipped."""
    calls: list[float] = []

    def sampler(store: StateStore, run_id: int, force: bool) -> None:
        calls.append(time.monotonic())
        raise TypeError("an engine answered with something unexpected")

    # A heartbeat every 0.5 s.
    run = RunRecord(tmp_path, uuid.uuid4().hex, "main", 2.0, sample=sampler)
    try:
        time.sleep(1.8)
        store = StateStore.read(tmp_path)
        assert store is not None
        try:
            beat = store.conn.execute(
                "SELECT MAX(at) FROM heartbeats WHERE run_id = ?", (run.run_id,)
            ).fetchone()[0]
        finally:
            store.close()
    finally:
        run.close("finished")
    # Sampled at the start and at each beat, and each beat written although every sample failed.
    assert len(calls) >= 3
    assert beat is not None and time.time() - beat < 1.0


def test_a_sampler_that_raises_never_stops_the_loop(tmp_path: Path) -> None:
    from pytest_orchestrator.loop.controller import Loop

    stop = tmp_path / "stop"
    calls: list[int] = []

    def sampler(store: StateStore) -> None:
        calls.append(1)
        raise TypeError("psutil answered with something unexpected")

    def start_round(number: int) -> subprocess.Popen[bytes]:
        # One round, then the stop file ends the loop as an operator would.
        stop.touch()
        return subprocess.Popen([sys.executable, "-c", "pass"])

    lines: list[str] = []
    loop = Loop(tmp_path, 0.2, stop, 0.2, start_round, lines.append, sample=sampler)
    # The loop takes SIGTERM and SIGINT in the main thread: this process gets its own back.
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert loop.run() == 0
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert calls and loop.round == 1
    assert lines[-1] == f"orchestrator loop: stopped (stop file {stop}) after 1 rounds"


def test_a_sample_that_hangs_never_holds_up_the_heartbeat(tmp_path: Path) -> None:
    """A sample waits on the Docker engine; beats late past the freeze threshold make a live run look dead."""
    release = threading.Event()
    entered = threading.Event()

    def sampler(store: StateStore, run_id: int, force: bool) -> None:
        entered.set()
        # An engine that does not answer until the test is done looking.
        release.wait(60)

    # A heartbeat every 0.5 s.
    run = RunRecord(tmp_path, uuid.uuid4().hex, "main", 2.0, sample=sampler)
    try:
        assert entered.wait(30)
        beats: set[float] = set()
        deadline = time.monotonic() + 30
        while len(beats) < 2 and time.monotonic() < deadline:
            store = StateStore.read(tmp_path)
            assert store is not None
            row = store.conn.execute("SELECT at FROM heartbeats WHERE run_id = ?", (run.run_id,)).fetchone()
            store.close()
            if row is not None:
                beats.add(row[0])
            time.sleep(0.1)
        # Two distinct beats written while the sample still hangs.
        assert not release.is_set() and len(beats) >= 2
    finally:
        release.set()
        run.close("finished")
