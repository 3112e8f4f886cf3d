"""Where in the sandbox the agent works: the workspace setting, one directory per plan with `{plan}`.

Plans that run in parallel (`-n`) in one workspace write over each other's files. With the
setting `/workspace/{plan}` each plan gets a directory of its own, named by a slug of the
plan's key (its path from the project root), created on first use.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import TYPE_CHECKING

from . import SandboxError

if TYPE_CHECKING:
    from . import Sandbox

PLACEHOLDER = "{plan}"
_SLUG_LENGTH = 48


def plan_slug(plan_key: str) -> str:
    """A filesystem-safe name for a plan that never changes while its path does not.

    Readable (`plans/hello_world.md` gives `plans-hello_world-` and eight hex digits), and the
    digits, from the whole key, keep apart two paths whose readable parts are the same.
    """
    stem = plan_key[:-3] if plan_key.lower().endswith(".md") else plan_key
    readable = re.sub(r"[^a-z0-9_]+", "-", stem.lower()).strip("-")[:_SLUG_LENGTH].rstrip("-")
    digest = hashlib.sha1(plan_key.encode("utf-8")).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest


def check_template(raw: str) -> str:
    """The workspace setting, or ValueError saying what is wrong with it."""
    value = raw.strip()
    if not value.startswith("/"):
        raise ValueError("must be an absolute path inside the sandbox, e.g. /workspace or /workspace/{plan}")
    unknown = sorted(set(re.findall(r"\{[^{}]*\}", value)) - {PLACEHOLDER})
    if unknown or value.replace(PLACEHOLDER, "").count("{") or value.replace(PLACEHOLDER, "").count("}"):
        shown = ", ".join(unknown) or "a stray brace"
        raise ValueError(f"has {shown}: the only placeholder is {PLACEHOLDER}")
    if workspace_root(value) == "/":
        raise ValueError(f"{PLACEHOLDER} needs a directory above it, e.g. /workspace/{PLACEHOLDER}")
    return value


def per_plan(template: str) -> bool:
    """Whether each plan gets a directory of its own."""
    return PLACEHOLDER in template


def workspace_root(template: str) -> str:
    """The directory that holds every plan's workspace: where the sandbox mounts its volume."""
    if PLACEHOLDER not in template:
        return posixpath.normpath(template)
    prefix = template[: template.index(PLACEHOLDER)]
    parent = prefix if prefix.endswith("/") else posixpath.dirname(prefix)
    return posixpath.normpath(parent or "/")


def workspace_for(template: str, plan_key: str | None) -> str:
    """The directory a plan's agent and verification work in; the root without a plan."""
    if plan_key is None or PLACEHOLDER not in template:
        return workspace_root(template)
    return posixpath.normpath(template.replace(PLACEHOLDER, plan_slug(plan_key)))


def prepare(sandbox: Sandbox, directory: str) -> None:
    """Create a plan's directory in the sandbox unless it exists; raises SandboxError saying why not."""
    result = sandbox.exec(["mkdir", "-p", directory])
    if result.exit_code != 0:
        raise SandboxError(
            f"cannot create the workspace {directory} in sandbox '{sandbox.name}' "
            f"(exit {result.exit_code}): {result.output.strip()[:200]}; make its parent writable "
            "by the sandbox's user"
        )
