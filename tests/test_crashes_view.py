"""`orchestrator crashes` run as the operator runs it, over crash rows recorded by `CrashStore`, and retention.

Each command runs in a subprocess with `-X importtime` (through test_views' runner), which
also checks that pytest was never imported.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.crashes.model import Crash
from pytest_orchestrator.crashes.store import CrashStore
from pytest_orchestrator.state import MIGRATIONS, StateStore
from tests.test_views import SECRET, orchestrator

MINUTE = 60.0


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose state directory is `state/`."""
    (tmp_path / "pytest.ini").write_text("[pytest]\norchestrator_state_dir = state\n")
    return tmp_path


@dataclass
class Seeded:
    now: float
    crashes: dict[str, list[Crash]]


def import_error(at: float, *, task: str = "1.1", respawned: bool = True) -> Crash:
    return Crash(
        kind="task",
        subject=task,
        at=at,
        error_type="ImportError",
        message=f"No module named 'foo' (token {SECRET})",
        fingerprint="ImportError:app/main.py:run",
        plan="plans/x.md",
        exit_code=1,
        respawned=respawned,
        root_cause=f"ImportError: No module named 'foo' (at app/main.py:12 in run) {SECRET}",
    )


def oom(at: float) -> Crash:
    return Crash(
        kind="component",
        subject="web",
        at=at,
        error_type="OOMKilled",
        message="exit 137 (OOMKilled)",
        fingerprint="OOMKilled:web",
        pid=4242,
        exit_code=137,
    )


def seed(project: Path) -> Seeded:
    """Two fingerprints inside the last hour, and older crashes of both, one only outside it."""
    now = time.time()
    store = StateStore.open(project / "state")
    rows = CrashStore(store)
    crashes = {
        # Recorded out of time order: the latest by time (10 minutes ago, task 1.3) has the
        # smallest id of the window, so the sample must be chosen by time, not by id.
        "ImportError:app/main.py:run": [
            import_error(now - 10 * MINUTE, task="1.3", respawned=False),
            import_error(now - 50 * MINUTE, task="1.1"),
            import_error(now - 30 * MINUTE, task="1.2"),
            import_error(now - 3 * 60 * MINUTE, task="1.0"),
        ],
        "OOMKilled:web": [oom(now - 20 * MINUTE), oom(now - 2 * 60 * MINUTE)],
        "TimeoutError:old": [
            dataclasses.replace(
                oom(now - 5 * 60 * MINUTE), fingerprint="TimeoutError:old", error_type="TimeoutError"
            )
        ],
    }
    for group in crashes.values():
        for crash in group:
            rows.record(crash)
    with store.writing() as conn:
        conn.execute(
            "INSERT INTO bug_reports (number, fingerprint, title, priority, category, crashes, "
            "first_reported_at, last_reported_at) VALUES (7, ?, 'ImportError in run', 'High', 'crash', 3, ?, ?)",
            ("ImportError:app/main.py:run", now, now),
        )
    store.close()
    return Seeded(now, crashes)


def expected_group(crashes: list[Crash], since: float, bug: int | None) -> dict[str, Any]:
    """The JSON object of one group, computed from the crashes recorded."""
    inside = [c for c in crashes if c.at >= since]
    latest = max(inside, key=lambda c: c.at)
    return {
        "fingerprint": latest.fingerprint,
        "error_type": latest.error_type,
        "count": len(inside),
        "respawned": sum(c.respawned for c in inside),
        "first_seen": iso(min(c.at for c in inside)),
        "last_seen": iso(latest.at),
        "sample": {
            "kind": latest.kind,
            "subject": latest.subject,
            "plan": latest.plan,
            "message": latest.message.replace(SECRET, "***"),
            "root_cause": latest.root_cause.replace(SECRET, "***") if latest.root_cause else None,
            "at": iso(latest.at),
        },
        "bug": bug,
    }


def test_json_lists_the_groups_of_the_window_with_counts_times_and_the_latest_sample(project: Path) -> None:
    seeded = seed(project)
    started = time.time()
    ran = orchestrator(project, "crashes", "--since", "1h", "--json")
    assert (ran.code, ran.err) == (0, "")
    document = json.loads(ran.out)
    since = datetime.fromisoformat(document["since"]).timestamp()
    # The window starts an hour before the command ran.
    assert started - 3600 - 0.01 <= since <= time.time() - 3600
    imports, ooms = seeded.crashes["ImportError:app/main.py:run"], seeded.crashes["OOMKilled:web"]
    assert document["groups"] == [expected_group(imports, since, 7), expected_group(ooms, since, None)]
    # What that means, spelled out: 3 ImportErrors of the last hour, the latest by time first.
    first = document["groups"][0]
    assert (first["count"], first["respawned"], first["sample"]["subject"]) == (3, 2, "1.3")
    assert SECRET not in ran.out


def test_a_longer_window_takes_in_the_older_crashes(project: Path) -> None:
    seeded = seed(project)
    document = json.loads(orchestrator(project, "crashes", "--since", "4h", "--json").out)
    since = datetime.fromisoformat(document["since"]).timestamp()
    imports, ooms = seeded.crashes["ImportError:app/main.py:run"], seeded.crashes["OOMKilled:web"]
    assert document["groups"] == [expected_group(imports, since, 7), expected_group(ooms, since, None)]
    assert [g["count"] for g in document["groups"]] == [4, 2]
    # An ISO time is a window's start too; one without a zone is local time (UTC here).
    start = seeded.now - 6 * 60 * MINUTE
    local = datetime.fromtimestamp(start, UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    document = json.loads(orchestrator(project, "crashes", "--since", local, "--json").out)
    assert document["since"] == iso(float(int(start)))
    assert [g["fingerprint"] for g in document["groups"]] == [
        "ImportError:app/main.py:run",
        "OOMKilled:web",
        "TimeoutError:old",
    ]
    assert [g["count"] for g in document["groups"]] == [4, 2, 1]


def test_the_terminal_view_is_a_table_with_each_groups_cause_masked(project: Path) -> None:
    seed(project)
    ran = orchestrator(project, "crashes", "--since", "1h")
    assert (ran.code, ran.err) == (0, "")
    lines = ran.out.splitlines()
    assert re.fullmatch(r"Crashes since \d\d:\d\d:\d\d: 4 in 2 groups", lines[0])
    assert lines[2].split() == [
        "COUNT",
        "LAST",
        "SEEN",
        "FIRST",
        "SEEN",
        "RESPAWNED",
        "ERROR",
        "LATEST",
        "BUG",
    ]
    assert lines[3].split() == [
        "3",
        "10m",
        "ago",
        "50m",
        "ago",
        "2",
        "ImportError",
        "plans/x.md::1.3",
        "BUG-007",
    ]
    assert lines[4].strip() == "ImportError: No module named 'foo' (at app/main.py:12 in run) ***"
    assert lines[5].split() == ["1", "20m", "ago", "20m", "ago", "0", "OOMKilled", "component", "web", "-"]
    assert lines[6].strip() == "exit 137 (OOMKilled)"
    assert len(lines) == 7
    # The columns line up: each row's error type starts where its heading does.
    assert lines[2].index("ERROR") == lines[3].index("ImportError") == lines[5].index("OOMKilled")
    assert "\033[" not in ran.out and SECRET not in ran.out


def test_a_window_without_crashes_says_so(project: Path) -> None:
    seed(project)
    ran = orchestrator(project, "crashes", "--since", "5m")
    assert (ran.code, ran.err) == (0, "")
    assert re.fullmatch(r"No crashes since \d\d:\d\d:\d\d\.\n", ran.out)
    assert json.loads(orchestrator(project, "crashes", "--since", "5m", "--json").out)["groups"] == []


@pytest.mark.parametrize("value", ["3x", "24", "-1h", "yesterday", "2026-13-01", "1.5.h", ""])
def test_a_bad_since_is_one_line_and_exit_2(project: Path, value: str) -> None:
    seed(project)
    ran = orchestrator(project, "crashes", f"--since={value}")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err.splitlines()[-1] == (
        "orchestrator crashes: error: argument --since: expected a time span (90s, 30m, 24h, 7d) or an "
        f"ISO date/time (2026-11-23, 2026-11-23T14:00), not {value!r}"
    )
    assert "Traceback" not in ran.err


def test_no_state_is_one_line_and_success_without_creating_anything(project: Path) -> None:
    message = f"orchestrator: no crashes recorded: there is no state database in {project / 'state'} yet"
    ran = orchestrator(project, "crashes")
    assert (ran.code, ran.out, ran.err) == (0, "", message)
    as_json = orchestrator(project, "crashes", "--json")
    assert (as_json.code, as_json.err) == (0, message)
    assert json.loads(as_json.out)["groups"] == []
    assert not (project / "state").exists()


def test_a_state_database_older_than_crash_records_has_none(project: Path) -> None:
    (project / "state").mkdir()
    conn = sqlite3.connect(project / "state" / "state.db")
    for script in MIGRATIONS[:4]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    ran = orchestrator(project, "crashes", "--json")
    assert (ran.code, ran.err, json.loads(ran.out)["groups"]) == (0, "", [])
    # Read-only: the old database was not upgraded.
    conn = sqlite3.connect(project / "state" / "state.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
    conn.close()


def test_groups_limit_keeps_the_most_recently_seen(project: Path) -> None:
    seeded = seed(project)
    store = StateStore.read(project / "state")
    assert store is not None
    try:
        groups = CrashStore(store).groups(seeded.now - 24 * 60 * MINUTE, limit=2)
    finally:
        store.close()
    assert [(g.fingerprint, g.count, g.bug_number) for g in groups] == [
        ("ImportError:app/main.py:run", 4, 7),
        ("OOMKilled:web", 2, None),
    ]


# ---- retention ----


def _health_row(conn: sqlite3.Connection, at: float) -> None:
    conn.execute(
        "INSERT INTO health_checks (at, source, status, checks) VALUES (?, 'watchdog', 'healthy', '{}')",
        (at,),
    )


def test_prune_deletes_old_crash_health_and_resource_rows_in_batches_and_keeps_the_rest(
    project: Path,
) -> None:
    seeded = seed(project)
    store = StateStore.open(project / "state")
    with store.writing() as conn:
        for age in range(1, 8):
            _health_row(conn, seeded.now - age * 60 * MINUTE)
        # Resource samples 1 h, 2 h, 3 h and 4 h old.
        conn.executemany(
            "INSERT INTO resource_samples (at, kind, subject, name, cpu_seconds, memory_bytes) "
            "VALUES (?, 'process', 'pid 1 @ 0', 'main', 1.0, 1000)",
            [(seeded.now - age * 60 * MINUTE,) for age in range(1, 5)],
        )
    cutoff = seeded.now - 90 * MINUTE

    def ids(table: str, since: float = 0.0) -> list[int]:
        return [
            r[0] for r in store.conn.execute(f"SELECT id FROM {table} WHERE at >= ? ORDER BY id", (since,))
        ]

    before = {table: ids(table, cutoff) for table in ("agent_crashes", "health_checks", "resource_samples")}
    assert [len(kept) for kept in before.values()] == [4, 1, 1]
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    deleted = CrashStore(store).prune(cutoff, batch=2)
    store.conn.set_trace_callback(None)
    # 3 old crashes (3 h, 2 h and 5 h old), 6 old health rows and 3 old resource samples.
    assert deleted == 3 + 6 + 3
    for table, kept in before.items():
        assert ids(table) == kept
    assert [r[0] for r in store.conn.execute("SELECT number FROM bug_reports")] == [7]
    # Each batch is its own write transaction: crashes 2 + 1, health rows 2 + 2 + 2 + 0,
    # resource samples 2 + 1.
    kinds = [s.split()[0] + (" " + s.split()[2] if s.startswith("DELETE") else "") for s in statements]
    transaction = ["BEGIN", "DELETE {}", "COMMIT"]
    assert kinds == [
        *[part.format("agent_crashes") for part in transaction] * 2,
        *[part.format("health_checks") for part in transaction] * 4,
        *[part.format("resource_samples") for part in transaction] * 2,
    ]
    assert CrashStore(store).prune(cutoff) == 0
    store.close()


def test_a_long_prune_lets_another_writer_in_between_batches(project: Path) -> None:
    """20,000 old rows at 200 a batch: a crash recorded meanwhile waits for a batch, not all 100."""
    state = project / "state"
    store = StateStore.open(state)
    now = time.time()
    with store.writing() as conn:
        conn.executemany(
            "INSERT INTO agent_crashes (at, kind, subject, error_type, message, fingerprint, log_tail) "
            "VALUES (?, 'task', '1.1', 'RuntimeError', 'boom', 'fp', ?)",
            ((now - 30 * 86400 + i, "x" * 1000) for i in range(20_000)),
        )
    store.close()
    batches: list[float] = []
    started = threading.Event()
    deleted: list[int] = []

    def on_statement(sql: str) -> None:
        if sql.startswith("DELETE FROM agent_crashes"):
            batches.append(time.monotonic())
            started.set()

    def prune() -> None:
        pruning = StateStore.open(state)
        pruning.conn.set_trace_callback(on_statement)
        deleted.append(CrashStore(pruning).prune(now - 7 * 86400, batch=200))
        pruning.close()

    thread = threading.Thread(target=prune)
    thread.start()
    assert started.wait(10)
    writer = StateStore.open(state, wait=10)
    CrashStore(writer).record(import_error(time.time()))
    recorded_at = time.monotonic()
    writer.close()
    thread.join(60)
    assert deleted == [20_000]
    # 100 full batches and the empty one that ends the loop.
    assert len(batches) == 101
    # The pause between batches lets the waiting writer in at once; without it, the writer's
    # busy handler, polling, found the lock taken again for about a dozen batches.
    assert sum(1 for at in batches if at < recorded_at) <= 3
