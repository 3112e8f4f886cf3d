"""The root cause of a crash, read from the tail of its log, and the fingerprint that groups crashes.

Plain Python. The parsers look for, in this order: the last Python traceback (or a bare
`ModuleNotFoundError: ...` line), a Node error with its stack, an out-of-memory kill, a shell's
"command not found", and at last the last line that says error. Each parser reads at most the last
`TAIL_CHARS` of the log, one line at a time, with patterns that cannot backtrack far.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable, Sequence

from .model import RootCause

# The cause of a crash is at the end of its log; logs can be megabytes.
TAIL_CHARS = 64 * 1024
# Longer lines (minified code, base64 blobs) are clipped before any pattern reads them.
_LINE_CHARS = 4096
_MESSAGE_LINES = 10
_MESSAGE_CHARS = 500

# A stack as (path, line, function), outermost first, as Python prints it.
_Stack = list[tuple[str, str, str | None]]

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_LIBRARY = re.compile(r"/(?:site|dist)-packages/|/lib/python\d[\d.]*/|/node_modules/|^node:|^<|^\[")
# Errors that are about a missing thing: the thing, not the place, tells two of them apart.
_NAMES_WHAT_IS_MISSING = frozenset(
    {"ImportError", "ModuleNotFoundError", "MODULE_NOT_FOUND", "ERR_MODULE_NOT_FOUND", "CommandNotFound"}
)

_TB_HEADER = "Traceback (most recent call last):"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
# The prefix of a traceback nested in an exception group (`  | `), not a log prefix (`web-1  | `).
_NESTED = re.compile(r"[ |+]*\|[ |+]*")
_PY_FRAME = re.compile(r'\s+File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>\S.*))?$')
# An exception class is CapWords: `done` printed to stdout in the middle is not one.
_PY_EXC = re.compile(r"(?P<type>(?:\w+\.)*[A-Z_]\w*)(?:: (?P<msg>.*))?$")
_PY_BARE = re.compile(
    r"(?:[\w.]*\.)?(?P<type>ModuleNotFoundError|ImportError|SyntaxError|IndentationError|TabError)"
    r"(?:: (?P<msg>.*))?$"
)
# Lines that start another record (a log line, make's or npm's verdict), not the continuation of a
# multi-line exception message.
_LOG_RECORD = re.compile(
    r"\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d|\[|(?:DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL|Error|error)\b"
    r"|[\w.-]+(?:\[\d+\])?: \*\*\*|npm (?:ERR!|error)"
)

_AT = re.compile(r"\s+at (?:async )?(?:(?P<func>[^()]+?) \((?P<loc>[^()]*)\)|(?P<bare>[^\s()]+))$")
_LOC = re.compile(r"(?:file://)?(?P<path>.+):(?P<line>\d+):\d+$")
_NODE_ERR = re.compile(
    r"(?:Uncaught )?(?P<name>[A-Z]\w*(?:Error|Exception)|Error)(?: \[(?P<code>\w+)\])?(?:: (?P<msg>.*))?$"
)
_NODE_CODE = re.compile(r"\s*code: '(?P<code>\w+)'")

_OOM_LINE = re.compile(r"\bKilled\b|\b[Oo]ut of memory\b")
_SHELL = r"(?:\S*/)?(?:ba|da|z|k|a)?sh"
_NOT_FOUND = (
    re.compile(r"^(?:[^\s:]+: )?(?:line \d+: )?(?P<cmd>[^:]+): command not found$"),  # bash
    re.compile(r"^[^\s:]+: \d+: (?:exec: )?(?P<cmd>[^:]+): not found$"),  # dash, busybox
    re.compile(rf"^{_SHELL}: (?:line \d+: )?(?P<cmd>[^:]+): (?:not found|No such file or directory)$"),
    # A shebang's missing interpreter; coreutils quotes it with curly quotes in UTF-8 locales.
    re.compile(r"^(?:\S*/)?env: ['\u2018\"]?(?P<cmd>[^'\u2019\":]+)['\u2019\"]?: No such file or directory$"),
    re.compile(r"command not found: (?P<cmd>\S+)$"),  # zsh
    re.compile(r'exec: "(?P<cmd>[^"]+)": executable file not found in \$PATH'),  # docker, runc
    re.compile(r"\bexec (?P<cmd>\S+): no such file or directory"),  # docker, a missing entrypoint
)
# Exit 127 says the shell found no command: then any "x: not found" line names it.
_NOT_FOUND_127 = re.compile(r"(?:.*: )?(?P<cmd>[^:]+): (?:not found|No such file or directory)$")

_ERROR_WORD = re.compile(r"ERROR|Error|FATAL|Fatal|fatal|panic|Exception|\berror\b")
_ERROR_NAME = re.compile(r"\w*(?:Error|Exception)|error|ERROR|panic|FATAL|fatal")

_NORMALISE: tuple[tuple[re.Pattern[str], str], ...] = (
    (_ANSI, ""),
    (re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d:\d\d(?:[.,]\d+)?\b"), "<time>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\[[0-9a-fA-F]*:[0-9a-fA-F:]*\](?::\d+)?"), "<ip>"),
)
_TOKEN = re.compile(r"[^\s'\"`()\[\]{}<>,;=]+")
_IDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    # tempfile's names (tmp + 8 of [a-z0-9_]) and mktemp(1)'s (tmp.XXXXXXXXXX).
    (re.compile(r"\btmp(?:[a-z0-9_]{6,8}|\.[A-Za-z0-9]{10})\b"), "<tmp>"),
    (re.compile(r"\b(?=[a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<hex>"),
    # The random part after a name: task-4f2a, req_8f3a9c; not a name's own digits (boto3, py2neo).
    (re.compile(r"(?<=[-_.])(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{4,}\b"), "<id>"),
    (re.compile(r"(?<![A-Za-z0-9])\d+(?:\.\d+)*"), "<n>"),
)


def diagnose(log: str, exit_code: int | None = None, *, oom_killed: bool = False) -> RootCause | None:
    """The root cause of a crash from the tail of its output (stderr and stdout, colours and all).

    `oom_killed` is Docker's State.OOMKilled; with exit 137 it outranks whatever the log says,
    since a process the kernel killed did not die of the error it printed. A Python error's type is
    the last part of its dotted name (`requests.exceptions.ConnectionError` is `ConnectionError`);
    a Node error's is its code when it has one (`ERR_MODULE_NOT_FOUND`), else its name. None when
    the log names no cause: the caller has the exit code or signal.
    """
    lines = _lines(log)
    if oom_killed and exit_code in (137, None):
        return _oom(lines, oom_killed=True, exit_code=exit_code)
    return (
        _python(lines)
        or _node(lines)
        or _oom(lines, oom_killed=oom_killed, exit_code=exit_code)
        or _command_not_found(lines, exit_code)
        or _error_line(lines)
    )


def fingerprint(cause: RootCause | None, error_type: str, message: str) -> str:
    """16 hex digits that group crashes as Sentry groups issues: the error type and the in-app frames.

    Without in-app frames, the normalised message stands in for them. An error about a missing
    module or command adds its message to the frames: one import line can miss many modules.
    """
    parts = [error_type]
    if cause is not None and cause.frames:
        parts += [normalise(frame) for frame in cause.frames]
        if error_type in _NAMES_WHAT_IS_MISSING:
            parts.append(normalise(message))
    else:
        parts.append(normalise(message))
    return hashlib.sha1("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def normalise(message: str) -> str:
    """The message without what changes between occurrences of one problem.

    Numbers, hex, UUIDs, timestamps, IP addresses and ports, temporary names and the random suffixes
    of ids become placeholders. A path keeps its basename only: where a project is checked out (a
    temporary directory, a workspace per plan) does not change the problem, and which file does.
    Names stay, digits and all (`boto3` and `h5py` are different missing modules).
    """
    text = message
    for pattern, placeholder in _NORMALISE:
        text = pattern.sub(placeholder, text)
    text = _TOKEN.sub(_basename, text)
    for pattern, placeholder in _IDS:
        text = pattern.sub(placeholder, text)
    return " ".join(text.split())


def in_workspace(files: Iterable[str], workspace: str) -> tuple[str, ...]:
    """The files inside `workspace`, relative to it, in order and once each; relative paths are inside."""
    root = posixpath.normpath(workspace)
    inside: dict[str, None] = {}
    for name in files:
        if not name or name.startswith(("<", "[", "node:")):
            continue
        path = posixpath.normpath(name)
        if posixpath.isabs(path):
            if root != "/" and not path.startswith(root + "/"):
                continue
            path = posixpath.relpath(path, root)
        if path != "." and path != ".." and not path.startswith("../"):
            inside[path] = None
    return tuple(inside)


def _lines(log: str) -> list[str]:
    text = log[-TAIL_CHARS:]
    if len(log) > TAIL_CHARS:
        _, newline, rest = text.partition("\n")
        text = rest if newline else text
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    # A carriage return redraws the line (progress bars): the terminal showed the last drawing.
    return [
        next((part for part in reversed(line.split("\r")) if part), "")[:_LINE_CHARS].rstrip()
        for line in text.split("\n")
    ]


def _cause(kind: str, error_type: str, message: str, stack: _Stack) -> RootCause:
    frame = None
    if stack:
        path, line, func = stack[-1]
        frame = f"{path}:{line} in {func}" if func else f"{path}:{line}"
    app = [(path, func) for path, _, func in stack if not _LIBRARY.search(path.replace("\\", "/"))]
    frames: list[str] = []
    for path, func in app:
        name = f"{path}:{func}" if func else path
        if not frames or frames[-1] != name:  # recursion counts once, however deep
            frames.append(name)
    files = tuple(reversed(dict.fromkeys(path for path, _ in reversed(app))))
    return RootCause(error_type, message, kind, frame=frame, frames=tuple(frames), files=files)


def _python(lines: Sequence[str]) -> RootCause | None:
    headers = [
        i
        for i, line in enumerate(lines)
        if _TB_HEADER in line and not _NESTED.fullmatch(line[: line.index(_TB_HEADER)])
    ]
    found: tuple[int, RootCause] | None = None
    for start in reversed(headers[-3:]):  # the last one unless it was cut short
        if found := _traceback(lines, start):
            break
    after = found[0] if found else -1
    for i in range(len(lines) - 1, after, -1):
        if bare := _PY_BARE.match(lines[i]):
            near = [m for line in lines[max(0, i - 4) : i] if (m := _PY_FRAME.match(line))]
            stack: _Stack = [(m["path"], m["line"], m["func"]) for m in near[-1:]]
            return _cause("python", bare["type"], (bare["msg"] or "").strip(), stack)
    return found[1] if found else None


def _traceback(lines: Sequence[str], start: int) -> tuple[int, RootCause] | None:
    header = lines[start]
    # An exception group's header is `  + Exception Group Traceback`, its body `  | ...`.
    prefix = header[: header.index(_TB_HEADER)].removesuffix("Exception Group ").replace("+", "|")
    stack: _Stack = []
    for i in range(start + 1, len(lines)):
        if not lines[i].startswith(prefix):
            continue  # another process's lines, interleaved
        body = lines[i][len(prefix) :]
        if frame := _PY_FRAME.match(body):
            stack.append((frame["path"], frame["line"], frame["func"]))
        elif body[:1].strip() and (exc := _PY_EXC.match(body)):
            message = _message(exc["msg"], lines[i + 1 :], prefix)
            return i, _cause("python", exc["type"].rsplit(".", 1)[-1], message, stack)
    return None


def _message(first: str | None, rest: Sequence[str], prefix: str) -> str:
    parts = [first.strip()] if first else []
    for line in rest[:_MESSAGE_LINES]:
        body = line[len(prefix) :].strip()
        if not line.startswith(prefix) or not body or body.startswith(_CHAINED) or _TB_HEADER in body:
            break
        if _LOG_RECORD.match(body):
            break
        parts.append(body)
    return " ".join(parts)[:_MESSAGE_CHARS]


def _node(lines: Sequence[str]) -> RootCause | None:
    end = next((i for i in range(len(lines) - 1, -1, -1) if _AT.match(lines[i])), None)
    if end is not None:
        start = end
        while start > 0 and _AT.match(lines[start - 1]):
            start -= 1
        for j in range(start - 1, max(start - 12, -1), -1):  # above the stack, past `Require stack:`
            if error := _NODE_ERR.match(lines[j]):
                stack = [at for k in range(end, start - 1, -1) if (at := _at(lines[k]))]
                props = (m["code"] for line in lines[end + 1 : end + 12] if (m := _NODE_CODE.match(line)))
                code = error["code"] or next(props, None)
                return _cause("node", code or error["name"], error["msg"] or "", stack)
    for line in reversed(lines):
        error = _NODE_ERR.match(line)
        msg = (error["msg"] or "") if error else ""
        if error and (error["code"] or msg.startswith(("Cannot find module", "Cannot find package"))):
            return _cause("node", error["code"] or "MODULE_NOT_FOUND", msg, [])
    return None


def _at(line: str) -> tuple[str, str, str | None] | None:
    at = _AT.match(line)
    loc = _LOC.match((at["loc"] or at["bare"]) if at else "")
    if at is None or loc is None:
        return None  # `(native)`, `(index 0)`: no file to name
    return loc["path"], loc["line"], at["func"] or "<anonymous>"


def _oom(lines: Sequence[str], *, oom_killed: bool, exit_code: int | None) -> RootCause | None:
    if not oom_killed and exit_code != 137:
        return None
    said = next((" ".join(line.split()) for line in reversed(lines) if _OOM_LINE.search(line)), None)
    if not oom_killed and said is None:
        return None
    code = f" (exit {exit_code})" if exit_code is not None else ""
    return RootCause("OOMKilled", said or f"killed for want of memory{code}", "oom")


def _command_not_found(lines: Sequence[str], exit_code: int | None) -> RootCause | None:
    for line in reversed(lines):
        if "not found" not in line and "no such file" not in line.lower():
            continue
        found = next((m for p in _NOT_FOUND if (m := p.search(line.strip()))), None)
        if found is None and exit_code == 127:
            found = _NOT_FOUND_127.match(line.strip())
        if found:
            command = found["cmd"].strip()
            return RootCause("CommandNotFound", f"command not found: {command}", "command_not_found")
    return None


def _error_line(lines: Sequence[str]) -> RootCause | None:
    line = next((line.strip() for line in reversed(lines) if _ERROR_WORD.search(line)), None)
    if line is None:
        return None
    head, colon, rest = line.partition(": ")
    name = head.split()[-1].rsplit(".", 1)[-1] if head.split() else ""
    if colon and _ERROR_NAME.fullmatch(name):
        return RootCause("Error" if name.lower() == "error" else name, rest.strip(), "error_line")
    return RootCause("Error", line, "error_line")


def _basename(match: re.Match[str]) -> str:
    token = match[0]
    return re.split(r"[/\\]", token.rstrip("/\\"))[-1] if "/" in token or "\\" in token else token
