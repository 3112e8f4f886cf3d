"""Resource samples (T045) of this process (psutil) and of the sandbox container (Docker's stats API).

A run's sampling thread calls a `ResourceSampler` on the heartbeat's interval, beside the
heartbeat thread, so neither a task nor a beat waits on it; it reads at most once per
`interval` seconds, and a reading that fails (the container is gone, the engine is slow) is
skipped: the health checks say what is wrong with the sandbox.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from ..state import StateStore
from .resources import Sample, record

# Seconds between two samples of one process: a day of a run is under 3,000 rows per subject.
SAMPLE_INTERVAL = 30.0


def process_sample(name: str, pid: int | None = None) -> Sample | None:
    """The CPU seconds and RSS of process `pid` (this one by default); None when it is gone."""
    import psutil

    try:
        process = psutil.Process(pid)
        with process.oneshot():
            cpu = process.cpu_times()
            rss = int(process.memory_info().rss)
            started = process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return Sample(
        kind="process",
        # pid and start time: a reused pid is another subject, whose CPU time starts at zero.
        subject=f"{socket.gethostname()} pid {process.pid} @ {started:.2f}",
        name=name,
        cpu_seconds=float(cpu.user + cpu.system),
        memory_bytes=rss,
    )


def container_sample(container: Any) -> Sample | None:
    """The CPU seconds and memory of a running container, from one reading of Docker's stats API."""
    state = container.attrs.get("State") or {}
    if not state.get("Running"):
        return None
    # one_shot: a single reading, without the second one the engine otherwise waits a second for.
    stats = container.stats(stream=False, one_shot=True)
    cpu_ns = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
    memory = stats.get("memory_stats") or {}
    if cpu_ns is None or "usage" not in memory:
        return None
    inner = memory.get("stats") or {}
    # What `docker stats` shows: the usage less the page cache the kernel can drop
    # (cgroup v2 names it inactive_file, v1 total_inactive_file).
    cache = inner.get("inactive_file", inner.get("total_inactive_file", 0))
    used = max(int(memory["usage"]) - int(cache), 0)
    limit = memory.get("limit")
    return Sample(
        kind="container",
        subject=f"container {container.id[:12]} @ {state.get('StartedAt', '')}",
        name=container.name,
        cpu_seconds=int(cpu_ns) / 1e9,
        memory_bytes=used,
        memory_limit=int(limit) if limit else None,
    )


class ResourceSampler:
    """Samples this process, and the sandbox container when `container` names it, once per interval."""

    def __init__(
        self,
        name: str,
        *,
        container: str | None = None,
        docker_timeout: float = 10.0,
        interval: float = SAMPLE_INTERVAL,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.container = container
        self.docker_timeout = docker_timeout
        self.interval = interval
        self.environ = environ
        self.last: float | None = None
        if container is not None:
            # Imported here, in the thread that builds the sampler, before the sampling thread
            # samples: the docker package imported by two threads at once (the sandbox's in the
            # main one) leaves one of them a half-initialised module without `docker.utils`.
            import docker  # noqa: F401

    def readings(self) -> list[Sample]:
        """The samples of now: this process, and the container when it runs."""
        samples = [s for s in (process_sample(self.name, os.getpid()),) if s is not None]
        if self.container is not None:
            sample = self._container()
            if sample is not None:
                samples.append(sample)
        return samples

    def _container(self) -> Sample | None:
        import docker
        import requests

        from ..sandbox import SandboxError
        from ..sandbox.docker import connect

        # A client per reading, closed at once: a reading every half minute needs no open connection.
        try:
            client = connect(self.docker_timeout, self.environ)
        except SandboxError:
            return None
        try:
            return container_sample(client.containers.get(self.container))
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
            return None
        finally:
            client.close()

    def __call__(self, store: StateStore, run_id: int | None = None, force: bool = False) -> None:
        """Record the samples of now, unless the last were taken less than `interval` seconds ago."""
        now = time.monotonic()
        if not force and self.last is not None and now - self.last < self.interval:
            return
        self.last = now
        record(store, self.readings(), run_id)
