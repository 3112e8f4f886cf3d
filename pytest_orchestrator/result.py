"""A task's outcome: the agent's final-message protocol, the TaskResult, and how it is told in words."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TaskStatus = Literal["completed", "failed", "needs_human", "timeout", "interrupted"]

# The protocol the prompt asks for. Markdown emphasis around the label is tolerated
# because models like to bold it.
_LABEL = re.compile(
    r"^[\s>*_`#-]*(STATUS|QUESTION|OPTIONS|RECOMMENDATION|ERROR)[\s*_`]*:[\s*_`]*(.*)$",
    re.IGNORECASE,
)
_STATUS_WORDS: dict[str, TaskStatus] = {
    "complete": "completed",
    "completed": "completed",
    "done": "completed",
    "needs_human": "needs_human",
    "needs-human": "needs_human",
    "needs human": "needs_human",
    "failed": "failed",
    "fail": "failed",
}


@dataclass
class Usage:
    """Token counts as the agent reported them, never estimated."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    @property
    def total(self) -> int:
        """All tokens, cached ones included."""
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_creation_tokens

    def __add__(self, other: Usage) -> Usage:
        """The tokens of both, as for the attempts of one task."""
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_creation_tokens + other.cache_creation_tokens,
        )


@dataclass
class Verification:
    """The outcome of a task's verification block, run in the sandbox after the agent finished."""

    exit_code: int
    output: str

    @property
    def passed(self) -> bool:
        """True when the block exited 0."""
        return self.exit_code == 0


@dataclass
class TaskResult:
    """What the dispatch of a task produced: its last attempt's outcome, all attempts' costs."""

    task_id: str
    status: TaskStatus
    duration_seconds: float = 0.0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    num_turns: int = 0
    session_id: str = ""
    output: str = ""
    question: str | None = None
    options: list[str] | None = None
    recommendation: str | None = None
    error: str | None = None
    verification: Verification | None = None
    agent: str = ""
    # For retries: the API's HTTP status when the agent stopped on an API error, whether
    # the agent process died without a result, and its exit code then.
    api_error_status: int | None = None
    crashed: bool = False
    exit_code: int | None = None
    # The end of the agent's stderr and stray output when it failed, redacted: a crash's log.
    log: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # The Docker engine of the last attempt, as the state database records it.
    engine: str = ""

    @property
    def tokens(self) -> int:
        """All tokens used by the task."""
        return self.usage.total

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, for the report and across pytest-xdist."""
        data = asdict(self)
        data["tokens"] = self.tokens
        if self.verification is not None:
            data["verification"]["passed"] = self.verification.passed
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskResult:
        """Rebuild a result from `to_dict()` output."""
        data = dict(data)
        data.pop("tokens", None)
        usage = Usage(**data.pop("usage", {}))
        verification = data.pop("verification", None)
        if verification is not None:
            verification.pop("passed", None)
            verification = Verification(**verification)
        return cls(usage=usage, verification=verification, **data)


@dataclass
class FinalMessage:
    """The protocol fields found in the agent's final message."""

    status: TaskStatus | None
    question: str | None = None
    options: list[str] = field(default_factory=list)
    recommendation: str | None = None
    error: str | None = None


def _split_options(lines: list[str]) -> list[str]:
    items: list[str] = []
    for line in lines:
        text = re.sub(r"^\s*(?:[-*+]|\d+[.)]|[A-Za-z][.)])\s+", "", line).strip()
        if not text:
            continue
        items.extend(p.strip() for p in text.split("|") if p.strip()) if "|" in text else items.append(text)
    if len(items) == 1 and "," in items[0]:
        return [p.strip() for p in items[0].split(",") if p.strip()]
    return items


def parse_final_message(text: str) -> FinalMessage:
    """Read STATUS / QUESTION / OPTIONS / RECOMMENDATION / ERROR from the final message.

    A label's value runs on over the following lines until the next label or a blank
    line; the last of each label wins, since the model may quote the protocol first.
    """
    fields: dict[str, list[str]] = {}
    status_word: str | None = None
    current: str | None = None
    for raw in text.splitlines():
        match = _LABEL.match(raw)
        if match:
            current = match.group(1).upper()
            value = match.group(2).strip().strip("*_`").strip()
            if current == "STATUS":
                status_word = value.lower().strip(" .")
                current = None
                continue
            fields[current] = [value] if value else []
        elif current and raw.strip():
            fields[current].append(raw.strip())
        else:
            current = None
    status = _STATUS_WORDS.get(status_word.split()[0] if status_word else "", None)
    if status is None and status_word:
        status = _STATUS_WORDS.get(status_word)

    def joined(name: str) -> str | None:
        lines = fields.get(name)
        return " ".join(lines).strip() or None if lines is not None else None

    return FinalMessage(
        status=status,
        question=joined("QUESTION"),
        options=_split_options(fields.get("OPTIONS", [])),
        recommendation=joined("RECOMMENDATION"),
        error=joined("ERROR"),
    )


@dataclass
class FinishedTask:
    """A task result as the run's controller received it, with where and when it ran."""

    nodeid: str
    title: str
    result: TaskResult
    start: float
    stop: float


def describe_failure(task_id: str, result: TaskResult, plan: str = "PLAN") -> str:
    """The failure text shown for a task that did not complete, with what to do next."""
    if result.status == "needs_human":
        lines = [f"Task {task_id} NEEDS_HUMAN"]
        lines.append(f"QUESTION: {result.question or '(none given)'}")
        if result.options:
            lines.append("OPTIONS: " + " | ".join(result.options))
        if result.recommendation:
            lines.append(f"RECOMMENDATION: {result.recommendation}")
        lines.append(f"Answer with: orchestrator task {plan} {task_id} -g 'your answer'")
        return "\n".join(lines)
    if result.verification is not None and not result.verification.passed:
        return (
            f"Task {task_id} FAILED: verification exited {result.verification.exit_code}\n"
            f"{result.verification.output.rstrip()}"
        )
    if result.status in ("timeout", "interrupted"):
        return f"Task {task_id}: {result.error or result.status.upper()}"
    return f"Task {task_id} FAILED: {result.error or 'no reason given'}"


def status_line(task_id: str, result: TaskResult, when: float | None = None, plan: str = "") -> str:
    """One line per task: `[12:00:01] Task 1.1: COMPLETED (45s, 3.2k tokens, $0.02) plans/x.md`."""
    stamp = time.strftime("%H:%M:%S", time.localtime(when))
    label = result.status.upper()
    if result.verification is not None and not result.verification.passed:
        label = "FAILED (verification)"
    tokens = f"{result.tokens / 1000:.1f}k" if result.tokens >= 1000 else str(result.tokens)
    return (
        f"[{stamp}] Task {task_id}: {label} "
        f"({result.duration_seconds:.0f}s, {tokens} tokens, ${result.cost_usd:.2f})"
        + (f" {plan}" if plan else "")
    )


DRY_RUN_PREFIX = "dry run: "


def skip_line(task_id: str, reason: str, when: float | None = None, plan: str = "") -> str:
    """The line for a task that was not dispatched, e.g. `Task 1.2: SKIPPED (blocked by 1.1 (failed))`."""
    stamp = time.strftime("%H:%M:%S", time.localtime(when))
    if reason.startswith(DRY_RUN_PREFIX):
        label, reason = "DRY RUN", reason.removeprefix(DRY_RUN_PREFIX)
    else:
        label = "SKIPPED"
    return f"[{stamp}] Task {task_id}: {label} ({reason})" + (f" {plan}" if plan else "")
