"""The sandbox image: the Dockerfile that ships in this package, built through the Docker API.

The tag names the build's inputs (the Claude Code version and a digest of the Dockerfile
and the build arguments), so an unchanged build is found by its tag and reused at once.
A base image that the engine already has is used without a pull: hosts without a
registry build on a local base, and copy the CLI in with `--claude-binary`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..redact import redact
from . import SandboxError

DOCKERFILE = Path(__file__).with_name("Dockerfile")
REPOSITORY = "orchestrator-sandbox"
DEFAULT_BASE_IMAGE = "node:22-bookworm-slim"
# The Claude Code version the project is tested with: .ci/setup installs the same one, and
# agents/claude_code.py's tested range holds it.
CLAUDE_VERSION = "2.1.197"
SANDBOX_USER = "agent"
SANDBOX_UID = 1000

# One label, JSON, on the image and the containers made from it: each label costs the
# classic builder a step.
INPUTS_LABEL = "org.pytest-orchestrator.inputs"

_ELF_MAGIC = b"\x7fELF"
_VERSION = re.compile(r"\d+\.\d+\.\d+[0-9A-Za-z.+-]*")
# How much of a failed build's output its error line carries.
_TAIL_LINES = 4


@dataclass(frozen=True)
class ImageInputs:
    """Everything the image is built from; equal inputs give the same tag."""

    base_image: str
    claude_version: str
    workspace: str
    # A local CLI copied into the image instead of the npm install; its size tells two builds apart.
    claude_binary: Path | None = None
    binary_size: int = 0
    # The binary's identity on this host (binary_key): recorded, it spares asking the same
    # binary its version again.
    binary_key: str = field(default="", compare=False)
    user: str = SANDBOX_USER
    uid: int = SANDBOX_UID

    def build_args(self) -> dict[str, str]:
        """The Dockerfile's build arguments."""
        return {
            "BASE_IMAGE": self.base_image,
            "CLAUDE_SOURCE": "binary" if self.claude_binary else "npm",
            "CLAUDE_VERSION": self.claude_version,
            "SANDBOX_USER": self.user,
            "SANDBOX_UID": str(self.uid),
            "WORKSPACE": self.workspace,
        }

    @property
    def digest(self) -> str:
        """Twelve hex digits of the Dockerfile's and the build arguments' hash."""
        hashed = hashlib.sha256(DOCKERFILE.read_bytes())
        hashed.update(json.dumps([self.build_args(), self.binary_size], sort_keys=True).encode())
        return hashed.hexdigest()[:12]

    @property
    def tag(self) -> str:
        """`orchestrator-sandbox:<claude version>-<digest>`."""
        version = re.sub(r"[^0-9A-Za-z_.-]", "_", self.claude_version)[:100]
        return f"{REPOSITORY}:{version}-{self.digest}"

    def record(self) -> dict[str, str]:
        """What the image records about itself (INPUTS_LABEL), and containers made from it inherit."""
        record = {
            "digest": self.digest,
            "claude_version": self.claude_version,
            "base_image": self.base_image,
            "user": self.user,
            "workspace": self.workspace,
        }
        if self.binary_key:
            record["binary"] = self.binary_key
        return record


def recorded_inputs(labels: dict[str, str] | None) -> dict[str, str]:
    """What an image or container of this tool records about its build; empty for others."""
    try:
        found = json.loads((labels or {}).get(INPUTS_LABEL) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def known_binaries(client: Any) -> dict[str, str]:
    """{binary_key: version} of the CLI binaries this engine's sandbox images were built with."""
    known: dict[str, str] = {}
    # The low-level list: its entries carry the labels, where `images.list` inspects each image again.
    for image in client.api.images(filters={"label": INPUTS_LABEL}):
        record = recorded_inputs(image.get("Labels"))
        if record.get("binary") and record.get("claude_version"):
            known[record["binary"]] = record["claude_version"]
    return known


def image_inputs(
    workspace: str,
    base_image: str | None = None,
    claude_version: str | None = None,
    claude_binary: Path | None = None,
    known_versions: Mapping[str, str] | None = None,
) -> ImageInputs:
    """The inputs of a build; a `claude_binary` is checked and asked for its version.

    `known_versions` maps a binary_key to the version that binary reported before: an
    unchanged binary is not run again. Raises SandboxError when the binary cannot go into
    the image or the version is malformed.
    """
    base = base_image or DEFAULT_BASE_IMAGE
    if claude_binary is None:
        version = claude_version or CLAUDE_VERSION
        if not _VERSION.fullmatch(version):
            raise SandboxError(f"--claude-version {version!r} is not a version number like {CLAUDE_VERSION}")
        return ImageInputs(base, version, workspace)
    binary = _checked_binary(claude_binary)
    key = binary_key(binary)
    version = (known_versions or {}).get(key) or binary_version(binary)
    return ImageInputs(base, version, workspace, binary, binary.stat().st_size, key)


def binary_key(binary: Path) -> str:
    """The file's path, size and modification time: a binary replaced in place gets a new key."""
    info = binary.stat()
    return f"{binary}:{info.st_size}:{info.st_mtime_ns}"


def _checked_binary(path: Path) -> Path:
    """The file behind `path` when it is a native executable; raises SandboxError saying why not."""
    shown = f"--claude-binary {path}"
    try:
        real = path.expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise SandboxError(f"{shown} does not exist") from None
    if not real.is_file() or not os.access(real, os.X_OK):
        raise SandboxError(f"{shown} is not an executable file")
    try:
        with real.open("rb") as handle:
            native = handle.read(4) == _ELF_MAGIC
    except OSError as exc:
        raise SandboxError(f"{shown} cannot be read: {exc.strerror or exc}") from None
    if not native:
        # The npm package's launcher (a script, or the placeholder when its optional native
        # package was left out) needs what lies beside it, which the image would not have.
        raise SandboxError(
            f"{shown} is not a native executable (a script or launcher): give the `claude` binary "
            "itself, e.g. node_modules/@anthropic-ai/claude-code/bin/claude.exe of an npm install"
        )
    return real


def binary_version(binary: Path) -> str:
    """The version a Claude Code binary reports; raises SandboxError when it does not run."""
    try:
        done = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"--claude-binary {binary} does not run: {exc}") from None
    found = _VERSION.search(done.stdout)
    if done.returncode != 0 or not found:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SandboxError(
            f"--claude-binary {binary} is not a Claude Code CLI: `--version` exited "
            f"{done.returncode}: {said[0][:200]}"
        )
    return found.group(0)


def has_image(client: Any, name: str) -> bool:
    """Whether the engine has the image, without pulling it."""
    import docker

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_local(client: Any, name: str, what: str, flag: str) -> None:
    """Pull the image unless the engine has it; raises SandboxError saying how to provide one."""
    import docker
    import requests

    from .docker import connect

    if has_image(client, name):
        return
    repository, tag = docker.utils.parse_repository_tag(name)
    try:
        # A pull may be silent for longer than one API call's timeout.
        connect(None).images.pull(repository, tag=tag or "latest")
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        reason = getattr(exc, "explanation", None) or str(exc)
        raise SandboxError(
            f"{what} '{name}' is not on this Docker engine and cannot be pulled ({reason}): pull "
            f"it where a registry is reachable and `docker load` it here, or name a local image "
            f"with {flag}"
        ) from None


def ensure_image(
    client: Any, inputs: ImageInputs, progress: Callable[[str], None] = lambda line: None
) -> bool:
    """Build the image unless its tag exists; True when it was built.

    Raises SandboxError naming the failing step and its last lines. An interrupted build
    tags nothing, and the builder removes its intermediate containers.
    """
    from .docker import connect

    if has_image(client, inputs.tag):
        return False
    ensure_local(client, inputs.base_image, "base image", "--base-image")
    progress(f"building {inputs.tag} on {inputs.base_image} (Claude Code {inputs.claude_version})")
    with tempfile.TemporaryFile() as context:
        _write_context(context, inputs)
        context.seek(0)
        # No read timeout: a build step (npm install) may be silent for minutes.
        _build(connect(None), context, inputs, progress)
    if not has_image(client, inputs.tag):
        raise SandboxError(f"the build of {inputs.tag} ended without an image: see `docker images`")
    return True


def _write_context(target: IO[bytes], inputs: ImageInputs) -> None:
    """The build context: the Dockerfile, and the CLI in `claude/` when it is copied in."""

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=target, mode="w") as tar:
        tar.add(str(DOCKERFILE), arcname="Dockerfile", filter=owned_by_root)
        directory = tarfile.TarInfo("claude")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        if inputs.claude_binary is not None:
            info = owned_by_root(tar.gettarinfo(str(inputs.claude_binary), arcname="claude/claude"))
            info.mode = 0o755
            with inputs.claude_binary.open("rb") as handle:
                tar.addfile(info, handle)


def _build(client: Any, context: IO[bytes], inputs: ImageInputs, progress: Callable[[str], None]) -> None:
    """Run the build, passing its output to `progress`; raises SandboxError when it fails."""
    import docker
    import requests

    lines: list[str] = []
    step = ""
    try:
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            tag=inputs.tag,
            buildargs=inputs.build_args(),
            labels={INPUTS_LABEL: json.dumps(inputs.record(), sort_keys=True)},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = str(chunk.get("error") or "").strip()
                tail = " | ".join(lines[-_TAIL_LINES:])
                raise SandboxError(
                    redact(
                        f"the image build failed at {step or 'its start'}: {detail}"
                        + (f"; last lines: {tail}" if tail else "")
                    )
                )
            for line in str(chunk.get("stream") or "").splitlines():
                line = line.strip()
                if not line:
                    continue
                if line.startswith("Step "):
                    step = line.split(" :", 1)[0].replace("Step", "step")
                lines.append(line)
                progress(line)
    except docker.errors.APIError as exc:
        raise SandboxError(redact(f"the image build failed: {exc.explanation or exc}")) from None
    except requests.exceptions.RequestException as exc:
        raise SandboxError(f"the image build lost its connection to the Docker engine: {exc}") from None
