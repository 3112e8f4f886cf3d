"""`orchestrator metrics`: the numbers of a time window, of every plan or one, as text or JSON.

Read-only, like `crashes`: it opens state.db read-only and never creates it. No state at all
means nothing has run here yet: one line on stderr, exit 0, and `--json` still prints the
window's (empty) document, so a script reading it needs no special case.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from ..metrics import Window, window
from ..state import StateStore
from .terminal import Style, clock, span

DEFAULT_SINCE = "24h"
_RULE = "─" * 37
_KNOWN_PLANS = 5


class UnknownPlan(ValueError):
    """`--plan` names no plan the state knows; the message lists some that it does."""


def read(state_dir: Path, since: float, until: float, plan: str | None = None) -> Window | None:
    """The window's numbers; None when there is no state database at all; UnknownPlan for a bad plan."""
    store = StateStore.read(state_dir)
    if store is None:
        return None
    try:
        if plan is not None:
            _known(store, plan)
        return window(store.conn, since, until, plan)
    finally:
        store.close()


def _known(store: StateStore, plan: str) -> None:
    conn = store.conn
    if conn.execute("SELECT 1 FROM attempts WHERE plan = ? LIMIT 1", (plan,)).fetchone():
        return
    # A plan whose tasks wait in the queue, none dispatched yet, has numbers too: its pending.
    queued = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queue'").fetchone()
    if queued and conn.execute("SELECT 1 FROM queue WHERE plan = ? LIMIT 1", (plan,)).fetchone():
        return
    plans = [str(r[0]) for r in conn.execute(f"SELECT DISTINCT plan FROM attempts LIMIT {_KNOWN_PLANS + 1}")]
    known = ", ".join(plans[:_KNOWN_PLANS]) + (", ..." if len(plans) > _KNOWN_PLANS else "")
    raise UnknownPlan(
        f"no attempts of plan {plan!r} in {store.path}: "
        + (f"give a plan as the runs recorded it ({known})" if plans else "no task has run here yet")
    )


# ---- the terminal view ----


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    # Minutes and seconds: a latency's seconds matter more than span()'s rounding allows.
    return f"{int(value // 60)}m {int(value % 60)}s" if value < 3600 else span(value)


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)  # pragma: no cover - the loop always returns


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def render(w: Window, style: Style, now: float) -> str:
    """The window as labelled lines; colour marks failures and crashes."""
    scope = f"plan {w.plan}" if w.plan is not None else "all plans"
    lines = [f"Metrics since {clock(w.since, now)} ({span(w.until - w.since)}), {scope}", _RULE]
    ended = {status: count for status, count in w.tasks_by_status.items() if status != "running"}
    statuses = ", ".join(f"{count} {status}" for status, count in ended.items())
    finished = f"{w.finished} finished" + (f" ({statuses})" if statuses else "")
    lines.append(
        f"Tasks        {finished}; {w.tasks_by_status.get('running', 0)} running; {w.pending} pending"
    )
    lines.append(f"Throughput   {w.throughput_per_hour:.2f} completed per hour")
    lines.append(
        f"Latency      avg {_seconds(w.latency_avg)}  p50 {_seconds(w.latency_p50)}  "
        f"p95 {_seconds(w.latency_p95)}"
    )
    if w.error_rate is None:
        lines.append("Error rate   - (nothing finished)")
    else:
        rate = f"{w.error_rate * 100:.1f} %"
        shown = style.paint(rate, "red") if w.failed else rate
        lines.append(f"Error rate   {shown} ({w.failed} of {w.finished} failed)")
    per_task = f"{w.tokens_per_task:,.0f}" if w.tokens_per_task is not None else "-"
    lines.append(f"Tokens       {w.tokens_total:,} total, {per_task} per task")
    lines.append(f"Cost         {_money(w.cost_usd_total)} total, {_money(w.cost_usd_per_task)} per task")
    lines.append(f"Retries      {w.retries}")
    crashes = str(w.crashes)
    lines.append(f"Crashes      {style.paint(crashes, 'red') if w.crashes else crashes}")
    r = w.resources
    if not r.samples:
        lines.append("Resources    no samples")
    else:
        lines.append(
            f"Resources    {r.processes} orchestrator processes: {r.process_cpu_seconds:.1f} CPU s, "
            f"peak RSS {_bytes(r.process_peak_rss_bytes)}"
        )
        lines.append(
            f"             {r.containers} sandbox containers: {r.container_cpu_seconds:.1f} CPU s, "
            f"peak memory {_bytes(r.container_peak_memory_bytes)}"
        )
    return style.text("\n".join(lines)) + "\n"


# ---- the JSON document ----


def document(w: Window) -> dict[str, Any]:
    """The window as a JSON-safe document."""
    return w.as_dict()


def show(
    state_dir: Path,
    since: float,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str],
    *,
    plan: str | None = None,
    as_json: bool = False,
    now: float | None = None,
) -> int:
    """Print the numbers of [since, now) to `out`: 0, or 2 for a plan the state does not know."""
    now = time.time() if now is None else now
    try:
        found = read(state_dir, since, now, plan)
    except UnknownPlan as exc:
        err.write(f"orchestrator: {exc}\n")
        return 2
    if found is None:
        err.write(f"orchestrator: no metrics: there is no state database in {state_dir} yet\n")
    if as_json:
        import json

        if found is None:
            empty = StateStore.empty()
            try:
                found = window(empty.conn, since, now, plan)
            finally:
                empty.close()
        out.write(json.dumps(document(found), indent=2) + "\n")
    elif found is not None:
        out.write(render(found, Style(out, environ), now))
    return 0
