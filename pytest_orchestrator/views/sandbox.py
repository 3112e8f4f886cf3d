"""What `orchestrator sandbox` prints: the sandbox's status, and the health summary after `up`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..redact import redact
from .terminal import Style, span

if TYPE_CHECKING:
    from ..health.run import HealthRun
    from ..sandbox.status import Status

_MARKS = {"ok": ("✓", "green"), "failed": ("✗", "red"), "skipped": ("-", "yellow")}
_FOREIGN = "not made by orchestrator sandbox"
_OVERALL = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}


def render_status(found: Status, style: Style) -> str:
    """The status as text: one line per field, the credentials by name only."""
    lines = [style.paint(f"Sandbox: {found.name}", "bold")]
    if found.state == "missing":
        lines.append(f"  {'Status:':<13}" + style.paint("✗ Missing", "red") + f" ({found.message})")
        return style.text("\n".join(lines)) + "\n"
    if found.running:
        uptime = f"up {span(found.uptime)}, " if found.uptime is not None else ""
        state = style.paint("✓ Running", "green") + f" ({uptime}{found.restarts} restarts)"
    else:
        state = style.paint(f"✗ {found.state.capitalize()}", "red") + f" ({found.message})"
    inputs = found.inputs
    if inputs:
        image = (
            f"{found.image} ({found.image_id}; Claude Code {inputs.get('claude_version', '?')} "
            f"on {inputs.get('base_image', '?')}, inputs {inputs.get('digest', '?')})"
        )
    else:
        image = f"{found.image} ({found.image_id})"
    workspace = found.workspace
    where = workspace.get("target", "?")
    if workspace.get("kind") == "volume":
        where += f" (volume {workspace.get('source')})"
    elif workspace.get("kind") == "bind":
        where += f" (host directory {workspace.get('source')})"
    credentials = ", ".join(found.credentials) or "none in the environment"
    if found.credentials_file:
        credentials += f"; credentials file from {found.credentials_file}"
    fields = [
        ("Status", state),
        (
            "Container",
            found.container_id + ("" if found.made_here else " (not made by orchestrator sandbox)"),
        ),
        ("Image", image),
        ("Workspace", where),
        ("Network", found.network or "default"),
        ("Credentials", credentials),
    ]
    lines += [f"  {label + ':':<13}{value}" for label, value in fields]
    return style.text(redact("\n".join(lines))) + "\n"


def render_health(report: HealthRun, style: Style) -> str:
    """The health checks' summary: the overall status, then a line per check with its message."""
    if report.error:
        return style.text(style.paint("✗ Health: ", "red") + redact(report.error)) + "\n"
    lines = [style.paint(f"Health: {report.status}", _OVERALL.get(report.status, "red"))]
    width = max((len(name) for name in report.checks), default=0)
    for name, check in report.checks.items():
        mark, colour = _MARKS.get(str(check.get("status")), ("?", "yellow"))
        lines.append(
            f"  {style.paint(mark, colour)} {name:<{width}}  {redact(str(check.get('message', '')))}"
        )
    return style.text("\n".join(lines)) + "\n"


def failure(report: HealthRun) -> str:
    """The first failing check's message, for the one line that ends an unhealthy `up`."""
    if report.error:
        return redact(report.error)
    failed = report.failed()
    if failed:
        return redact(f"{failed[0]}: {report.checks[failed[0]].get('message', '')}")
    return f"health {report.status}"
