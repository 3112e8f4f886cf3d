"""What was last notified about each subject, in state.db, so a state is told once per entry.

The health run is a process of its own each time, and the watchdog restarts: the memory of
"degraded was already told" must outlive both. One row per subject (`health:<checks>`,
`watchdog`, `component:<name>`), compared and set in one write transaction, so two processes
that see the same transition at once notify it once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..state import StateStore

_READ = "SELECT state FROM notification_states WHERE subject = ?"
_WRITE = (
    "INSERT INTO notification_states (subject, state, changed_at) VALUES (?, ?, ?) "
    "ON CONFLICT (subject) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at"
)


def enter(store: StateStore, subject: str, state: str, now: float | None = None) -> tuple[bool, str | None]:
    """Record that `subject` is in `state`: (whether that is a change, the state before, if any).

    A failed write raises StateError.
    """
    with store.writing() as conn:
        row = conn.execute(_READ, (subject,)).fetchone()
        previous = str(row[0]) if row is not None else None
        if previous == state:
            return False, previous
        conn.execute(_WRITE, (subject, state, time.time() if now is None else now))
        return True, previous


def last(store: StateStore, subject: str) -> str | None:
    """The state last recorded for `subject`, if any."""
    row = store.conn.execute(_READ, (subject,)).fetchone()
    return str(row[0]) if row is not None else None
