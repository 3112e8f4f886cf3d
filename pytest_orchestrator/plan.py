"""Lenient parser for milestone plans written in markdown; one `Task` per task in the plan.

Two task formats are recognised, outside fenced code blocks only:

* Task headings, level 2 to 6: ``## Task 1.1: Title``, ``### Task 2 - Title``, ``## Task 3a.``;
  the separator after the id may be ``:``, ``.``, ``)``, ``-``, an en or em dash, or none. The
  section runs to the next task, the next heading of the same or a higher level, or a ``---`` rule.
  Inside it, bold labels (``**Files:**`` or ``**Files**:``) introduce the fields:
  ``Description``, ``File``/``Files``, ``Type``, ``Implementation``/``Implementation Notes``,
  ``Acceptance Criteria`` (check boxes or plain bullets) and ``Tests``. Without a ``Description``
  label, the unlabelled text of the section is the description.
* Checklist lines: ``- [ ] T001 [P] [US7] Description in src/pkg/file.py``. ``[P]`` marks a task
  that can run in parallel, ``[US7]`` names its user story, and file paths in the text become its
  files. More-indented lines below the item belong to the task; the headings above it are its
  description when it has none.

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

import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CodeBlock",
    "Criterion",
    "Plan",
    "PlanError",
    "Task",
    "parse_plan",
    "parse_plan_text",
]


@dataclass(frozen=True)
class Criterion:
    """One acceptance criterion and whether the plan already ticks it."""

    text: str
    checked: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {"text": self.text, "checked": self.checked}


@dataclass(frozen=True)
class CodeBlock:
    """A fenced code block: lowercased first word of its info string, body, line of the fence."""

    lang: str
    code: str
    line: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {"lang": self.lang, "code": self.code, "line": self.line}


@dataclass(frozen=True)
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
        }


@dataclass(frozen=True)
class Plan:
    """A parsed plan file: its path as given, its H1 title and its tasks in file order."""

    path: str
    title: str
    tasks: tuple[Task, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {"path": self.path, "title": self.title, "tasks": [t.to_dict() for t in self.tasks]}


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


def parse_plan(path: str | os.PathLike[str]) -> Plan:
    """Read and parse the plan file at `path`."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
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
    return parse_plan_text(text, name)


def parse_plan_text(text: str, path: str) -> Plan:
    """Parse plan markdown `text`; `path` is only used in tasks and error messages."""
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise PlanError(path, line, "binary file (NUL byte): a plan must be a markdown text file")
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    doc = _Document(lines, path)
    tasks: list[Task] = []
    first_line: dict[str, int] = {}
    for start in doc.starts:
        line = start.index + 1
        if start.id in first_line:
            raise PlanError(
                path, line, f"duplicate task id {start.id} (first at line {first_line[start.id]})"
            )
        first_line[start.id] = line
        tasks.append(doc.task(start))
    if not tasks:
        raise PlanError(
            path,
            None,
            f"{NO_TASKS}: expected headings like '## Task 1.1: Title' "
            "or checklist lines like '- [ ] T001 Description'",
        )
    stray = doc.stray_verification({b.line - 1 for t in tasks for b in t.code_blocks})
    if stray is not None:
        raise PlanError(path, stray, "verification block outside any task: move it into a task")
    return Plan(path=path, title=doc.title, tasks=tuple(tasks))


# ---- line patterns ----

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<marker>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^ {0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TASK_HEADING = re.compile(
    r"^task\s+(?P<id>[a-z]?\d+[a-z]?(?:\.\d+[a-z]?)*)(?!\w)"  # an id needs a digit: not "Task list"
    r"\s*(?:[:.)]|--?|[\u2013\u2014])?\s*(?P<title>.*)$",
    re.IGNORECASE,
)
_CHECKLIST_TASK = re.compile(r"^(?P<indent>\s*)[-*+]\s+\[[ xX]\]\s+(?P<id>T\d+)(?!\w)[:.]?\s*(?P<title>.*)$")
_YAML_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:(\s|$)")
_TAG = re.compile(r"^\[(?P<tag>P|US\d+)\]\s*", re.IGNORECASE)
_LABEL = re.compile(r"^\s*\*\*(?P<name>[^*\n]+?)(?::\*\*|\*\*\s*:)\s*(?P<value>.*)$")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[(?P<mark>[ xX])\](?:\s+|$))?(?P<text>.*)$")
_BACKTICKED = re.compile(r"`([^`]+)`")
# Conservative on purpose: a path needs a directory and an extension, or a well-known extension.
_PATH_TOKEN = re.compile(
    r"^/?(?:[\w.-]+/)+[\w-][\w.-]*\.[A-Za-z]\w*$"
    r"|^[\w-][\w.-]*\.(?:py|pyi|md|rst|txt|toml|ya?ml|json|ini|cfg|sh|js|jsx|ts|tsx|go|rs|java|c|h)$"
)

_DESCRIPTION = {"description"}
_FILES = {"file", "files"}
_TYPE = {"type"}
_NOTES = {"implementation", "implementation notes", "implementation details"}
_CRITERIA = {"acceptance criteria"}
_TESTS = {"tests", "test"}
_VERIFY = {"verify", "verification"}
_PROSE = {None} | _DESCRIPTION | _NOTES  # labels whose text runs on past a blank line
_SHELLS = {"bash", "sh"}


def _heading(line: str) -> tuple[int, str] | None:
    match = _HEADING.match(line)
    if match is None:
        return None
    return len(match["hashes"]), (match["text"] or "").strip()


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip())


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


def _paths(value: str) -> list[str]:
    """Paths named by a ``**Files:**`` value or item: backticked, path-like, or the first word."""
    ticked = [t.strip() for t in _BACKTICKED.findall(value) if t.strip()]
    if ticked:
        return ticked
    words = value.split()
    return _paths_in_text(value) or ([words[0].rstrip(".,;:")] if words else [])


def _paths_in_text(text: str) -> list[str]:
    found = []
    for token in text.split():
        token = token.strip("`'\"()[]{}<>,;:").rstrip(".")
        if "://" not in token and _PATH_TOKEN.match(token):
            found.append(token)
    return found


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# ---- document structure ----


@dataclass(frozen=True)
class _Fence:
    start: int
    end: int  # index of the closing fence, or of the last line when the fence is never closed
    info: str
    code: str


@dataclass(frozen=True)
class _Start:
    index: int
    id: str
    title: str
    level: int  # heading level; 0 for a checklist line
    indent: int
    parallel: bool
    story: str | None
    context: str  # the headings above, for checklist tasks


@dataclass
class _Block:
    """The text under one bold label, or unlabelled text when name is None."""

    name: str | None
    inline: str = ""
    lines: list[tuple[str, bool]] = field(default_factory=list)  # (text, inside a fence)
    gap: bool = False  # a blank line was seen since the label

    def text(self) -> str:
        body = textwrap.dedent("\n".join(text for text, _ in self.lines))
        return "\n".join(part for part in (self.inline, body.strip("\n")) if part).strip()

    def items(self) -> list[tuple[str, bool]]:
        """List items outside fences, as (text, checked); indented lines continue an item."""
        items: list[tuple[str, bool]] = []
        for text, fenced in self.lines:
            match = None if fenced else _ITEM.match(text)
            if match:
                items.append((match["text"].strip(), match["mark"] in ("x", "X")))
            elif items and not fenced and text[:1].isspace() and text.strip():
                previous, checked = items[-1]
                items[-1] = (f"{previous} {text.strip()}", checked)
        return [item for item in items if item[0]]


class _Document:
    """Fences, headings and task starts of one plan, with line indexes into `lines`."""

    def __init__(self, lines: list[str], path: str) -> None:
        self.lines = lines
        self.path = path
        self.fences: dict[int, _Fence] = {}
        self.starts: list[_Start] = []
        self.title = ""
        self._scan(self._front_matter_end())
        self._start_indexes = {start.index for start in self.starts}

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
        while end < len(self.lines):
            inner = _FENCE.match(self.lines[end])
            if inner and inner["marker"][0] == marker[0]:
                if not inner["info"].strip():
                    if len(inner["marker"]) >= open_lengths[-1]:
                        open_lengths.pop()
                        if not open_lengths:
                            break
                elif nests:
                    open_lengths.append(len(inner["marker"]))
            end += 1
        end = min(end, len(self.lines) - 1)
        closed = not open_lengths
        body = self.lines[index + 1 : end if closed else end + 1]
        width = len(match["indent"])
        code = "\n".join(line[width:] if line[:width].isspace() else line for line in body)
        return _Fence(index, end, info, code)

    def _scan(self, first: int) -> None:
        headings: list[tuple[int, str]] = []
        index = first
        while index < len(self.lines):
            line = self.lines[index]
            fence = self._fence_at(index)
            if fence is not None:
                self.fences[index] = fence
                index = fence.end + 1
                continue
            heading = _heading(line)
            if heading is not None:
                level, text = heading
                if level == 1 and not self.title:
                    self.title = text
                headings = [h for h in headings if h[0] < level] + [heading]
                task = _TASK_HEADING.match(text.replace("**", "").strip())
                if task and level >= 2:
                    title, parallel, story = _tags(task["title"])
                    self.starts.append(_Start(index, task["id"], title, level, 0, parallel, story, ""))
            elif checklist := _CHECKLIST_TASK.match(line):
                title, parallel, story = _tags(checklist["title"])
                context = " > ".join(text for level, text in headings if level >= 2 and text)
                self.starts.append(
                    _Start(index, checklist["id"], title, 0, _indent(line), parallel, story, context)
                )
            index += 1

    def _section_end(self, start: _Start) -> int:
        index = start.index + 1
        while index < len(self.lines):
            line = self.lines[index]
            if not start.level and line.strip() and _indent(line) <= start.indent:
                break  # a checklist task owns only the more-indented lines below it
            fence = self.fences.get(index)
            if fence is not None:
                index = fence.end + 1
                continue
            if index in self._start_indexes:
                break
            heading = _heading(line)
            if start.level and ((heading and heading[0] <= start.level) or _RULE.match(line)):
                break
            index += 1
        return index

    def stray_verification(self, used: set[int]) -> int | None:
        """Line of a ``verify`` fence that no task owns, if any."""
        for fence in self.fences.values():
            if fence.start not in used and "verify" in fence.info.lower().split()[1:]:
                return fence.start + 1
        return None

    def _blocks(self, first: int, end: int) -> tuple[list[_Block], list[tuple[_Fence, bool]]]:
        """Split a section into labelled blocks; each fence says if it directly follows Verify."""
        blocks = [_Block(None)]
        fences: list[tuple[_Fence, bool]] = []
        index = first
        while index < end:
            line, block = self.lines[index], blocks[-1]
            fence = self.fences.get(index)
            if fence is not None:
                after_verify = block.name in _VERIFY and not any(t.strip() for t, _ in block.lines)
                fences.append((fence, after_verify))
                block.lines.extend((text, True) for text in self.lines[index : fence.end + 1])
                index = fence.end + 1
                continue
            label = _LABEL.match(line)
            if label:
                name = " ".join(label["name"].lower().split())
                blocks.append(_Block(name, label["value"].strip()))
            elif _heading(line):
                blocks.append(_Block(None, lines=[(line, False)]))
            elif not line.strip():
                block.lines.append((line, False))
                block.gap = True
            elif block.inline and block.gap and block.name not in _PROSE and not _ITEM.match(line):
                # "**Estimated**: 30 minutes", a blank line, then prose: that prose is unlabelled.
                blocks.append(_Block(None, lines=[(line, False)]))
            else:
                block.lines.append((line, False))
            index += 1
        return blocks, fences

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

    def task(self, start: _Start) -> Task:
        """Build the task that begins at `start`."""
        blocks, fences = self._blocks(start.index + 1, self._section_end(start))

        def labelled(names: set[str]) -> list[_Block]:
            return [b for b in blocks if b.name in names]

        def joined(chosen: list[_Block]) -> str:
            return "\n\n".join(text for b in chosen if (text := b.text()))

        description = joined(labelled(_DESCRIPTION)) or joined([b for b in blocks if not b.name])
        if not description and not start.level:
            description = start.context
        files: list[str] = []
        for block in labelled(_FILES):
            files += _paths(block.inline) if block.inline else []
            for text, _ in block.items():
                files += _paths(text)
        if not files and not start.level:
            files = _paths_in_text(start.title)
        types = [b.inline.strip("`* ") for b in labelled(_TYPE) if b.inline.strip("`* ")]
        tests: list[str] = []
        for block in labelled(_TESTS):
            tests += [block.inline] if block.inline else []
            tests += [text for text, _ in block.items()]
        verification = self._verification(start.id, fences)
        return Task(
            id=start.id,
            title=start.title,
            description=description,
            plan=self.path,
            line=start.index + 1,
            milestone=self.title,
            files=_unique(files),
            type=types[0] if types else None,
            story=start.story,
            parallel=start.parallel,
            implementation_notes=joined(labelled(_NOTES)),
            acceptance_criteria=tuple(
                Criterion(text, checked) for b in labelled(_CRITERIA) for text, checked in b.items()
            ),
            tests=tuple(tests),
            code_blocks=tuple(
                CodeBlock((f.info.split() or [""])[0].lower(), f.code, f.start + 1) for f, _ in fences
            ),
            verification=verification,
        )
