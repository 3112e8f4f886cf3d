"""`orchestrator logs`: the last lines of the watchdog's and the components' logs, or follow them.

A process component logs to `<state_dir>/logs/<name>.log` (stdout and stderr together),
rotated by size to `<name>.log.1`, `<name>.log.2`, ... (`.1` the newest of the old ones);
the watchdog logs to `logs/watchdog.log`. A container component's log is its Docker log.

Several logs are interleaved by time, each line prefixed with `name | `. A line's time is
its own leading timestamp (`2026-11-23T14:05:01.123`, with or without a zone; Docker's
carry one); a line without one goes with the line before it in its file (a traceback stays
with the message that started it), the lines before a file's first timestamp go with that
first timestamp, and a file without any timestamp counts as written when it was last
modified. Lines of equal time keep their log's order.
"""

from __future__ import annotations

import calendar
import heapq
import os
import queue
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from ..redact import redact

LOGS_DIR = "logs"
WATCHDOG = "watchdog"
DEFAULT_LINES = 50
# How often a followed file is looked at; a log line shows up at most this late.
POLL = 0.2

_STAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:[.,](?P<fraction>\d+))?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?(?=\s|$)"
)


class LogsError(Exception):
    """A log cannot be shown; the message is one line, `code` the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Source:
    """One log: a file (with its rotated predecessors) or a Docker container's."""

    name: str
    path: Path | None = None
    container: str | None = None


def known_sources(state_dir: Path) -> dict[str, Source]:
    """Every log there is to show: the recorded components', any other log file, the watchdog's."""
    logs = state_dir / LOGS_DIR
    sources: dict[str, Source] = {}
    for name, kind, container in _recorded_components(state_dir):
        if kind == "container":
            sources[name] = Source(name, container=container or name)
        else:
            sources[name] = Source(name, path=logs / f"{name}.log")
    # A component no longer configured (or never recorded) still has its log file.
    for path in sorted(logs.glob("*.log")) if logs.is_dir() else ():
        sources.setdefault(path.stem, Source(path.stem, path=path))
    sources.setdefault(WATCHDOG, Source(WATCHDOG, path=logs / "watchdog.log"))
    return sources


def _recorded_components(state_dir: Path) -> list[tuple[str, str, str | None]]:
    from ..state import StateStore
    from ..state.components import ComponentStore

    store = StateStore.read(state_dir)
    if store is None:
        return []
    try:
        if store.conn.execute("PRAGMA user_version").fetchone()[0] < 4:
            return []
        return [(row.name, row.kind, row.container) for row in ComponentStore(store).components()]
    finally:
        store.close()


def select(known: Mapping[str, Source], names: Sequence[str]) -> list[Source]:
    """The logs named, or all of them when none is; an unknown name is a usage error."""
    if not names:
        return list(known.values())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise LogsError(f"no log named {unknown[0]!r}: known names are {', '.join(known)}", code=2)
    return [known[name] for name in dict.fromkeys(names)]


# ---- time ----


def stamp(line: str) -> float | None:
    """The time of a line's leading timestamp, as seconds since the epoch; None without one.

    A timestamp without a zone is local time, as the watchdog writes it.
    """
    match = _STAMP.match(line)
    if match is None:
        return None
    try:
        fields = time.strptime(f"{match['date']} {match['time']}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    fraction = float("0." + match["fraction"][:9]) if match["fraction"] else 0.0
    zone = match["zone"]
    if zone is None:
        return time.mktime(fields) + fraction
    seconds = calendar.timegm(fields) + fraction
    if zone != "Z":
        sign = -1 if zone[0] == "+" else 1
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        seconds += sign * (hours * 3600 + minutes * 60)
    return seconds


def interleave(logs: Sequence[tuple[str, Sequence[str], float]]) -> list[tuple[str, str]]:
    """(name, line) pairs of several logs, by time; each log is (name, lines, time of an untimed log)."""
    keyed: list[list[tuple[float, int, int, str, str]]] = []
    for index, (name, lines, fallback) in enumerate(logs):
        stamps = [stamp(line) for line in lines]
        current = next((s for s in stamps if s is not None), fallback)
        entries = []
        for seq, (line, at) in enumerate(zip(lines, stamps, strict=True)):
            # Never backwards within one log, so the merge below keeps each log's order.
            if at is not None and at > current:
                current = at
            entries.append((current, index, seq, name, line))
        keyed.append(entries)
    return [(name, line) for _, _, _, name, line in heapq.merge(*keyed)]


# ---- files ----


def rotated(path: Path) -> list[Path]:
    """The rotated predecessors of a log file, newest first: `x.log.1`, `x.log.2`, ..."""
    found = []
    index = 1
    while (older := path.with_name(f"{path.name}.{index}")).is_file():
        found.append(older)
        index += 1
    return found


def _last_lines(handle: IO[bytes], count: int, *, complete: bool = False) -> tuple[list[str], int]:
    """The last `count` lines of an open file and the offset just past them.

    With `complete`, a last line still being written (no newline yet) is left for later.
    """
    end = handle.seek(0, os.SEEK_END)
    data = b""
    position = end
    block = 65536
    while position > 0 and data.count(b"\n") <= count:
        step = min(block, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
    if complete and data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        end -= len(data) - cut
        data = data[:cut]
    lines = data.splitlines()[-count:] if count > 0 else []
    return [_decode(line) for line in lines], end


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")


def tail_file(path: Path, count: int) -> list[str]:
    """The last `count` lines of a log file and, when it holds fewer, of its rotated predecessors."""
    return _tail_files([path, *rotated(path)], count)


def _tail_files(files: Sequence[Path], count: int) -> list[str]:
    lines: list[str] = []
    for file in files:
        if len(lines) >= count:
            break
        try:
            with file.open("rb") as handle:
                older, _ = _last_lines(handle, count - len(lines))
        except FileNotFoundError:
            continue
        lines = older + lines
    return lines


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class FileFollower:
    """New lines of a log file as they are written, across rotation and truncation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[bytes] | None = None
        self.inode = 0
        self.pending = b""

    def start(self, count: int) -> list[str]:
        """The last `count` complete lines (older ones from rotated files); following starts after them."""
        lines: list[str] = []
        if self._open():
            assert self.handle is not None
            lines, offset = _last_lines(self.handle, count, complete=True)
            self.handle.seek(offset)
        if len(lines) < count:
            lines = _tail_files(rotated(self.path), count - len(lines)) + lines
        return lines

    def _open(self) -> bool:
        try:
            self.handle = self.path.open("rb")
        except FileNotFoundError:
            return False
        self.inode = os.fstat(self.handle.fileno()).st_ino
        self.pending = b""
        return True

    def poll(self) -> list[str]:
        """The complete lines written since the last poll."""
        if self.handle is None:
            # Not created yet, or rotated away before its successor appeared.
            return self._read() if self._open() else []
        lines = self._read()
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return lines
        if stat.st_ino != self.inode:
            # Rotated: what was written to the old file before the switch comes first.
            lines += self._read()
            if self.pending:
                lines.append(_decode(self.pending))
            self.handle.close()
            self.handle = None
            if self._open():
                lines += self._read()
        elif stat.st_size < self.handle.tell():
            # Truncated in place (copytruncate): the file starts over.
            self.handle.seek(0)
            self.pending = b""
            lines += self._read()
        return lines

    def _read(self) -> list[str]:
        assert self.handle is not None
        data = self.handle.read()
        if not data:
            return []
        *complete, self.pending = (self.pending + data).split(b"\n")
        return [_decode(line) for line in complete]

    def close(self) -> None:
        """Close the file."""
        if self.handle is not None:
            self.handle.close()


# ---- containers ----


class _Docker:
    """Docker clients for container logs, made on first use."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._client: Any = None

    def container(self, source: Source, *, stream: bool = False) -> Any:
        """The source's container, through a client bound by the timeout, or unbounded for a stream."""
        from ..sandbox import SandboxError
        from ..sandbox.docker import connect

        try:
            if stream:
                # Each followed container gets its own connection, held open by its thread.
                return connect(None).containers.get(source.container)
            if self._client is None:
                self._client = connect(self.timeout)
            return self._client.containers.get(source.container)
        except SandboxError as exc:
            raise LogsError(f"{source.name}: {exc}") from None
        except Exception as exc:
            if type(exc).__name__ == "NotFound":
                raise LogsError(
                    f"{source.name}: container {source.container!r} not found: is the watchdog running? "
                    "(`orchestrator status`)"
                ) from None
            raise _unreadable(source, exc) from None

    def tail(self, source: Source, count: int) -> list[str]:
        container = self.container(source)
        try:
            raw = container.logs(tail=count, timestamps=True)
        except Exception as exc:
            raise _unreadable(source, exc) from None
        return [_decode(line) for line in bytes(raw).splitlines()]


def _unreadable(source: Source, exc: Exception) -> LogsError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return LogsError(f"{source.name}: cannot read the logs of container {source.container}: {redact(first)}")


def _follow_container(
    docker: _Docker, source: Source, last: str, lines: queue.Queue[tuple[str, str]], errors: list[str]
) -> None:
    """Put a container's new lines on `lines`, from after the line stamped `last`, until the process ends."""
    since = stamp(last) or time.time()
    reported = False
    while True:
        try:
            container = docker.container(source, stream=True)
            buffer = b""
            for chunk in container.logs(stream=True, follow=True, timestamps=True, since=int(since)):
                *complete, buffer = (buffer + chunk).split(b"\n")
                for raw in complete:
                    line = _decode(raw)
                    # `since` is whole seconds; Docker's fixed-width stamps order as text.
                    if line.split(" ", 1)[0] > last:
                        last = line.split(" ", 1)[0]
                        lines.put((source.name, line))
            reported = False
        except LogsError as exc:
            if not reported:
                errors.append(str(exc))
                reported = True
        except Exception:
            pass
        # The stream ends when the container stops; the watchdog may start it again.
        since = stamp(last) or since
        time.sleep(1.0)


# ---- the command ----


def _tails(
    sources: Sequence[Source], count: int, docker: _Docker, followers: dict[str, FileFollower], named: bool
) -> tuple[list[tuple[str, Sequence[str], float]], list[str]]:
    logs: list[tuple[str, Sequence[str], float]] = []
    errors: list[str] = []
    for source in sources:
        if source.container is not None:
            try:
                logs.append((source.name, docker.tail(source, count), time.time()))
            except LogsError as exc:
                errors.append(str(exc))
            continue
        assert source.path is not None
        if source.name in followers:
            lines = followers[source.name].start(count)
        else:
            lines = tail_file(source.path, count)
            if named and not lines and not source.path.exists():
                errors.append(f"{source.name} has no log yet ({source.path})")
        logs.append((source.name, lines, _mtime(source.path)))
    return logs, errors


def show(
    state_dir: Path,
    names: Sequence[str],
    out: TextIO,
    err: TextIO,
    *,
    count: int = DEFAULT_LINES,
    follow: bool = False,
    docker_timeout: float = 5.0,
) -> int:
    """Print the logs; the exit status: 0, 1 when a log could not be read, 2 for an unknown name."""
    try:
        sources = select(known_sources(state_dir), names)
    except LogsError as exc:
        err.write(f"orchestrator: {exc}\n")
        return exc.code
    width = max(len(s.name) for s in sources)
    # One named log reads as the file itself; otherwise each line says whose it is.
    prefix = len(sources) > 1 or not names

    def line(name: str, text: str) -> str:
        text = redact(text)
        return f"{name:<{width}} | {text}\n" if prefix else text + "\n"

    docker = _Docker(docker_timeout)
    followers = {s.name: FileFollower(s.path) for s in sources if follow and s.path is not None}
    logs, errors = _tails(sources, count, docker, followers, named=bool(names))
    for message in errors:
        err.write(f"orchestrator: {message}\n")
    lines = [line(name, text) for name, text in interleave(logs)]
    out.writelines(lines)
    out.flush()
    if not follow and not lines and not errors and not names:
        # As `status` says when nothing has run: an empty screen would tell a new user nothing.
        err.write(
            "orchestrator: no log has been written here yet: start the watchdog with `orchestrator up`\n"
        )
        return 1
    if not follow:
        return 1 if errors else 0
    try:
        _follow(sources, logs, followers, docker, out, err, line)
    except KeyboardInterrupt:
        pass
    finally:
        for follower in followers.values():
            follower.close()
    return 0


def _follow(
    sources: Sequence[Source],
    logs: Sequence[tuple[str, Sequence[str], float]],
    followers: Mapping[str, FileFollower],
    docker: _Docker,
    out: TextIO,
    err: TextIO,
    line: Any,
) -> None:
    arrived: queue.Queue[tuple[str, str]] = queue.Queue()
    errors: list[str] = []
    shown = {name: lines for name, lines, _ in logs}
    for source in sources:
        if source.container is not None:
            seen = shown.get(source.name) or [""]
            threading.Thread(
                target=_follow_container,
                args=(docker, source, seen[-1].split(" ", 1)[0], arrived, errors),
                name=f"logs-{source.name}",
                daemon=True,
            ).start()
    while True:
        batch = [(name, text) for name, follower in followers.items() for text in follower.poll()]
        try:
            batch.append(arrived.get(timeout=POLL))
            while True:
                batch.append(arrived.get_nowait())
        except queue.Empty:
            pass
        while errors:
            err.write(f"orchestrator: {errors.pop(0)}\n")
            err.flush()
        if batch:
            out.writelines(line(name, text) for name, text in batch)
            out.flush()
