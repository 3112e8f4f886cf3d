"""A running attempt's turns and tokens so far, recorded while the real Claude Code CLI works.

The model is a script on loopback that answers slowly; the CLI, the container and the state
database are real. The test reads the attempt row from another connection during the run,
as `orchestrator dashboard` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_orchestrator.state import StateStore
from tests.conftest import task_run_args
from tests.support.messages_server import reply, tool_use

PLAN = """\
# Milestone

## Task 1.1: Count slowly

**Description:**
Run a few commands.

**Acceptance Criteria:**
- [ ] Done
"""
# Each model call: (input, cache read) tokens as the call starts; the answer comes `SLOW` s later.
CALLS = [(1000, 0), (1200, 40), (1400, 80), (1600, 120)]
SLOW = 1.5


@pytest.fixture(autouse=True)
def _env(agent_env: None) -> None:
    """Agents run with known secrets in the environment."""


def _watch(state_dir: Any, seen: list[tuple[Any, ...]], stop: threading.Event) -> None:
    """Poll the attempt row read-only until `stop`: each distinct (status, turns, tokens) seen."""
    while not stop.wait(0.05):
        store = StateStore.read(state_dir)
        if store is None:
            continue
        try:
            row = store.conn.execute(
                "SELECT status, num_turns, input_tokens, cache_read_tokens FROM attempts ORDER BY id"
            ).fetchone()
        except Exception:  # the schema is being written
            row = None
        finally:
            store.close()
        if row is not None and (not seen or seen[-1] != tuple(row)):
            seen.append(tuple(row))


def test_a_running_attempt_records_its_turns_and_tokens_on_the_beat(
    pytester: pytest.Pytester,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    steps = [
        tool_use(
            "Bash",
            {"command": f"echo step {n}"},
            usage={"input_tokens": tokens, "output_tokens": 30, "cache_read_input_tokens": cached},
            delay=SLOW,
        )
        for n, (tokens, cached) in enumerate(CALLS[:-1])
    ]
    last_in, last_cached = CALLS[-1]
    steps.append(
        reply(
            "Done.\nSTATUS: complete",
            usage={"input_tokens": last_in, "output_tokens": 30, "cache_read_input_tokens": last_cached},
            delay=SLOW,
        )
    )
    sandbox = agent_sandbox(messages_server(*steps))
    (pytester.path / "plans").mkdir()
    (pytester.path / "plans" / "slow.md").write_text(PLAN)
    seen: list[tuple[Any, ...]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(pytester.path / ".orchestrator", seen, stop))
    watcher.start()
    started = time.monotonic()
    try:
        # A 10 s freeze threshold beats every second.
        result = pytester.runpytest_subprocess(
            "plans/slow.md", "--orchestrator-freeze-threshold", "10", *task_run_args(sandbox)
        )
    finally:
        stop.set()
        watcher.join()
    took = time.monotonic() - started
    assert result.ret == 0, result.stdout.str()

    running = [row for row in seen if row[0] == "running"]
    progress = [row[1:] for row in running if row[1] > 0]
    # The figures so far: each call counted once (Claude Code repeats a call's usage in one
    # event per content block), as its usage stood when the call began.
    expected = {
        (turns, sum(t for t, _ in CALLS[:turns]), sum(c for _, c in CALLS[:turns]))
        for turns in range(1, len(CALLS) + 1)
    }
    assert progress, f"no progress recorded while the attempt ran: {seen}"
    assert set(progress) <= expected, seen
    # Several beats during the run, turns only growing.
    assert len(progress) >= 2, seen
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    # At most one write per beat interval (1 s), however many events arrived.
    assert len(progress) <= took + 1
    # The end replaces the figures so far with the agent's own.
    assert seen[-1][:3] == ("completed", len(CALLS), sum(t for t, _ in CALLS))
