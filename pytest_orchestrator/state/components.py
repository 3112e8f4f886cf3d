"""The watchdog's rows in state.db: each component, its probes' last results, and the watchdog."""

from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from .store import StateStore


@dataclass(frozen=True)
class ComponentRow:
    """A component as the watchdog last recorded it."""

    name: str
    kind: str
    status: str = "STOPPED"
    health: str = "unknown"
    pid: int | None = None
    container: str | None = None
    started_at: float | None = None
    restarts: int = 0
    last_restart_at: float | None = None
    last_restart_reason: str | None = None
    next_start_at: float | None = None
    exit_code: int | None = None
    message: str | None = None
    requested: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True)
class ProbeRow:
    """A probe's last result and its threshold counters."""

    component: str
    role: str
    kind: str
    ok: bool | None = None
    message: str | None = None
    duration: float | None = None
    at: float | None = None
    successes: int = 0
    failures: int = 0
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class WatchdogRow:
    """The watchdog process that keeps the components."""

    pid: int
    host: str
    started_at: float
    heartbeat_at: float
    config: str | None = None
    period: float | None = None  # seconds between its heartbeats


def _row(cls: type[Any], row: sqlite3.Row) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: row[k] for k in row.keys() if k in names})


class ComponentStore:
    """Reads and writes of the watchdog's tables, on a `StateStore`'s connection."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def _write(self, sql: str, *params: Any) -> None:
        with self.store.writing() as conn:
            conn.execute(sql, params)

    def save(self, row: ComponentRow) -> None:
        """Record a component as it is now."""
        values = dataclasses.asdict(row)
        values["updated_at"] = time.time()
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        # The request column belongs to whoever asks (`orchestrator restart`): never overwritten here.
        updates = ", ".join(f"{k} = excluded.{k}" for k in values if k not in ("name", "requested"))
        self._write(
            f"INSERT INTO components ({columns}) VALUES ({marks}) ON CONFLICT (name) DO UPDATE SET {updates}",
            *values.values(),
        )

    def save_probe(self, row: ProbeRow) -> None:
        """Record a probe's last result."""
        values = dataclasses.asdict(row)
        values["ok"] = None if row.ok is None else int(row.ok)
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        updates = ", ".join(f"{k} = excluded.{k}" for k in values if k not in ("component", "role"))
        self._write(
            f"INSERT INTO probe_results ({columns}) VALUES ({marks}) "
            f"ON CONFLICT (component, role) DO UPDATE SET {updates}",
            *values.values(),
        )

    def forget_others(self, names: list[str]) -> None:
        """Drop the rows of components no longer configured."""
        marks = ", ".join("?" for _ in names) or "''"
        self._write(f"DELETE FROM components WHERE name NOT IN ({marks})", *names)
        self._write(f"DELETE FROM probe_results WHERE component NOT IN ({marks})", *names)

    def request(self, name: str, what: str) -> bool:
        """Ask the watchdog to act on a component (`restart`); False when there is no such component."""
        with self.store.writing() as conn:
            cur = conn.execute("UPDATE components SET requested = ? WHERE name = ?", (what, name))
            return cur.rowcount > 0

    def take_requests(self) -> list[tuple[str, str]]:
        """The pending requests, cleared as they are taken."""
        # One transaction: a request made between the read and the clear is not lost.
        with self.store.writing() as conn:
            rows = conn.execute(
                "SELECT name, requested FROM components WHERE requested IS NOT NULL"
            ).fetchall()
            if rows:
                conn.execute("UPDATE components SET requested = NULL WHERE requested IS NOT NULL")
        return [(r["name"], r["requested"]) for r in rows]

    def started(self, config: str, period: float | None = None) -> None:
        """Record this process as the watchdog, beating every `period` seconds."""
        now = time.time()
        self._write(
            "INSERT INTO watchdog (id, pid, host, started_at, heartbeat_at, period, config) "
            "VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid, "
            "host = excluded.host, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, period = excluded.period, config = excluded.config",
            os.getpid(),
            socket.gethostname(),
            now,
            now,
            period,
            config,
        )

    def beat(self) -> None:
        """Record that the watchdog's loop is alive."""
        self._write("UPDATE watchdog SET heartbeat_at = ? WHERE pid = ?", time.time(), os.getpid())

    def stopped(self) -> None:
        """Record that the watchdog ended."""
        self._write("DELETE FROM watchdog WHERE pid = ?", os.getpid())

    def components(self) -> list[ComponentRow]:
        """Every recorded component, by name."""
        rows = self.store.conn.execute("SELECT * FROM components ORDER BY name").fetchall()
        return [_row(ComponentRow, r) for r in rows]

    def probes(self) -> list[ProbeRow]:
        """Every recorded probe result."""
        rows = self.store.conn.execute("SELECT * FROM probe_results ORDER BY component, role").fetchall()
        return [
            dataclasses.replace(_row(ProbeRow, r), ok=None if r["ok"] is None else bool(r["ok"]))
            for r in rows
        ]

    def watchdog(self) -> WatchdogRow | None:
        """The watchdog's row, if one is recorded."""
        row = self.store.conn.execute("SELECT * FROM watchdog WHERE id = 1").fetchone()
        return _row(WatchdogRow, row) if row else None
