"""The built-in agent: the Claude Code CLI, run with `claude -p` inside the sandbox.

The prompt travels as one argv element of a Docker exec, never through a shell, so
nothing in a task's text is ever interpreted. Events stream back as stream-json lines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .redact import redact
from .result import TaskResult, Usage, parse_final_message
from .sandbox import Sandbox

if TYPE_CHECKING:
    from .config import Settings
    from .plan import Task

Event = dict[str, Any]

DEFAULT_PROMPT = """\
You are working on task {task_id} of the plan {plan}.

# Task {task_id}: {title}

{description}

Files: {files}

Acceptance criteria:
{acceptance_criteria}

{implementation_notes}

Work in the current directory. {guidance}
When you are done, end your final message with these lines:
STATUS: complete | needs_human | failed
If needs_human, also: QUESTION: <your question>  OPTIONS: <option 1> | <option 2>  RECOMMENDATION: <your pick>
If failed, also: ERROR: <what went wrong>
"""

PROMPT_FIELDS = (
    "task_id",
    "title",
    "description",
    "files",
    "acceptance_criteria",
    "implementation_notes",
    "plan",
    "milestone",
    "guidance",
)


def render_prompt(task: Task, template: str, guidance: str | None = None) -> str:
    """Fill the prompt template with the task's fields."""
    criteria = "\n".join(f"- [{'x' if c.checked else ' '}] {c.text}" for c in task.acceptance_criteria)
    values = {
        "task_id": task.id,
        "title": task.title,
        "description": task.description or "(no description)",
        "files": ", ".join(task.files) or "(not specified)",
        "acceptance_criteria": criteria or "- (none given)",
        "implementation_notes": (
            f"Implementation notes:\n{task.implementation_notes}" if task.implementation_notes else ""
        ),
        "plan": task.plan,
        "milestone": task.milestone,
        "guidance": f"\nAdditional guidance from a human: {guidance}\n" if guidance else "",
    }
    return template.format_map(values).strip() + "\n"


def command(settings: Settings, prompt: str, resume: str | None = None) -> list[str]:
    """The argv of one Claude Code run."""
    argv = [
        settings.claude_command,
        "-p",
        prompt,
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        "--max-turns",
        str(settings.max_turns),
        "--allowedTools",
        ",".join(settings.allowed_tools),
    ]
    if settings.max_budget_usd:
        argv += ["--max-budget-usd", f"{settings.max_budget_usd:g}"]
    if resume:
        argv += ["--resume", resume]
    return argv


def events(chunks: Iterable[tuple[bytes | None, bytes | None]], stderr: list[str]) -> Iterator[Event]:
    """Decode stream-json lines from demuxed exec output; stderr is kept for error messages."""
    buffer = b""
    for out, err in chunks:
        if err:
            stderr.append(err.decode("utf-8", "replace"))
        if not out:
            continue
        buffer += out
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            event = _decode(line)
            if event is not None:
                yield event
    event = _decode(buffer)
    if event is not None:
        yield event


def _decode(line: bytes) -> Event | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def describe_event(event: Event) -> str | None:
    """A short progress line for an event, or None when it is not worth showing."""
    kind = event.get("type")
    if kind == "system" and event.get("subtype") == "init":
        return f"agent started (session {str(event.get('session_id', '?'))[:8]})"
    if kind == "system" and event.get("subtype") == "api_retry":
        return (
            f"API error {event.get('error_status')}, retry {event.get('attempt')}/{event.get('max_retries')}"
        )
    if kind != "assistant":
        return None
    parts = []
    for block in event.get("message", {}).get("content", []):
        if block.get("type") == "tool_use":
            args = block.get("input", {})
            target = args.get("file_path") or args.get("path") or args.get("command") or args.get("pattern")
            parts.append(f"{block.get('name')} {str(target)[:60]}" if target else str(block.get("name")))
    return "tool: " + ", ".join(parts) if parts else None


def _usage(event: Event) -> Usage:
    model_usage = event.get("modelUsage") or {}
    # modelUsage stays right where usage is zeroed (a budget stop), so it is preferred.
    if model_usage:
        return Usage(
            input_tokens=sum(int(m.get("inputTokens", 0)) for m in model_usage.values()),
            output_tokens=sum(int(m.get("outputTokens", 0)) for m in model_usage.values()),
            cache_read_tokens=sum(int(m.get("cacheReadInputTokens", 0)) for m in model_usage.values()),
            cache_creation_tokens=sum(
                int(m.get("cacheCreationInputTokens", 0)) for m in model_usage.values()
            ),
        )
    usage = event.get("usage") or {}
    return Usage(
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
        cache_read_tokens=int(usage.get("cache_read_input_tokens", 0)),
        cache_creation_tokens=int(usage.get("cache_creation_input_tokens", 0)),
    )


def to_result(
    task_id: str, event: Event | None, exit_code: int | None, stderr: str, duration: float
) -> TaskResult:
    """Turn the final `result` event (or its absence) into a TaskResult."""
    if event is None:
        tail = redact(stderr.strip().splitlines()[-1] if stderr.strip() else "no output")
        return TaskResult(
            task_id,
            "failed",
            duration_seconds=duration,
            error=f"claude exited with code {exit_code} without a result: {tail}",
            agent="claude-code",
            crashed=True,
        )
    text = redact(str(event.get("result") or ""))
    result = TaskResult(
        task_id,
        "failed",
        duration_seconds=duration,
        usage=_usage(event),
        cost_usd=float(event.get("total_cost_usd") or 0.0),
        num_turns=int(event.get("num_turns") or 0),
        session_id=str(event.get("session_id") or ""),
        output=text,
        agent="claude-code",
    )
    if event.get("api_error_status") is not None:
        result.api_error_status = int(event["api_error_status"])
    subtype = str(event.get("subtype") or "")
    errors = "; ".join(str(e) for e in event.get("errors") or [])
    if subtype == "error_max_turns":
        result.error = f"max turns reached: {errors or subtype}"
    elif subtype.startswith("error"):
        result.error = redact(f"{subtype}: {errors or text or 'no details'}")
    elif event.get("is_error"):
        result.error = f"agent error: {text or errors or 'no details'}"
    else:
        final = parse_final_message(text)
        if final.status is None:
            first = text.strip().splitlines()[0][:200] if text.strip() else "(empty)"
            result.error = f"final message has no STATUS line: {first}"
        else:
            result.status = final.status
            result.question = final.question
            result.options = final.options or None
            result.recommendation = final.recommendation
            if final.status == "failed":
                result.error = final.error or "agent reported STATUS: failed without an ERROR line"
    return result


def run_claude(
    sandbox: Sandbox,
    settings: Settings,
    task: Task,
    prompt: str,
    resume: str | None,
    on_event: Callable[[Event], None],
    dispatch_id: str,
) -> TaskResult:
    """One Claude Code run inside the sandbox, to its end; the sandbox stops it if we are interrupted."""
    started = time.monotonic()
    stderr: list[str] = []
    final: Event | None = None
    with sandbox.stream(
        command(settings, prompt, resume), workdir=settings.workspace, marker=dispatch_id
    ) as (chunks, exit_code):
        for event in events(chunks, stderr):
            on_event(event)
            if event.get("type") == "result":
                final = event
        code = exit_code()
    return to_result(task.id, final, code, "".join(stderr), time.monotonic() - started)


class ClaudeCodeAgent:
    """The built-in implementation of the dispatch hook."""

    @pytest.hookimpl(trylast=True)
    def pytest_orchestrator_dispatch(self, task: Task, sandbox: Sandbox, config: pytest.Config) -> TaskResult:
        """Run `task` with Claude Code in the sandbox."""
        from .runner import dispatch_context

        context = dispatch_context(config, task)
        prompt = render_prompt(task, context.settings.prompt_template, context.guidance)
        return run_claude(
            sandbox, context.settings, task, prompt, context.resume, context.on_event, context.dispatch_id
        )
