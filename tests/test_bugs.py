"""Bug reports: when a fingerprint's crashes become one, the BUG-NNN.md file, and GitHub issues.

Real SQLite in tmp_path; GitHub is a scripted REST server on loopback that records every request.
Time is the desk's `clock`, so the rate limit is tested without waiting.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.crashes import Crash
from pytest_orchestrator.crashes.bugs import LOG_CHARS, LOG_LINES, Bug, BugDesk, priority_for, render
from pytest_orchestrator.crashes.config import DEFAULT_PRIORITY, MonitorSpec, TrackerSpec
from pytest_orchestrator.crashes.github import TrackerError, deliver, file_issue, token_from
from pytest_orchestrator.crashes.store import BugStore, CrashStore
from pytest_orchestrator.state import StateError, StateStore
from tests.support.github_server import GitHubServer, Received

API_KEY = "sk-ant-api03-" + "Bu9Rep" * 8
GH_TOKEN = "ghp_" + "Tr4ck3r" * 6
SECRETS = (API_KEY, GH_TOKEN)

T0 = 1_800_000_000.0
HOUR = 3600.0
FINGERPRINT = "ImportError|app/main.py:<module>"

LOG = f"""\
starting agent for task 1.1
Traceback (most recent call last):
  File "/workspace/app/main.py", line 3, in <module>
    from app.skills import SkillNames
ImportError: cannot import name 'SkillNames' from 'app.skills' (/workspace/app/skills.py)
ERROR: agent exited; ANTHROPIC_API_KEY={API_KEY} GH_TOKEN={GH_TOKEN}
"""


class Clock:
    """The desk's time, moved by the test."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def crash(at: float, subject: str = "1.1", fingerprint: str = FINGERPRINT, **fields: Any) -> Crash:
    values: dict[str, Any] = {
        "kind": "task",
        "subject": subject,
        "at": at,
        "error_type": "ImportError",
        "message": f"cannot import name 'SkillNames' from 'app.skills' (token {GH_TOKEN})",
        "fingerprint": fingerprint,
        "plan": "plans/skills.md",
        "pid": 4242,
        "exit_code": 1,
        "log_tail": LOG,
        "respawned": True,
        "root_cause": "ImportError: cannot import name 'SkillNames' from 'app.skills' (at app/main.py:3 in <module>)",
        "files": ("app/main.py", "app/skills.py"),
    }
    values.update(fields)
    return Crash(**values)


class Desk:
    """A state database in tmp_path, and a BugDesk on it with its own clock."""

    def __init__(self, state_dir: Path, spec: MonitorSpec | None = None, now: float = T0) -> None:
        self.state_dir = state_dir
        self.store = StateStore.open(state_dir)
        self.clock = Clock(now)
        self.spec = spec or MonitorSpec()
        self.desk = BugDesk(self.store, self.spec, state_dir, clock=self.clock)

    def crash(self, at: float | None = None, **fields: Any) -> Bug | None:
        """Record a crash now (or at `at`) and ask the desk, as the monitor does after each crash."""
        c = crash(self.clock.now if at is None else at, **fields)
        CrashStore(self.store).record(c)
        return self.desk.consider(c.fingerprint)

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.store.conn.execute(sql, args)]


@pytest.fixture
def desks(tmp_path: Path) -> Iterator[Callable[..., Desk]]:
    opened: list[Desk] = []

    def open_desk(spec: MonitorSpec | None = None, now: float = T0) -> Desk:
        desk = Desk(tmp_path / ".orchestrator", spec, now)
        opened.append(desk)
        return desk

    yield open_desk
    for desk in opened:
        desk.store.close()


@pytest.fixture
def github() -> Iterator[GitHubServer]:
    with GitHubServer() as server:
        yield server


def tracker(server: GitHubServer) -> TrackerSpec:
    return TrackerSpec("github", "acme/widgets", server.url)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    # Nor a recognisable piece of one.
    assert "Bu9Rep" not in text and "Tr4ck3r" not in text


def filed(d: Desk, times: int = 3) -> tuple[Bug, Path]:
    """`times` crashes a minute apart, the last of which is due a report, filed."""
    bug = None
    for i in range(times):
        d.clock.now += 60 if i else 0
        bug = d.crash()
    assert bug is not None
    path = d.desk.file(bug)
    assert path is not None
    return bug, path


# ---- when a report is due ----


def test_threshold_third_crash_files_one_report_and_fourth_within_the_hour_none(
    desks: Callable[..., Desk],
) -> None:
    d = desks()
    assert d.crash() is None
    d.clock.now += 60
    assert d.crash() is None
    d.clock.now += 60
    bug = d.crash()
    assert bug is not None
    assert (bug.number, bug.update, bug.crashes, bug.category) == (None, False, 3, "crash")
    assert (bug.first_seen, bug.last_seen) == (T0, T0 + 120)
    assert bug.priority == "High"  # ImportError, by the default mapping

    path = d.desk.file(bug)
    assert path == d.state_dir / "bugs" / "BUG-001.md"
    assert path.is_file() and bug.number == 1 and bug.path == str(path)
    assert d.rows(
        "SELECT number, fingerprint, crashes, first_reported_at, last_reported_at FROM bug_reports"
    ) == [(1, FINGERPRINT, 3, T0 + 120, T0 + 120)]
    assert d.rows("SELECT bug_number FROM agent_crashes") == [(1,), (1,), (1,)]

    d.clock.now += 600
    assert d.crash() is None
    assert sorted(p.name for p in path.parent.iterdir()) == ["BUG-001.md"]


def test_threshold_is_configurable_and_counts_only_the_retention_window(desks: Callable[..., Desk]) -> None:
    d = desks(MonitorSpec(crash_threshold_for_bug=2, retention_days=1))
    # A crash eight days ago no longer counts toward the threshold.
    assert d.crash(at=T0 - 8 * 24 * HOUR) is None
    assert d.crash() is None
    d.clock.now += 60
    bug = d.crash()
    assert bug is not None and bug.crashes == 2 and bug.first_seen == T0


def test_other_fingerprints_do_not_count(desks: Callable[..., Desk]) -> None:
    d = desks()
    assert d.crash() is None
    assert d.crash(fingerprint="RuntimeError|boom") is None
    assert d.crash(fingerprint="RuntimeError|boom") is None
    bug = d.crash(fingerprint="RuntimeError|boom", error_type="RuntimeError")
    assert bug is not None and bug.fingerprint == "RuntimeError|boom" and bug.priority == "Medium"
    assert d.desk.consider(FINGERPRINT) is None


def test_rate_limit_survives_a_new_desk_and_a_later_report_updates_the_first(
    desks: Callable[..., Desk],
) -> None:
    first = desks()
    bug, path = filed(first)
    reported_at = first.clock.now
    first.store.close()

    # A restarted monitor: a new connection, a new desk, half an hour later.
    again = desks(now=reported_at + HOUR / 2)
    assert again.crash() is None
    again.clock.now = reported_at + HOUR - 1
    assert again.crash() is None

    again.clock.now = reported_at + HOUR
    update = again.crash()
    assert update is not None
    assert (update.update, update.number, update.crashes) == (True, 1, 6)
    assert update.first_seen == T0 and update.last_seen == reported_at + HOUR
    assert again.desk.file(update) == path
    assert update.update is True

    assert sorted(p.name for p in path.parent.iterdir()) == ["BUG-001.md"]
    text = path.read_text(encoding="utf-8")
    assert "- **Crashes:** 6" in text
    assert "- **Last seen:** 2027-01-15 09:02:00 UTC" in text
    assert again.rows("SELECT number, crashes, first_reported_at, last_reported_at FROM bug_reports") == [
        (1, 6, reported_at, reported_at + HOUR)
    ]
    assert again.rows("SELECT COUNT(*) FROM agent_crashes WHERE bug_number = 1") == [(6,)]


def test_no_update_without_a_crash_since_the_report(desks: Callable[..., Desk]) -> None:
    d = desks()
    filed(d)
    # Due by the clock, but nothing happened since the report: a periodic caller files nothing.
    d.clock.now += 2 * HOUR
    assert d.desk.consider(FINGERPRINT) is None
    update = d.crash()
    assert update is not None and update.update and update.crashes == 4


def test_a_second_process_that_lost_the_race_files_nothing(desks: Callable[..., Desk]) -> None:
    one, two = desks(), desks()
    for _ in range(3):
        one.crash()
    mine, theirs = one.desk.consider(FINGERPRINT), two.desk.consider(FINGERPRINT)
    assert mine is not None and theirs is not None
    assert one.desk.file(mine) is not None
    assert two.desk.file(theirs) is None
    assert theirs.number is None
    assert one.rows("SELECT COUNT(*) FROM bug_reports") == [(1,)]
    assert [p.name for p in (one.state_dir / "bugs").iterdir()] == ["BUG-001.md"]


# ---- priority ----


def test_priority_by_mapping_and_critical_past_ten() -> None:
    mapping = dict(DEFAULT_PRIORITY)
    assert priority_for("ImportError", 3, mapping) == "High"
    assert priority_for("RuntimeError", 3, mapping) == "Medium"
    assert priority_for("TimeoutError", 3, mapping) == "Low"
    assert priority_for("KeyError", 3, mapping) == "Medium"
    assert priority_for("requests.exceptions.TimeoutError", 3, mapping) == "Low"
    assert priority_for("TimeoutError", 10, mapping) == "Low"
    assert priority_for("TimeoutError", 11, mapping) == "Critical"
    assert priority_for("TimeoutError", 3, mapping, freeze=True) == "Critical"
    assert priority_for("TimeoutError", 5, mapping, critical_after=4) == "Critical"
    assert priority_for("KeyError", 3, {"KeyError": "Low"}) == "Low"


def test_critical_past_ten_crashes_through_the_desk(desks: Callable[..., Desk]) -> None:
    d = desks(MonitorSpec(crash_threshold_for_bug=10, bug_priority={"ImportError": "Low"}))
    for _ in range(9):
        assert d.crash() is None
    tenth = d.crash()
    assert tenth is not None and tenth.priority == "Low"
    assert d.desk.file(tenth) is not None
    d.clock.now += HOUR
    eleventh = d.crash()
    assert eleventh is not None and eleventh.priority == "Critical" and eleventh.crashes == 11
    path = d.desk.file(eleventh)
    assert path is not None and "- **Priority:** Critical" in path.read_text(encoding="utf-8")
    assert d.rows("SELECT priority FROM bug_reports") == [("Critical",)]


# ---- the report's content ----


def test_report_file_has_every_section_and_no_secret(desks: Callable[..., Desk]) -> None:
    d = desks()
    d.crash(subject="1.2")
    d.crash(subject="1.2")
    bug = d.crash()
    assert bug is not None
    path = d.desk.file(bug)
    assert path is not None
    text = path.read_text(encoding="utf-8")
    assert_no_secret(text)
    assert_no_secret(json.dumps(bug.to_dict()))
    assert_no_secret(json.dumps(d.rows("SELECT * FROM bug_reports")))

    assert text.startswith("# BUG-001: Task 1.1 crashes with ImportError: cannot import name 'SkillNames'")
    for line in (
        "- **Priority:** High",
        "- **Category:** crash",
        "- **Task:** 1.1",
        "- **Crashes:** 3",
        "- **First seen:** 2027-01-15 08:00:00 UTC",
        f"- **Fingerprint:** `{FINGERPRINT}`",
        "## Root cause",
        "ImportError: cannot import name 'SkillNames' from 'app.skills' (at app/main.py:3 in <module>)",
        "1. Plan `plans/skills.md`, task 1.1",
        "2. Run `orchestrator task plans/skills.md 1.1`",
        "- `app/main.py`",
        "- `app/skills.py`",
    ):
        assert line in text.splitlines(), line
    assert "The same crash came from the tasks 1.1, 1.2." in text
    assert "exited with code 1, and was respawned" in text
    logs = text.split("## Logs", 1)[1]
    assert "```text\nstarting agent for task 1.1\n" in logs
    assert "ERROR: agent exited; ANTHROPIC_API_KEY=*** GH_TOKEN=***\n```\n" in logs


def test_report_uses_the_orchestrator_command_and_a_fence_the_log_cannot_close(
    desks: Callable[..., Desk], tmp_path: Path
) -> None:
    d = desks()
    desk = BugDesk(d.store, d.spec, d.state_dir, command="pytest plans/ --orchestrator-loop", clock=d.clock)
    log = "output:\n```\nnot the end\n````\n"
    for _ in range(3):
        CrashStore(d.store).record(crash(d.clock.now, log_tail=log, files=()))
    bug = desk.consider(FINGERPRINT)
    assert bug is not None
    text = render(bug, 7)
    assert "2. Run `pytest plans/ --orchestrator-loop`" in text
    assert "none found in the log" in text
    assert "`````text\noutput:\n```\nnot the end\n````\n`````\n" in text


def test_component_crash_report(desks: Callable[..., Desk]) -> None:
    d = desks()
    bug = None
    for _ in range(3):
        bug = d.crash(
            kind="component",
            subject="mcp",
            plan=None,
            exit_code=None,
            signal=9,
            error_type="OOMKilled",
            message="",
            root_cause=None,
            files=(),
            fingerprint="component|mcp|oom",
        )
    assert bug is not None
    assert (bug.kind, bug.subject, bug.title) == ("component", "mcp", "Component mcp crashes with OOMKilled")
    assert bug.root_cause == "OOMKilled"
    assert bug.steps == [
        "Start the watchdog with the component `mcp`: `orchestrator up`",
        "Observe: OOMKilled (it was killed by signal 9)",
    ]
    assert bug.priority == "Medium"


def test_log_tail_is_bounded(desks: Callable[..., Desk]) -> None:
    d = desks()
    long_log = "".join(f"line {i}\n" for i in range(5000))
    bug = None
    for _ in range(3):
        bug = d.crash(log_tail=long_log)
    assert bug is not None
    assert bug.logs.splitlines() == [f"line {i}" for i in range(5000 - LOG_LINES, 5000)]


def test_numbers_go_on_after_reports_left_on_disk(desks: Callable[..., Desk]) -> None:
    d = desks()
    bugs_dir = d.state_dir / "bugs"
    bugs_dir.mkdir()
    # A state database started over, with the reports of its predecessor still there.
    (bugs_dir / "BUG-999.md").write_text("# an older report\n", encoding="utf-8")
    _, first = filed(d)
    assert first.name == "BUG-1000.md"
    assert (bugs_dir / "BUG-999.md").read_text(encoding="utf-8") == "# an older report\n"
    for _ in range(3):
        second = d.crash(fingerprint="RuntimeError|other")
    assert second is not None
    assert d.desk.file(second) == bugs_dir / "BUG-1001.md"


def test_a_failed_write_leaves_no_report_and_the_report_stays_due(
    desks: Callable[..., Desk], tmpfs: Callable[..., Path]
) -> None:
    d = desks()
    disk = tmpfs("64k")
    (d.state_dir / "bugs").symlink_to(disk)
    # Fill the disk, so that the report's own bytes cannot be written.
    with open(disk / "filler", "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"x" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    for _ in range(3):
        bug = d.crash(log_tail=LOG * 200)
    assert bug is not None
    with pytest.raises(StateError, match=r"cannot write bug report in .*bugs: No space left on device"):
        d.desk.file(bug)
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    assert d.rows("SELECT COUNT(*) FROM bug_reports") == [(0,)]
    assert d.rows("SELECT COUNT(*) FROM agent_crashes WHERE bug_number IS NOT NULL") == [(0,)]

    (disk / "filler").unlink()
    again = d.desk.consider(FINGERPRINT)
    assert again is not None
    path = d.desk.file(again)
    assert (
        path is not None and path.name == "BUG-001.md" and path.read_text(encoding="utf-8").endswith("```\n")
    )


# ---- freezes ----


def test_freeze_is_a_critical_report_with_the_same_rate_limit(desks: Callable[..., Desk]) -> None:
    d = desks()
    bug = d.desk.freeze(
        "runner", "the loop's heartbeat is 5400 s old (threshold 300 s)", log_tail=f"polling {GH_TOKEN}\n"
    )
    assert bug is not None
    assert (bug.priority, bug.category, bug.crashes, bug.update) == ("Critical", "freeze", 1, False)
    assert bug.title == "Orchestrator loop frozen (runner)"
    assert bug.fingerprint.startswith("freeze-")
    path = d.desk.file(bug)
    assert path is not None
    text = path.read_text(encoding="utf-8")
    assert_no_secret(text)
    assert "- **Priority:** Critical" in text and "- **Freezes:** 1" in text
    assert "the loop's heartbeat is 5400 s old (threshold 300 s)" in text

    d.clock.now += HOUR / 2
    assert d.desk.freeze("runner", "still frozen") is None
    other = d.desk.freeze("mcp-loop", "frozen too")
    assert other is not None and other.fingerprint != bug.fingerprint

    d.clock.now += HOUR / 2
    again = d.desk.freeze("runner", "frozen again")
    assert again is not None
    assert (again.update, again.number, again.crashes, again.first_seen) == (True, 1, 2, T0)
    assert d.desk.file(again) == path


# ---- GitHub ----


def only_json_requests(server: GitHubServer) -> list[tuple[str, str, Any]]:
    return [(r.method, r.path, r.body) for r in server.received]


def assert_clean_requests(server: GitHubServer, token: str) -> None:
    for r in server.received:
        assert r.headers["Authorization"] == f"Bearer {token}"
        assert r.headers["Accept"] == "application/vnd.github+json"
        assert r.headers["X-GitHub-Api-Version"] == "2022-11-28"
        assert r.headers["User-Agent"].startswith("pytest-orchestrator/")
        assert_no_secret(r.path + r.raw.decode())
        others = {k: v for k, v in r.headers.items() if k != "Authorization"}
        assert_no_secret(json.dumps(others))


def test_github_issue_for_a_new_report(desks: Callable[..., Desk], github: GitHubServer) -> None:
    d = desks()
    bug, path = filed(d)
    warnings: list[str] = []
    url = deliver(bug, tracker(github), {"GH_TOKEN": GH_TOKEN}, warnings.append)
    assert warnings == []
    assert url == "https://github.com/acme/widgets/issues/1"
    d.desk.mark_delivered(bug, url)
    assert d.rows("SELECT url FROM bug_reports") == [(url,)]

    assert len(github.received) == 1
    request: Received = github.received[0]
    assert (request.method, request.path) == ("POST", "/repos/acme/widgets/issues")
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == {
        "title": f"BUG-001: {bug.title}",
        "body": path.read_text(encoding="utf-8"),
        "labels": ["bug", "priority:high"],
    }
    assert (
        "ImportError: cannot import name 'SkillNames' from 'app.skills' (at app/main.py:3 in <module>)"
        in request.body["body"]
    )
    assert "ANTHROPIC_API_KEY=*** GH_TOKEN=***" in request.body["body"]
    assert_clean_requests(github, GH_TOKEN)


@pytest.mark.parametrize(("priority", "label"), [("Critical", "priority:critical"), ("Low", "priority:low")])
def test_github_labels_follow_the_priority(
    desks: Callable[..., Desk], github: GitHubServer, priority: str, label: str
) -> None:
    d = desks(MonitorSpec(bug_priority={"ImportError": priority}, critical_crashes_per_hour=100))
    bug, _ = filed(d)
    assert bug.priority == priority
    assert file_issue(bug, tracker(github), GH_TOKEN) == "https://github.com/acme/widgets/issues/1"
    assert github.received[0].body["labels"] == ["bug", label]


def test_github_update_patches_the_issue_and_comments_instead_of_a_second_issue(
    desks: Callable[..., Desk], github: GitHubServer
) -> None:
    d = desks()
    bug, path = filed(d)
    url = deliver(bug, tracker(github), {"GITHUB_TOKEN": GH_TOKEN}, pytest.fail)
    assert url is not None
    d.desk.mark_delivered(bug, url)

    d.clock.now += HOUR
    update = d.crash()
    assert update is not None and update.update and update.url == url
    assert d.desk.file(update) == path
    assert deliver(update, tracker(github), {"GITHUB_TOKEN": GH_TOKEN}, pytest.fail) == url

    assert [(m, p) for m, p, _ in only_json_requests(github)] == [
        ("POST", "/repos/acme/widgets/issues"),
        ("PATCH", "/repos/acme/widgets/issues/1"),
        ("POST", "/repos/acme/widgets/issues/1/comments"),
    ]
    patch, comment = github.received[1].body, github.received[2].body
    assert patch == {"body": path.read_text(encoding="utf-8")}
    assert "- **Crashes:** 4" in patch["body"]
    assert comment["body"].startswith(
        "Crashed again: 4 times so far, the last at 2027-01-15 09:02:00 UTC; priority High."
    )
    assert github.issues[1]["body"] == patch["body"] and len(github.issues) == 1
    assert_clean_requests(github, GH_TOKEN)


def test_github_update_of_a_deleted_issue_files_a_new_one(
    desks: Callable[..., Desk], github: GitHubServer
) -> None:
    d = desks()
    bug, _ = filed(d)
    d.desk.mark_delivered(bug, "https://github.com/acme/widgets/issues/77")
    d.clock.now += HOUR
    update = d.crash()
    assert update is not None
    d.desk.file(update)
    url = file_issue(update, tracker(github), GH_TOKEN)
    assert url == "https://github.com/acme/widgets/issues/1"
    assert [(m, p) for m, p, _ in only_json_requests(github)] == [
        ("PATCH", "/repos/acme/widgets/issues/77"),
        ("POST", "/repos/acme/widgets/issues"),
    ]


def test_an_undelivered_report_is_filed_as_new_on_its_update(
    desks: Callable[..., Desk], github: GitHubServer
) -> None:
    d = desks()
    bug, _ = filed(d)
    github.fail(500, "Server Error")
    assert deliver(bug, tracker(github), {"GH_TOKEN": GH_TOKEN}, lambda line: None) is None
    d.clock.now += HOUR
    update = d.crash()
    assert update is not None and update.update and update.url is None
    d.desk.file(update)
    assert deliver(update, tracker(github), {"GH_TOKEN": GH_TOKEN}, pytest.fail) is not None
    assert [(m, p) for m, p, _ in only_json_requests(github)] == [
        ("POST", "/repos/acme/widgets/issues"),
        ("POST", "/repos/acme/widgets/issues"),
    ]


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (500, "Server Error", "answered 500: Server Error"),
        (401, "Bad credentials", "answered 401: Bad credentials (check GH_TOKEN)"),
        (
            404,
            "Not Found",
            "answered 404: Not Found (check the repository name, and that the token can see it)",
        ),
    ],
)
def test_github_error_is_one_warning_and_the_file_stays(
    desks: Callable[..., Desk], github: GitHubServer, status: int, message: str, expected: str
) -> None:
    d = desks()
    bug, path = filed(d)
    github.fail(status, message)
    warnings: list[str] = []
    assert deliver(bug, tracker(github), {"GH_TOKEN": GH_TOKEN}, warnings.append) is None
    assert warnings == [
        f"BUG-001 not sent to GitHub (acme/widgets): POST {github.url}/repos/acme/widgets/issues {expected}; "
        f"the report stays in {path}"
    ]
    assert path.is_file()
    assert d.rows("SELECT url FROM bug_reports") == [(None,)]
    assert_clean_requests(github, GH_TOKEN)


def test_github_validation_errors_name_the_field(desks: Callable[..., Desk], github: GitHubServer) -> None:
    d = desks()
    bug, _ = filed(d)
    too_long = "body is too long (maximum is 65536 characters)"
    github.fail(
        422,
        "Validation Failed",
        errors=[{"resource": "Issue", "code": "custom", "field": "body", "message": too_long}],
    )
    with pytest.raises(TrackerError, match=rf"answered 422: Validation Failed; {re.escape(too_long)}$"):
        file_issue(bug, tracker(github), GH_TOKEN)


def test_github_unreachable_is_one_warning(desks: Callable[..., Desk]) -> None:
    d = desks()
    bug, _ = filed(d)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    warnings: list[str] = []
    spec = TrackerSpec("github", "acme/widgets", f"http://127.0.0.1:{port}")
    assert deliver(bug, spec, {"GH_TOKEN": GH_TOKEN}, warnings.append) is None
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert re.fullmatch(
        rf"BUG-001 not sent to GitHub \(acme/widgets\): POST http://127\.0\.0\.1:{port}/repos/acme/widgets/issues: "
        r"cannot connect \(\[Errno 111\] Connection refused\); the report stays in .*BUG-001\.md",
        warnings[0],
    ), warnings[0]


def test_github_without_a_token_warns_and_sends_nothing(
    desks: Callable[..., Desk], github: GitHubServer
) -> None:
    d = desks()
    bug, path = filed(d)
    warnings: list[str] = []
    assert deliver(bug, tracker(github), {"GH_TOKEN": "  ", "HOME": "/root"}, warnings.append) is None
    assert warnings == [
        f"BUG-001 not sent to GitHub (acme/widgets): set GH_TOKEN or GITHUB_TOKEN; the report stays in {path}"
    ]
    assert github.received == []


def test_files_tracker_delivers_nowhere(desks: Callable[..., Desk], github: GitHubServer) -> None:
    d = desks()
    bug, _ = filed(d)
    assert deliver(bug, TrackerSpec(), {"GH_TOKEN": GH_TOKEN}, pytest.fail) is None
    assert github.received == []


def test_token_from_the_host_environment() -> None:
    assert token_from({"GH_TOKEN": "a-token-1", "GITHUB_TOKEN": "b-token-2"}) == "a-token-1"
    assert token_from({"GH_TOKEN": "", "GITHUB_TOKEN": " b-token-2 "}) == "b-token-2"
    assert token_from({"PATH": os.defpath}) is None


def test_a_token_without_a_known_shape_never_reaches_the_request_body(
    desks: Callable[..., Desk], github: GitHubServer
) -> None:
    d = desks()
    plain = "plain-token-without-shape"
    bug, _ = filed(d)
    bug.description += f" (seen with {plain})"
    file_issue(bug, tracker(github), plain)
    request = github.received[0]
    assert request.headers["Authorization"] == f"Bearer {plain}"
    assert plain not in request.raw.decode() and "(seen with ***)" in request.body["body"]


def test_a_token_cut_by_the_log_tail_is_masked_before_the_cut(desks: Callable[..., Desk]) -> None:
    d = desks()
    # The tail keeps the last LOG_CHARS characters, which begin inside the token.
    log = "a" * 100 + GH_TOKEN + " " + "b" * (LOG_CHARS - 10)
    bug = None
    for _ in range(3):
        bug = d.crash(log_tail=log)
    assert bug is not None
    assert bug.logs.endswith("b" * 100)
    assert_no_secret(bug.logs)


def test_reports_are_stored_per_fingerprint(desks: Callable[..., Desk]) -> None:
    d = desks()
    bug, path = filed(d)
    row = BugStore(d.store).of(FINGERPRINT)
    assert row is not None and row.number == bug.number == 1 and row.path == str(path)
    assert BugStore(d.store).get(1) == row
    assert BugStore(d.store).of("nothing") is None
