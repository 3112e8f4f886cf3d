"""The schema of state.db, as the list of steps that build it; `PRAGMA user_version` counts them."""

from __future__ import annotations

DB_NAME = "state.db"
SCHEMA_VERSION = 7

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
    # Version 4: the watchdog. One row per component it keeps, with its last probe results,
    # and one for the watchdog process itself, so `orchestrator status` works from another
    # process and after the watchdog restarts.
    """
    CREATE TABLE components (
        name                 TEXT PRIMARY KEY,
        kind                 TEXT NOT NULL,
        status               TEXT NOT NULL DEFAULT 'STOPPED',
        health               TEXT NOT NULL DEFAULT 'unknown',
        pid                  INTEGER,
        container            TEXT,
        started_at           REAL,
        restarts             INTEGER NOT NULL DEFAULT 0,
        last_restart_at      REAL,
        last_restart_reason  TEXT,
        next_start_at        REAL,
        exit_code            INTEGER,
        message              TEXT,
        requested            TEXT,
        updated_at           REAL NOT NULL
    );
    CREATE TABLE probe_results (
        component  TEXT NOT NULL,
        role       TEXT NOT NULL,
        kind       TEXT NOT NULL,
        ok         INTEGER,
        message    TEXT,
        duration   REAL,
        at         REAL,
        successes  INTEGER NOT NULL DEFAULT 0,
        failures   INTEGER NOT NULL DEFAULT 0,
        success_threshold  INTEGER NOT NULL DEFAULT 1,
        failure_threshold  INTEGER NOT NULL DEFAULT 3,
        PRIMARY KEY (component, role)
    );
    CREATE TABLE watchdog (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        pid           INTEGER NOT NULL,
        host          TEXT NOT NULL,
        started_at    REAL NOT NULL,
        heartbeat_at  REAL NOT NULL,
        period        REAL,
        config        TEXT
    );
    """,
    # Version 5: the health monitor. Crashes (of a task's agent or a watchdog component) with
    # their root cause and fingerprint; one bug report per fingerprint; a row per health run;
    # the queue of pending tasks; and the continuous loop with its own heartbeat.
    """
    CREATE TABLE agent_crashes (
        id           INTEGER PRIMARY KEY,
        at           REAL NOT NULL,
        kind         TEXT NOT NULL,
        subject      TEXT NOT NULL,
        plan         TEXT,
        attempt_id   INTEGER,
        pid          INTEGER,
        container    TEXT,
        exit_code    INTEGER,
        signal       INTEGER,
        error_type   TEXT NOT NULL,
        message      TEXT NOT NULL,
        log_tail     TEXT,
        respawned    INTEGER NOT NULL DEFAULT 0,
        root_cause   TEXT,
        fingerprint  TEXT NOT NULL,
        files        TEXT,
        bug_number   INTEGER
    );
    CREATE INDEX crashes_by_time ON agent_crashes (at);
    -- `orchestrator crashes` counts each fingerprint's crashes, and the respawned ones, from
    -- this index alone: reading the rows, each with its log tail, cost ten times the rest.
    CREATE INDEX crashes_by_fingerprint ON agent_crashes (fingerprint, at, respawned);
    CREATE TABLE bug_reports (
        number             INTEGER PRIMARY KEY,
        fingerprint        TEXT NOT NULL UNIQUE,
        title              TEXT NOT NULL,
        priority           TEXT NOT NULL,
        category           TEXT NOT NULL,
        crashes            INTEGER NOT NULL DEFAULT 0,
        first_reported_at  REAL NOT NULL,
        last_reported_at   REAL NOT NULL,
        path               TEXT,
        url                TEXT
    );
    CREATE TABLE health_checks (
        id                INTEGER PRIMARY KEY,
        at                REAL NOT NULL,
        source            TEXT NOT NULL,
        status            TEXT NOT NULL,
        checks            TEXT NOT NULL,
        active_agents     INTEGER NOT NULL DEFAULT 0,
        crashed_agents    INTEGER NOT NULL DEFAULT 0,
        zombie_processes  INTEGER,
        last_poll_age     REAL,
        actions           TEXT,
        bugs_reported     TEXT
    );
    CREATE INDEX health_checks_by_time ON health_checks (at);
    CREATE TABLE queue (
        plan         TEXT NOT NULL,
        task_id      TEXT NOT NULL,
        title        TEXT NOT NULL DEFAULT '',
        priority     TEXT,
        position     INTEGER NOT NULL,
        enqueued_at  REAL NOT NULL,
        reason       TEXT NOT NULL,
        PRIMARY KEY (plan, task_id)
    );
    CREATE TABLE loop (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        pid            INTEGER NOT NULL,
        host           TEXT NOT NULL,
        started_at     REAL NOT NULL,
        last_poll_at   REAL NOT NULL,
        round          INTEGER NOT NULL DEFAULT 0,
        status         TEXT NOT NULL,
        poll_interval  REAL,
        next_due_at    REAL
    );
    """,
    # Version 6: the operator views. Which Docker engine ran each attempt (several engines
    # through xdist's --tx); finished attempts found by their end time, for the metrics; the
    # resource samples of the runs and the sandbox; a run's attempts found by the run; and
    # the state last notified per subject (`health:<checks>`, `watchdog`, `component:<name>`),
    # so a webhook tells each entry into degraded, unhealthy or FATAL once, across processes.
    """
    ALTER TABLE attempts ADD COLUMN engine TEXT;
    CREATE INDEX attempts_by_end ON attempts (ended_at);
    -- `orchestrator metrics` sorts a window's latencies from these indexes alone, of every plan
    -- or of one (--plan): reading each row for them cost twice the time.
    CREATE INDEX attempts_by_end_status ON attempts (ended_at, status, started_at);
    CREATE INDEX attempts_by_plan_end ON attempts (plan, ended_at, status, started_at);
    -- Resource usage (T045): each orchestrator process samples itself at its heartbeat, and the
    -- controller samples the sandbox container. `subject` names one process or container life
    -- (pid and start time, container id and start time): its cpu_seconds only ever grow.
    CREATE TABLE resource_samples (
        id            INTEGER PRIMARY KEY,
        at            REAL NOT NULL,
        kind          TEXT NOT NULL,
        subject       TEXT NOT NULL,
        name          TEXT NOT NULL,
        run_id        INTEGER,
        cpu_seconds   REAL NOT NULL,
        memory_bytes  INTEGER NOT NULL,
        memory_limit  INTEGER
    );
    -- A window's summary reads only this index.
    CREATE INDEX resource_samples_by_time ON resource_samples (at, kind, subject, cpu_seconds, memory_bytes);
    CREATE INDEX resource_samples_by_subject ON resource_samples (subject, at);
    -- The queue's estimate (and a dashboard frame, which shows it) counts the workers of the
    -- runs that started attempts in the last day: without it, a walk through every attempt.
    CREATE INDEX attempts_by_start ON attempts (started_at);
    CREATE TABLE notification_states (
        subject     TEXT PRIMARY KEY,
        state       TEXT NOT NULL,
        changed_at  REAL NOT NULL
    );
    -- The web dashboard's runs browser sums each run's attempts.
    CREATE INDEX attempts_by_run ON attempts (run_id);
    """,
    """
    -- The plan file's absolute path, as the run that queued the task found it: a run forgets
    -- the rows of a plan whose file is gone, whatever root or directory it runs from.
    ALTER TABLE queue ADD COLUMN path TEXT;
    """,
)
