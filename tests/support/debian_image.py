"""Build the Debian-based sandbox image that end-to-end tests run the real Claude Code CLI in."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

DEFAULT_TAG = "orchestrator-sandbox-debian:test"
# The base that `orchestrator sandbox up --base-image` builds on in the tests: Debian with the
# tools the packaged Dockerfile installs, so its build needs neither apt nor npm.
BASE_TAG = "orchestrator-sandbox-base:test"
SUITE = "bookworm"
# procps gives tests `ps`/`pgrep` to look for leftover agent processes inside the sandbox; the
# rest are what the packaged Dockerfile would otherwise install with apt-get.
PACKAGES = ("python3", "procps", "git", "ripgrep", "ca-certificates")
CLAUDE_VERSION_LABEL = "org.pytest-orchestrator.claude-version"
BASE_PACKAGES_LABEL = "org.pytest-orchestrator.base-packages"
CLAUDE_IN_IMAGE = "usr/local/bin/claude"
# A non-root account, because the CLI refuses --dangerously-skip-permissions when run as root.
AGENT_USER = "agent"
AGENT_UID = 1000
# Lets the CLI binary be pinned explicitly when the npm layout is unusual.
CLAUDE_BINARY_ENV = "ORCHESTRATOR_CLAUDE_BINARY"
_ELF_MAGIC = b"\x7fELF"


class ImageBuildError(Exception):
    """A precondition or build step failed; the message tells the user what to do."""


def _log(message: str) -> None:
    """Print one progress line to stderr."""
    print(f"[debian-image] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    """Time one build phase and print how long it took."""
    start = time.monotonic()
    _log(f"{name} ...")
    yield
    _log(f"{name}: {time.monotonic() - start:.1f}s")


def _run(args: list[str], what: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, turning a failure into an ImageBuildError naming the step."""
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ImageBuildError(f"{what}: {args[0]} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"{what}: timed out after {timeout}s") from exc
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ImageBuildError(f"{what} failed (exit {result.returncode}): {tail[0]}")
    return result


def _is_elf(path: Path) -> bool:
    """Tell whether a file is a native executable rather than a JS or shell launcher."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) == _ELF_MAGIC
    except OSError:
        return False


def find_claude_binary() -> Path:
    """Locate the native Claude Code binary shipped in the npm package."""
    override = os.environ.get(CLAUDE_BINARY_ENV)
    if override:
        path = Path(override)
        if not _is_elf(path):
            raise ImageBuildError(f"{CLAUDE_BINARY_ENV}={override} is not a native executable")
        return path
    candidates: list[Path] = []
    on_path = shutil.which("claude")
    if on_path:
        candidates.append(Path(on_path).resolve())
    npm = shutil.which("npm")
    if npm:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            root = subprocess.run(
                [npm, "root", "-g"], capture_output=True, text=True, timeout=60, check=False
            ).stdout.strip()
            if root:
                package_bin = Path(root) / "@anthropic-ai" / "claude-code" / "bin"
                candidates += [package_bin / "claude.exe", package_bin / "claude"]
    for candidate in candidates:
        if _is_elf(candidate):
            return candidate
    raise ImageBuildError(
        "Claude Code native binary not found: install it with "
        f"`npm install -g @anthropic-ai/claude-code`, or set {CLAUDE_BINARY_ENV} to its path"
    )


def claude_version(binary: Path) -> str:
    """Return the CLI's version number, e.g. '2.1.197'."""
    output = _run([str(binary), "--version"], f"{binary} --version", timeout=60).stdout.strip()
    match = re.match(r"\d+(?:\.\d+)+\S*", output)
    if not match:
        raise ImageBuildError(f"unexpected `claude --version` output: {output!r}")
    return match.group(0)


def _sources_entries() -> Iterator[tuple[list[str], list[str], list[str]]]:
    """Yield (types, uris, suites) for every apt source the machine is configured with."""
    apt = Path("/etc/apt")
    one_line = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in one_line:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                # Drop an optional "[arch=... signed-by=...]" block between type and URI.
                words = [w for w in words if not (w.startswith("[") or w.endswith("]") or "=" in w)]
                if len(words) >= 3:
                    yield [words[0]], [words[1]], [words[2]]
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields: dict[str, list[str]] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[0].isspace():
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
                if fields.get("enabled", ["yes"])[0].lower() == "no":
                    continue
                yield fields.get("types", []), fields.get("uris", []), fields.get("suites", [])


def debian_mirror() -> str | None:
    """Return the Debian mirror apt already uses, since only configured registries are reachable."""
    for types, uris, suites in _sources_entries():
        if "deb" in types and SUITE in suites:
            for uri in uris:
                if "security" not in uri:
                    return uri
    return None


def _check_preconditions() -> None:
    """Fail early, with what to do, when the build cannot possibly work."""
    probe = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise ImageBuildError(
            f"docker daemon not reachable at {host}: start it with `sudo systemctl start docker` "
            "(or run `dockerd` as root)"
        )
    if os.geteuid() != 0:
        raise ImageBuildError("building the Debian image needs root (debootstrap chroots): rerun with sudo")
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap not found: install it with `apt-get install debootstrap`")


def _inspect(tag: str, template: str) -> str | None:
    """Return a Go-template field of an image, or None if the tag does not exist."""
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", template, tag],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _image_id(tag: str) -> str | None:
    """Return the ID of the image a tag points to, or None if the tag does not exist."""
    return _inspect(tag, "{{.Id}}")


def image_claude_version(tag: str) -> str | None:
    """Return the Claude version recorded on an image, or None if there is no such image."""
    return _inspect(tag, f'{{{{ index .Config.Labels "{CLAUDE_VERSION_LABEL}" }}}}')


def _unmount_under(root: Path) -> None:
    """Detach what a failed debootstrap left mounted, so cleanup never walks into /proc."""
    prefix = str(root.resolve())
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for mount_point in sorted(mounts, key=len, reverse=True):
            if mount_point == prefix or mount_point.startswith(prefix + "/"):
                subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)


def _debootstrap(rootfs: Path, mirror: str | None) -> None:
    """Create a minimal Debian rootfs with the packages the agent and the tests need."""
    args = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(rootfs),
    ]
    if mirror:
        args.append(mirror)
    _run(args, "debootstrap", timeout=1800)


def _customize(rootfs: Path, claude: Path) -> None:
    """Install the CLI, add the agent account and workspace, and drop unused apt caches."""
    target = rootfs / CLAUDE_IN_IMAGE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(claude, target)
    target.chmod(0o755)
    _run(
        [
            "chroot",
            str(rootfs),
            "useradd",
            "--create-home",
            "--uid",
            str(AGENT_UID),
            "--shell",
            "/bin/bash",
            AGENT_USER,
        ],
        "useradd in rootfs",
    )
    workspace = rootfs / "workspace"
    workspace.mkdir(exist_ok=True)
    # World-writable so a task can run as root or as the agent account without a chown step.
    workspace.chmod(0o1777)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()


_PATH_ENV = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sandbox_changes(version: str) -> list[str]:
    """The image config of the test sandbox: the CLI's version, the workspace, a long sleep."""
    return [
        'CMD ["sleep", "infinity"]',
        "WORKDIR /workspace",
        # No ENV HOME: Docker then takes HOME from /etc/passwd, so `exec -u agent` gets /home/agent.
        _PATH_ENV,
        "ENV LANG=C.UTF-8",
        f'LABEL {CLAUDE_VERSION_LABEL}="{version}"',
    ]


def _base_changes() -> list[str]:
    """The image config of the plain Debian base, labelled with the packages it holds."""
    return [
        _PATH_ENV,
        "ENV LANG=C.UTF-8",
        'CMD ["bash"]',
        f'LABEL {BASE_PACKAGES_LABEL}="{",".join(PACKAGES)}"',
    ]


def _import(rootfs: Path, tag: str, changes: list[str]) -> None:
    """Stream the rootfs as a tar into `docker import`, with the given image config."""
    import_args = ["docker", "import"]
    for change in changes:
        import_args += ["--change", change]
    import_args += ["-", tag]
    # --numeric-owner keeps file ownership as in the rootfs rather than remapped through host names.
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    try:
        docker = subprocess.run(import_args, stdin=tar.stdout, capture_output=True, text=True, check=False)
    finally:
        tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
        tar_rc = tar.wait()
    if tar_rc != 0:
        raise ImageBuildError(f"tar of rootfs failed (exit {tar_rc}): {tar_err.strip()}")
    if docker.returncode != 0:
        raise ImageBuildError(f"docker import failed (exit {docker.returncode}): {docker.stderr.strip()}")


@contextlib.contextmanager
def build_lock(tag: str) -> Iterator[None]:
    """Serialise builds of one tag, so parallel test workers wait and then reuse the image."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)
    lock_path = Path(tempfile.gettempdir()) / f"orchestrator-image-{safe}.lock"
    # Read-only is enough for flock, and lets a non-root user share a lock file root created.
    fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _base_is_current(tag: str) -> bool:
    """Whether the base image exists and holds today's package list."""
    return _inspect(tag, f'{{{{ index .Config.Labels "{BASE_PACKAGES_LABEL}" }}}}') == ",".join(PACKAGES)


def build_debian_image(tag: str, claude: Path | None, version: str, base_tag: str | None = None) -> None:
    """Build and tag the image from scratch, removing the temporary rootfs afterwards.

    With `base_tag`, the plain rootfs is imported under that tag too, before the CLI and the
    agent account go in: one debootstrap gives both images. Without `claude`, only the base is made.
    """
    total = time.monotonic()
    mirror = debian_mirror()
    _log(f"mirror: {mirror or 'debootstrap default (none configured for ' + SUITE + ')'}")
    rootfs = Path(tempfile.mkdtemp(prefix="orchestrator-rootfs-"))
    try:
        with _phase("debootstrap"):
            _debootstrap(rootfs, mirror)
        if base_tag is not None:
            with _phase(f"docker import {base_tag}"):
                _import(rootfs, base_tag, _base_changes())
        if claude is not None:
            with _phase("customize rootfs"):
                _customize(rootfs, claude)
            with _phase("docker import"):
                _import(rootfs, tag, _sandbox_changes(version))
    finally:
        with _phase("cleanup"):
            _unmount_under(rootfs)
            shutil.rmtree(rootfs, ignore_errors=True)
    _log(f"built {base_tag if claude is None else tag} in {time.monotonic() - total:.1f}s")


def ensure_debian_image(tag: str = DEFAULT_TAG, force: bool = False) -> str:
    """Return the tag of a Debian sandbox image with the local Claude CLI, building it if needed."""
    if shutil.which("docker") is None:
        raise ImageBuildError("docker CLI not found: install it with `apt-get install docker.io`")
    claude = find_claude_binary()
    version = claude_version(claude)
    with build_lock(tag):
        existing = image_claude_version(tag)
        if existing == version and not force:
            _log(f"reused {tag} (claude {version})")
            return tag
        _check_preconditions()
        if force:
            _log(f"--force: rebuilding {tag}")
        elif existing:
            _log(f"{tag} has claude {existing}, rebuilding for {version}")
        previous = _image_id(tag)
        # The sandbox-command tests' base comes from the same debootstrap when it is missing.
        with build_lock(BASE_TAG):
            base = None if _base_is_current(BASE_TAG) else BASE_TAG
            build_debian_image(tag, claude, version, base_tag=base)
        if previous and previous != _image_id(tag):
            # A rebuild leaves ~400 MB dangling; failure just means a container still uses it.
            subprocess.run(["docker", "image", "rm", previous], capture_output=True, check=False)
    return tag


def ensure_base_image(tag: str = BASE_TAG) -> str:
    """Return the tag of a plain Debian base with the sandbox's tools, importing it if needed.

    `orchestrator sandbox up --base-image` builds the packaged Dockerfile on it, without a
    registry and without apt-get.
    """
    if shutil.which("docker") is None:
        raise ImageBuildError("docker CLI not found: install it with `apt-get install docker.io`")
    with build_lock(tag):
        if _base_is_current(tag):
            _log(f"reused {tag}")
            return tag
        _check_preconditions()
        build_debian_image(tag, None, "", base_tag=tag)
    return tag


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Signal handler that unwinds the stack like Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: build or reuse the image and print its tag."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.debian_image",
        description="Build the Debian sandbox image for end-to-end tests.",
    )
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"image tag (default: {DEFAULT_TAG})")
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching image exists")
    args = parser.parse_args(argv)
    # SIGTERM becomes an exception so a stopped build still removes its temporary rootfs.
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        print(ensure_debian_image(args.tag, force=args.force))
        print(ensure_base_image())
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
