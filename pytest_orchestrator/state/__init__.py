"""The orchestrator's state: a SQLite database (state.db) in the state directory, and its only owner.

It records runs, each task attempt, and heartbeats. Task runs write it; the
`orchestrator` health check, resume and the operator views read it.
"""

from __future__ import annotations

from .migrations import DB_NAME, MIGRATIONS, SCHEMA_VERSION
from .run import RunRecord
from .store import ActiveAttempt, Completion, Holder, Interrupted, StateError, StateStore

__all__ = [
    "DB_NAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ActiveAttempt",
    "Completion",
    "Holder",
    "Interrupted",
    "RunRecord",
    "StateError",
    "StateStore",
]
