"""`orchestrator sandbox status`: the container, its image and inputs, workspace and credentials.

Read-only. Credentials appear by name: their values stay in the engine's answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import SandboxProbe
from .image import recorded_inputs
from .lifecycle import CREDENTIAL_ENV, CREDENTIALS_FILE, WORKSPACE_LABEL, find, json_label, made_here
from .workspace import workspace_root


@dataclass(frozen=True)
class Status:
    """What `orchestrator sandbox status` shows: never a secret's value."""

    name: str
    state: str
    message: str
    made_here: bool = False
    container_id: str = ""
    image: str = ""
    image_id: str = ""
    inputs: Mapping[str, str] = field(default_factory=dict)
    started_at: str = ""
    uptime: float | None = None
    restarts: int = 0
    workspace: Mapping[str, str] = field(default_factory=dict)
    network: str = ""
    credentials: tuple[str, ...] = ()
    credentials_file: str = ""

    @property
    def running(self) -> bool:
        """Whether the container runs."""
        return self.state == "running"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `status --json`."""
        document = asdict(self)
        document["inputs"] = dict(self.inputs)
        document["workspace"] = dict(self.workspace)
        document["credentials"] = list(self.credentials)
        document["running"] = self.running
        return document


def status(client: Any, name: str, workspace: str, probe: SandboxProbe, now: float | None = None) -> Status:
    """The sandbox container as the engine knows it; `probe` says whether and why not it runs."""
    container = find(client, name)
    if container is None:
        return Status(name, "missing", probe.message)
    attrs = container.attrs
    state = attrs.get("State", {})
    config = attrs.get("Config", {})
    mounts = attrs.get("Mounts") or []
    target = json_label(container, WORKSPACE_LABEL).get("target") or workspace_root(workspace)
    where: dict[str, str] = {"target": target}
    for mount in mounts:
        if mount.get("Destination") == target:
            kind = mount.get("Type", "")
            where.update(kind=kind, source=mount.get("Name") if kind == "volume" else mount.get("Source", ""))
    credentials_file = next(
        (
            m.get("Source", "")
            for m in mounts
            if str(m.get("Destination", "")).endswith("/" + CREDENTIALS_FILE)
        ),
        "",
    )
    # Only the names leave this loop: the values stay in the engine's answer.
    present = tuple(
        n
        for n in CREDENTIAL_ENV
        if any(e.partition("=")[0] == n and e.partition("=")[2].strip() for e in config.get("Env") or [])
    )
    started = _parse_time(state.get("StartedAt", ""))
    running = bool(state.get("Running")) and not state.get("Paused") and not state.get("Restarting")
    now = time.time() if now is None else now
    return Status(
        name,
        str(state.get("Status", "unknown")) if not state.get("Restarting") else "restarting",
        probe.message,
        made_here=made_here(container),
        container_id=str(attrs.get("Id", ""))[:12],
        image=str(config.get("Image", "")),
        image_id=str(attrs.get("Image", "")).removeprefix("sha256:")[:12],
        inputs=recorded_inputs(config.get("Labels")),
        started_at=state.get("StartedAt", "") if started else "",
        uptime=now - started if started and running else None,
        restarts=int(attrs.get("RestartCount") or 0),
        workspace=where,
        network=str(attrs.get("HostConfig", {}).get("NetworkMode", "")),
        credentials=present,
        credentials_file=credentials_file,
    )


def _parse_time(raw: str) -> float | None:
    """A Docker timestamp (RFC 3339 with nanoseconds) as seconds since the epoch; None when unset."""
    if not raw or raw.startswith("0001-"):
        return None
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", raw).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(trimmed).astimezone(UTC).timestamp()
    except ValueError:
        return None
