"""The built-in agent: the Claude Code CLI, run with `claude -p` inside the sandbox.

The prompt travels on the exec's stdin, which `claude -p` reads when no prompt argument
is given: never through a shell, so nothing in a task's text is ever interpreted, and
free of the 128 KiB limit Linux puts on one argument. Events stream back as stream-json lines.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..redact import redact
from ..result import TaskResult, Usage, parse_final_message

if TYPE_CHECKING:
    from ..dispatch import DispatchContext
    from ..plan import Task
    from ..sandbox import ExecResult, Sandbox
    from ..settings import Settings

Event = dict[str, Any]

# The Claude Code versions this agent is tested with (.ci/setup pins the one CI runs):
# outside them the stream-json events, the flags or the prices may differ.
TESTED_FROM, TESTED_BEFORE = (2, 1, 0), (2, 2, 0)
TESTED_RANGE = f">={'.'.join(map(str, TESTED_FROM))},<{'.'.join(map(str, TESTED_BEFORE))}"

# Claude Code retries a failed API call by itself, ten times by default with up to about
# three minutes of backoff; the orchestrator's retry policy owns the backoff, so the CLI's
# own retries are bounded by `claude_max_retries` through this variable.
MAX_RETRIES_ENV = "CLAUDE_CODE_MAX_RETRIES"

# How much of a failed run's stray output goes into its error message.
_TAIL_LINES, _TAIL_CHARS = 3, 500


def command(settings: Settings, resume: str | None = None) -> list[str]:
    """The argv of one Claude Code run; the prompt goes to its stdin."""
    argv = [
        settings.claude_command,
        "-p",
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


def environment(settings: Settings) -> dict[str, str]:
    """The variables added to the CLI's environment in the sandbox."""
    return {MAX_RETRIES_ENV: str(settings.claude_max_retries)}


def events(chunks: Iterable[tuple[bytes | None, bytes | None]], stray: list[str]) -> Iterator[Event]:
    """Decode stream-json lines from demuxed exec output.

    stderr and the stdout lines that are no event are kept in `stray` for error messages:
    the engine reports a command it cannot start on stdout.
    """
    buffer = b""
    for out, err in chunks:
        if err:
            stray.append(err.decode("utf-8", "replace"))
        if not out:
            continue
        buffer += out
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            event = _decode(line, stray)
            if event is not None:
                yield event
    event = _decode(buffer, stray)
    if event is not None:
        yield event


def _decode(line: bytes, stray: list[str]) -> Event | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if isinstance(event, dict):
        return event
    stray.append(line.decode("utf-8", "replace") + "\n")
    return None


def tail(text: str) -> str:
    """The last lines of a run's stray output, redacted and short enough for one message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()][-_TAIL_LINES:]
    joined = redact(" | ".join(lines))
    return joined if len(joined) <= _TAIL_CHARS else "..." + joined[-_TAIL_CHARS:]


def version_check(result: ExecResult, command: str, sandbox: str) -> tuple[str, str]:
    """Judge `<command> --version` run in the sandbox: ("ok" | "warning" | "error", message)."""
    output = tail(result.output) or "no output"
    if result.exit_code != 0:
        return "error", (
            f"`{command} --version` failed in sandbox '{sandbox}' (exit {result.exit_code}): {output}: "
            "install Claude Code in the sandbox image (`npm install -g @anthropic-ai/claude-code`), "
            "or point --orchestrator-claude-command at it"
        )
    found = re.search(r"\b(\d+)\.(\d+)\.(\d+)\b", result.output)
    if found is None:
        return "warning", f"`{command} --version` printed no version: {output}"
    version = tuple(int(part) for part in found.groups())
    if TESTED_FROM <= version < TESTED_BEFORE:
        return "ok", f"Claude Code {found.group(0)} ({command}), in the tested range {TESTED_RANGE}"
    return "warning", (
        f"Claude Code {found.group(0)} ({command}) is outside the tested range {TESTED_RANGE}: "
        "its output may not be understood; install a tested version in the sandbox image"
    )


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


def _log(stray: str) -> str:
    # Only a failed run keeps its log: the crash record's helper is imported then, not at start-up.
    from ..crashes.record import log_tail

    return log_tail(stray)


def to_result(
    task_id: str, event: Event | None, exit_code: int | None, stray: str, duration: float
) -> TaskResult:
    """Turn the final `result` event (or its absence) into a TaskResult; `stray` is the output
    that was no event, for the reason of a run without a result."""
    if event is None:
        return TaskResult(
            task_id,
            "failed",
            duration_seconds=duration,
            error=f"claude exited with code {exit_code} without a result: {tail(stray) or 'no output'}",
            agent="claude-code",
            crashed=True,
            exit_code=exit_code,
            log=_log(stray),
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
    if event.get("is_error") or str(event.get("subtype") or "").startswith("error"):
        result.log = _log(stray)
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


def run(task: Task, sandbox: Sandbox, context: DispatchContext) -> TaskResult:
    """One Claude Code run of `task` inside the sandbox, to its end.

    The sandbox handle is bound to the dispatch, so every process the CLI starts carries
    the dispatch id and is stopped with it on a timeout or interrupt.
    """
    settings = context.settings
    prompt = context.render_prompt(task)
    started = time.monotonic()
    stray: list[str] = []
    final: Event | None = None
    with sandbox.stream(
        command(settings, context.resume),
        workdir=context.workspace,
        stdin=prompt.encode("utf-8"),
        env=environment(settings),
    ) as (chunks, exit_code):
        for event in events(chunks, stray):
            context.on_event(event)
            if event.get("type") == "result":
                final = event
        code = exit_code()
    return to_result(task.id, final, code, "".join(stray), time.monotonic() - started)
