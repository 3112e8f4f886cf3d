"""The checks from the numbers (`task_backlog`, `error_rate`, `last_completion`) in real health runs.

`pytest --orchestrator-health` runs in a subprocess over a state database written through the
orchestrator's own store, with Docker unreachable: these checks read the state alone, so a
stopped sandbox never skips them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.state import StateStore

HOUR = 3600.0
NUMBERS = ("task_backlog", "error_rate", "last_completion")

pytestmark = pytest.mark.usefixtures("dead_docker")


def health(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    """`pytest --orchestrator-health` in its own process, as CI runs it; stdout is the document."""
    result = pytester.runpytest_subprocess("--orchestrator-health", "-p", "no:cacheprovider", *args)
    assert "Traceback" not in result.stderr.str()
    return result, json.loads("\n".join(result.outlines))


def seed(state_dir: Path, *, pending: int, last_hour: list[str], completed_ago: float, now: float) -> None:
    """`pending` queued tasks, attempts that ended in the last hour, and a completion `completed_ago` back."""
    store = StateStore.open(state_dir)
    run = store.begin_run(now=now - 5 * HOUR)
    old = store.start_attempt(run, "plans/x.md", "0.1", now=now - completed_ago - 60)
    store.finish_attempt(old, "completed", now=now - completed_ago)
    for n, status in enumerate(last_hour):
        attempt = store.start_attempt(run, "plans/x.md", f"1.{n}", now=now - 3000 + 60 * n)
        store.finish_attempt(attempt, status, now=now - 2900 + 60 * n)
    with store.writing() as conn:
        conn.executemany(
            "INSERT INTO queue (plan, task_id, position, enqueued_at, reason) VALUES (?, ?, ?, ?, 'pending')",
            [("plans/y.md", f"2.{n}", n, now - 60) for n in range(pending)],
        )
    store.close()


def seed_behind(state_dir: Path) -> None:
    """Past every default threshold: 21 pending; 5 of 6 failed in the last hour (a timeout is a
    failure, a question is not); none completed for 2 h."""
    statuses = ["failed", "failed", "timeout", "failed", "timeout", "needs_human"]
    seed(state_dir, pending=21, last_hour=statuses, completed_ago=2 * HOUR, now=time.time())


def selected() -> list[str]:
    return [arg for name in NUMBERS for arg in ("--orchestrator-check", name)]


def test_the_numbers_within_their_thresholds_are_healthy(pytester: pytest.Pytester) -> None:
    # 20 pending is not more than 20; 1 failed of 10 (with the completion 5 min ago) is not more
    # than 10 %.
    statuses = ["failed"] + ["completed"] * 8
    seed(pytester.path / ".orchestrator", pending=20, last_hour=statuses, completed_ago=300, now=time.time())
    result, doc = health(pytester, *selected())
    assert (result.ret, doc["status"]) == (0, "healthy")
    assert list(doc["checks"]) == list(NUMBERS)
    checks = doc["checks"]
    assert {name: checks[name]["status"] for name in NUMBERS} == dict.fromkeys(NUMBERS, "ok")
    assert {name: checks[name]["level"] for name in NUMBERS} == dict.fromkeys(NUMBERS, "warning")
    assert checks["task_backlog"]["message"] == "20 tasks pending (at most 20)"
    assert checks["task_backlog"]["metrics"] == {"pending_tasks": 20}
    assert checks["error_rate"]["message"] == (
        "1 of 10 finished attempts failed in the last hour (10%, at most 10%)"
    )
    assert checks["error_rate"]["metrics"] == {"error_rate": 0.1}
    assert checks["last_completion"]["message"] == "20 tasks pending; completed tasks: the last 5m ago"


def test_a_backlog_errors_and_a_silence_degrade_the_health(pytester: pytest.Pytester) -> None:
    seed_behind(pytester.path / ".orchestrator")
    result, doc = health(pytester, *selected())
    # Warnings: degraded, and a degraded run still exits 0.
    assert (result.ret, doc["status"]) == (0, "degraded")
    checks = doc["checks"]
    assert {name: checks[name]["status"] for name in NUMBERS} == dict.fromkeys(NUMBERS, "failed")
    assert checks["task_backlog"]["message"].startswith(
        "21 tasks pending, more than 20: the runs fall behind"
    )
    assert checks["error_rate"]["message"] == (
        "5 of 6 finished attempts failed in the last hour (83%, more than 10%): "
        "see `orchestrator crashes --since 1h` for why"
    )
    assert checks["error_rate"]["metrics"] == {"error_rate": pytest.approx(5 / 6, abs=1e-4)}
    assert checks["last_completion"]["message"].startswith(
        "21 tasks pending and no task completed in the last 60m (the last 2.0h ago): is the loop running?"
    )
    assert checks["last_completion"]["metrics"]["last_completion_age"] == pytest.approx(2 * HOUR, abs=30)

    # With the whole health run the sandbox's failure makes it unhealthy; these still ran.
    result, doc = health(pytester)
    assert doc["status"] == "unhealthy"
    assert {name: doc["checks"][name]["status"] for name in NUMBERS} == dict.fromkeys(NUMBERS, "failed")


def test_thresholds_come_from_the_config_file(pytester: pytest.Pytester) -> None:
    seed_behind(pytester.path / ".orchestrator")
    (pytester.path / "orchestrator.yaml").write_text(
        "health:\n  task_backlog: 21\n  error_rate: 0.9\n  error_rate_min_tasks: 6\n  last_completion: 10800\n"
    )
    result, doc = health(pytester, *selected())
    assert (result.ret, doc["status"]) == (0, "healthy")
    assert doc["checks"]["task_backlog"]["message"] == "21 tasks pending (at most 21)"
    assert doc["checks"]["error_rate"]["message"] == (
        "5 of 6 finished attempts failed in the last hour (83%, at most 90%)"
    )
    # Too few finished attempts to judge: the rate is not held against the run.
    (pytester.path / "orchestrator.yaml").write_text("health:\n  error_rate_min_tasks: 7\n")
    result, doc = health(pytester, "--orchestrator-check", "error_rate")
    assert (result.ret, doc["status"]) == (0, "healthy")
    assert doc["checks"]["error_rate"]["message"] == (
        "5 of 6 finished attempts failed in the last hour: too few to judge (at least 7)"
    )


def test_no_state_is_healthy(pytester: pytest.Pytester) -> None:
    result, doc = health(pytester, *selected())
    assert (result.ret, doc["status"]) == (0, "healthy")
    assert doc["checks"]["task_backlog"]["message"] == "0 tasks pending (at most 20)"
    assert doc["checks"]["last_completion"]["message"] == "0 tasks pending; completed tasks: none yet"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "  error_rate: 10\n",
            "orchestrator.yaml:2: error_rate must be a fraction from 0 to 1 (0.1 is 10 %), not 10",
        ),
        (
            "  task_backlog: many\n",
            "orchestrator.yaml:2: task_backlog must be a whole number >= 1, not 'many'",
        ),
        (
            "  last_completion: -5\n",
            "orchestrator.yaml:2: last_completion must be a finite number > 0, not -5",
        ),
        ("  backlog: 3\n", "orchestrator.yaml:2: unknown key 'backlog' (did you mean 'task_backlog'?)"),
    ],
)
def test_a_bad_health_section_is_a_usage_error_naming_the_line(
    pytester: pytest.Pytester, section: str, message: str
) -> None:
    (pytester.path / "orchestrator.yaml").write_text("health:\n" + section)
    result = pytester.runpytest_subprocess("--orchestrator-health")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()
