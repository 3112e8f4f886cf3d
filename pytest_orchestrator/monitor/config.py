"""The watchdog's part of orchestrator.yaml: its timing, and each component with its probes.

Field names and defaults are Kubernetes' (`initial_delay`, `period`, `timeout`,
`success_threshold`, `failure_threshold`). Every error names the file and line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config_file import ConfigFile, Key, Reader
from ..crashes.config import MonitorSpec, monitor_spec
from ..notify.config import NotifySpec, notify_spec

ProbeKind = Literal["exec", "http", "tcp", "pid", "container", "log_line", "heartbeat"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("exec", "http", "tcp", "pid", "container", "log_line", "heartbeat")
PROBE_ROLES = ("startup", "liveness", "readiness")
PROBE_FIELDS = ("initial_delay", "period", "timeout", "success_threshold", "failure_threshold")
RESTART_POLICIES = ("always", "on-failure", "never")

SANDBOX = "sandbox"
# The continuous loop (`pytest --orchestrator-loop`), when the watchdog keeps it.
RUNNER = "runner"


@dataclass(frozen=True)
class ProbeSpec:
    """One probe of a component: what it checks, and Kubernetes' timing and thresholds."""

    role: str  # startup | liveness | readiness
    kind: ProbeKind
    # exec: argv; http: URL; tcp: "host:port"; log_line: regex; heartbeat: max age in
    # seconds; pid and container: True.
    target: Any
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    where: str = ""


@dataclass(frozen=True)
class ComponentSpec:
    """Something the watchdog keeps alive: a process it starts, or an existing container."""

    name: str
    kind: Literal["process", "container"]
    command: tuple[str, ...] = ()
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    container: str = ""
    restart: str = "always"
    probes: tuple[ProbeSpec, ...] = ()
    where: str = ""

    def probe(self, role: str) -> ProbeSpec | None:
        """The component's probe of `role`, if it has one."""
        return next((p for p in self.probes if p.role == role), None)


@dataclass(frozen=True)
class Backoff:
    """Restart delays: initial, times factor per failed start, capped; reset after healthy running."""

    initial: float = 1.0
    factor: float = 2.0
    max: float = 60.0
    reset_after: float = 600.0


@dataclass(frozen=True)
class RestartLimit:
    """At most `count` restarts within `window` seconds, then FATAL."""

    count: int = 10
    window: float = 600.0


@dataclass(frozen=True)
class WatchdogSpec:
    """The watchdog's configuration: timing, backoff, limits and the components."""

    period: float = 10.0
    stop_timeout: float = 10.0
    backoff: Backoff = Backoff()
    restart_limit: RestartLimit = RestartLimit()
    components: tuple[ComponentSpec, ...] = ()
    warnings: tuple[str, ...] = ()
    monitor: MonitorSpec = field(default_factory=MonitorSpec)
    # The loop counts as frozen past this (the freeze_threshold setting).
    freeze_threshold: float = 300.0
    # Where a FATAL component, a change of health and the watchdog's stop are told.
    notifications: NotifySpec = field(default_factory=NotifySpec)

    def component(self, name: str) -> ComponentSpec | None:
        """The component called `name`, if configured."""
        return next((c for c in self.components if c.name == name), None)


WATCHDOG_KEYS = ("period", "stop_timeout", "backoff", "restart_limit")
COMPONENT_KEYS = ("kind", "command", "cwd", "env", "container", "restart", "enabled", *PROBE_ROLES)


def watchdog_spec(
    file: ConfigFile | None, sandbox: str, base: Path, freeze_threshold: float = 300.0
) -> WatchdogSpec:
    """The watchdog's configuration from the config file; the sandbox container is built in.

    `sandbox` is the resolved sandbox container name; `base` resolves relative `cwd` values
    when there is no file. A `runner` component (the continuous loop) without a liveness
    probe gets one on the loop's heartbeat, failing once it is `freeze_threshold` old.
    """
    reader = _Reader(file)
    data = file.data if file is not None else {}
    section = reader.mapping(("watchdog",), data.get("watchdog"), WATCHDOG_KEYS)
    period = reader.seconds(("watchdog", "period"), section.get("period", 10))
    stop_timeout = reader.seconds(("watchdog", "stop_timeout"), section.get("stop_timeout", 10))
    raw = reader.mapping(
        ("watchdog", "backoff"), section.get("backoff"), ("initial", "factor", "max", "reset_after")
    )
    backoff = Backoff(
        reader.seconds(("watchdog", "backoff", "initial"), raw.get("initial", 1)),
        reader.number(("watchdog", "backoff", "factor"), raw.get("factor", 2), least=1),
        reader.seconds(("watchdog", "backoff", "max"), raw.get("max", 60)),
        reader.seconds(("watchdog", "backoff", "reset_after"), raw.get("reset_after", 600)),
    )
    raw = reader.mapping(("watchdog", "restart_limit"), section.get("restart_limit"), ("count", "window"))
    limit = RestartLimit(
        reader.count(("watchdog", "restart_limit", "count"), raw.get("count", 10)),
        reader.seconds(("watchdog", "restart_limit", "window"), raw.get("window", 600)),
    )
    components = reader.mapping(("components",), data.get("components"), None)
    specs: list[ComponentSpec] = []
    if SANDBOX not in components:
        components = {SANDBOX: {}, **components}
    root = file.path.parent if file is not None else base
    for name, body in components.items():
        spec = reader.component(name, body, sandbox, period, root)
        if spec is not None and spec.name == RUNNER and spec.kind == "process" and not spec.probe("liveness"):
            frozen = ProbeSpec("liveness", "heartbeat", freeze_threshold, period=period, failure_threshold=1)
            spec = dataclasses.replace(
                spec, probes=(*spec.probes, dataclasses.replace(frozen, where=spec.where))
            )
        if spec is not None:
            specs.append(spec)
    return WatchdogSpec(
        period,
        stop_timeout,
        backoff,
        limit,
        tuple(specs),
        tuple(reader.warnings),
        monitor_spec(file),
        freeze_threshold,
        notify_spec(file, os.environ),
    )


class _Reader(Reader):
    """The watchdog's reads: components and their probes."""

    def component(
        self, name: str, body: Any, sandbox: str, period: float, root: Path
    ) -> ComponentSpec | None:
        key: Key = ("components", name)
        body = self.mapping(key, body if body is not None else {}, COMPONENT_KEYS)
        if body.get("enabled", True) is False:
            return None
        if "enabled" in body and body["enabled"] is not True:
            raise self.fail((*key, "enabled"), "enabled must be true or false")
        kind = body.get("kind") or ("container" if name == SANDBOX or "container" in body else "process")
        if kind not in ("process", "container"):
            raise self.fail((*key, "kind"), f"kind must be process or container, not {kind!r}")
        restart = body.get("restart", "always")
        if restart not in RESTART_POLICIES:
            raise self.fail(
                (*key, "restart"), f"restart must be one of {', '.join(RESTART_POLICIES)}, not {restart!r}"
            )
        env = self.mapping((*key, "env"), body.get("env"), None)
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in env.values()):
            raise self.fail((*key, "env"), "env values must be strings")
        probes = tuple(
            self.probe((*key, role), role, body[role], period)
            for role in PROBE_ROLES
            if body.get(role) is not None
        )
        if kind == "process":
            if "command" not in body:
                raise self.fail(key, f"component {name!r} needs a command (or container: NAME)")
            cwd = body.get("cwd")
            return ComponentSpec(
                name,
                "process",
                command=self.argv((*key, "command"), body["command"]),
                cwd=(root / Path(str(cwd)).expanduser()) if cwd is not None else root,
                env={k: str(v) for k, v in env.items()},
                restart=restart,
                probes=probes,
                where=self.where(key),
            )
        for field_name in ("command", "cwd", "env"):
            if field_name in body:
                raise self.fail((*key, field_name), f"a container component has no {field_name}")
        container = body.get("container") or (sandbox if name == SANDBOX else name)
        if not probes or not any(p.role == "liveness" for p in probes):
            # A container is alive while Docker says it runs (and its HEALTHCHECK, if any, passes).
            probes = (*probes, ProbeSpec("liveness", "container", True, period=period, where=self.where(key)))
        return ComponentSpec(
            name, "container", container=str(container), restart=restart, probes=probes, where=self.where(key)
        )

    def probe(self, key: Key, role: str, body: Any, period: float) -> ProbeSpec:
        body = self.mapping(key, body, (*PROBE_KINDS, "grpc", *PROBE_FIELDS))
        kinds = [k for k in (*PROBE_KINDS, "grpc") if k in body]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            raise self.fail(key, f"a probe needs exactly one of {', '.join(PROBE_KINDS)} (found {found})")
        kind = kinds[0]
        if kind == "grpc":
            raise self.fail((*key, "grpc"), "grpc probes are not supported by this version: use tcp or exec")
        raw = body[kind]
        target: Any
        if kind == "exec":
            target = self.argv((*key, kind), raw)
        elif kind in ("http", "log_line"):
            if not isinstance(raw, str) or not raw:
                raise self.fail((*key, kind), f"{kind} must be a string")
            if kind == "http" and not raw.startswith(("http://", "https://")):
                raise self.fail((*key, kind), "http must be a URL starting with http:// or https://")
            if kind == "log_line":
                import re

                try:
                    re.compile(raw)
                except re.error as exc:
                    raise self.fail((*key, kind), f"log_line is not a valid regex: {exc}") from None
            target = raw
        elif kind == "tcp":
            host, _, port = str(raw).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise self.fail((*key, kind), f"tcp must be HOST:PORT, not {raw!r}")
            target = (host.strip("[]"), int(port))
        elif kind == "heartbeat":
            target = self.seconds((*key, kind), raw)
        else:
            if raw is not True:
                raise self.fail((*key, kind), f"{kind} takes true")
            target = True
        spec = ProbeSpec(
            role,
            kind,  # type: ignore[arg-type]
            target,
            initial_delay=self.number((*key, "initial_delay"), body.get("initial_delay", 0)),
            period=self.seconds((*key, "period"), body.get("period", period)),
            timeout=self.seconds((*key, "timeout"), body.get("timeout", 1)),
            success_threshold=self.count((*key, "success_threshold"), body.get("success_threshold", 1)),
            failure_threshold=self.count((*key, "failure_threshold"), body.get("failure_threshold", 3)),
            where=self.where(key),
        )
        if role in ("liveness", "startup") and spec.success_threshold != 1:
            raise self.fail(
                (*key, "success_threshold"),
                f"success_threshold of a {role} probe must be 1, as in Kubernetes",
            )
        if spec.timeout >= spec.period:
            self.warnings.append(
                f"{self.where(key)}: {key[1]}.{role} timeout {spec.timeout:g}s is not shorter than its "
                f"period {spec.period:g}s"
            )
        return spec


def preflight(spec: WatchdogSpec) -> list[str]:
    """What would fail at once if the watchdog started now: a command not found, a port in use.

    One line each, naming where the component is configured.
    """
    import os
    import shutil
    import socket
    import urllib.parse

    problems = []
    for component in spec.components:
        if component.kind != "process":
            continue
        program = component.command[0]
        if "/" in program:
            path = (component.cwd or Path()) / program
            found = path.is_file() and os.access(path, os.X_OK)
        else:
            found = shutil.which(program, path=component.env.get("PATH", os.environ.get("PATH"))) is not None
        if not found:
            problems.append(f"{component.where}: {component.name}: command not found: {program}")
        for probe in component.probes:
            if probe.kind == "tcp":
                host, port = probe.target
            elif probe.kind == "http":
                parts = urllib.parse.urlsplit(probe.target)
                host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
            else:
                continue
            if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
                continue
            # Something already answers where the component is to listen: it would fail to
            # bind, or its probes would pass for the wrong process.
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    problems.append(
                        f"{probe.where}: {component.name}: port {port} on {host} is already in use: "
                        "stop what listens there, or give the component another port"
                    )
                    break
            except OSError:
                continue
    return problems
