"""The sandbox container's life: `orchestrator sandbox up | reset | down`.

A container this tool made carries SANDBOX_LABEL; one without it is someone else's and is
never started, replaced or removed. The options a user gave explicitly are recorded on
the container (OPTIONS_LABEL, names and paths only), so a later `up` or `reset` without
them means the same sandbox. Secret values travel only into the container's environment:
they are never printed, logged or written by the tool.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..redact import redact, remember
from . import AUTH_ENV, GITHUB_ENV, SandboxError, SandboxProbe
from .image import ImageInputs, ensure_image, ensure_local, image_inputs, known_binaries, recorded_inputs
from .workspace import workspace_root

if TYPE_CHECKING:
    from ..health.run import HealthRun

SANDBOX_LABEL = "org.pytest-orchestrator.sandbox"
OPTIONS_LABEL = "org.pytest-orchestrator.options"
WORKSPACE_LABEL = "org.pytest-orchestrator.workspace"
CREDENTIAL_ENV = AUTH_ENV + GITHUB_ENV
# Where Claude Code looks for its login, under the sandbox user's home.
CREDENTIALS_FILE = ".claude/.credentials.json"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Options that choose the same thing another way: giving one drops the recorded other.
_EXCLUSIVE = {
    "image": ("base_image", "claude_version", "claude_binary"),
    "base_image": ("image",),
    "claude_version": ("image", "claude_binary"),
    "claude_binary": ("image", "claude_version"),
}

Progress = Callable[[str], None]


def _quiet(line: str) -> None:
    return None


@dataclass(frozen=True)
class Options:
    """What `up` or `reset` was asked for; None: as the existing container was made, else the default."""

    base_image: str | None = None
    claude_version: str | None = None
    claude_binary: str | None = None
    image: str | None = None
    # A host directory to bind-mount as the workspace, in place of a named volume.
    workspace: str | None = None
    network: str | None = None
    claude_credentials: str | None = None

    def given(self) -> dict[str, str]:
        """The options that were set."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def over(self, recorded: Mapping[str, str]) -> Options:
        """These options on top of those a container recorded."""
        known = {f.name for f in fields(self)}
        merged = {key: str(value) for key, value in recorded.items() if key in known}
        for key, value in self.given().items():
            for other in _EXCLUSIVE.get(key, ()):
                merged.pop(other, None)
            merged[key] = value
        return Options(**merged)


@dataclass(frozen=True)
class Request:
    """A sandbox to bring up: its name, the workspace setting, the options and the credentials' sources."""

    name: str
    workspace: str
    options: Options = field(default_factory=Options)
    env_file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)


@dataclass(frozen=True)
class Plan:
    """The container `up` would make: its image, mounts, network and labels."""

    name: str
    image: str
    inputs: ImageInputs | None
    home: str
    workspace_dir: str
    # "volume:NAME" or "bind:/host/path"
    workspace_source: str
    options: Options

    @property
    def volume(self) -> str | None:
        """The named workspace volume, or None for a bind mount."""
        kind, _, where = self.workspace_source.partition(":")
        return where if kind == "volume" else None

    def labels(self) -> dict[str, str]:
        """What the container records: this tool's mark, the options given, the workspace."""
        return {
            SANDBOX_LABEL: "1",
            OPTIONS_LABEL: json.dumps(self.options.given(), sort_keys=True),
            WORKSPACE_LABEL: json.dumps({"source": self.workspace_source, "target": self.workspace_dir}),
        }

    def mounts(self) -> dict[str, dict[str, str]]:
        """The workspace, and the credentials file read-only where Claude Code looks for it."""
        _, _, where = self.workspace_source.partition(":")
        mounts = {where: {"bind": self.workspace_dir, "mode": "rw"}}
        if self.options.claude_credentials:
            target = f"{self.home.rstrip('/')}/{CREDENTIALS_FILE}"
            mounts[self.options.claude_credentials] = {"bind": target, "mode": "ro"}
        return mounts


@dataclass(frozen=True)
class Outcome:
    """What `up` or `reset` did; `running` means it found the sandbox running and left it."""

    action: Literal["running", "started", "created"]
    message: str
    notes: tuple[str, ...] = ()


# ---- finding the container ----


def find(client: Any, name: str) -> Any | None:
    """The container of that exact name, or None."""
    import docker

    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        return None
    # The engine also resolves a prefix of a container's id; only the name counts here.
    return container if container.name == name else None


def made_here(container: Any) -> bool:
    """Whether `orchestrator sandbox` made the container."""
    return bool(_labels(container).get(SANDBOX_LABEL) == "1")


def _labels(container: Any) -> dict[str, str]:
    return dict(container.attrs.get("Config", {}).get("Labels") or {})


def json_label(container: Any, key: str) -> dict[str, str]:
    """A label of the container that holds a JSON object; empty when absent or malformed."""
    try:
        found = json.loads(_labels(container).get(key) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def foreign(name: str) -> SandboxError:
    """The refusal to touch a container this tool did not make."""
    return SandboxError(
        f"a container named '{name}' exists that `orchestrator sandbox` did not make (it has no "
        f"{SANDBOX_LABEL} label), so it is left alone: remove it yourself (`docker rm -f {name}`), "
        "or give the sandbox another name (--name, or ORCHESTRATOR_SANDBOX)"
    )


def _ours(client: Any, name: str) -> Any | None:
    container = find(client, name)
    if container is not None and not made_here(container):
        raise foreign(name)
    return container


# ---- what to make ----


def read_env_file(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """Variables from a Docker-style env file: `NAME=value`, or `NAME` for the caller's value.

    Errors name the line, never its value.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SandboxError(f"--env-file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SandboxError(f"--env-file {path} cannot be read: {reason or exc}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.lstrip().partition("=")
        if not _ENV_NAME.fullmatch(name.strip()):
            raise SandboxError(f"--env-file {path}:{number}: expected NAME=value")
        if sep:
            values[name.strip()] = value
        elif name.strip() in environ:
            values[name.strip()] = environ[name.strip()]
    return values


def environment(request: Request) -> dict[str, str]:
    """The credentials set in the caller's environment, by name, then the env file's variables."""
    env = {name: request.environ[name] for name in CREDENTIAL_ENV if request.environ.get(name, "").strip()}
    if request.env_file is not None:
        env.update(read_env_file(request.env_file, request.environ))
    # Whatever goes wrong from here on, no message may carry these values.
    remember([f"{name}={value}" for name, value in env.items()])
    return env


def _existing_path(raw: str, flag: str, kind: Literal["file", "dir"]) -> str:
    path = Path(raw).expanduser()
    if not path.exists():
        raise SandboxError(f"{flag} {raw} does not exist")
    if kind == "dir" and not path.is_dir():
        raise SandboxError(f"{flag} {raw} is not a directory")
    if kind == "file" and not path.is_file():
        raise SandboxError(f"{flag} {raw} is not a file")
    return str(path.resolve())


def plan(client: Any, request: Request, options: Options) -> Plan:
    """The container to make, its paths checked and its image's inputs known; raises SandboxError."""
    workspace_dir = workspace_root(request.workspace)
    if options.workspace:
        options = _replace(options, workspace=_existing_path(options.workspace, "--workspace", "dir"))
        source = f"bind:{options.workspace}"
    else:
        source = f"volume:{request.name}-workspace"
    if options.claude_credentials:
        credentials = _existing_path(options.claude_credentials, "--claude-credentials", "file")
        options = _replace(options, claude_credentials=credentials)
    if options.image:
        ensure_local(client, options.image, "image", "--image")
        return Plan(
            request.name, options.image, None, _home(client, options.image), workspace_dir, source, options
        )
    binary = Path(options.claude_binary) if options.claude_binary else None
    known = known_binaries(client) if binary is not None else {}
    inputs = image_inputs(workspace_dir, options.base_image, options.claude_version, binary, known)
    if binary is not None:
        # As given, not resolved: a symlink that an upgrade moves is followed next time.
        options = _replace(options, claude_binary=os.path.abspath(binary.expanduser()))
    return Plan(request.name, inputs.tag, inputs, f"/home/{inputs.user}", workspace_dir, source, options)


def _replace(options: Options, **changes: str) -> Options:
    return Options(**{**asdict(options), **changes})


def _home(client: Any, image: str) -> str:
    """The home of the user an image runs as: where its credentials file goes."""
    config = client.images.get(image).attrs.get("Config") or {}
    user = recorded_inputs(config.get("Labels")).get("user") or str(config.get("User") or "")
    user = user.split(":", 1)[0]
    return "/root" if user in ("", "root", "0") else f"/home/{user}"


def differences(container: Any, wanted: Plan) -> list[str]:
    """How the container differs from the one `wanted` describes; empty when it is the same."""
    found: list[str] = []
    recorded = recorded_inputs(_labels(container))
    image = container.attrs.get("Config", {}).get("Image")
    if wanted.inputs is None or not recorded.get("digest"):
        # An image of the user's own on either side: its name is all there is to compare.
        if image != wanted.image:
            found.append(f"image {image} → {wanted.image}")
    elif recorded["digest"] != wanted.inputs.digest:
        before = recorded.get("claude_version")
        if before and before != wanted.inputs.claude_version:
            found.append(f"Claude Code {before} → {wanted.inputs.claude_version}")
        elif recorded.get("base_image", wanted.inputs.base_image) != wanted.inputs.base_image:
            found.append(f"base image {recorded.get('base_image')} → {wanted.inputs.base_image}")
        else:
            found.append("the Dockerfile or its build arguments changed")
    before_options = json_label(container, OPTIONS_LABEL)
    after_options = wanted.options.given()
    for key in ("network", "workspace", "claude_credentials"):
        if before_options.get(key) != after_options.get(key):
            shown = key.replace("_", " ")
            found.append(
                f"{shown} {before_options.get(key) or 'default'} → {after_options.get(key) or 'default'}"
            )
    workspace = json_label(container, WORKSPACE_LABEL)
    if workspace.get("target", wanted.workspace_dir) != wanted.workspace_dir:
        found.append(f"workspace directory {workspace.get('target')} → {wanted.workspace_dir}")
    return found


# ---- making it ----


def _create(client: Any, wanted: Plan, env: Mapping[str, str]) -> Any:
    """Create and start the container; nothing half-made stays behind, also after Ctrl-C."""
    import docker

    if wanted.volume is not None:
        _ensure_volume(client, wanted.volume, wanted.name)
    try:
        container = client.containers.create(
            wanted.image,
            name=wanted.name,
            detach=True,
            init=True,
            restart_policy={"Name": "unless-stopped"},
            labels=wanted.labels(),
            environment=dict(env),
            network_mode=wanted.options.network or None,
            volumes=wanted.mounts(),
        )
        container.start()
    except BaseException as exc:
        _discard(client, wanted.name)
        if isinstance(exc, docker.errors.APIError):
            raise SandboxError(
                redact(f"cannot start sandbox container '{wanted.name}': {exc.explanation or exc}")
            ) from None
        raise
    return container


def _ensure_volume(client: Any, volume: str, name: str) -> None:
    import docker

    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        client.volumes.create(name=volume, labels={SANDBOX_LABEL: name})


def _discard(client: Any, name: str) -> None:
    """Remove what a failed or interrupted start left of the container."""
    import docker

    try:
        client.containers.get(name).remove(force=True)
    except (docker.errors.DockerException, OSError):
        pass


def up(client: Any, request: Request, progress: Progress = _quiet) -> Outcome:
    """Bring the sandbox up: leave it running, start it, or build its image and create it.

    Raises SandboxError for a container this tool did not make, one made from other inputs, and
    anything that stops the build or the start.
    """
    existing = _ours(client, request.name)
    recorded = json_label(existing, OPTIONS_LABEL) if existing is not None else {}
    wanted = plan(client, request, request.options.over(recorded))
    notes = _notes(wanted)
    if existing is not None:
        changed = differences(existing, wanted)
        if changed:
            raise SandboxError(
                f"sandbox container '{request.name}' was made from different inputs ({'; '.join(changed)}): "
                "recreate it with `orchestrator sandbox reset` (add --keep-workspace to keep its files)"
            )
        state = existing.attrs.get("State", {})
        if state.get("Running") and not state.get("Paused") and not state.get("Restarting"):
            return Outcome("running", f"sandbox container '{request.name}' is already running", notes)
        if state.get("Paused"):
            existing.unpause()
        else:
            existing.start()
        return Outcome("started", f"sandbox container '{request.name}' started", notes)
    env = environment(request)
    built = _image(client, wanted, progress)
    _create(client, wanted, env)
    return Outcome("created", _created(wanted, env, built), notes)


def reset(
    client: Any,
    request: Request,
    *,
    keep_workspace: bool = False,
    progress: Progress = _quiet,
) -> Outcome:
    """Make the sandbox again from the same inputs, with an empty workspace unless kept.

    The image is built first: a failed build leaves the old container as it was. The new
    container gets the old one's credentials and env-file variables, then the caller's.
    """
    existing = _ours(client, request.name)
    recorded = json_label(existing, OPTIONS_LABEL) if existing is not None else {}
    wanted = plan(client, request, request.options.over(recorded))
    env = {**_passed_env(client, existing), **environment(request)}
    built = _image(client, wanted, progress)
    if existing is not None:
        existing.remove(force=True)
    notes = list(_notes(wanted))
    if wanted.volume is None:
        notes.append(f"the workspace is the host directory {wanted.options.workspace}: its files stay")
    elif not keep_workspace and _remove_volume(client, wanted.volume, request.name):
        notes.append(f"workspace volume '{wanted.volume}' emptied")
    _create(client, wanted, env)
    return Outcome("created", _created(wanted, env, built), tuple(notes))


def _image(client: Any, wanted: Plan, progress: Progress) -> bool:
    if wanted.inputs is None:
        return False
    return ensure_image(client, wanted.inputs, progress)


def _created(wanted: Plan, env: Mapping[str, str], built: bool) -> str:
    how = "built" if built else "reused"
    names = [name for name in CREDENTIAL_ENV if name in env]
    return (
        f"sandbox container '{wanted.name}' created from {wanted.image} ({how}); "
        f"credentials passed: {', '.join(names) or 'none'}"
    )


def _notes(wanted: Plan) -> tuple[str, ...]:
    """Warnings about the request that do not stop it."""
    path = wanted.options.claude_credentials
    if path is None or wanted.inputs is None:
        return ()
    info = os.stat(path)
    readable = info.st_mode & 0o004 or (info.st_uid == wanted.inputs.uid and info.st_mode & 0o400)
    if readable:
        return ()
    return (
        f"--claude-credentials {path} is not readable by the sandbox's user (uid {wanted.inputs.uid}): "
        f"`chmod o+r` it, or give the file to uid {wanted.inputs.uid}",
    )


def _passed_env(client: Any, container: Any | None) -> dict[str, str]:
    """The variables a container was given beyond its image's own: its credentials and env file."""
    import docker

    if container is None:
        return {}
    own = list(container.attrs.get("Config", {}).get("Env") or [])
    try:
        image_env = set(client.images.get(container.attrs.get("Image")).attrs["Config"].get("Env") or [])
    except docker.errors.ImageNotFound:
        image_env = set()
    passed = dict(entry.split("=", 1) for entry in own if entry not in image_env and "=" in entry)
    remember([f"{name}={value}" for name, value in passed.items()])
    return passed


def _remove_volume(client: Any, volume: str, name: str) -> bool:
    """Remove the workspace volume if this tool made it; True when one was removed."""
    import docker

    try:
        found = client.volumes.get(volume)
    except docker.errors.NotFound:
        return False
    if (found.attrs.get("Labels") or {}).get(SANDBOX_LABEL) != name:
        raise SandboxError(
            f"volume '{volume}' was not made by `orchestrator sandbox` for '{name}': it is left alone; "
            "remove it yourself (`docker volume rm`) or add --keep-workspace"
        )
    found.remove(force=True)
    return True


def down(client: Any, name: str, *, volumes: bool = False) -> str:
    """Stop and remove the sandbox container, and its workspace volume with `volumes`."""
    container = _ours(client, name)
    lines: list[str] = []
    source = json_label(container, WORKSPACE_LABEL).get("source", "") if container is not None else ""
    if container is None:
        lines.append(f"no sandbox container '{name}'")
        source = f"volume:{name}-workspace"
    else:
        given = json_label(container, OPTIONS_LABEL)
        container.remove(force=True)
        lines.append(f"sandbox container '{name}' stopped and removed")
        if given:
            # They lived on the container: a later `up` without them makes another sandbox.
            flags = " ".join(
                f"--{key.replace('_', '-')} {shlex.quote(value)}" for key, value in given.items()
            )
            lines.append(
                f"its options go with it: `orchestrator sandbox up {flags}` makes the same one again"
            )
    kind, _, where = source.partition(":")
    if volumes and kind == "volume" and _remove_volume(client, where, name):
        lines.append(f"workspace volume '{where}' removed")
    elif volumes and kind == "bind":
        lines.append(f"the workspace is the host directory {where}: its files stay")
    return "; ".join(lines)


# ---- waiting ----


def wait_healthy(
    deadline: float,
    probe: Callable[[], SandboxProbe],
    health: Callable[[float], HealthRun],
    poll: float = 0.2,
) -> HealthRun:
    """Wait until the container runs, then run the sandbox's health checks.

    Only a failing `sandbox` check (the container still starting, or restarting) is worth
    waiting for; missing credentials or a missing CLI will not change by themselves.
    `health(timeout)` runs the checks within `timeout` seconds.
    """
    from ..health.run import SANDBOX_CHECKS

    while not probe().running and time.monotonic() < deadline:
        time.sleep(poll)
    while True:
        report = health(max(deadline - time.monotonic(), 30.0))
        if report.ok or SANDBOX_CHECKS[0] not in report.failed() or time.monotonic() >= deadline:
            return report
        time.sleep(1.0)
