"""The schema of state.db, as the list of steps that build it; `PRAGMA user_version` counts them."""

from __future__ import annotations

DB_NAME = "state.db"
SCHEMA_VERSION = 3

# Each entry upgrades the schema from version N-1 to N; index 0 creates version 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        started_at  REAL NOT NULL,
        ended_at    REAL,
        status      TEXT NOT NULL DEFAULT 'running',
        pid         INTEGER,
        host        TEXT
    );
    CREATE TABLE attempts (
        id                     INTEGER PRIMARY KEY,
        run_id                 INTEGER NOT NULL REFERENCES runs(id),
        plan                   TEXT NOT NULL,
        task_id                TEXT NOT NULL,
        title                  TEXT NOT NULL DEFAULT '',
        attempt                INTEGER NOT NULL DEFAULT 1,
        status                 TEXT NOT NULL DEFAULT 'running',
        started_at             REAL NOT NULL,
        ended_at               REAL,
        input_tokens           INTEGER NOT NULL DEFAULT 0,
        output_tokens          INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens      INTEGER NOT NULL DEFAULT 0,
        cache_creation_tokens  INTEGER NOT NULL DEFAULT 0,
        cost_usd               REAL NOT NULL DEFAULT 0,
        num_turns              INTEGER NOT NULL DEFAULT 0,
        session_id             TEXT,
        error                  TEXT,
        worker                 TEXT NOT NULL DEFAULT 'main'
    );
    CREATE INDEX attempts_by_task ON attempts (plan, task_id);
    CREATE INDEX attempts_by_status ON attempts (status);
    CREATE TABLE heartbeats (
        run_id  INTEGER NOT NULL REFERENCES runs(id),
        worker  TEXT NOT NULL,
        at      REAL NOT NULL,
        PRIMARY KEY (run_id, worker)
    );
    """,
    # Version 2: the processes of one pytest invocation (an xdist controller and its
    # workers) share a run key; an attempt keeps the marker of its agent processes, so
    # a later run can stop what a killed run left behind.
    """
    ALTER TABLE runs ADD COLUMN run_key TEXT;
    ALTER TABLE attempts ADD COLUMN dispatch_id TEXT;
    CREATE INDEX runs_by_key ON runs (run_key);
    """,
    # Version 3: a run holds a lease on each plan it dispatches, so that two invocations
    # started together (cron overlap, two terminals) never dispatch the same task twice.
    """
    CREATE TABLE leases (
        plan         TEXT PRIMARY KEY,
        run_id       INTEGER NOT NULL REFERENCES runs(id),
        acquired_at  REAL NOT NULL
    );
    """,
)
