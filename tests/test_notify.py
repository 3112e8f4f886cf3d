"""Webhook notifications, against real receivers on loopback: what arrives, once, signed and redacted.

Plan runs are real pytest sessions with the scripted agent of test_runs (no Docker, no
Claude); health runs are real `pytest --orchestrator-health` processes, each its own, so
the deduplication is across processes as in production; the watchdog and the loop run for
real in a thread of this process.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.config_file import ConfigFileError, load
from pytest_orchestrator.monitor.component import Status
from pytest_orchestrator.notify import EVENTS, SECRET_ENV, Notifier, NotifySpec, notify_spec
from pytest_orchestrator.notify.deliver import DELIVERY_HEADER, SIGNATURE_HEADER, post, verify
from pytest_orchestrator.notify.events import Notification
from pytest_orchestrator.retry import RetryPolicy
from pytest_orchestrator.state import StateStore
from pytest_orchestrator.state.components import ComponentStore
from tests import test_tasks_e2e as e2e
from tests.conftest import AGENT_API_KEY, AGENT_GH_TOKEN, task_run_args
from tests.support.messages_server import reply
from tests.support.webhook_receiver import DeadReceiver, Receiver
from tests.test_loop import wait_for
from tests.test_runs import PLAN, project, script, write_plan
from tests.test_watchdog import FAST, Running, component

__all__ = ["project"]

SECRET = "webhook-signing-secret-123"
# Shaped like a GitHub token: masked wherever it turns up, even if never in our environment.
FAKE_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


def config(path: Path, url: str, extra: str = "") -> None:
    (path / "orchestrator.yaml").write_text(
        f"notifications:\n  webhook_url: {url}\n  secret: {SECRET}\n" + extra, encoding="utf-8"
    )


def spec_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> NotifySpec:
    (tmp_path / "orchestrator.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return notify_spec(load(tmp_path / "orchestrator.yaml", environ or {}), environ or {})


# ---- the config section ----


def test_the_section_defaults_to_every_event_and_reads_the_secret_from_the_environment(
    tmp_path: Path,
) -> None:
    spec = spec_of(tmp_path, "notifications:\n  webhook_url: https://hooks.example.com/T0/B0/xyz\n")
    assert spec.enabled and spec.events == frozenset(EVENTS) and spec.timeout == 5.0 and spec.secret == ""
    assert spec.destination == "https://hooks.example.com"
    from_env = spec_of(
        tmp_path,
        "notifications:\n  webhook_url: http://127.0.0.1:9/x\n  events: [task_failed]\n  timeout: 2\n",
        {SECRET_ENV: "from-the-env"},
    )
    assert (from_env.secret, from_env.events, from_env.timeout) == ("from-the-env", {"task_failed"}, 2.0)
    # A URL from an unset variable turns the notifications off, in a file that can be committed.
    off = spec_of(tmp_path, "notifications:\n  webhook_url: ${SLACK_WEBHOOK:-}\n  events: [run_finished]\n")
    assert not off.enabled and not off.wants("run_finished")
    assert not notify_spec(None, {}).enabled


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "  webhook_url: ftp://x/y\n",
            "orchestrator.yaml:2: webhook_url must be an http(s) URL with a host, not 'ftp://x/y'",
        ),
        ("  webhook_url: [a]\n", "orchestrator.yaml:2: webhook_url must be an http(s) URL, not ['a']"),
        (
            "  webhook_url: https://x/y\n  events:\n    - task_failed\n    - task_faild2\n",
            "orchestrator.yaml:5: unknown event 'task_faild2' (did you mean 'task_failed'?)",
        ),
        (
            "  webhook_url: https://x/y\n  events: task_failed\n",
            "orchestrator.yaml:3: events must be a list of event names",
        ),
        (
            "  webhook_url: https://x/y\n  timeout: fast\n",
            "orchestrator.yaml:3: timeout must be a number, not 'fast'",
        ),
        (
            "  webhook_url: https://x/y\n  timeout: 0\n",
            "orchestrator.yaml:3: timeout must be a finite number > 0, not 0",
        ),
        ("  webhook_url: https://x/y\n  secret: 12\n", "orchestrator.yaml:3: secret must be a string"),
        (
            "  webhook_ur: https://x/y\n",
            "orchestrator.yaml:2: unknown key 'webhook_ur' (did you mean 'webhook_url'?)",
        ),
        ("  events: [task_failed]\n", "orchestrator.yaml:1: notifications needs webhook_url"),
    ],
)
def test_a_bad_section_names_its_file_and_line(tmp_path: Path, body: str, error: str) -> None:
    with pytest.raises(ConfigFileError) as raised:
        spec_of(tmp_path, "notifications:\n" + body)
    assert str(raised.value).startswith(error)


def test_a_plan_run_with_a_bad_section_is_one_usage_error(project: pytest.Pytester) -> None:
    config(project.path, "http://127.0.0.1:9/x", "  events: [task_failure]\n")
    result = project.runpytest("plans/x.md")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: orchestrator.yaml:4: unknown event 'task_failure' (did you mean 'task_failed'?)"]
    )
    assert not (project.path / "dispatched.log").exists()


# ---- delivery ----


def test_a_500_is_retried_with_backoff_and_the_next_success_ends_it(tmp_path: Path) -> None:
    with Receiver(statuses=(500, 503, 200)) as receiver:
        spec = NotifySpec(receiver.url, secret=SECRET, timeout=10)
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

        warning = post(Notification("task_failed", "t", "Task t failed"), spec, sleep=sleep)
        assert warning is None
        assert len(receiver.requests) == 3
        # One notification: every try carries the same delivery id and the same signed body.
        assert len({r.headers[DELIVERY_HEADER] for r in receiver.requests}) == 1
        assert len({r.body for r in receiver.requests}) == 1
        assert all(verify(r.body, SECRET, r.headers[SIGNATURE_HEADER]) for r in receiver.requests)
        # The retry policy's backoff: growing, jittered between half and all of each step.
        policy = RetryPolicy(attempts=6, delay=0.25, factor=2.0, max_delay=2.0)
        assert len(slept) == 2
        assert 0.125 <= slept[0] <= 0.25 and 0.25 <= slept[1] <= 0.5
        assert policy.delay == 0.25


def test_a_client_error_is_not_retried_and_a_server_error_stops_at_the_bound(tmp_path: Path) -> None:
    with Receiver(statuses=(404,)) as receiver:
        warning = post(Notification("run_finished", "r", "done"), NotifySpec(receiver.url, timeout=5))
        assert len(receiver.requests) == 1
        assert warning is not None and warning.startswith(
            f"webhook run_finished not delivered to http://127.0.0.1:{receiver.server.server_address[1]}: HTTP 404 (1 try in "
        )
    with Receiver(statuses=(500,)) as receiver:
        started = time.monotonic()
        warning = post(Notification("run_finished", "r", "done"), NotifySpec(receiver.url, timeout=1.5))
        took = time.monotonic() - started
        assert warning is not None and "HTTP 500" in warning and warning.endswith("; given up")
        assert len(receiver.requests) >= 2
        assert took < 1.5 + 1.0


def test_the_notifier_never_waits_on_a_dead_receiver_beyond_its_bound(tmp_path: Path) -> None:
    warnings: list[str] = []
    with DeadReceiver() as dead:
        notifier = Notifier(NotifySpec(dead.url + "/T0/secret-path", timeout=1.0), None, warnings.append)
        started = time.monotonic()
        for n in range(3):
            notifier.send(Notification("task_failed", f"t{n}", "failed"))
        queued = time.monotonic() - started
        notifier.close()
        closed = time.monotonic() - started
    assert queued < 0.5  # sending only queues
    assert closed < 1.0 + 2.0
    where = dead.url.rsplit("/", 1)[0]
    # Each given up on its own, or counted at the end among those not sent: three in all, once each.
    told = [
        w
        for w in warnings
        if w.startswith(f"webhook task_failed not delivered to {where}: no answer within 1s")
    ]
    *_, last = warnings
    counted = int(last.split()[0]) if last.endswith(f"not sent: {where} did not take them within 1s") else 0
    assert counted and len(told) + counted == 3, warnings
    # The URL's path (Slack's carries a token) is never printed.
    assert not any("secret-path" in w for w in warnings)


# ---- plan runs ----


def plan_with_a_failure(project: pytest.Pytester) -> None:
    write_plan(project, "y.md", "# Milestone 2\n\n## Task 2.1: Deploy\n\nShip it.\n")
    script(
        project,
        {
            "plans/x.md::1.2": [{"status": "needs_human", "question": "Postgres or SQLite?"}],
            "plans/y.md::2.1": [
                {"status": "failed", "error": f"push rejected: token {FAKE_TOKEN} lacks scope"}
            ],
        },
    )


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["single", "xdist"])
def test_task_events_and_the_run_arrive_once_signed_and_redacted(
    project: pytest.Pytester, workers: list[str]
) -> None:
    plan_with_a_failure(project)
    with Receiver() as receiver:
        config(project.path, receiver.url)
        result = project.runpytest("plans/x.md", "plans/y.md", *workers)
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        # Delivered before the run's process ended: it waits (at most the bound) for them.
        deliveries = receiver.delivered()
    assert sorted(d.event for d in deliveries) == ["run_finished", "task_failed", "task_needs_human"]
    for delivery in deliveries:
        assert verify(delivery.body, SECRET, delivery.headers[SIGNATURE_HEADER])
        assert delivery.headers["X-Orchestrator-Event"] == delivery.event
        assert FAKE_TOKEN not in delivery.body.decode()
        assert SECRET not in delivery.body.decode()
    by_event = {d.event: d.payload for d in deliveries}
    failed = by_event["task_failed"]
    assert failed["subject"] == "task 2.1 (Deploy) of plans/y.md"
    assert failed["text"] == "Task 2.1 of plans/y.md failed: push rejected: token *** lacks scope"
    assert failed["details"]["status"] == "failed" and failed["details"]["plan"] == "plans/y.md"
    assert failed["timestamp"].endswith("+00:00")
    human = by_event["task_needs_human"]
    assert human["text"] == "Task 1.2 of plans/x.md needs a human: Postgres or SQLite?"
    finished = by_event["run_finished"]
    # 1.3 is blocked by 1.2 and skipped: it never ran, so it is not counted.
    assert finished["details"]["by_status"] == {"completed": 1, "failed": 1, "needs_human": 1}
    assert finished["details"]["tasks"] == 3
    assert set(finished["details"]["plans"]) == {"plans/x.md", "plans/y.md"}


def test_a_task_whose_agent_raised_is_told_failed_and_counted_in_the_run(project: pytest.Pytester) -> None:
    project.makeconftest(
        "def pytest_orchestrator_dispatch(task, sandbox, config):\n"
        f"    raise RuntimeError('agent died holding {FAKE_TOKEN}')\n"
    )
    with Receiver() as receiver:
        config(project.path, receiver.url)
        result = project.runpytest("plans/x.md::1.1")
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        deliveries = receiver.delivered()
    by_event = {d.event: d.payload for d in deliveries}
    assert sorted(by_event) == ["run_finished", "task_failed"]
    assert by_event["task_failed"]["text"] == (
        "Task 1.1 of plans/x.md failed: RuntimeError: agent died holding ***"
    )
    assert by_event["run_finished"]["details"]["by_status"] == {"failed": 1}
    assert all(FAKE_TOKEN not in d.body.decode() for d in deliveries)
    result.stdout.fnmatch_lines(["*Task 1.1: FAILED*"])


def test_only_the_configured_events_are_sent(project: pytest.Pytester) -> None:
    plan_with_a_failure(project)
    with Receiver() as receiver:
        config(project.path, receiver.url, "  events: [run_finished]\n")
        project.runpytest("plans/x.md", "plans/y.md")
        assert receiver.events() == ["run_finished"]


def test_a_dead_receiver_does_not_slow_a_run_beyond_the_bound(project: pytest.Pytester) -> None:
    """The same failing run with no receiver configured and with one that never answers."""
    bound = 2.0
    script(project, {"*": [{"status": "failed", "error": "boom"}]})
    write_plan(
        project,
        "x.md",
        PLAN.replace("## Task 1.2", "## Task 1.2 [P]").replace("## Task 1.3", "## Task 1.3 [P]"),
    )

    def timed(*args: str) -> tuple[float, pytest.RunResult]:
        started = time.monotonic()
        result = project.runpytest("plans/x.md", "--orchestrator-rerun", *args)
        return time.monotonic() - started, result

    timed()  # warm-up: imports and the state database's creation are not the receiver's doing
    without, _ = timed()
    with DeadReceiver() as dead:
        config(project.path, dead.url, f"  timeout: {bound:g}\n")
        with_dead, result = timed()
        assert dead.accepted, "the run never tried the receiver"
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [f"orchestrator: warning: * not sent: http://127.0.0.1:* did not take them within {bound:g}s"]
    )
    # Three task events and the run's end are queued; the process waits for them at most once the bound.
    assert with_dead - without < bound + 5.0, (with_dead, without)


# ---- health runs ----


def health(path: Path) -> subprocess.CompletedProcess[str]:
    """One `pytest --orchestrator-health` process over the orchestrator check and a disk check."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--orchestrator-health",
            "-p",
            "no:cacheprovider",
            "-k",
            "orchestrator or disk",
        ],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_health_status_is_told_once_per_transition_across_runs(
    pytester: pytest.Pytester, dead_docker: str
) -> None:
    checks = pytester.mkdir("mychecks")
    pytester.makeini("[pytest]\norchestrator_check_paths = mychecks\n")
    # The disk check degrades while `full` exists, and makes the run unhealthy while `broken` does.
    (checks / "check_disk.py").write_text(
        textwrap.dedent(
            """
            import os
            import pytest

            @pytest.mark.check(level="warning")
            def check_disk(check):
                if os.path.exists("full"):
                    check.fail("disk 91% full: prune old workspaces")

            def check_disk_mount(check):
                if os.path.exists("broken"):
                    check.fail("disk not mounted")
            """
        )
    )
    StateStore.open(pytester.path / ".orchestrator").close()
    full, broken = pytester.path / "full", pytester.path / "broken"
    with Receiver() as receiver:
        config(pytester.path, receiver.url)

        def step(expected: str, *events: str) -> None:
            before = len(receiver.delivered())
            done = health(pytester.path)
            assert json.loads(done.stdout)["status"] == expected, done.stderr
            assert receiver.events()[before:] == list(events), done.stderr

        full.touch()
        step("degraded", "health_degraded")
        step("degraded")  # the same status again: nothing
        full.unlink()
        step("healthy")
        step("healthy")
        full.touch()
        step("degraded", "health_degraded")  # a new transition
        broken.touch()
        step("unhealthy", "health_unhealthy")
        step("unhealthy")
        broken.unlink()
        step("degraded", "health_degraded")
        payloads = [d.payload for d in receiver.delivered()]
    assert (
        payloads[0]["text"] == "Orchestrator health is degraded: disk (disk 91% full: prune old workspaces)"
    )
    assert payloads[1]["text"].startswith("Orchestrator health is degraded (was healthy): disk")
    assert payloads[2]["details"]["previous"] == "degraded"
    assert payloads[2]["details"]["failed"] == {
        "disk_mount": "disk not mounted",
        "disk": "disk 91% full: prune old workspaces",
    }


def test_the_sandbox_checks_alone_are_not_the_health(pytester: pytest.Pytester, dead_docker: str) -> None:
    """`orchestrator sandbox up` waits on the sandbox checks: those runs tell nobody."""
    StateStore.open(pytester.path / ".orchestrator").close()
    with Receiver() as receiver:
        config(pytester.path, receiver.url)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--orchestrator-health", "--orchestrator-check", "sandbox"],
            cwd=pytester.path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert json.loads(done.stdout)["status"] == "unhealthy"
        full = subprocess.run(
            [sys.executable, "-m", "pytest", "--orchestrator-health"],
            cwd=pytester.path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert json.loads(full.stdout)["status"] == "unhealthy"
        assert receiver.events() == ["health_unhealthy"]
        text = receiver.delivered()[0].payload["text"]
    assert text.startswith("Orchestrator health is unhealthy: sandbox (docker daemon not reachable at ")


# ---- the watchdog and the loop ----


def test_a_fatal_component_is_told_once_per_entry_and_the_watchdogs_stop_too(
    tmp_path: Path, clean_env: None
) -> None:
    with Receiver() as receiver:
        text = (
            FAST % {"limit": 2}
            + "  crasher:\n    command: [sh, -c, 'echo boom; exit 3']\n"
            + f"notifications:\n  webhook_url: {receiver.url}\n  secret: {SECRET}\n  timeout: 3\n"
        )
        run = Running(tmp_path, text)
        try:
            run.until(lambda: component(run, "crasher").status is Status.FATAL, what="FATAL")
            receiver.wait_for(1)

            def watchdog_unhealthy() -> list[dict[str, Any]]:
                told = [d.payload for d in receiver.delivered() if d.payload["subject"] == "watchdog"]
                return [p for p in told if p["details"]["status"] == "unhealthy"]

            def entries() -> tuple[int, str]:
                """The watchdog health's moves into unhealthy in its recorded rounds, and its last status."""
                store = StateStore.open(run.state)
                try:
                    rows = store.conn.execute(
                        "SELECT status FROM health_checks WHERE source = 'watchdog' ORDER BY id"
                    ).fetchall()
                finally:
                    store.close()
                statuses = [str(r[0]) for r in rows]
                moves = sum(
                    1 for before, now in itertools.pairwise([None, *statuses]) if now == "unhealthy" != before
                )
                return moves, statuses[-1] if statuses else ""

            # Each entry into unhealthy is told once: before FATAL, a round may have seen the
            # crasher up between two crashes, and the health left unhealthy and came back. Once
            # FATAL's round is told, rounds go on (a row each period) and nothing more is.
            wait_for(
                lambda: entries()[1] == "unhealthy" and len(watchdog_unhealthy()) == entries()[0] >= 1,
                timeout=15,
                what="the watchdog's unhealthy health told once per entry",
            )
            time.sleep(2)
            moves, last_status = entries()
            assert last_status == "unhealthy" and len(watchdog_unhealthy()) == moves >= 1
            fatal = [d for d in receiver.delivered() if d.event == "component_fatal"]
            assert len(fatal) == 1
            assert fatal[0].payload["subject"] == "crasher"
            assert fatal[0].payload["text"] == (
                "Component crasher is FATAL after 2 restarts: exited with code 3. Fix it, then `orchestrator restart crasher`"
            )
            assert verify(fatal[0].body, SECRET, fatal[0].headers[SIGNATURE_HEADER])
            assert {p["event"] for p in watchdog_unhealthy()} == {"health_unhealthy"}
            watchdog_health = [d.payload for d in receiver.delivered() if d.payload["subject"] == "watchdog"]
            assert watchdog_health[-1]["details"]["failed"] == {"crasher": "unhealthy"}

            store = StateStore.open(run.state)
            try:
                assert ComponentStore(store).request("crasher", "restart")
            finally:
                store.close()
            run.until(lambda: component(run, "crasher").restarts >= 3, what="a restart after the request")
            run.until(lambda: component(run, "crasher").status is Status.FATAL, what="FATAL again")
            deadline = time.monotonic() + 10
            while (
                len(receiver.events(lambda d: d.event == "component_fatal")) < 2
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            assert len(receiver.events(lambda d: d.event == "component_fatal")) == 2  # a new entry
        finally:
            run.stop()
        stopped = receiver.delivered()[-1].payload
    assert stopped["event"] == "orchestrator_stopped"
    assert stopped["text"] == "Orchestrator watchdog stopped: asked to stop"
    assert stopped["details"]["components"] == ["crasher"]


def test_the_loop_tells_its_rounds_tasks_and_why_it_stopped(project: pytest.Pytester) -> None:
    script(project, {"plans/x.md::1.2": [{"status": "failed", "error": f"no {FAKE_TOKEN}"}]})
    with Receiver() as receiver:
        (project.path / "orchestrator.yaml").write_text(
            f"loop:\n  poll_interval: 30\nnotifications:\n  webhook_url: {receiver.url}\n  timeout: 3\n",
            encoding="utf-8",
        )
        loop = subprocess.Popen(
            [sys.executable, "-m", "pytest", "plans", "--orchestrator-loop", "-p", "no:cacheprovider"],
            cwd=project.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: "run_finished" in receiver.events(), what="the first round's end")
            loop.send_signal(signal.SIGTERM)
            output = loop.communicate(timeout=60)[0].decode()
        finally:
            if loop.poll() is None:
                loop.kill()
                loop.wait()
        events = receiver.events()
        payloads = [d.payload for d in receiver.delivered()]
    assert loop.returncode == 2, output
    assert events == ["task_failed", "run_finished", "orchestrator_stopped"]
    assert payloads[0]["text"] == "Task 1.2 of plans/x.md failed: no ***"
    assert payloads[1]["details"]["by_status"] == {"completed": 1, "failed": 1}
    assert payloads[2]["text"] == "Orchestrator loop stopped: SIGTERM, after 1 round"
    assert payloads[2]["details"]["rounds"] == 1


def test_two_processes_seeing_the_same_change_tell_it_once(tmp_path: Path) -> None:
    from pytest_orchestrator.notify.dedupe import enter, last

    StateStore.open(tmp_path).close()
    barrier = threading.Barrier(8)
    changed: list[bool] = []

    def see() -> None:
        # A connection of its own, as another process has.
        store = StateStore.open(tmp_path)
        try:
            barrier.wait()
            changed.append(enter(store, "health:a,b", "degraded")[0])
        finally:
            store.close()

    threads = [threading.Thread(target=see) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(changed) == [False] * 7 + [True]
    store = StateStore.open(tmp_path)
    try:
        assert enter(store, "health:a,b", "healthy") == (True, "degraded")
        assert last(store, "health:a,b") == "healthy"
    finally:
        store.close()


def test_without_a_state_database_each_run_that_is_not_healthy_notifies(
    pytester: pytest.Pytester, dead_docker: str
) -> None:
    with Receiver() as receiver:
        config(pytester.path, receiver.url)
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "--orchestrator-health", "-k", "orchestrator or sandbox"],
                cwd=pytester.path,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert json.loads(done.stdout)["status"] == "unhealthy"
        assert receiver.events() == ["health_unhealthy", "health_unhealthy"]
    # A health run reads the state: it does not create one to remember.
    assert not (pytester.path / ".orchestrator" / "state.db").exists()


# ---- with the real Claude Code CLI ----


def test_the_real_agents_failure_is_told_redacted(
    pytester: pytest.Pytester,
    agent_env: None,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    """Claude Code in the Debian sandbox, its model a script that answers with the host's token in the error."""
    error = f"push rejected with GH_TOKEN={AGENT_GH_TOKEN} (also tried {FAKE_TOKEN})"
    sandbox = agent_sandbox(messages_server(reply(f"STATUS: failed\nERROR: {error}")))
    plan = e2e.write_plan(pytester, e2e.ONE_TASK.format(title="Push the branch"))
    with Receiver() as receiver:
        config(pytester.path, receiver.url)
        result = pytester.runpytest_subprocess(plan, *task_run_args(sandbox))
        assert result.ret == 1, result.stdout.str()
        deliveries = receiver.delivered()
    assert [d.event for d in deliveries] == ["task_failed", "run_finished"]
    for delivery in deliveries:
        body = delivery.body.decode()
        assert AGENT_GH_TOKEN not in body and FAKE_TOKEN not in body and AGENT_API_KEY not in body
        assert verify(delivery.body, SECRET, delivery.headers[SIGNATURE_HEADER])
    failed = deliveries[0].payload
    assert failed["text"] == f"Task 1.1 of {plan} failed: push rejected with GH_TOKEN=*** (also tried ***)"
    assert failed["details"]["tokens"] > 0
    assert deliveries[1].payload["details"]["by_status"] == {"failed": 1}
