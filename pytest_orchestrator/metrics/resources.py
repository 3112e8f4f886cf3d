"""Resource samples (T045): record them, and summarise a window of them.

A sample is one reading of one *subject*: an orchestrator process (the pytest run, an xdist
worker, the loop) or the sandbox container. `cpu_seconds` is the subject's CPU time since it
started, so it only grows; `memory_bytes` is its resident memory at the time (a process's RSS,
the container's usage less its page cache, as `docker stats` shows it).
Retention deletes old samples with the crash rows (`CrashStore.prune`).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from ..state import StateStore


@dataclass(frozen=True)
class Sample:
    """One reading of one process or container."""

    kind: str  # "process" or "container"
    subject: str  # one life of it: "pid 123 @ 1763900000.12", "container 3f2a... @ 2026-11-23T..."
    name: str  # what it is to the operator: the worker ("main", "gw0") or the container's name
    cpu_seconds: float
    memory_bytes: int
    memory_limit: int | None = None


@dataclass(frozen=True)
class Resources:
    """What the samples of a window say: CPU used and peak memory, of the processes and the container.

    CPU used in the window is, per subject, its last reading in the window less its last reading
    before the window (none: the subject started in it, or its earlier readings were pruned).
    Peaks are the highest single reading of one subject.
    """

    samples: int = 0
    processes: int = 0
    process_cpu_seconds: float = 0.0
    process_peak_rss_bytes: int | None = None
    containers: int = 0
    container_cpu_seconds: float = 0.0
    container_peak_memory_bytes: int | None = None


_SUMMARY = """
WITH w AS (
    SELECT kind, subject, COUNT(*) AS n, MAX(cpu_seconds) AS cpu, MAX(memory_bytes) AS peak
    FROM resource_samples WHERE at >= :since AND at < :until GROUP BY kind, subject
)
SELECT kind, COUNT(*), SUM(n), MAX(peak),
       TOTAL(cpu - COALESCE((SELECT p.cpu_seconds FROM resource_samples p
                             WHERE p.subject = w.subject AND p.at < :since
                             ORDER BY p.at DESC LIMIT 1), 0))
FROM w GROUP BY kind
"""


def resources(conn: sqlite3.Connection, since: float, until: float) -> Resources:
    """The resource summary of [since, until)."""
    found = {
        str(kind): (int(subjects), int(samples), peak, max(float(cpu), 0.0))
        for kind, subjects, samples, peak, cpu in conn.execute(_SUMMARY, {"since": since, "until": until})
    }
    process = found.get("process", (0, 0, None, 0.0))
    container = found.get("container", (0, 0, None, 0.0))
    return Resources(
        samples=process[1] + container[1],
        processes=process[0],
        process_cpu_seconds=process[3],
        process_peak_rss_bytes=int(process[2]) if process[2] is not None else None,
        containers=container[0],
        container_cpu_seconds=container[3],
        container_peak_memory_bytes=int(container[2]) if container[2] is not None else None,
    )


def record(
    store: StateStore, samples: list[Sample], run_id: int | None = None, now: float | None = None
) -> None:
    """Write the samples, all at `now`."""
    if not samples:
        return
    now = time.time() if now is None else now
    with store.writing() as conn:
        conn.executemany(
            "INSERT INTO resource_samples (at, kind, subject, name, run_id, cpu_seconds, memory_bytes, "
            "memory_limit) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (now, s.kind, s.subject, s.name, run_id, s.cpu_seconds, s.memory_bytes, s.memory_limit)
                for s in samples
            ],
        )
