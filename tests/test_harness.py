"""`pytest --orchestrator-health` as a user sees it, run through pytester; no Docker engine needed.

The Docker endpoint is pointed at a socket where nothing listens, so the sandbox
check fails the way it does on a machine whose daemon is down.
"""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.state import StateStore
from tests.support.checks import CHECKS


def document(result: pytest.RunResult) -> dict[str, Any]:
    """stdout parsed as JSON: it must be the health document and nothing else."""
    return json.loads("\n".join(result.outlines))


pytestmark = pytest.mark.usefixtures("dead_docker")


@pytest.fixture
def custom_checks(pytester: pytest.Pytester) -> Path:
    """A directory of user checks, registered through the ini file."""
    directory = pytester.mkdir("mychecks")
    pytester.makeini("[pytest]\norchestrator_check_paths = mychecks\n")
    return directory


def test_daemon_down_fails_sandbox_and_skips_the_gated_checks(
    pytester: pytest.Pytester, dead_docker: str
) -> None:
    result = pytester.runpytest("--orchestrator-health")
    doc = document(result)
    assert result.ret == 1
    assert doc["status"] == "unhealthy"
    assert list(doc["checks"]) == list(CHECKS)
    sandbox = doc["checks"]["sandbox"]
    assert sandbox["status"] == "failed"
    assert f"docker daemon not reachable at {dead_docker}" in sandbox["message"]
    assert "systemctl start docker" in sandbox["message"]
    for gated in ("claude_code", "claude_auth", "github_token", "zombies"):
        assert doc["checks"][gated] == {
            **doc["checks"][gated],
            "status": "skipped",
            "message": "sandbox not running",
        }
    assert doc["checks"]["orchestrator"]["status"] == "ok"
    assert doc["checks"]["orchestrator"]["message"] == "idle"
    # The checks from the numbers read the state alone: the sandbox does not gate them.
    for numbers in ("task_backlog", "error_rate", "last_completion"):
        assert doc["checks"][numbers]["status"] == "ok"
    assert all(entry["duration"] >= 0 for entry in doc["checks"].values())
    # pytest's own report went to stderr, so stdout stayed parseable.
    result.stderr.fnmatch_lines(["*1 failed, 4 passed, 4 skipped*"])
    assert "Traceback" not in result.stderr.str()


def test_gate_holds_when_the_sandbox_check_is_deselected(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--orchestrator-health", "-k", "claude_auth")
    doc = document(result)
    assert list(doc["checks"]) == ["claude_auth"]
    assert doc["checks"]["claude_auth"]["status"] == "skipped"
    assert doc["checks"]["claude_auth"]["message"] == "sandbox not running"
    # A skipped check is not a failure.
    assert (doc["status"], result.ret) == ("healthy", 0)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-k", "orchestrator"], ["orchestrator"]),
        # -k matches names by substring: the sandbox's checks; -m matches one marker exactly.
        (["-k", "sandbox"], ["sandbox"]),
        (["-m", "sandbox"], ["sandbox"]),
        (["-k", "zombies"], ["zombies"]),
        (["-m", "github_token"], ["github_token"]),
        (
            ["-m", "check and not sandbox"],
            list(CHECKS[1:]),
        ),
        (["--orchestrator-check", "zombies"], ["zombies"]),
        (
            ["--orchestrator-check", "orchestrator", "--orchestrator-check", "sandbox"],
            ["sandbox", "orchestrator"],
        ),
    ],
)
def test_selection_runs_only_the_selected_checks(
    pytester: pytest.Pytester, args: list[str], expected: list[str]
) -> None:
    result = pytester.runpytest("--orchestrator-health", *args)
    assert list(document(result)["checks"]) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--orchestrator-check", "nope"],
            "ERROR: unknown check 'nope'; known checks: sandbox, claude_code, claude_auth*",
        ),
        (
            ["-k", "nothing_like_this"],
            "ERROR: no check matches -k 'nothing_like_this'; known checks:*",
        ),
        (
            ["--orchestrator-docker-timeout", "soon"],
            "ERROR: invalid docker timeout 'soon' from --orchestrator-docker-timeout*",
        ),
        (
            ["--orchestrator-freeze-threshold", "-5"],
            "ERROR: invalid freeze threshold '-5' from --orchestrator-freeze-threshold*",
        ),
        (
            ["--orchestrator-otlp-endpoint", "collector:4318"],
            "ERROR: invalid otlp endpoint 'collector:4318'*http://*",
        ),
        (["tests/"], "ERROR: --orchestrator-health runs the health checks and takes no paths*"),
        (
            ["--orchestrator-check-paths", "missing_dir"],
            "ERROR: check path *missing_dir (from --orchestrator-check-paths) is not a .py file or a directory",
        ),
    ],
)
def test_bad_input_is_a_one_line_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest("--orchestrator-health", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert result.outlines == [] or not "".join(result.outlines).strip().startswith("{")
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_bad_values_name_their_origin_in_env_and_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DOCKER_TIMEOUT", "abc")
    result = pytester.runpytest("--orchestrator-health")
    result.stderr.fnmatch_lines(["ERROR: invalid docker timeout 'abc' from ORCHESTRATOR_DOCKER_TIMEOUT*"])
    monkeypatch.delenv("ORCHESTRATOR_DOCKER_TIMEOUT")
    pytester.makeini("[pytest]\norchestrator_sandbox = \n    \norchestrator_docker_timeout = 0\n")
    result = pytester.runpytest("--orchestrator-health")
    result.stderr.fnmatch_lines(["ERROR: invalid docker timeout '0' from ini orchestrator_docker_timeout*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_orchestrator_check_needs_health_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--orchestrator-check", "sandbox")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --orchestrator-check needs --orchestrator-health"])


def test_plain_pytest_runs_are_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert '"checks"' not in result.stdout.str()


def test_settings_resolve_flag_over_env_over_ini_over_default(
    pytester: pytest.Pytester, custom_checks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (custom_checks / "check_settings.py").write_text(
        textwrap.dedent(
            """
            def check_settings(orchestrator_settings, check):
                s = orchestrator_settings
                check.ok(f"{s.sandbox}|{s.docker_timeout}|{s.origin['sandbox']}|{s.origin['docker_timeout']}")
            """
        )
    )

    def message(*args: str) -> str:
        result = pytester.runpytest("--orchestrator-health", "-k", "settings", *args)
        return str(document(result)["checks"]["settings"]["message"])

    assert message() == "orchestrator-sandbox|5.0|default|default"
    pytester.makeini(
        "[pytest]\norchestrator_check_paths = mychecks\n"
        "orchestrator_sandbox = from-ini\norchestrator_docker_timeout = 7\n"
    )
    assert message() == "from-ini|7.0|ini orchestrator_sandbox|ini orchestrator_docker_timeout"
    monkeypatch.setenv("ORCHESTRATOR_SANDBOX", "from-env")
    assert message() == "from-env|7.0|ORCHESTRATOR_SANDBOX|ini orchestrator_docker_timeout"
    assert message("--orchestrator-sandbox", "from-flag") == (
        "from-flag|7.0|--orchestrator-sandbox|ini orchestrator_docker_timeout"
    )


def test_warning_level_failures_degrade_but_exit_zero(pytester: pytest.Pytester, custom_checks: Path) -> None:
    (custom_checks / "check_disk.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.check(level="warning")
            def check_disk(check):
                check.fail("disk 91% full: prune old workspaces")
            """
        )
    )
    result = pytester.runpytest(
        "--orchestrator-health", "-k", "orchestrator or disk", "--json-report", "--json-report-file", "r.json"
    )
    doc = document(result)
    # The JSON report tells the same exit code as the process.
    assert json.loads((pytester.path / "r.json").read_text())["exitcode"] == 0
    assert doc["checks"]["disk"] == {
        **doc["checks"]["disk"],
        "status": "failed",
        "level": "warning",
        "message": "disk 91% full: prune old workspaces",
    }
    assert (doc["status"], result.ret) == ("degraded", 0)
    # An error-level failure next to it still makes the run unhealthy.
    result = pytester.runpytest("--orchestrator-health", "-k", "sandbox or disk")
    assert (document(result)["status"], result.ret) == ("unhealthy", 1)


def test_user_checks_get_markers_and_errors_become_messages(
    pytester: pytest.Pytester, custom_checks: Path
) -> None:
    (custom_checks / "check_mine.py").write_text(
        textwrap.dedent(
            """
            def check_queue(check):
                raise ValueError("queue depth unknown")

            def check_plain_assert():
                assert 1 + 1 == 3, "arithmetic is broken"

            def helper_not_a_check():
                raise AssertionError("never collected")
            """
        )
    )
    result = pytester.runpytest("--orchestrator-health", "-m", "queue or plain_assert", "--strict-markers")
    checks = document(result)["checks"]
    assert checks["queue"]["status"] == "failed"
    assert checks["queue"]["message"] == "ValueError: queue depth unknown"
    assert checks["plain_assert"]["message"].startswith("AssertionError: arithmetic is broken")
    assert "helper_not_a_check" not in result.stderr.str()


def test_a_check_name_defined_twice_is_a_usage_error(pytester: pytest.Pytester, custom_checks: Path) -> None:
    (custom_checks / "check_again.py").write_text("def check_sandbox(check):\n    pass\n")
    result = pytester.runpytest("--orchestrator-health")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: check 'sandbox' is defined twice: checks/check_sandbox.py::check_sandbox and mychecks/check_again.py::check_sandbox"
        ]
    )


def test_the_document_is_embedded_in_the_json_report(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--orchestrator-health", "--json-report", "--json-report-file", "report.json")
    report = json.loads((pytester.path / "report.json").read_text())
    assert report["health"] == document(result)
    assert report["exitcode"] == result.ret == 1
    assert {t["nodeid"] for t in report["tests"]} == {
        "checks/check_sandbox.py::check_sandbox",
        "checks/check_claude_code.py::check_claude_code",
        "checks/check_claude_auth.py::check_claude_auth",
        "checks/check_github_token.py::check_github_token",
        "checks/check_orchestrator.py::check_orchestrator",
        "checks/check_zombies.py::check_zombies",
        "checks/check_task_backlog.py::check_task_backlog",
        "checks/check_error_rate.py::check_error_rate",
        "checks/check_last_completion.py::check_last_completion",
    }


def test_checks_run_under_xdist(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--orchestrator-health", "-n", "2")
    doc = document(result)
    assert result.ret == 1
    assert {name: c["status"] for name, c in doc["checks"].items()} == {
        "sandbox": "failed",
        "claude_code": "skipped",
        "claude_auth": "skipped",
        "github_token": "skipped",
        "orchestrator": "ok",
        "zombies": "skipped",
        "task_backlog": "ok",
        "error_rate": "ok",
        "last_completion": "ok",
    }


@pytest.fixture
def silent_daemon(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and never answers, like a wedged daemon."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_daemon_that_does_not_answer_fails_within_the_timeout(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, silent_daemon: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", silent_daemon)
    started = time.monotonic()
    result = pytester.runpytest("--orchestrator-health", "--orchestrator-docker-timeout", "0.5")
    elapsed = time.monotonic() - started
    sandbox = document(result)["checks"]["sandbox"]
    assert sandbox["status"] == "failed"
    assert sandbox["message"].startswith(f"docker daemon at {silent_daemon} did not answer within 0.5s")
    assert result.ret == 1
    # A hang guard, not a benchmark: without the timeout this would wait forever.
    assert elapsed < 60


# ---- the orchestrator check reads the real state database ----


def _state_with_running_task(state_dir: Path, heartbeat_age: float, engine: str | None = None) -> None:
    store = StateStore.open(state_dir)
    run = store.begin_run()
    now = time.time()
    store.start_attempt(run, "plans/hello_world.md", "1.1", "Create hello.py", now=now - 125, engine=engine)
    store.heartbeat(run, now=now - heartbeat_age)
    store.close()


def test_orchestrator_reports_the_running_task(pytester: pytest.Pytester) -> None:
    _state_with_running_task(pytester.path / ".orchestrator", heartbeat_age=3)
    result = pytester.runpytest("--orchestrator-health", "-k", "orchestrator")
    check = document(result)["checks"]["orchestrator"]
    assert check["status"] == "ok"
    assert check["message"] == "working on task 1.1 (plans/hello_world.md), started 2m ago"


def test_orchestrator_names_the_engine_of_a_task_running_elsewhere(pytester: pytest.Pytester) -> None:
    _state_with_running_task(pytester.path / ".orchestrator", heartbeat_age=3, engine="tcp://host-b:2375")
    result = pytester.runpytest("--orchestrator-health", "-k", "orchestrator")
    check = document(result)["checks"]["orchestrator"]
    assert (
        check["message"] == "working on task 1.1 (plans/hello_world.md), started 2m ago on tcp://host-b:2375"
    )


def test_orchestrator_fails_when_the_heartbeat_is_stale(pytester: pytest.Pytester) -> None:
    _state_with_running_task(pytester.path / "state", heartbeat_age=400)
    result = pytester.runpytest(
        "--orchestrator-health", "-k", "orchestrator", "--orchestrator-state-dir", "state"
    )
    check = document(result)["checks"]["orchestrator"]
    assert result.ret == 1
    assert check["status"] == "failed"
    assert check["message"].startswith("orchestrator frozen: no heartbeat for 40")
    assert "(threshold 300s) while working on task 1.1" in check["message"]
    # A higher threshold from the ini file accepts the same heartbeat.
    pytester.makeini("[pytest]\norchestrator_freeze_threshold = 600\norchestrator_state_dir = state\n")
    result = pytester.runpytest("--orchestrator-health", "-k", "orchestrator")
    assert document(result)["checks"]["orchestrator"]["status"] == "ok"


def test_a_corrupt_state_database_is_a_clear_failure(pytester: pytest.Pytester) -> None:
    state = pytester.mkdir(".orchestrator")
    (state / "state.db").write_bytes(b"this is not sqlite" * 100)
    result = pytester.runpytest("--orchestrator-health", "-k", "orchestrator")
    check = document(result)["checks"]["orchestrator"]
    assert check["status"] == "failed"
    assert check["message"].startswith("cannot read state database ")
    assert "Traceback" not in result.stderr.str()


def test_orchestrator_health_command(pytester: pytest.Pytester) -> None:
    result = pytester.run("orchestrator", "health", "--check", "orchestrator")
    doc = document(result)
    assert (result.ret, list(doc["checks"]), doc["status"]) == (0, ["orchestrator"], "healthy")
    result = pytester.run("orchestrator", "health")
    assert result.ret == 1
    assert document(result)["checks"]["sandbox"]["status"] == "failed"
    result = pytester.run("orchestrator", "health", "--check", "bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: unknown check 'bogus'*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orchestrator-check", "nope"], "ERROR: unknown check 'nope'*"),
        (["-k", "nothing_like_this"], "ERROR: no check matches -k 'nothing_like_this'*"),
    ],
)
def test_bad_selection_under_xdist_is_still_a_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest("--orchestrator-health", "-n", "2", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "INTERNALERROR" not in result.stderr.str() + result.stdout.str()


def test_a_dist_mode_without_workers_still_runs_the_checks(pytester: pytest.Pytester) -> None:
    # `--dist` in addopts without `-n` starts no xdist controller: the checks run here.
    pytester.makepyfile(test_regular="def test_regular():\n    pass\n")
    result = pytester.runpytest("--orchestrator-health", "--dist", "load")
    assert list(document(result)["checks"]) == list(CHECKS)
    assert result.ret == 1


@pytest.mark.parametrize(
    ("env", "raw"),
    [
        ("ORCHESTRATOR_DOCKER_TIMEOUT", "inf"),
        ("ORCHESTRATOR_TASK_TIMEOUT", "nan"),
        ("ORCHESTRATOR_MAX_COST", "Infinity"),
        ("ORCHESTRATOR_RETRY_MAX_DELAY", "-inf"),
    ],
)
def test_non_finite_numbers_are_refused_where_they_are_given(env: str, raw: str, tmp_path: Path) -> None:
    from pytest_orchestrator.settings import ConfigError, Sources, resolve

    sources = Sources(
        flags={}, environ={env: raw}, ini=lambda key: "", ini_base=tmp_path, cwd=tmp_path, root=tmp_path
    )
    with pytest.raises(ConfigError) as caught:
        resolve(sources)
    assert str(caught.value).endswith(f"{raw!r} from {env}: expected a finite number > 0")


def test_the_orchestrator_check_reads_state_on_a_read_only_mount(
    pytester: pytest.Pytester, tmpfs: Any
) -> None:
    from pytest_orchestrator.state import StateStore
    from tests.conftest import remount_read_only

    state = tmpfs("1m")
    store = StateStore.open(state)
    run_id = store.begin_run("key")
    store.start_attempt(run_id, "plans/x.md", "1.1", "Write the parser")
    store.close()
    assert sorted(p.name for p in state.iterdir()) == ["state.db"]
    remount_read_only(state)
    result = pytester.runpytest(
        "--orchestrator-health",
        "--orchestrator-check",
        "orchestrator",
        "--orchestrator-state-dir",
        str(state),
    )
    check = document(result)["checks"]["orchestrator"]
    assert check["status"] == "ok", check
    assert check["message"].startswith("working on task 1.1 (plans/x.md), started ")
