"""Defunct (zombie) processes inside the sandbox, read from /proc through one exec.

`ps` is missing from many images; `sh` and `cat` are in busybox and Debian alike. A zombie
is a process that ended and whose parent never waited for it: without an init as PID 1
(`docker run --init`), every orphan an agent leaves behind becomes one.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import Sandbox, SandboxError

# Processes end while the glob is read: a stat file gone by then is no error.
_STAT_SCRIPT = "cat /proc/[0-9]*/stat 2>/dev/null; exit 0"


@dataclass(frozen=True)
class Process:
    """One line of /proc/PID/stat: the process, its name, state and parent."""

    pid: int
    name: str
    state: str
    ppid: int


def parse_stat(text: str) -> list[Process]:
    """The processes of concatenated /proc/PID/stat lines; lines that are not one are ignored."""
    found = []
    for line in text.splitlines():
        # The name is in parentheses and may itself hold spaces and parentheses.
        head, opened, rest = line.partition(" (")
        name, closed, tail = rest.rpartition(") ")
        fields = tail.split()
        if not (opened and closed and head.strip().isdigit() and len(fields) >= 2 and fields[1].isdigit()):
            continue
        found.append(Process(int(head), name, fields[0], int(fields[1])))
    return found


def processes(sandbox: Sandbox) -> list[Process]:
    """Every process in the sandbox, as /proc shows it; SandboxError when it cannot be read."""
    result = sandbox.exec(["sh", "-c", _STAT_SCRIPT])
    found = parse_stat(result.output)
    if result.exit_code != 0 or not found:
        text = result.output.strip().splitlines()
        raise SandboxError(
            f"cannot list the processes in sandbox '{sandbox.name}' (exit {result.exit_code}"
            f"{': ' + text[-1][:200] if text else ''}): the image needs `sh` and `cat`"
        )
    return found


def zombies(found: list[Process]) -> list[Process]:
    """The defunct processes among `found`."""
    return [p for p in found if p.state == "Z"]


def describe(found: list[Process], sandbox: str) -> tuple[int, str]:
    """(how many zombies, the check's message): their parents, and how to be rid of them."""
    defunct = zombies(found)
    if not defunct:
        return 0, f"no defunct processes in sandbox '{sandbox}'"
    names = {p.pid: p.name for p in found}
    parents = sorted({p.ppid for p in defunct})
    who = ", ".join(f"pid {pid} ({names[pid]})" if pid in names else f"pid {pid}" for pid in parents)
    count = len(defunct)
    plural = "es" if count > 1 else ""
    text = f"{count} defunct (zombie) process{plural} in sandbox '{sandbox}', children of {who}"
    if 1 in parents:
        return count, (
            f"{text}: its PID 1 does not reap orphans; recreate the sandbox with an init as PID 1 "
            f"(`docker run --init ...`)"
        )
    return count, (
        f"{text}, which never waited for them: they go when that process ends; with an init as "
        f"PID 1 (`docker run --init ...`) the orphans an agent leaves are reaped"
    )
