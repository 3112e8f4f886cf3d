"""Lenient parser for milestone plans written in markdown; one `Task` per task in the plan.

Five task formats are recognised, outside fenced code blocks only, and may be mixed in one file:

* Task headings, level 2 to 6: ``## Task 1.1: Title``, ``### Task 2 - Title``, ``## Task 3a.``,
  ``### Task 02-01-03: Title``, ``## Task 1.2_1: Title``. The id is read whole, as written: digits
  with an optional letter, in parts joined by ``.``, ``_`` or ``-``; a heading whose id cannot be
  read (``## Task 1.x: ...``) is a `PlanError`, never half a task. The separator after the id may
  be ``:``, ``.``, ``)``, ``-``, an en or em dash, or none. Task headings of different levels may
  be mixed. The section runs to the next task, the next heading of the same or a higher level, or
  a ``---`` rule. Inside it, bold labels (``**Files:**`` or ``**Files**:``) introduce the fields:
  ``Description``, ``File``/``Files`` (an item ``Modify: a.py:12-40`` names ``a.py``), ``Type``,
  ``Implementation``/``Implementation Notes``, ``Acceptance Criteria`` (check boxes or plain
  bullets), ``Tests``, ``Priority`` and ``Status``. Without a ``Description`` label, the
  unlabelled text of the section is the description; check boxes in a section (the steps of a
  task, as in superpowers' plans) belong to it and are never tasks of their own.
* Checklist lines with an id (spec-kit): ``- [ ] T001 [P] [US7] Description in src/pkg/file.py``;
  ``T005a`` or ``T1.2`` are ids too, and a line that starts like one but whose id cannot be read
  (``T005_b``) is a `PlanError`. ``[P]`` marks a task that can run in parallel, ``[US7]`` names its
  user story, and file paths in the text become its files. More-indented lines below the item
  belong to the task; the headings above it are its description when it has none.
* Numbered checklists (Kiro's tasks.md): ``- [ ] 1. Set up the project``, ``- [ ] 1.1 Create the
  models``, flat or indented, with bullets, blank lines and ``_Requirements: 1.1_`` lines below
  each item (they are its description). An item whose number prefixes another item's (``1`` of
  ``1.1``) is a group: its text becomes part of its children's context and milestone, and a
  group number may appear twice. A group is not a task unless lines below it, other than
  ``_Requirements:`` ones, say what to do (Kiro's flat ``1. Implement X`` with its steps, then
  ``1.1`` and ``1.2`` as tests): then its first appearance is a task as well. ``- [ ]* 1.2``
  marks an optional task.
* Checklists without ids (ralph's fix_plan.md): ``- [ ] Implement auth`` under ``## High
  Priority``. Each top-level item is a task whose id is derived from its text, so inserting an
  item never renumbers the others: a slug of its first words and the first four hex digits of the
  SHA-1 of the text (whitespace collapsed, case folded), e.g. ``implement-auth-e82a``; a second
  item with the same text gets ``-2``, a third ``-3``, in document order. Ticking the item or
  moving it under another heading keeps the id; editing its text changes it.
* XML tasks (get-shit-done's PLAN.md): ``<task type="auto">`` with ``<name>`` (``Task 1: Title``
  gives id ``1``; a name without a number gets a derived id as above), ``<files>`` (comma or line
  separated), ``<action>`` (the description), ``<verify>``, ``<done>`` and
  ``<acceptance_criteria>`` (criteria), up to ``</task>``. XML entities are decoded. A ``<verify>``
  (or the ``<automated>`` part of it) that is a shell command becomes the task's verification: every
  line starts with a common tool (``python``, ``pytest``, ``npm``, ``make``, ``grep``, ``test`` ...),
  a path (``./check.sh``), a variable assignment or shell syntax, and none reads as prose (no
  backticks, no "passes", "should", "returns" ...). Any other verify text is an acceptance
  criterion. The ``type`` attribute is the task's type, so ``checkpoint:human-verify`` tasks are
  collected with the marker ``checkpoint_human_verify`` (deselect them with ``-m "not
  checkpoint_human_verify"``); what they built and how to verify it are their description and
  criteria, and the agent is expected to answer ``needs_human``. Other child elements go to the
  implementation notes.

Checklist items without an id, and numbered ones, are tasks only under a heading that names work
(Tasks, TODO, Backlog, Plan, Implementation, a priority, Phase, Milestone, Sprint, Next, In
progress, Completed, Done ...), and under no heading or bold label that names a review (Review,
Checklist, Acceptance, Criteria, Status, Verification, Requirements, Definition of done, Notes,
Tracking, Test plan ...) and no task heading: review checkboxes never become tasks. The H1 title
names work only for the items right under it, since ``# Milestone 3`` titles most plans.

Each task says whether the plan already ticks it (`Task.checked`): a checked box (``- [x]``), a
title ending in ``✅`` or ``✅ COMPLETED``/``DONE`` (the marker is stripped from the title), a
``**Status:** Done`` label, or a ``Completed``/``Done`` heading above it. `Task.priority` is a
level, ``"P1"`` (highest) to ``"P4"``, or None: from the task's ``**Priority:**`` label, else the
nearest heading naming one (``## High Priority``, ``(Priority: P2)``), else the plan's own
``**Priority:**`` label (one before the first task; `Plan.priority`). A label's value is P1 to P4
or high, medium or low (high is P1, medium P2, low P3; `pytest_orchestrator.priority`), in any
case, and anything else in a label is a `PlanError` naming its line. Headings are read leniently:
critical and urgent are P1, normal P2, minor P3, P0 is P1 and P5 and beyond P4.

Verification: a task may carry one shell script that runs in the sandbox after the agent reports the
task complete. Write it as a fenced block whose info string is ``bash verify`` or ``sh verify``::

    ```bash verify
    python -m pytest tests/test_health.py -q
    ```

or as a ``bash``/``sh`` fenced block directly after a ``**Verify:**`` or ``**Verification:**``
label. It is returned as `Task.verification`; a second one in the same task is a `PlanError`.

YAML front matter, CRLF line endings and a UTF-8 byte order mark are tolerated. Fences open with
three or more backticks or tildes and close with an equal or longer run of the same character; a
```` ```markdown ```` example may contain nested fenced blocks that carry an info string.
"""

from __future__ import annotations

import hashlib
import os
import re
import textwrap
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .priority import ACCEPTED, LEVELS, level

__all__ = [
    "CodeBlock",
    "Criterion",
    "Plan",
    "PlanError",
    "Task",
    "parse_plan",
    "parse_plan_text",
]


# Slots: a plan of ten thousand tasks keeps every one alive through collection.
@dataclass(frozen=True, slots=True)
class Criterion:
    """One acceptance criterion and whether the plan already ticks it."""

    text: str
    checked: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {"text": self.text, "checked": self.checked}


@dataclass(frozen=True, slots=True)
class CodeBlock:
    """A fenced code block: lowercased first word of its info string, body, line of the fence."""

    lang: str
    code: str
    line: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {"lang": self.lang, "code": self.code, "line": self.line}


@dataclass(frozen=True, slots=True)
class Task:
    """One task of a plan, as the agent will be asked to do it."""

    id: str
    title: str
    description: str = ""
    plan: str = ""
    line: int = 0
    milestone: str = ""
    files: tuple[str, ...] = ()
    type: str | None = None
    story: str | None = None
    parallel: bool = False
    implementation_notes: str = ""
    acceptance_criteria: tuple[Criterion, ...] = ()
    tests: tuple[str, ...] = ()
    code_blocks: tuple[CodeBlock, ...] = ()
    verification: CodeBlock | None = None
    checked: bool = False  # the plan already ticks the task as done
    optional: bool = False  # Kiro's "- [ ]*"
    priority: str | None = None  # "P1" (highest) to "P4"; `pytest_orchestrator.priority`

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "plan": self.plan,
            "line": self.line,
            "milestone": self.milestone,
            "files": list(self.files),
            "type": self.type,
            "story": self.story,
            "parallel": self.parallel,
            "implementation_notes": self.implementation_notes,
            "acceptance_criteria": [c.to_dict() for c in self.acceptance_criteria],
            "tests": list(self.tests),
            "code_blocks": [b.to_dict() for b in self.code_blocks],
            "verification": self.verification.to_dict() if self.verification else None,
            "checked": self.checked,
            "optional": self.optional,
            "priority": self.priority,
        }


@dataclass(frozen=True)
class Plan:
    """A parsed plan file: its path as given, its H1 title and its tasks in file order."""

    path: str
    title: str
    tasks: tuple[Task, ...]
    # The plan's own **Priority:** label, for the tasks that name none.
    priority: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "path": self.path,
            "title": self.title,
            "priority": self.priority,
            "tasks": [t.to_dict() for t in self.tasks],
        }


NO_TASKS = "no tasks found"


class PlanError(Exception):
    """A plan that cannot be read or parsed; the message names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        # All three go to args so the error survives pickling between xdist workers.
        super().__init__(path, line, message)
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


def parse_plan(path: str | os.PathLike[str], name: str | None = None) -> Plan:
    """Read and parse the plan file at `path`; `name` (default: the path as given) is what
    its tasks and errors call it."""
    filename = os.fspath(path)
    name = filename if name is None else name
    try:
        data = Path(filename).read_bytes()
    except FileNotFoundError as exc:
        raise PlanError(name, None, "plan file not found") from exc
    except IsADirectoryError as exc:
        raise PlanError(name, None, "is a directory, not a plan file") from exc
    except PermissionError as exc:
        raise PlanError(name, None, "permission denied: cannot read the plan file") from exc
    except OSError as exc:
        raise PlanError(name, None, f"cannot read the plan file: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise PlanError(
            name, line, f"not valid UTF-8 (byte 0x{byte:02x}); save the plan as UTF-8 markdown"
        ) from exc
    # A large plan is parsed from its lines alone: the bytes and the text go first, since the
    # parse's peak is the process's.
    del data
    lines = _lines(text, name)
    del text
    return _parse(lines, name)


def parse_plan_text(text: str, path: str) -> Plan:
    """Parse plan markdown `text`; `path` is only used in tasks and error messages."""
    return _parse(_lines(text, path), path)


def _lines(text: str, path: str) -> list[str]:
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise PlanError(path, line, "binary file (NUL byte): a plan must be a markdown text file")
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _parse(lines: list[str], path: str) -> Plan:
    doc = _Document(lines, path)
    tasks: list[Task] = []
    first_line: dict[str, int] = {}
    for start in doc.starts:
        if start.group:
            continue
        line = start.index + 1
        task_id = start.id
        if start.derived:
            # Derived ids never clash: the same text twice is a second item, not a mistake.
            count = 1
            while task_id in first_line:
                count += 1
                task_id = f"{start.id}-{count}"
        elif task_id in first_line:
            raise PlanError(path, line, f"duplicate task id {task_id} (first at line {first_line[task_id]})")
        first_line[task_id] = line
        tasks.append(doc.task(start, task_id))
    if not tasks:
        raise PlanError(
            path,
            None,
            f"{NO_TASKS}: expected headings like '## Task 1.1: Title', checklist lines like "
            "'- [ ] T001 Description', '<task>' elements, or checklists ('- [ ] 1.1 Description', "
            "'- [ ] Description') under a heading such as '## Tasks' or '## High Priority'",
        )
    stray = doc.stray_verification({b.line - 1 for t in tasks for b in t.code_blocks})
    if stray is not None:
        raise PlanError(path, stray, "verification block outside any task: move it into a task")
    return Plan(path=path, title=doc.title, tasks=tuple(tasks), priority=doc.priority)


# ---- line patterns ----

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<marker>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
# The id token is read whole, so that "1.2_1" is never read as "1" titled "2_1".
_TASK_HEADING = re.compile(r"^task\s+(?P<token>\w[\w.-]*)(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_HEADING_ID = re.compile(r"[a-z]{0,4}-?\d+[a-z]?(?:[._-][a-z]?\d+[a-z]?)*", re.IGNORECASE)
_SEPARATOR = re.compile(r"^\s*(?:[:.)]|--?|[\u2013\u2014])?\s*")
_CHECKBOX = re.compile(r"^(?P<indent>\s*)[-*+]\s+\[(?P<mark>[ xX~-])\](?P<optional>\*)?[ \t]+(?P<text>\S.*)$")
_SPECKIT_TOKEN = re.compile(r"^T\d[\w.-]*")
_SPECKIT_ID = re.compile(r"T\d+(?:\.\d+)*[a-zA-Z]?")
_NUMBERED = re.compile(r"^(?P<id>\d+(?:\.\d+)*)(?P<dot>\.?)(?:[ \t]+|$)")
_REFERENCE = re.compile(r"^\s*(?:[-*+]\s+)?[_*]*(?:requirements?|validates)\b", re.IGNORECASE)
_YAML_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:(\s|$)")
_TAG = re.compile(r"^\[(?P<tag>P|US\d+)\]\s*", re.IGNORECASE)
_LABEL = re.compile(r"^\s*\*\*(?P<name>[^*\n]+?)(?::\*\*|\*\*\s*:)\s*(?P<value>.*)$")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[(?P<mark>[ xX])\](?:\s+|$))?(?P<text>.*)$")
_PLAIN_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?!\[[ xX]\])")
_BACKTICKED = re.compile(r"`([^`]+)`")
_LINE_RANGE = re.compile(r":\d+(?:-\d+)?$")
# Conservative on purpose: a path needs a directory and an extension, or a well-known extension.
_PATH_TOKEN = re.compile(
    r"^/?(?:[\w.-]+/)+[\w-][\w.-]*\.[A-Za-z]\w*$"
    r"|^[\w-][\w.-]*\.(?:py|pyi|md|rst|txt|toml|ya?ml|json|ini|cfg|sh|js|jsx|ts|tsx|go|rs|java|c|h)$"
)
_DONE_MARK = re.compile(
    r"(?:\s*(?:\u2705|\u2713|\u2714\ufe0f?|\u2611\ufe0f?)\s*(?:\(?(?:completed?|done)\)?)?"
    r"|\s*[(\[](?:completed?|done)[)\]])\s*$",
    re.IGNORECASE,
)
_DONE_CHAR = re.compile("[\u2705\u2713\u2714\u2611]")
_DONE_STATUS = re.compile(
    r"^(?:\u2705|\u2713|\u2714|\u2611|\[x\]|done\b|completed?\b|finished\b)", re.IGNORECASE
)

_DESCRIPTION = {"description"}
_FILES = {"file", "files"}
_TYPE = {"type"}
_NOTES = {"implementation", "implementation notes", "implementation details"}
_CRITERIA = {"acceptance criteria"}
_TESTS = {"tests", "test"}
_VERIFY = {"verify", "verification"}
_PRIORITY = {"priority"}
_STATUS = {"status"}
_PROSE = {None} | _DESCRIPTION | _NOTES  # labels whose text runs on past a blank line
_FIELD_OF = {  # label -> the field it fills
    label: field_name
    for field_name, labels in (
        ("description", _DESCRIPTION),
        ("files", _FILES),
        ("type", _TYPE),
        ("notes", _NOTES),
        ("criteria", _CRITERIA),
        ("tests", _TESTS),
        ("priority", _PRIORITY),
        ("status", _STATUS),
    )
    for label in labels
}
_SHELLS = {"bash", "sh"}

# ---- headings: what work they name ----

# A review word wins over a work word in the same heading: "Completion Checklist" is a review.
_REVIEW_HEADING = re.compile(
    r"\b(?:reviews?|checklists?|check list|acceptance|criteria|status|verification|verify|"
    r"requirements?|definition of done|notes?|tracking|evidence|test plan|questions|risks|"
    r"assumptions|references|sign[- ]?off|approvals?)\b"
)
_WORK_HEADING = re.compile(
    r"\b(?:tasks?|todos?|to[- ]?do|backlog|plan|implementation|priority|priorities|p\d|"
    r"completed|done|finished|in progress|next|phase|milestone|sprint|roadmap|wave|"
    r"iteration|fix(?:es)?|work items|action items)\b"
)
_DONE_HEADING = re.compile(r"^\W*(?:completed|done|finished)\b")
_PRIORITY_HEADING = re.compile(r"\bpriority\b|\bp\d\b")
_PRIORITY_VALUE = re.compile(
    r"\b(?:(?P<word>critical|urgent|blocker|highest|high|medium|normal|moderate|lowest|low|minor)"
    r"|p(?P<p>\d+)|priority\s*[:#=-]?\s*(?P<n>\d+))\b",
    re.IGNORECASE,
)


def _priority(value: str) -> str | None:
    """The level a heading names: ``P1`` from ``P1``, ``Priority 2``, ``High`` or ``Critical``."""
    value = value.strip().strip("*_`")
    if value.isdigit():
        number = int(value)
    else:
        match = _PRIORITY_VALUE.search(value)
        if match is None:
            return None
        if match["word"]:
            return level(match["word"])
        number = int(match["p"] or match["n"])
    return LEVELS[min(max(number, 1), len(LEVELS)) - 1]


@dataclass(slots=True)
class _Heading:
    level: int
    text: str
    kind: str | None  # "task", "work", "review" or None
    priority: str | None
    done: bool


def _classify(level: int, text: str, is_task: bool) -> _Heading:
    lowered = text.lower()
    priority = _priority(lowered) if _PRIORITY_HEADING.search(lowered) else None
    if is_task:
        return _Heading(level, text, "task", priority, False)
    kind: str | None
    if _REVIEW_HEADING.search(lowered):
        kind = "review"
    elif _WORK_HEADING.search(lowered):
        kind = "work"
    else:
        kind = None
    # "Completed", "Done (sprint 3)", "Phase 1 ✅": not "Tasks to get done".
    done = _DONE_HEADING.match(lowered) is not None or _done_mark(text)[1]
    return _Heading(level, text, kind, priority, done)


@dataclass(slots=True)
class _Frame:
    """What the headings above a line say about a checklist item on it."""

    level: int  # of the nearest heading; 0 above the first one
    lists_tasks: bool  # items without an id are tasks here
    context: str  # the headings' text from level 2 down
    priority: str | None
    done: bool
    work: bool  # a heading below the title names work
    barred: bool  # a heading names a review, or is a task's


_TOP = _Frame(0, False, "", None, False, False, False)


def _under(parent: _Frame, heading: _Heading) -> _Frame:
    """The frame of the lines below `heading`, whose parent heading's frame is `parent`."""
    # "# Milestone 3" titles most plans, so the title names work only for items right under it.
    work = parent.work or (heading.kind == "work" and heading.level > 1)
    barred = parent.barred or heading.kind in ("review", "task")
    context = parent.context
    if heading.level >= 2 and heading.text:
        context = f"{context} > {heading.text}" if context else heading.text
    return _Frame(
        level=heading.level,
        lists_tasks=not barred and (work or heading.kind == "work"),
        context=context,
        priority=heading.priority or parent.priority,
        done=parent.done or heading.done,
        work=work,
        barred=barred,
    )


# ---- small helpers ----


def _heading(line: str) -> tuple[int, str] | None:
    match = _HEADING.match(line)
    if match is None:
        return None
    return len(match["hashes"]), (match["text"] or "").strip()


def _indent(line: str) -> int:
    stripped = line.lstrip()
    prefix = line[: len(line) - len(stripped)]
    return len(prefix.expandtabs(4)) if "\t" in prefix else len(prefix)


def _tags(title: str) -> tuple[str, bool, str | None]:
    """Strip leading ``[P]`` / ``[USn]`` tags; return the title, parallel flag and story."""
    parallel, story = False, None
    while match := _TAG.match(title):
        tag = match["tag"].upper()
        if tag == "P":
            parallel = True
        else:
            story = tag
        title = title[match.end() :]
    return title.strip(), parallel, story


def _done_mark(title: str) -> tuple[str, bool]:
    """Strip a completion marker (``✅``, ``✅ COMPLETED``, ``(done)``) from the end of a title."""
    tail = title[-16:]
    # A search anchored at the end still tries every position: look only where a mark can be.
    if not tail.endswith((")", "]")) and not _DONE_CHAR.search(tail):
        return title, False
    match = _DONE_MARK.search(title)
    if match is None:
        return title, False
    return title[: match.start()].rstrip(" -\u2013\u2014:"), True


def _derived_id(text: str) -> str:
    """A stable id for a task written without one: slug of its first words + hash of its text."""
    normal = " ".join(text.split()).casefold()
    ascii_text = unicodedata.normalize("NFKD", normal).encode("ascii", "ignore").decode()
    slug = ""
    for word in re.findall(r"[a-z0-9]+", ascii_text)[:6]:
        if slug and len(slug) + 1 + len(word) > 40:
            break
        slug = f"{slug}-{word}" if slug else word[:40]
    digest = hashlib.sha1(normal.encode(), usedforsecurity=False).hexdigest()[:4]
    return f"{slug or 'task'}-{digest}"


def _paths(value: str) -> list[str]:
    """Paths named by a ``**Files:**`` value or item: backticked, path-like, or the first word."""
    ticked = [_LINE_RANGE.sub("", t.strip()) for t in _BACKTICKED.findall(value) if t.strip()]
    if ticked:
        return ticked
    words = value.split()
    return _paths_in_text(value) or ([words[0].rstrip(".,;:")] if words else [])


def _paths_in_text(text: str) -> list[str]:
    found = []
    for token in text.split():
        if "." not in token:
            continue  # every path has an extension
        token = token.strip("`'\"()[]{}<>,;:").rstrip(".")
        if "://" not in token and _PATH_TOKEN.match(token):
            found.append(token)
    return found


def _may_hold_id(item: str) -> bool:
    """Whether a check box line may start with a spec-kit id: the only tasks outside a task list."""
    # Most check boxes are criteria inside tasks: a regex for each of them shows in large plans.
    close = item.find("]", 2, 7)
    return close > 0 and item[close + 1 : close + 9].lstrip("* \t")[:1] == "T"


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _list_items(text: str) -> list[str]:
    """Each list item of `text`, continuation lines joined; a line of prose is an item of its own."""
    items: list[str] = []
    continues = False
    for line in text.split("\n"):
        if not line.strip():
            continues = False
            continue
        match = _ITEM.match(line)
        if match:
            items.append(match["text"].strip())
            continues = True
        elif items and (continues or line[:1].isspace()):
            items[-1] = f"{items[-1]} {line.strip()}"
        else:
            items.append(line.strip())
            continues = True
    return [item for item in items if item]


# ---- XML tasks (get-shit-done) ----

_XML_OPEN = re.compile(r"^\s*<task(?P<attrs>\s[^>]*)?>")
_XML_CLOSE = "</task>"
_BULLET = re.compile(r"^[-*+]\s+")
_XML_ATTR = re.compile(r'(?P<name>[\w:-]+)\s*=\s*"(?P<value>[^"]*)"')
_XML_CHILD = re.compile(r"<(?P<tag>[A-Za-z_][\w-]*)(?:\s[^>]*)?>(?P<body>.*?)</(?P=tag)\s*>", re.DOTALL)
_XML_ENTITY = re.compile(r"&(?:(?P<name>amp|lt|gt|quot|apos)|#(?P<dec>\d+)|#[xX](?P<hex>[0-9a-fA-F]+));")
_XML_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.DOTALL)

_COMMANDS = frozenset(
    """
    python python3 pytest py.test uv uvx poetry pip pip3 pipx tox nox hatch pdm ruff mypy pyright
    black flake8 pylint coverage alembic make cmake ninja just task npm npx pnpm yarn node bun bunx
    deno tsc vitest jest eslint prettier playwright cargo rustc go gofmt java javac mvn gradle
    ./gradlew dotnet swift xcodebuild ruby bundle rake rspec php composer mix elixir flutter dart
    bash sh zsh test [ [[ grep egrep rg ls cat head tail wc diff cmp find jq yq curl wget docker
    docker-compose kubectl helm terraform git gh echo printf cd export set sed awk sort uniq true
    false if for while until then do done fi else elif case esac timeout env stat sqlite3 psql mysql
    shellcheck hadolint supabase expo
    """.split()
)
_PROSE_IN_COMMAND = re.compile(
    r"\b(?:passes|succeeds?|should|must|returns|is clean|are clean|works|"
    r"without errors|no errors)\b|`",
    re.IGNORECASE,
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


def _is_command(text: str) -> bool:
    """Whether `text` reads as shell command lines rather than prose (see the module docstring)."""
    continued = False
    seen = False
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("$ ").lstrip()
        if _PROSE_IN_COMMAND.search(line):
            return False
        if not continued:
            first = line.split()[0]
            path = "/" in first and "://" not in first
            if first not in _COMMANDS and not path and not _ASSIGNMENT.match(first):
                return False
        continued = line.endswith(("\\", "|", "&&", "||"))
        seen = True
    return seen


def _xml_text(body: str) -> str:
    """Element text: CDATA kept as written, entities decoded, the block dedented."""
    parts = _CDATA.split(body)  # odd parts are CDATA contents
    text = "".join(part if n % 2 else _decode_entities(part) for n, part in enumerate(parts))
    first, _, rest = text.partition("\n")
    return "\n".join(p for p in (first.strip(), textwrap.dedent(rest).strip()) if p)


def _decode_entities(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        if match["name"]:
            return _XML_NAMED[match["name"]]
        code = int(match["dec"]) if match["dec"] else int(match["hex"], 16)
        return chr(code) if 0 < code <= 0x10FFFF else match[0]

    return _XML_ENTITY.sub(one, text) if "&" in text else text


# ---- document structure ----

_LABEL_LINE, _HEADING_LINE, _FENCE_LINE = range(3)


@dataclass(slots=True)
class _Fence:
    start: int
    end: int  # index of the closing fence, or of the last line when the fence is never closed
    info: str
    code: str


@dataclass(slots=True)
class _Start:
    index: int
    id: str
    title: str
    kind: str  # "heading", "item" (a checklist line) or "xml"
    level: int = 0  # heading level
    indent: int = 0
    parallel: bool = False
    story: str | None = None
    context: str = ""  # the headings above, for checklist tasks
    checked: bool = False
    optional: bool = False
    priority: str | None = None
    derived: bool = False  # the id comes from the text
    numbered: bool = False  # a Kiro number, so it may turn out to be a group
    group: bool = False  # a numbered item with numbered children: context, not a task
    groups: str = ""  # the groups a numbered task belongs to: "2. Enforce limits"
    end: int = 0  # xml: index of the line holding </task>


@dataclass(slots=True)
class _Block:
    """Lines ``first`` to ``end`` (exclusive) under one bold label; unlabelled when name is None."""

    name: str | None
    inline: str  # the label's value on its own line
    first: int
    end: int = 0


class _Document:
    """Fences, headings and task starts of one plan, with line indexes into `lines`."""

    def __init__(self, lines: list[str], path: str) -> None:
        self.lines = lines
        self.path = path
        self.fences: dict[int, _Fence] = {}
        self.headings: dict[int, int] = {}  # line index -> level, outside fences
        self.rules: list[int] = []
        # Lines that may start or end a block of a section, in order, and what each is: a
        # bold label ("**Files:**", _LABEL_LINE), a heading or a fence. Two flat lists, since
        # a large plan has tens of thousands of them.
        self.events: list[int] = []
        self.event_kinds: list[int] = []
        self.starts: list[_Start] = []
        self.title = ""
        self.priority: str | None = None  # the plan's own **Priority:** label
        self._priority_line = 0
        self._scan(self._front_matter_end())
        self._start_list = [start.index for start in self.starts]
        self._resolve_groups()
        # The scan records them in line order.
        self._heading_list = list(self.headings)

    def _front_matter_end(self) -> int:
        # The first key is required so that a plan opening with a --- rule keeps its text.
        lines = self.lines
        if len(lines) < 2 or lines[0].strip() != "---" or not _YAML_KEY.match(lines[1]):
            return 0
        for index in range(1, len(lines)):
            if lines[index].strip() in ("---", "..."):
                return index + 1
        return 0

    def _fence_at(self, index: int) -> _Fence | None:
        match = _FENCE.match(self.lines[index])
        if match is None:
            return None
        marker, info = match["marker"], match["info"].strip()
        if marker[0] == "`" and "`" in info:
            return None
        # Plans show example plans in ```markdown blocks, and those contain fences of their own.
        nests = info.split()[0].lower() in ("markdown", "md") if info else False
        open_lengths = [len(marker)]
        end = index + 1
        lines = self.lines
        while end < len(lines):
            line = lines[end]
            if marker[0] in line:
                inner = _FENCE.match(line)
                if inner and inner["marker"][0] == marker[0]:
                    if not inner["info"].strip():
                        if len(inner["marker"]) >= open_lengths[-1]:
                            open_lengths.pop()
                            if not open_lengths:
                                break
                    elif nests:
                        open_lengths.append(len(inner["marker"]))
            end += 1
        end = min(end, len(lines) - 1)
        closed = not open_lengths
        body = lines[index + 1 : end if closed else end + 1]
        width = len(match["indent"])
        if width:
            body = [line[width:] if line[:width].isspace() else line for line in body]
        code = "\n".join(body)
        return _Fence(index, end, info, code)

    def _scan(self, first: int) -> None:
        """Find fences, headings, rules and task starts in one pass over the lines."""
        lines = self.lines
        frames = [_TOP]  # one per open heading, outermost first
        frame = _TOP
        # The checklist task whose more-indented lines we are in: its check boxes are its own.
        owner: _Start | None = None
        # Check boxes after "**Success Criteria:**" are a review even under "## Tasks".
        review_label = False
        resume = first  # past the fence or <task> element just read
        for index in range(first, len(lines)):
            if index < resume:
                continue
            line = lines[index]
            stripped = line.lstrip()
            if not stripped:
                continue
            if owner is not None and _indent(line) <= owner.indent:
                owner = None
            lead = stripped[0]
            if lead in "`~":
                fence = self._fence_at(index)
                if fence is not None:
                    self.fences[index] = fence
                    self.events.append(index)
                    self.event_kinds.append(_FENCE_LINE)
                    resume = fence.end + 1
            elif lead == "#":
                heading = _heading(line)
                if heading is not None:
                    level, text = heading
                    self.headings[index] = level
                    self.events.append(index)
                    self.event_kinds.append(_HEADING_LINE)
                    if level == 1 and not self.title:
                        self.title = text
                    task = self._task_heading(index, text) if level >= 2 else None
                    while frames[-1].level >= level:
                        frames.pop()
                    frame = _under(frames[-1], _classify(level, text, task is not None))
                    frames.append(frame)
                    review_label = False
                    if task is not None:
                        task_id, title, checked, parallel, story = task
                        self.starts.append(
                            # The frame under the task's own heading: its priority, if it names
                            # one, is the nearest, and a task heading is never a "Done" one.
                            _Start(
                                index,
                                task_id,
                                title,
                                "heading",
                                level=level,
                                parallel=parallel,
                                story=story,
                                checked=checked or frame.done,
                                priority=frame.priority,
                            )
                        )
                    owner = None
            elif lead == "<":
                if _XML_OPEN.match(line):
                    self.starts.append(self._xml_task(index, frame))
                    resume = self.starts[-1].end + 1
                    owner = None
            elif lead in "-*+_":
                # Cheap tests first: most such lines are list items and labels inside tasks.
                if stripped.rstrip()[-1] == lead and _RULE.match(line):
                    self.rules.append(index)
                elif lead == "_":
                    pass
                elif stripped.startswith("**"):
                    self.events.append(index)
                    self.event_kinds.append(_LABEL_LINE)
                    if not self.starts:
                        self._plan_label(index)
                    if frame.lists_tasks and (label := _LABEL.match(line)):
                        review_label = _REVIEW_HEADING.search(label["name"].lower()) is not None
                elif "[" in stripped[1:6] and (frame.lists_tasks or _may_hold_id(stripped)):
                    start = self._checklist_item(index, line, frame, owner, review_label)
                    if start is not None:
                        self.starts.append(start)
                        owner = start

    def _plan_label(self, index: int) -> None:
        """Before the first task, a **Priority:** label is the plan's."""
        label = _LABEL.match(self.lines[index])
        if label is None or " ".join(label["name"].lower().split()) not in _PRIORITY:
            return
        if self.priority is not None:
            raise PlanError(
                self.path,
                index + 1,
                f"the plan's priority is given twice (first at line {self._priority_line}): keep one",
            )
        value = label["value"].strip()
        if not value and index + 1 < len(self.lines):
            value = self.lines[index + 1].strip()
        found = level(value)
        if found is None:
            raise PlanError(self.path, index + 1, f"the plan's priority {value!r} must be {ACCEPTED}")
        self.priority, self._priority_line = found, index + 1

    def _task_heading(self, index: int, text: str) -> tuple[str, str, bool, bool, str | None] | None:
        """Id, title, ticked, parallel and story of a task heading's text; None if not a task."""
        match = _TASK_HEADING.match(text.replace("**", "").strip())
        if match is None:
            return None
        token, rest = match["token"].rstrip(".-"), match["rest"]
        rest = match["token"][len(token) :] + rest
        if not _HEADING_ID.fullmatch(token):
            if not any(char.isdigit() for char in token):
                return None  # "Task list", "Task overview": an id needs a digit
            raise PlanError(
                self.path,
                index + 1,
                f"cannot read the task id {token!r} in heading {text!r}: "
                "write ids like 1, 1.2, 2a, 1.2_1 or 02-01-03",
            )
        title = _SEPARATOR.sub("", rest, count=1)
        title, checked = _done_mark(title)
        title, parallel, story = _tags(title)
        return token, title, checked, parallel, story

    def _checklist_item(
        self, index: int, line: str, frame: _Frame, owner: _Start | None, review_label: bool
    ) -> _Start | None:
        match = _CHECKBOX.match(line)
        if match is None:
            return None
        lists_tasks = frame.lists_tasks and not review_label
        text = match["text"]
        if not lists_tasks and text[0] != "T":
            return None  # only spec-kit ids are tasks wherever they are
        indent = _indent(line)
        task_id, derived, numbered = "", False, False
        if token := _SPECKIT_TOKEN.match(text):
            task_id = token[0].rstrip(".-")
            if not _SPECKIT_ID.fullmatch(task_id):
                raise PlanError(
                    self.path,
                    index + 1,
                    f"cannot read the task id {task_id!r} in {line.strip()!r}: "
                    "write ids like T001, T005a or T1.2",
                )
            text = text[len(task_id) :].lstrip(":. \t")
        elif (number := _NUMBERED.match(text)) and (number["dot"] or "." in number["id"]):
            # Kiro numbers its tasks: 1. then 1.1; children may sit indented under their group.
            nested = owner is not None and owner.numbered and indent > owner.indent
            if not lists_tasks or (owner is not None and not nested):
                return None
            task_id, numbered = number["id"], True
            text = text[number.end() :]
        else:
            if not lists_tasks or owner is not None:
                return None
            derived = True
        title, checked = _done_mark(text.strip())
        title, parallel, story = _tags(title)
        if derived:
            task_id = _derived_id(title)
        return _Start(
            index,
            task_id,
            title,
            "item",
            indent=indent,
            parallel=parallel,
            story=story,
            context=frame.context,
            checked=checked or match["mark"] in "xX" or frame.done,
            optional=match["optional"] is not None,
            priority=frame.priority,
            derived=derived,
            numbered=numbered,
        )

    def _resolve_groups(self) -> None:
        """Turn numbered items with numbered children into groups; give children their context."""
        parents: set[str] = set()
        for start in self.starts:
            if start.numbered:
                parts = start.id.split(".")
                parents.update(".".join(parts[:n]) for n in range(1, len(parts)))
        if not parents:
            return
        titles: dict[str, str] = {}  # group id -> its latest title
        for start in self.starts:
            if not start.numbered:
                continue
            if start.id in parents:
                # Kiro often writes "1. Implement X" with the steps below it and only optional
                # tests as 1.1 and 1.2: that work is a task too, or it would never be dispatched.
                start.group = start.id in titles or not self._has_own_work(start)
                titles[start.id] = start.title
                continue
            parts = start.id.split(".")
            groups = [
                f"{gid}. {titles[gid]}"
                for n in range(1, len(parts))
                if (gid := ".".join(parts[:n])) in titles
            ]
            if groups:
                start.context = " > ".join(part for part in (start.context, *groups) if part)
                start.groups = " > ".join(groups)

    def _has_own_work(self, start: _Start) -> bool:
        """Whether a numbered item says what to do below it, beyond ``_Requirements: 1.1_``."""
        return any(
            line.strip() and not _REFERENCE.match(line)
            for line in self.lines[start.index + 1 : self._section_end(start)]
        )

    def _xml_task(self, index: int, frame: _Frame) -> _Start:
        lines = self.lines
        end = index
        while end < len(lines) and _XML_CLOSE not in lines[end]:
            end += 1
        if end == len(lines):
            raise PlanError(self.path, index + 1, "<task> without </task>: close the element")
        block = "\n".join(lines[index : end + 1])
        opening = _XML_OPEN.match(block)
        inner = _XML_CHILD.finditer(block, opening.end() if opening else 0)
        children = {m["tag"].lower(): _xml_text(m["body"]) for m in inner}
        name = children.get("name") or children.get("what-built", "").split("\n")[0]
        if task := self._task_heading(index, name):
            task_id, title, derived = task[0], task[1], False
        else:
            title = " ".join(name.split()) or "checkpoint"
            task_id, derived = _derived_id(title), True
        return _Start(index, task_id, title, "xml", priority=frame.priority, derived=derived, end=end)

    def _section_end(self, start: _Start) -> int:
        if start.kind == "xml":
            return start.end + 1
        following = bisect_right(self._start_list, start.index)
        end = self._start_list[following] if following < len(self._start_list) else len(self.lines)
        if start.kind == "heading":
            # Headings and rules are recorded outside fences only, as the section sees them.
            position = bisect_right(self._heading_list, start.index)
            while position < len(self._heading_list) and self._heading_list[position] < end:
                if self.headings[self._heading_list[position]] <= start.level:
                    end = self._heading_list[position]
                    break
                position += 1
            rule = bisect_right(self.rules, start.index)
            if rule < len(self.rules):
                end = min(end, self.rules[rule])
            return end
        index = start.index + 1
        lines = self.lines
        while index < end:
            line = lines[index]
            if line.strip() and _indent(line) <= start.indent:
                break  # a checklist task owns only the more-indented lines below it
            fence = self.fences.get(index)
            index = fence.end + 1 if fence is not None else index + 1
        return min(index, end)

    def stray_verification(self, used: set[int]) -> int | None:
        """Line of a ``verify`` fence that no task owns, if any."""
        for fence in self.fences.values():
            if fence.start not in used and "verify" in fence.info.lower().split()[1:]:
                return fence.start + 1
        return None

    def _blocks(self, first: int, end: int) -> tuple[list[_Block], list[tuple[_Fence, bool]]]:
        """Split a section into labelled blocks; each fence says if it directly follows Verify."""
        if first >= end:
            return [], []  # a checklist line followed by the next one
        # Only labels, headings and fences start or end a block: visit those, not every line.
        low, high = bisect_left(self.events, first), bisect_left(self.events, end)
        lines = self.lines
        block = _Block(None, "", first)
        blocks = [block]
        fences: list[tuple[_Fence, bool]] = []
        for index, kind in zip(self.events[low:high], self.event_kinds[low:high], strict=True):
            if kind == _FENCE_LINE:
                after_verify = block.name in _VERIFY and all(
                    not line or line.isspace() for line in lines[block.first : index]
                )
                fences.append((self.fences[index], after_verify))
                continue
            if kind == _LABEL_LINE:
                label = _LABEL.match(lines[index])
                if label is None:
                    continue
                name = " ".join(label["name"].lower().split())
                start = _Block(name, label["value"].strip(), index + 1)
            else:
                start = _Block(None, "", index)
            block.end = index
            block = start
            blocks.append(block)
        block.end = end
        return self._split_after_gaps(blocks), fences

    def _split_after_gaps(self, blocks: list[_Block]) -> list[_Block]:
        """End a short label's block at the first line after a blank one that is not its own."""
        result: list[_Block] = []
        for block in blocks:
            result.append(block)
            # "**Estimated**: 30 minutes", a blank line, then prose: that prose is unlabelled.
            # The steps after a list of files ("- [ ] **Step 1: ...**") are not files either.
            files = block.name in _FILES
            if not files and not (block.inline and block.name not in _PROSE):
                continue
            gap = False
            for index, line in self._outside_fences(block.first, block.end):
                if not line or line.isspace():
                    gap = True
                elif gap and not (_PLAIN_ITEM if files else _ITEM).match(line):
                    result.append(_Block(None, "", index, block.end))
                    block.end = index
                    break
        return result

    def _outside_fences(self, first: int, end: int) -> Iterator[tuple[int, str]]:
        """(index, line) of the lines from `first` to `end` that no fenced block holds."""
        lines, fences = self.lines, self.fences
        index = first
        while index < end:
            fence = fences.get(index)
            if fence is not None:
                index = fence.end + 1
                continue
            yield index, lines[index]
            index += 1

    def _text(self, block: _Block) -> str:
        lines = self.lines[block.first : block.end]
        body = "\n".join(lines)
        if any(line[:1].isspace() for line in lines):
            body = textwrap.dedent(body)
        return "\n".join(part for part in (block.inline, body.strip("\n")) if part).strip()

    def _joined(self, blocks: Iterable[_Block]) -> str:
        return "\n\n".join(text for block in blocks if (text := self._text(block)))

    def _items(self, block: _Block) -> list[tuple[str, bool]]:
        """List items outside fences, as (text, checked); indented lines continue an item."""
        items: list[tuple[str, bool]] = []
        for _, text in self._outside_fences(block.first, block.end):
            if match := _ITEM.match(text):
                items.append((match["text"].strip(), match["mark"] in ("x", "X")))
            elif items and text[:1].isspace() and text.strip():
                previous, checked = items[-1]
                items[-1] = (f"{previous} {text.strip()}", checked)
        return [item for item in items if item[0]]

    def _verification(self, task_id: str, fences: list[tuple[_Fence, bool]]) -> CodeBlock | None:
        found: CodeBlock | None = None
        for fence, after_verify in fences:
            words = fence.info.lower().split()
            lang = words[0] if words else ""
            if not (after_verify or "verify" in words[1:]):
                continue
            line = fence.start + 1
            if lang not in _SHELLS:
                shown = f"```{lang}" if lang else "a fence without a language"
                raise PlanError(
                    self.path,
                    line,
                    f"task {task_id}: a verification block runs in a shell; "
                    f"write ```bash or ```sh instead of {shown}",
                )
            if found is not None:
                raise PlanError(
                    self.path,
                    line,
                    f"task {task_id} has a second verification block (first at line {found.line}); keep one",
                )
            found = CodeBlock(lang, fence.code, line)
        return found

    def task(self, start: _Start, task_id: str) -> Task:
        """Build the task that begins at `start`, under the id `task_id`."""
        if start.kind == "xml":
            return self._xml(start, task_id)
        blocks, fences = self._blocks(start.index + 1, self._section_end(start))
        unlabelled: list[_Block] = []
        named: dict[str, list[_Block]] = {}  # field -> its blocks, in document order
        for block in blocks:
            if block.name is None:
                unlabelled.append(block)
            elif block.name in _FIELD_OF:
                named.setdefault(_FIELD_OF[block.name], []).append(block)
        description = self._joined(named.get("description", ())) or self._joined(unlabelled)
        if not description and start.kind == "item":
            description = start.context
        files: list[str] = []
        for block in named.get("files", ()):
            files += _paths(block.inline) if block.inline else []
            for text, _ in self._items(block):
                files += _paths(text)
        if not files and start.kind == "item":
            files = _paths_in_text(start.title)
        types = [b.inline.strip("`* ") for b in named.get("type", ()) if b.inline.strip("`* ")]
        tests: list[str] = []
        for block in named.get("tests", ()):
            tests += [block.inline] if block.inline else []
            tests += [text for text, _ in self._items(block)]
        priorities = [self._label_level(b, f"task {task_id}") for b in named.get("priority", ())]
        done = any(_DONE_STATUS.match(b.inline.strip("`*_ ")) for b in named.get("status", ()))
        return Task(
            id=task_id,
            title=start.title,
            description=description,
            plan=self.path,
            line=start.index + 1,
            milestone=" > ".join(part for part in (self.title, start.groups) if part),
            files=_unique(files),
            type=types[0] if types else None,
            story=start.story,
            parallel=start.parallel,
            implementation_notes=self._joined(named.get("notes", ())),
            acceptance_criteria=tuple(
                Criterion(text, checked)
                for b in named.get("criteria", ())
                for text, checked in self._items(b)
            ),
            tests=tuple(tests),
            code_blocks=tuple(
                CodeBlock((f.info.split() or [""])[0].lower(), f.code, f.start + 1) for f, _ in fences
            ),
            verification=self._verification(task_id, fences),
            checked=start.checked or done,
            optional=start.optional,
            priority=priorities[0] if priorities else start.priority or self.priority,
        )

    def _label_level(self, block: _Block, whose: str) -> str:
        """The level a **Priority:** label names; a PlanError at its line when it names none."""
        value = self._text(block)
        found = level(value)
        if found is None:
            shown = value.splitlines()[0] if value else ""
            raise PlanError(self.path, block.first, f"{whose}: priority {shown!r} must be {ACCEPTED}")
        return found

    def _xml(self, start: _Start, task_id: str) -> Task:
        """Build a task from a ``<task>`` element (get-shit-done)."""
        block = "\n".join(self.lines[start.index : start.end + 1])
        opening = _XML_OPEN.match(block)
        attrs = {m["name"]: m["value"] for m in _XML_ATTR.finditer(opening["attrs"] or "")} if opening else {}
        description: list[str] = []
        files: list[str] = []
        criteria: list[str] = []
        notes: list[str] = []
        verification: CodeBlock | None = None
        for child in _XML_CHILD.finditer(block, opening.end() if opening else 0):
            tag, body = child["tag"].lower(), child["body"]
            line = start.index + block.count("\n", 0, child.start()) + 1
            if tag == "name":
                continue
            if tag == "files":
                for entry in re.split(r"[,\n]", _xml_text(body)):
                    entry = _BULLET.sub("", entry.strip()).strip("`")
                    if entry and entry.split()[0].lower() not in ("n/a", "none", "-"):
                        files.append(_LINE_RANGE.sub("", entry.split()[0]))
            elif tag in ("action", "what-built"):
                description.append(_xml_text(body))
            elif tag in ("done", "acceptance_criteria", "how-to-verify"):
                criteria += _list_items(_xml_text(body))
            elif tag == "verify":
                parts = {m["tag"].lower(): m for m in _XML_CHILD.finditer(body)}
                rest = _xml_text(_XML_CHILD.sub("", body))
                automated = parts.get("automated")
                command = _xml_text(automated["body"]) if automated else rest
                if verification is None and _is_command(command):
                    verification = CodeBlock("bash", command, line)
                else:
                    criteria += _list_items(command)
                if automated:
                    criteria += _list_items(rest)
                for tag_name, part in parts.items():
                    if tag_name != "automated":
                        criteria += _list_items(_xml_text(part["body"]))
            elif text := _xml_text(body):
                notes.append(f"{tag}:\n{text}")
        return Task(
            id=task_id,
            title=start.title,
            description="\n\n".join(part for part in description if part),
            plan=self.path,
            line=start.index + 1,
            milestone=self.title,
            files=_unique(files),
            type=attrs.get("type"),
            implementation_notes="\n\n".join(notes),
            acceptance_criteria=tuple(Criterion(text) for text in criteria),
            code_blocks=(verification,) if verification else (),
            verification=verification,
            priority=start.priority or self.priority,
        )
