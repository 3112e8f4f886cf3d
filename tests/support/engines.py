"""A second Docker engine on this machine, kept apart from the first one's network.

A second `dockerd` started with `--bridge=none` deletes the host's `docker0` as it starts
(moby's removeDefaultBridgeInterface), and every bridge-networked container of the first
engine fails until that engine restarts. This one gets a bridge of its own instead, with no
iptables rules and no masquerading; its containers use the host network. Its data root,
exec root, pid file, socket and config file are its own too: `/etc/docker/daemon.json` is
never read.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


class EngineError(Exception):
    """The second engine could not be started; the message says why."""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def _free_subnet() -> str:
    """A /24 in 10.231.0.0/16 that no route of this host uses."""
    routes = _run("ip", "-4", "route").stdout
    for third in random.sample(range(1, 255), 254):
        prefix = f"10.231.{third}."
        if prefix not in routes:
            return f"{prefix}1/24"
    raise EngineError("no free 10.231.x.0/24 for the second engine's bridge")


class SecondEngine:
    """A `dockerd` of its own, listening on a unix socket in a temporary directory."""

    def __init__(self) -> None:
        # Short: a unix socket's path, and containerd's under the exec root, have a length limit.
        self.root = Path(tempfile.mkdtemp(prefix="orchd-"))
        self.socket = self.root / "docker.sock"
        self.bridge = f"orchb{os.getpid() % 100000:05d}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.root / "dockerd.log"

    @property
    def host(self) -> str:
        """The engine's DOCKER_HOST, in the spelling an xdist `--tx` spec can carry (no `//`)."""
        return f"unix:{self.socket}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the engine and wait until it answers."""
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise EngineError("dockerd not found: install Debian's docker.io")
        for argv in (
            ("ip", "link", "add", self.bridge, "type", "bridge"),
            ("ip", "addr", "add", _free_subnet(), "dev", self.bridge),
            ("ip", "link", "set", self.bridge, "up"),
        ):
            done = _run(*argv)
            if done.returncode != 0:
                raise EngineError(
                    f"`{' '.join(argv)}` failed: {done.stderr.strip()} (run as root, as CI does)"
                )
        config = self.root / "daemon.json"
        config.write_text(json.dumps({}))
        argv = [
            dockerd,
            "--config-file", str(config),
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "docker.pid"),
            "-H", f"unix://{self.socket}",
            f"--bridge={self.bridge}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client(timeout=5).ping()
                return
            except Exception as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                    raise EngineError(
                        f"the second dockerd did not come up ({exc}): {' | '.join(tail)}"
                    ) from None
            time.sleep(0.1)

    def client(self, timeout: float = 60) -> Any:
        """A Docker client of this engine."""
        import docker

        return docker.DockerClient(base_url=f"unix://{self.socket}", version="auto", timeout=timeout)

    def load_image(self, source: Any, tag: str) -> float:
        """Copy image `tag` from the engine of client `source` into this one; returns the seconds taken."""
        started = time.monotonic()
        self.client(timeout=600).images.load(source.images.get(tag).save(named=tag))
        return time.monotonic() - started

    def stop(self, grace: float = 30.0) -> None:
        """Stop the engine (killed after `grace` seconds), then whatever of it outlived it, its bridge,
        its mounts and its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._kill_leftovers()
        _run("ip", "link", "del", self.bridge)
        # dockerd leaves its default network namespace mounted under the exec root.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for target in reversed([m for m in mounts if m.startswith(str(self.root))]):
            _run("umount", "-l", target)
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """Kill the processes started from this engine's directories, and their children.

        A dockerd that is killed, not stopped, leaves its containers running: each under a
        containerd shim that re-parented itself (`containerd-shim-runc-v2 ... -address <exec root>/...`).
        """
        import psutil

        root = str(self.root)
        found: list[psutil.Process] = []
        for process in psutil.process_iter(["cmdline"]):
            try:
                if any(root in part for part in process.info["cmdline"] or ()):
                    found += [process, *process.children(recursive=True)]
            except psutil.Error:
                continue
        for process in found:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(found, timeout=10)


def first_engine_networking(client: Any, image: str) -> str | None:
    """What is wrong with the first engine's bridge network, or None when a container gets an address on it."""
    link = _run("ip", "link", "show", "docker0")
    if link.returncode != 0:
        return f"docker0 is gone: {link.stderr.strip()}"
    output = client.containers.run(image, ["cat", "/proc/net/route"], remove=True, network_mode="bridge")
    routes = output.decode(errors="replace").splitlines()[1:]
    if not any(line.split()[0] == "eth0" for line in routes if line.strip()):
        return f"a bridge-networked container of the first engine has no eth0 route: {routes}"
    return None
