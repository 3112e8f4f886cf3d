"""One process's run in the state database: its row, its heartbeat, and the attempts dead runs left."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from .store import Holder, Interrupted, StateError, StateStore

# Called on the heartbeat's interval, from a thread of its own with its own store, with the run's
# id, and once more with force=True as the run ends: a resource sampler
# (metrics.ResourceSampler), which keeps its pace.
Sampler = Callable[[StateStore, int, bool], None]


def pid_alive(pid: int, host: str) -> bool:
    """Whether process `pid` of this host still exists."""
    import psutil

    return bool(psutil.pid_exists(pid))


class RunRecord:
    """This process's run: a `runs` row, a heartbeat thread, and what blocks each plan.

    Opening it reaps the attempts that dead runs left 'running' (`interrupted`). A dry
    run reads the state to explain its decisions and writes nothing.
    """

    def __init__(
        self,
        state_dir: Path,
        run_key: str,
        worker: str,
        freeze_threshold: float,
        *,
        dry_run: bool = False,
        sample: Sampler | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.key = run_key
        self.worker = worker
        self.blocked: dict[str, tuple[str, str]] = {}
        self.interrupted: list[Interrupted] = []
        # What a failed state write left unrecorded, one line each; the run then stops dispatching.
        self.unrecorded: list[str] = []
        # The fingerprints of the crashes recorded since the run last considered bug reports.
        self.crashed: list[str] = []
        self.run_id = 0
        self.freeze_threshold = freeze_threshold
        self._leased: set[str] = set()
        self._heartbeat: _Heartbeat | None = None
        self._sampling: _Sampling | None = None
        if dry_run:
            self.store: StateStore = StateStore.read(state_dir) or StateStore.empty()
            return
        self.store = StateStore.open(state_dir)
        self.interrupted = self.store.reap_interrupted(pid_alive, freeze_threshold)
        self.run_id = self.store.begin_run(run_key)
        interval = max(0.5, min(30.0, freeze_threshold / 4))
        self._heartbeat = _Heartbeat(state_dir, self.run_id, worker, interval)
        self._heartbeat.start()
        if sample is not None:
            # A thread of its own: a sample waits on the Docker engine, which may hang for longer
            # than the freeze threshold, and a late beat makes this live run look dead to the next.
            self._sampling = _Sampling(state_dir, self.run_id, interval, sample, self._heartbeat.stopped)
            self._sampling.start()

    @property
    def writes(self) -> bool:
        """False for a dry run, which records nothing."""
        return self._heartbeat is not None

    def lease(self, plan: str) -> Holder | None:
        """Hold `plan` for this run; the live run of another invocation that holds it, if any."""
        if not self.writes or plan in self._leased:
            return None
        holder = self.store.lease(plan, self.run_id, self.key, pid_alive, self.freeze_threshold)
        if holder is None:
            self._leased.add(plan)
        return holder

    def close(self, status: str) -> None:
        """Stop the heartbeat and record how the run ended."""
        if self._heartbeat is not None:
            self._heartbeat.stopped.set()
            self._heartbeat.join(timeout=5)
            if self._sampling is not None:
                self._sampling.join(timeout=5)
            try:
                if self._leased:
                    self.store.release_leases(self.run_id)
                self.store.end_run(self.run_id, status)
            except StateError as exc:
                self.unrecorded.append(f"the end of run {self.run_id}: {exc}")
        self.store.close()


class _Heartbeat(threading.Thread):
    def __init__(self, state_dir: Path, run_id: int, worker: str, interval: float) -> None:
        super().__init__(name="orchestrator-heartbeat", daemon=True)
        self.state_dir, self.run_id, self.worker = state_dir, run_id, worker
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        # sqlite3 connections belong to one thread, so the heartbeat has its own.
        try:
            store = StateStore.open(self.state_dir)
        except StateError:
            return
        try:
            while not self.stopped.wait(self.interval):
                try:
                    store.heartbeat(self.run_id, self.worker)
                except StateError:
                    # Beat on: a run whose beats stop looks dead to the next run, which would
                    # take its plans and dispatch its task again. The task writes say what failed.
                    continue
        finally:
            store.close()


class _Sampling(threading.Thread):
    """Calls the run's resource sampler on the heartbeat's interval, until the heartbeat stops."""

    def __init__(
        self, state_dir: Path, run_id: int, interval: float, sample: Sampler, stopped: threading.Event
    ) -> None:
        super().__init__(name="orchestrator-sampler", daemon=True)
        self.state_dir, self.run_id = state_dir, run_id
        self.interval = interval
        self.sample = sample
        self.stopped = stopped

    def _sample(self, store: StateStore, force: bool = False) -> None:
        try:
            self.sample(store, self.run_id, force)
        except Exception:  # a reading or a write that fails, however: skipped, the next one is taken
            return

    def run(self) -> None:
        try:
            store = StateStore.open(self.state_dir)
        except StateError:
            return
        try:
            # Here, off the task's thread: sampling (a Docker API call) never holds a task up.
            self._sample(store)
            while not self.stopped.wait(self.interval):
                self._sample(store)
            # The run's last figures, so that a run shorter than the interval has two readings.
            self._sample(store, force=True)
        finally:
            store.close()
