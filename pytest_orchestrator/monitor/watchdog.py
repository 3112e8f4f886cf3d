"""The watchdog loop: start the components, probe them, restart what fails, record everything.

Each round looks at every component: a process that exited, a probe that is due, a start
whose backoff has passed. Probes, starts and stops run on a thread pool, so one slow
component never delays another's probes; each probe ends within its timeout (`probes`).
Every start, probe verdict, restart and FATAL is one line in `<state>/logs/watchdog.log`,
and each component's state is a row in the state database, for `orchestrator status`.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from ..crashes.record import component_crash
from ..notify import Notification, Notifier
from ..notify.events import component_fatal, stopped
from ..redact import redact
from ..redact import remember as redact_remember
from ..state import StateError, StateStore
from ..state.components import ComponentRow, ComponentStore, ProbeRow
from .component import Event, ProbeTrack, RestartBudget, Status, health, transition
from .config import ComponentSpec, WatchdogSpec
from .crashes import Monitor, container_tail, read_tail
from .probes import ProbeResult, run_probe
from .runtime import ComponentError, ContainerRuntime, ProcessRuntime, Runtime, runtime_for

TICK = 0.25  # how often exits and due work are looked at: the bound on detection latency


class WatchdogLog:
    """One line per event, timestamped; stderr when the log directory cannot be written."""

    def __init__(self, path: Path, fallback: TextIO = sys.stderr) -> None:
        self.path = path
        self.fallback = fallback
        self.failed = False

    def __call__(self, message: str) -> None:
        stamp = datetime.now().isoformat(timespec="milliseconds")
        line = f"{stamp} {redact(message)}\n"
        if not self.failed:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as log:
                    log.write(line)
                return
            except OSError as exc:
                self.failed = True
                self.fallback.write(
                    f"{stamp} cannot write {self.path} ({exc.strerror or exc}): logging to stderr\n"
                )
        self.fallback.write(line)
        self.fallback.flush()


@dataclass
class Managed:
    """A component under the watchdog: its spec, runtime, state and counters."""

    spec: ComponentSpec
    runtime: Runtime
    budget: RestartBudget
    tracks: dict[str, ProbeTrack]
    status: Status = Status.STOPPED
    started_at: float | None = None  # wall clock, for status
    started_mono: float = 0.0
    next_start: float | None = None  # monotonic
    next_start_at: float | None = None  # wall clock, for status
    restarts: int = 0
    last_restart_at: float | None = None
    last_restart_reason: str | None = None
    exit_code: int | None = None
    message: str | None = None
    action: Future[Any] | None = None
    probes: dict[str, Future[ProbeResult]] = field(default_factory=dict)
    recorded: ComponentRow | None = None

    def row(self) -> ComponentRow:
        """The component as `orchestrator status` reads it."""
        return ComponentRow(
            name=self.spec.name,
            kind=self.spec.kind,
            status=str(self.status),
            health=health(self.status, self.tracks),
            pid=self.runtime.pid if self.spec.kind == "process" else None,
            container=self.spec.container or None,
            started_at=self.started_at,
            restarts=self.restarts,
            last_restart_at=self.last_restart_at,
            last_restart_reason=self.last_restart_reason,
            next_start_at=self.next_start_at if self.status is Status.BACKOFF else None,
            exit_code=self.exit_code,
            message=self.message,
        )


class Watchdog:
    """Keeps the configured components alive until stopped."""

    def __init__(
        self,
        spec: WatchdogSpec,
        state_dir: Path,
        docker_timeout: float = 5.0,
        load: Callable[[], WatchdogSpec] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.state_dir = state_dir
        self.docker_timeout = docker_timeout
        self.load = load
        self.log = log or WatchdogLog(state_dir / "logs" / "watchdog.log")
        self.stopping = threading.Event()
        self.reload_requested = False
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="orchestrator-watchdog")
        self.components: dict[str, Managed] = {}
        self.store: ComponentStore | None = None
        self._last_beat = 0.0
        self._last_requests = 0.0
        self._store_retry_at = 0.0
        self._store_failed = False
        # Told (by webhook) when a component goes FATAL, the health changes and the watchdog stops.
        self.notifier: Notifier | None = None
        if spec.notifications.enabled:
            self.notifier = Notifier(
                spec.notifications, state_dir, lambda line: self.log(f"notify: warning: {line}")
            )
        self.stop_reason = "asked to stop"
        self.monitor = Monitor(state_dir, spec.monitor, self.log, self.notifier)
        # What the watchdog did since its last row of health history.
        self.actions: list[str] = []
        for component in spec.components:
            self.components[component.name] = self._managed(component)
            # A component's own secrets must not reach the log or the state through its messages.
            redact_remember([f"{k}={v}" for k, v in component.env.items()])

    def _managed(self, component: ComponentSpec) -> Managed:
        runtime = runtime_for(component, self.state_dir / "logs", self.docker_timeout)
        tracks = {p.role: ProbeTrack(p) for p in component.probes}
        return Managed(component, runtime, RestartBudget(self.spec.backoff, self.spec.restart_limit), tracks)

    # ---- the loop ----

    def run(self) -> None:
        """Start the components and keep them until SIGTERM or Ctrl-C; SIGHUP reloads the config."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop("SIGTERM"))
            signal.signal(signal.SIGINT, lambda *_: self.stop("Ctrl-C"))
            signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload_requested", True))
        self.open()
        try:
            while not self.stopping.is_set():
                self.round(time.monotonic())
                self.stopping.wait(TICK)
        except BaseException as exc:
            self.stop_reason = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.close()

    def stop(self, reason: str) -> None:
        """End the loop; `reason` is what the stop notification says."""
        self.stop_reason = reason
        self.stopping.set()

    def open(self) -> None:
        """Record this watchdog, log its start and start every component."""
        self._store()
        self.log(f"watchdog started (pid {os.getpid()}), {len(self.components)} components")
        for warning in self.spec.warnings:
            self.log(f"warning: {warning}")
        self._stop_orphans()
        self.pool.submit(self.monitor.prune)
        now = time.monotonic()
        for managed in self.components.values():
            # A FATAL of an earlier watchdog is over: this one starts the component afresh.
            self._notify_state(managed, "started")
            self.start(managed, now, reason=None)

    def _stop_orphans(self) -> None:
        """Stop the process groups a killed watchdog left running, before starting them again."""
        if self.store is None:
            return
        try:
            recorded = {row.name: row for row in self.store.components()}
        except Exception:
            return
        import psutil

        for name, managed in self.components.items():
            row = recorded.get(name)
            if (
                row is None
                or row.kind != "process"
                or not row.pid
                or row.status not in ("STARTING", "RUNNING", "STOPPING")
                or not isinstance(managed.runtime, ProcessRuntime)
            ):
                continue
            try:
                # Only the group leader the watchdog started: its group id is its pid, and it
                # was created when the row says it started (a pid is reused).
                process = psutil.Process(row.pid)
                if os.getpgid(row.pid) != row.pid or abs(process.create_time() - (row.started_at or 0)) > 5:
                    continue
            except (psutil.Error, OSError):
                continue
            self.log(f"{name}: stopping pid {row.pid}, left running by an earlier watchdog")
            managed.runtime.pid = row.pid
            managed.runtime.stop(self.spec.stop_timeout)
            managed.runtime.pid = None

    def close(self) -> None:
        """Stop every component this watchdog started, and record that it ended."""
        self.log("watchdog stopping: stopping its components")
        for managed in self.components.values():
            # Waited for here, not on the pool: a stop must not wait on a future of its own pool.
            if managed.action is not None:
                managed.action.result()
                managed.action = None
        stops = [self.pool.submit(self._stop, m) for m in self.components.values()]
        for stop in stops:
            stop.result()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._record_all(force=True)
        if self.store is not None:
            try:
                self.store.stopped()
            except StateError as exc:
                self.log(f"state: {exc}")
            self.store.store.close()
        self.log("watchdog stopped")
        if self.notifier is not None:
            self.notifier.send(stopped("watchdog", self.stop_reason, components=sorted(self.components)))
            self.notifier.close()

    def _notify_state(self, managed: Managed, state: str) -> None:
        """Tell the notifications where a component stands; entering FATAL is told once."""
        if self.notifier is None:
            return
        name, reason, restarts = managed.spec.name, managed.message or "", managed.restarts

        def make(previous: str | None) -> Notification | None:
            return component_fatal(name, reason, restarts) if state == "FATAL" else None

        self.notifier.transition(f"component:{name}", state, make)

    def _stop(self, managed: Managed) -> None:
        if managed.action is not None:
            managed.action.result()
        self._halt(managed)
        self.log(f"{managed.spec.name}: stopped")

    def _halt(self, managed: Managed) -> None:
        """Stop a component where it stands; it is STOPPED afterwards, unless FATAL."""
        if managed.status in (Status.STARTING, Status.RUNNING):
            managed.status = transition(managed.status, Event.STOP)
            managed.runtime.stop(self.spec.stop_timeout)
            managed.status = transition(managed.status, Event.STOPPED)
        elif managed.status in (Status.BACKOFF, Status.EXITED):
            managed.runtime.stop_leftovers()
            managed.status = transition(managed.status, Event.STOP)

    def round(self, now: float) -> None:
        """One look at every component."""
        if self.reload_requested:
            self.reload_requested = False
            self.reload(now)
        if now - self._last_requests >= 1.0:
            self._last_requests = now
            self._take_requests(now)
        for managed in self.components.values():
            self.supervise(managed, now)
        self._record_all()
        if now - self._last_beat >= self.spec.period:
            self._last_beat = now
            if self.store is not None:
                self._safely(self.store.beat)
            for managed in self.components.values():
                self.pool.submit(managed.runtime.rotate)
            self.pool.submit(self.monitor.prune)
            checks = {name: health(m.status, m.tracks) for name, m in self.components.items()}
            actions, self.actions = self.actions, []
            self.pool.submit(self.monitor.health_round, checks, actions, self.spec.freeze_threshold)

    def supervise(self, managed: Managed, now: float) -> None:
        """Everything due for one component: a finished action, an exit, probes, a start."""
        if managed.action is not None:
            if not managed.action.done():
                return
            action, managed.action = managed.action, None
            error = action.exception()
            if error is not None:
                what = str(error) if isinstance(error, ComponentError) else f"{type(error).__name__}: {error}"
                if managed.status is Status.STARTING:
                    self.failed(managed, now, f"cannot start: {what}")
                else:
                    # A stop before a restart, or after FATAL: the next start tries again.
                    self.log(f"{managed.spec.name}: cannot stop: {redact(what)}")
                return
            if managed.status is Status.STARTING and "startup" not in managed.tracks:
                self._started(managed, now)
        if managed.status is Status.BACKOFF and managed.next_start is not None and now >= managed.next_start:
            self.start(managed, now, reason=managed.last_restart_reason)
            return
        if managed.status not in (Status.STARTING, Status.RUNNING):
            return
        code = managed.runtime.exit_code()
        if code is not None:
            managed.exit_code = code
            self._exited(managed, now, code)
            return
        self._collect(managed, now)
        if managed.status not in (Status.STARTING, Status.RUNNING):
            return
        self._submit_due(managed, now)
        if managed.status is Status.RUNNING and health(managed.status, managed.tracks) == "healthy":
            managed.budget.healthy(managed.started_mono, now)

    # ---- starts, exits, failures ----

    def start(self, managed: Managed, now: float, reason: str | None) -> None:
        """Start a component, on the pool; its tracks start over."""
        managed.status = transition(managed.status, Event.START)
        managed.next_start = managed.next_start_at = None
        managed.exit_code = None
        managed.message = None
        if reason is not None:
            managed.restarts += 1
        managed.started_at, managed.started_mono = time.time(), now
        # A probe of the previous run must not count for this one.
        for pending in managed.probes.values():
            pending.cancel()
        managed.probes.clear()
        for track in managed.tracks.values():
            track.reset(now)
        what = "restarting" if reason else "starting"
        self.log(
            f"{managed.spec.name}: {what}" + (f" (restart {managed.restarts}: {reason})" if reason else "")
        )
        managed.action = self.pool.submit(managed.runtime.start)

    def _started(self, managed: Managed, now: float) -> None:
        managed.status = transition(managed.status, Event.STARTED)
        pid = f" pid {managed.runtime.pid}" if managed.runtime.pid else ""
        self.log(f"{managed.spec.name}: running{pid}")

    def _exited(self, managed: Managed, now: float, code: int) -> None:
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        policy = managed.spec.restart
        if policy == "always" or (policy == "on-failure" and code != 0):
            self.failed(managed, now, how)
            return
        managed.status = transition(managed.status, Event.ENDED)
        managed.message = how
        managed.probes.clear()
        self.log(f"{managed.spec.name}: {how}; restart policy {policy}: left exited")
        # What it forked goes with it, now, while its process group is known to be its own.
        managed.action = self.pool.submit(managed.runtime.stop, self.spec.stop_timeout)

    def failed(self, managed: Managed, now: float, reason: str, *, frozen: bool = False) -> None:
        """A crash, a failed probe or a failed start: back off and restart, or give up (FATAL).

        Each is a crash of the component, recorded with its log; a heartbeat that stopped
        (`frozen`) is also the frozen loop's report.
        """
        reason = redact(reason)
        respawned = managed.spec.restart != "never" and not managed.budget.would_give_up(now)
        what = "restarted" if respawned else "gave up on"
        self.actions.append(f"{what} {managed.spec.name}: {reason}")
        self._crashed(managed, reason, respawned, frozen)
        for pending in managed.probes.values():
            pending.cancel()
        managed.probes.clear()
        managed.message = reason
        if managed.spec.restart == "never":
            managed.status = transition(managed.status, Event.ENDED)
            self.log(f"{managed.spec.name}: {reason}; restart policy never: left exited")
            managed.action = self.pool.submit(managed.runtime.stop, self.spec.stop_timeout)
            return
        if managed.budget.failed(now):
            managed.status = transition(managed.status, Event.GAVE_UP)
            limit = self.spec.restart_limit
            self.log(
                f"FATAL {managed.spec.name}: {reason}; more than {limit.count} restarts in "
                f"{limit.window:g}s or failed starts in a row: not restarting it. Fix it, then "
                f"`orchestrator restart {managed.spec.name}`"
            )
            self._notify_state(managed, "FATAL")
            managed.action = self.pool.submit(managed.runtime.stop, self.spec.stop_timeout)
            return
        delay = managed.budget.delay()
        managed.status = transition(managed.status, Event.FAILED)
        managed.next_start = now + delay
        managed.next_start_at = time.time() + delay
        managed.last_restart_at = time.time()
        managed.last_restart_reason = reason
        self.log(
            f"{managed.spec.name}: {reason}; restart {managed.restarts + 1} in {delay:.1f}s "
            f"(failed starts in a row: {managed.budget.failed_starts})"
        )
        managed.action = self.pool.submit(self._prepare_restart, managed)

    def _crashed(self, managed: Managed, reason: str, respawned: bool, frozen: bool) -> None:
        runtime = managed.runtime
        # Read now, on this thread: the stop that follows forgets the pid.
        pid, exit_code, container = runtime.pid, managed.exit_code, managed.spec.container or None
        log_path, offset = runtime.log_path, getattr(runtime, "log_offset", 0)
        name, timeout = managed.spec.name, self.docker_timeout

        def record() -> None:
            oom = False
            if container:
                log, oom = container_tail(container, timeout)
            else:
                log = read_tail(log_path, offset)
            crash = component_crash(
                name,
                reason=reason,
                log=log,
                exit_code=exit_code,
                pid=pid,
                container=container,
                oom_killed=oom,
                respawned=respawned,
            )
            # A frozen loop has its own report: not a crash report on the same problem too.
            self.monitor.crashed(crash, report=not frozen)
            if frozen:
                self.monitor.frozen(name, reason, log)

        self.pool.submit(record)

    def _prepare_restart(self, managed: Managed) -> None:
        # A live process or container that failed its probe is stopped before it starts again.
        if isinstance(managed.runtime, ContainerRuntime):
            if managed.runtime.running():
                managed.runtime.restart(self.spec.stop_timeout)
            return
        managed.runtime.stop(self.spec.stop_timeout)

    # ---- probes ----

    def _submit_due(self, managed: Managed, now: float) -> None:
        startup = managed.tracks.get("startup")
        roles = ["startup"] if managed.status is Status.STARTING and startup else ["liveness", "readiness"]
        if managed.status is Status.STARTING and not startup:
            return
        target = managed.runtime.target(self.state_dir, self.docker_timeout)
        for role in roles:
            track = managed.tracks.get(role)
            if track is None or role in managed.probes or now < track.next_at:
                continue
            managed.probes[role] = self.pool.submit(run_probe, track.spec, target)

    def _collect(self, managed: Managed, now: float) -> None:
        for role, future in list(managed.probes.items()):
            if not future.done():
                continue
            del managed.probes[role]
            track = managed.tracks[role]
            result = future.result()
            verdict = track.record(result, now)
            if verdict is None:
                continue
            name = f"{managed.spec.name}.{role}"
            if verdict:
                self.log(f"{name}: passed ({result.message})")
                if role == "startup" and managed.status is Status.STARTING:
                    self._started(managed, now)
                    for other in ("liveness", "readiness"):
                        if other in managed.tracks:
                            managed.tracks[other].reset(now)
                continue
            self.log(f"{name}: failed {track.failures} times ({result.message})")
            if role in ("liveness", "startup"):
                frozen = role == "liveness" and track.spec.kind == "heartbeat"
                self.failed(
                    managed, now, f"{role} failed {track.failures} times: {result.message}", frozen=frozen
                )
                return

    # ---- requests, reload, records ----

    def _take_requests(self, now: float) -> None:
        if self.store is None:
            return
        try:
            requests = self.store.take_requests()
        except StateError as exc:
            self.log(f"state: {exc}")
            return
        for name, what in requests:
            managed = self.components.get(name)
            if managed is None or what != "restart":
                continue
            self.log(f"{name}: restart requested")
            if managed.action is not None:
                managed.action.result()
            if managed.status is Status.FATAL:
                managed.status = transition(managed.status, Event.CLEAR)
                self._notify_state(managed, "restart requested")
            managed.budget.clear()
            if managed.status in (Status.STARTING, Status.RUNNING):
                managed.status = transition(managed.status, Event.FAILED)
            elif managed.status in (Status.STOPPED, Status.EXITED):
                managed.status = transition(managed.status, Event.START)
                managed.status = transition(managed.status, Event.FAILED)
            # As a failed liveness would: stopped (a container restarted) on the pool, then started.
            managed.last_restart_reason = "restart requested"
            managed.last_restart_at = time.time()
            managed.next_start, managed.next_start_at = now, time.time()
            managed.action = self.pool.submit(self._prepare_restart, managed)

    def reload(self, now: float) -> None:
        """SIGHUP: read the config again; start new components, stop removed ones, restart changed ones."""
        if self.load is None:
            return
        try:
            spec = self.load()
        except Exception as exc:
            self.log(f"reload failed, keeping the running config: {exc}")
            return
        self.log("config reloaded")
        wanted = {c.name: c for c in spec.components}
        for name in list(self.components):
            managed = self.components[name]
            if wanted.get(name) == managed.spec:
                continue
            self._stop(managed)
            del self.components[name]
        self.spec = spec
        for name, component in wanted.items():
            if name not in self.components:
                managed = self._managed(component)
                self.components[name] = managed
                self.start(managed, now, reason=None)
        if self.store is not None:
            self._safely(functools.partial(self.store.forget_others, list(self.components)))

    def _store(self) -> None:
        # A database briefly locked, or not there yet, must not keep the watchdog from working;
        # tried again every half minute, and said once until it works.
        now = time.monotonic()
        if now < self._store_retry_at:
            return
        self._store_retry_at = now + 30
        try:
            # Locked by someone else: skip this round's records rather than stall the probes.
            opened = StateStore.open(self.state_dir, wait=0.5)
            store = ComponentStore(opened)
            store.started(",".join(self.components), self.spec.period)
            store.forget_others(list(self.components))
            self.store = store
        except StateError as exc:
            if not self._store_failed:
                self.log(f"state: {exc}; components are kept, not recorded, until it can be opened")
            self._store_failed = True
            return
        if self._store_failed:
            self.log("state: recording again")
        self._store_failed = False

    def _safely(self, write: Callable[[], Any]) -> bool:
        try:
            write()
        except StateError as exc:
            self.log(f"state: {exc}")
            return False
        return True

    def _record_all(self, force: bool = False) -> None:
        if self.store is None:
            self._store()
        store = self.store
        if store is None:
            return
        for managed in self.components.values():
            row = managed.row()
            if (force or row != managed.recorded) and self._safely(functools.partial(store.save, row)):
                managed.recorded = row
            for role, track in managed.tracks.items():
                if (
                    track.last is None
                    or track.last_at is None
                    or (track.last_at == track.saved_at and not force)
                ):
                    continue
                at = time.time() - (time.monotonic() - track.last_at)
                probe = ProbeRow(
                    managed.spec.name,
                    role,
                    track.spec.kind,
                    track.last.ok,
                    track.last.message,
                    track.last.duration,
                    at,
                    track.successes,
                    track.failures,
                    track.spec.success_threshold,
                    track.spec.failure_threshold,
                )
                if self._safely(functools.partial(store.save_probe, probe)):
                    track.saved_at = track.last_at
