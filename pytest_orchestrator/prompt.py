"""The prompt an agent gets for a task: the built-in template, its fields, and their rendering."""

from __future__ import annotations

from pathlib import Path
from string import Formatter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import Task

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


def check_template(path: Path) -> str | None:
    """What is wrong with the template file at `path` (unreadable, an unknown field), or None."""
    try:
        text = path.read_text(encoding="utf-8")
        fields = {name for _, name, _, _ in Formatter().parse(text) if name is not None}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return str(exc)
    unknown = sorted(name for name in fields if name not in PROMPT_FIELDS)
    if unknown:
        return (
            f"unknown placeholder {', '.join('{' + n + '}' for n in unknown)}; known: "
            f"{', '.join('{' + n + '}' for n in PROMPT_FIELDS)}"
        )
    return None
