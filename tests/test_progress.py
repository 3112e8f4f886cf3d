"""AttemptProgress on a real state database: counts from events, at most one write per beat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_orchestrator.progress import AttemptProgress, beat_interval
from pytest_orchestrator.state import StateStore


def _assistant(message_id: str, input_tokens: int, block: str = "text") -> dict[str, Any]:
    usage = {"input_tokens": input_tokens, "output_tokens": 1, "cache_read_input_tokens": 5}
    return {"type": "assistant", "message": {"id": message_id, "usage": usage, "content": [{"type": block}]}}


def _row(store: StateStore, attempt: int) -> tuple[Any, ...]:
    return tuple(
        store.conn.execute(
            "SELECT status, num_turns, input_tokens, output_tokens, cache_read_tokens FROM attempts "
            "WHERE id = ?",
            (attempt,),
        ).fetchone()
    )


def test_events_are_counted_once_per_call_and_written_once_per_interval(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    attempt = store.start_attempt(store.begin_run("k"), "plan.md", "1.1")
    clock = [100.0]
    progress = AttemptProgress(store, attempt, 2.0, clock=lambda: clock[0])
    forwarded: list[dict[str, Any]] = []
    on_event = progress.wrap(forwarded.append)
    before = store.conn.total_changes

    # A call's message comes once per content block; user events carry no usage.
    for _ in range(20):
        on_event(_assistant("m1", 1000))
        on_event(_assistant("m1", 1000, "tool_use"))
        on_event({"type": "user", "message": {"content": []}})
    assert store.conn.total_changes == before  # within the interval: nothing written
    assert _row(store, attempt) == ("running", 0, 0, 0, 0)
    assert len(forwarded) == 60

    clock[0] += 2.0
    on_event(_assistant("m2", 1500))
    assert _row(store, attempt) == ("running", 2, 2500, 2, 10)
    assert store.conn.total_changes == before + 1

    # Unchanged totals are not written again, even after the interval.
    clock[0] += 5.0
    on_event({"type": "user"})
    assert store.conn.total_changes == before + 1

    # The end's figures win over a late beat.
    store.finish_attempt(attempt, "completed", input_tokens=2600, output_tokens=90, num_turns=2)
    on_event(_assistant("m3", 9999))
    clock[0] += 5.0
    on_event({"type": "user"})
    assert _row(store, attempt) == ("completed", 2, 2600, 90, 0)
    store.close()


def test_the_interval_follows_the_freeze_threshold_within_bounds() -> None:
    assert beat_interval(300) == 30.0
    assert beat_interval(100) == 10.0
    assert beat_interval(3) == 1.0
