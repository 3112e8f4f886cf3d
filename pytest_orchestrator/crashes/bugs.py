"""Bug reports on problems that keep coming back: when one is due, what it says, and its BUG-NNN.md file.

A fingerprint that crashed `crash_threshold_for_bug` times, or a frozen loop, gets one report.
Reports are rate-limited per fingerprint through `bug_reports.last_reported_at`, so a restarted
process does not report twice; a later report on the same fingerprint keeps its number and
rewrites its file with the new count.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..redact import redact
from ..state import StateError
from .model import Crash, CrashKind
from .store import BugEntry, BugStore, CrashSpan, CrashStore

if TYPE_CHECKING:
    from ..state import StateStore
    from .config import MonitorSpec

Category = Literal["crash", "freeze", "zombie"]

BUGS_DIR = "bugs"
# A report carries the end of the latest log: enough for the traceback, well under GitHub's
# 65,536-character limit on an issue body.
LOG_LINES = 80
LOG_CHARS = 16_000
# The latest crashes whose subjects and files a report gathers.
SAMPLE = 20
MAX_FILES = 20
TITLE_CHARS = 120

_DAY = 86_400.0
_NAME = re.compile(r"BUG-(\d{3,})\.md")


@dataclass
class Bug:
    """A bug report, before and after it is filed; its text fields are redacted."""

    fingerprint: str
    title: str
    description: str
    priority: str
    category: Category
    subject: str
    kind: CrashKind
    steps: list[str] = field(default_factory=list)
    root_cause: str = ""
    files: list[str] = field(default_factory=list)
    logs: str = ""
    crashes: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    # Set when filed: the number of bug_reports, kept for good by the fingerprint.
    number: int | None = None
    # A later report on a fingerprint already reported: it updates the count of the first.
    update: bool = False
    # The tracker's page of the report, once delivered.
    url: str | None = None
    path: str | None = None

    @property
    def name(self) -> str:
        """`BUG-003`, or `BUG-???` before it is filed."""
        return bug_name(self.number)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data."""
        return {"name": self.name, **asdict(self)}


def bug_name(number: int | None) -> str:
    """The name of report `number`: BUG-001, ..., BUG-999, BUG-1000."""
    return "BUG-???" if number is None else f"BUG-{number:03d}"


def priority_for(
    error_type: str,
    crashes: int,
    mapping: Mapping[str, str],
    *,
    freeze: bool = False,
    critical_after: int = 10,
) -> str:
    """Critical on a freeze or past `critical_after` crashes; else the mapping's, by error type; Medium."""
    if freeze or crashes > critical_after:
        return "Critical"
    # A traceback names exceptions outside builtins by their module: requests.exceptions.Timeout.
    return mapping.get(error_type) or mapping.get(error_type.rsplit(".", 1)[-1]) or "Medium"


def utc(at: float) -> str:
    """A timestamp as reports show it: `2026-11-23 00:27:44 UTC`."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class BugDesk:
    """Decides when a crash or a freeze becomes a bug report, and files it under `<state>/bugs/`.

    `command` is how the orchestrator was started, for the reproduction steps.
    """

    def __init__(
        self,
        store: StateStore,
        spec: MonitorSpec,
        state_dir: Path,
        *,
        command: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.crashes = CrashStore(store)
        self.bugs = BugStore(store)
        self.spec = spec
        self.directory = state_dir / BUGS_DIR
        self.command = command
        self.clock = clock

    def consider(self, fingerprint: str) -> Bug | None:
        """The report to file on `fingerprint` now that it crashed again; None when none is due.

        One is due when the fingerprint crashed `crash_threshold_for_bug` times within the
        retention window and was not reported in the last `bug_rate_limit` seconds; an update
        only when it crashed again since its last report.
        """
        now = self.clock()
        since = now - self.spec.retention_days * _DAY
        span = self.crashes.span(fingerprint, since)
        if span is None or span.count < self.spec.crash_threshold_for_bug:
            return None
        row = self.bugs.of(fingerprint)
        if row is not None and now - row.last_reported_at < self.spec.bug_rate_limit:
            return None
        # An update says something new, or nothing: a periodic caller gets no hourly copy.
        if row is not None and not self.crashes.unreported(fingerprint):
            return None
        bug = self._crash_bug(self.crashes.of(fingerprint, since, SAMPLE), span)
        if row is not None:
            bug.number, bug.update, bug.url, bug.path = row.number, True, row.url, row.path
        return bug

    def freeze(self, subject: str, detail: str, *, log_tail: str = "") -> Bug | None:
        """The CRITICAL report on a frozen loop (`subject`: the loop or its component), or None (rate limit).

        `detail` says what shows the freeze, e.g. how old the heartbeat is.
        """
        now = self.clock()
        fingerprint = "freeze-" + hashlib.sha256(f"freeze\0{subject}".encode()).hexdigest()[:16]
        row = self.bugs.of(fingerprint)
        if row is not None and now - row.last_reported_at < self.spec.bug_rate_limit:
            return None
        steps = [f"Run `{self.command}`"] if self.command else []
        steps += [f"Watch the heartbeat of {subject}: it stops", f"Observe: {detail}"]
        bug = Bug(
            fingerprint=fingerprint,
            title=f"Orchestrator loop frozen ({subject})",
            description=f"The orchestrator loop ({subject}) stopped making progress: {detail}.",
            priority=priority_for("freeze", 0, self.spec.bug_priority, freeze=True),
            category="freeze",
            subject=subject,
            kind="component",
            steps=steps,
            root_cause=detail,
            logs=_tail(log_tail),
            crashes=row.crashes + 1 if row is not None else 1,
            first_seen=row.first_reported_at if row is not None else now,
            last_seen=now,
        )
        if row is not None:
            bug.number, bug.update, bug.url, bug.path = row.number, True, row.url, row.path
        return _redacted(bug)

    def file(self, bug: Bug) -> Path | None:
        """Write `<state>/bugs/BUG-NNN.md` and record it; its path, or None if another process filed it first.

        A new fingerprint gets the next number; an update rewrites the same file. The number,
        the row and the file are one transaction: a failure (StateError) leaves no report and
        no half-written file, and the report stays due.
        """
        now = self.clock()
        entry = BugEntry(bug.fingerprint, redact(bug.title), bug.priority, bug.category, bug.crashes)
        created: list[Path] = []
        fresh: list[bool] = []

        def write(number: int, new: bool) -> str:
            path = self.directory / f"{bug_name(number)}.md"
            fresh.append(new)
            if new:
                created.append(path)
            _write_atomic(path, render(bug, number))
            return str(path)

        try:
            row = self.bugs.file(entry, now, self.spec.bug_rate_limit, write, floor=self._highest_file())
        except BaseException as exc:
            # The number was not committed: its file must not survive to be taken for it.
            for path in created:
                path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StateError(
                    f"cannot write bug report in {self.directory}: {exc.strerror or exc}"
                ) from None
            raise
        if row is None:
            return None
        bug.number, bug.update, bug.url, bug.path = row.number, not fresh[-1], row.url, row.path
        return Path(str(row.path))

    def mark_delivered(self, bug: Bug, url: str) -> None:
        """Record the tracker's page of a filed report, so that its updates go there."""
        if bug.number is None:
            raise ValueError("a bug report is delivered after it is filed")
        self.bugs.delivered(bug.number, url)
        bug.url = url

    def _crash_bug(self, sample: list[Crash], span: CrashSpan) -> Bug:
        latest = sample[0]
        error = _first_line(f"{latest.error_type}: {latest.message}" if latest.message else latest.error_type)
        ended = _ending(latest)
        what = f"Task {latest.subject}" if latest.kind == "task" else f"Component {latest.subject}"
        subjects = list(dict.fromkeys(c.subject for c in sample))
        description = (
            f"{'The agent of task' if latest.kind == 'task' else 'The component'} {latest.subject}"
            f"{f' (plan {latest.plan})' if latest.plan else ''} crashed {span.count} times with "
            f"{latest.error_type} between {utc(span.first)} and {utc(span.last)}."
        )
        if ended:
            description += f" The last one {ended}{', and was respawned' if latest.respawned else ''}."
        if len(subjects) > 1:
            others = "tasks" if latest.kind == "task" else "components"
            description += f" The same crash came from the {others} {', '.join(subjects)}."
        return _redacted(
            Bug(
                fingerprint=latest.fingerprint,
                title=_clip(f"{what} crashes with {error}", TITLE_CHARS),
                description=description,
                priority=priority_for(
                    latest.error_type,
                    span.count,
                    self.spec.bug_priority,
                    critical_after=self.spec.critical_crashes_per_hour,
                ),
                category="crash",
                subject=latest.subject,
                kind=latest.kind,
                steps=self._steps(latest, error, ended),
                root_cause=latest.root_cause or error,
                files=list(dict.fromkeys(f for c in sample for f in c.files))[:MAX_FILES],
                logs=_tail(latest.log_tail),
                crashes=span.count,
                first_seen=span.first,
                last_seen=span.last,
            )
        )

    def _steps(self, crash: Crash, error: str, ended: str) -> list[str]:
        observe = f"Observe: {error}" + (f" (it {ended})" if ended else "")
        if crash.kind == "component":
            start = self.command or "orchestrator up"
            return [f"Start the watchdog with the component `{crash.subject}`: `{start}`", observe]
        steps = [f"Plan `{crash.plan}`, task {crash.subject}" if crash.plan else f"Task {crash.subject}"]
        command = self.command or (f"orchestrator task {crash.plan} {crash.subject}" if crash.plan else "")
        if command:
            steps.append(f"Run `{command}`")
        return [*steps, observe]

    def _highest_file(self) -> int:
        # A state database started over must not reuse the number of a report still on disk.
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        return max((int(m.group(1)) for n in names if (m := _NAME.fullmatch(n))), default=0)


def render(bug: Bug, number: int | None = None) -> str:
    """The report as markdown: the file's text and the GitHub issue's body, redacted."""
    number = bug.number if number is None else number
    facts = [
        ("Priority", bug.priority),
        ("Category", bug.category),
        (bug.kind.capitalize(), bug.subject),
        ("Freezes" if bug.category == "freeze" else "Crashes", str(bug.crashes)),
        ("First seen", utc(bug.first_seen)),
        ("Last seen", utc(bug.last_seen)),
        ("Fingerprint", f"`{bug.fingerprint}`"),
    ]
    lines = [f"# {bug_name(number)}: {bug.title}", ""]
    lines += [f"- **{label}:** {value}" for label, value in facts]
    lines += ["", "## Description", "", bug.description, "", "## Root cause", "", bug.root_cause or "unknown"]
    lines += ["", "## Reproduction steps", ""]
    lines += [f"{i}. {step}" for i, step in enumerate(bug.steps, 1)] or ["none recorded"]
    lines += ["", "## Related files", ""]
    lines += [f"- `{name}`" for name in bug.files] or ["none found in the log"]
    lines += ["", "## Logs", ""]
    if bug.logs:
        # A fence longer than any run of backticks in the log, so the log cannot close it.
        fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", bug.logs)), default=0))
        lines += [fence + "text", bug.logs.rstrip("\n"), fence]
    else:
        lines.append("no log recorded")
    return redact("\n".join(lines) + "\n")


def _redacted(bug: Bug) -> Bug:
    bug.title = redact(bug.title)
    bug.description = redact(bug.description)
    bug.steps = [redact(s) for s in bug.steps]
    bug.root_cause = redact(bug.root_cause)
    bug.files = [redact(f) for f in bug.files]
    bug.logs = redact(bug.logs)
    return bug


def _ending(crash: Crash) -> str:
    if crash.signal is not None:
        return f"was killed by signal {crash.signal}"
    if crash.exit_code is not None:
        return f"exited with code {crash.exit_code}"
    return ""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _clip(text: str, limit: int) -> str:
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _tail(log: str) -> str:
    # Redacted before it is cut: half a token no longer has a token's shape.
    tail = "\n".join(redact(log).rstrip().splitlines()[-LOG_LINES:])
    return tail[-LOG_CHARS:]


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file, so that a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 would hide the report from the team; this one takes the umask's mode.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "x", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
