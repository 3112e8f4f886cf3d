"""`orchestrator sandbox shell`: an interactive shell in the sandbox's workspace, as its user.

With the docker CLI on PATH the command becomes `docker exec -it` (it knows terminals best);
without it, the Docker SDK carries the terminal's bytes both ways.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import termios
import threading
import tty
from collections.abc import Sequence
from typing import Any

from .image import recorded_inputs

# bash when the image has it, sh otherwise.
SHELL = ("sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi")


def user_of(container: Any) -> str | None:
    """The user a sandbox this tool built runs its agent as; None: the image's own user."""
    labels = container.attrs.get("Config", {}).get("Labels")
    return recorded_inputs(labels).get("user") or None


def docker_argv(docker: str, name: str, workdir: str, user: str | None, terminal: bool) -> list[str]:
    """The `docker exec` command line of the shell."""
    argv = [docker, "exec", "-i"]
    if terminal:
        argv.append("-t")
    if user:
        argv += ["-u", user]
    return [*argv, "-w", workdir, name, *SHELL]


def enter(container: Any, workdir: str, stdin: int = 0, stdout: int = 1, docker: str | None = None) -> int:
    """Run the shell until it ends; returns its exit status.

    Replaces this process with `docker exec` when the CLI is found (`docker`: its path);
    otherwise proxies through the SDK.
    """
    terminal = os.isatty(stdin)
    user = user_of(container)
    docker = docker if docker is not None else shutil.which("docker")
    if docker:
        argv = docker_argv(docker, container.name, workdir, user, terminal)
        os.execv(docker, argv)
    return proxy(container, workdir, user, terminal, stdin, stdout)


def proxy(container: Any, workdir: str, user: str | None, terminal: bool, stdin: int, stdout: int) -> int:
    """The shell through the Docker SDK: raw terminal mode while it runs, its size passed on."""
    from docker.utils.socket import demux_adaptor, frames_iter

    api = container.client.api
    exec_id = api.exec_create(
        container.id, list(SHELL), stdin=True, tty=terminal, user=user or "", workdir=workdir
    )["Id"]
    connection = api.exec_start(exec_id, socket=True, tty=terminal)
    raw = getattr(connection, "_sock", connection)
    # A shell may sit idle for as long as its user reads: no timeout of a single API call.
    raw.settimeout(None)
    saved = termios.tcgetattr(stdin) if terminal else None
    try:
        if terminal:
            size = os.get_terminal_size(stdout)
            api.exec_resize(exec_id, height=size.lines, width=size.columns)
            tty.setraw(stdin, termios.TCSANOW)
        threading.Thread(target=_pump, args=(stdin, raw), name="shell-stdin", daemon=True).start()
        if terminal:
            while chunk := raw.recv(65536):
                _write_all(stdout, chunk)
        else:
            for stream_id, data in frames_iter(connection, False):
                out, err = demux_adaptor(stream_id, data)
                _write_all(stdout if out is not None else 2, out if out is not None else err or b"")
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        connection.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else 1


def _pump(stdin: int, raw: Any) -> None:
    """Copy the terminal's input to the shell until it ends, then end the shell's input."""
    try:
        while True:
            ready, _, _ = select.select([stdin], [], [], 0.5)
            if not ready:
                continue
            data = os.read(stdin, 65536)
            if not data:
                break
            raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
    except OSError:
        # The shell ended first: its socket is closed.
        pass


def _write_all(fd: int, data: bytes | Sequence[int]) -> None:
    view = memoryview(bytes(data))
    while view:
        view = view[os.write(fd, view) :]
