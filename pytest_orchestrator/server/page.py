"""The web dashboard's HTML: server-rendered pages, an inline SVG chart, a few lines of JS.

Nothing is fetched from elsewhere (no CDN, no web fonts, no build step): the styles and the
script are inline. The dashboard's status is the `/api/status` document, embedded in the page
and drawn by the script as `orchestrator dashboard` draws it (the state, the loop, health, the
watchdog, the last hour, then the tables), and redrawn from each poll, so it stays live. The
script draws in the browser's terms: its local time, and text nodes only.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

# Status words and their colours: green running or done, yellow waiting, red failed.
GREEN = ("running", "completed", "healthy", "ok", "RUNNING", "idle", "finished")
YELLOW = (
    "pending",
    "waiting",
    "degraded",
    "STARTING",
    "BACKOFF",
    "skipped",
    "needs_human",
    "not_ready",
    "interrupted",
)
RED = (
    "failed",
    "error",
    "timeout",
    "unhealthy",
    "critical",
    "FATAL",
    "EXITED",
    "STOPPED",
)
POLL_SECONDS = 5

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:baseline}
header a{color:#cfd8ff;text-decoration:none}header h1{font-size:18px;margin:0}
main{padding:16px 24px;max-width:1500px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px 16px;margin-bottom:16px}
h2{font-size:15px;margin:0 0 8px}h3{font-size:13px;margin:10px 0 4px;color:#4a5468}
table{border-collapse:collapse;width:100%}td,th{padding:3px 8px;border-bottom:1px solid #eef0f4;
text-align:left;vertical-align:top}th{font-weight:600;color:#4a5468;font-size:12px;white-space:nowrap}
td table{width:auto}.k{color:#4a5468;white-space:nowrap;width:1%}
.green{color:#18813a;font-weight:600}.yellow{color:#a06800;font-weight:600}.red{color:#c0262d;font-weight:600}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f4f7;padding:6px 8px;border-radius:4px;
margin:4px 0;max-height:360px;overflow:auto}
.event{border-left:3px solid #c9cfdb;padding:2px 10px;margin:8px 0}
.event.assistant{border-color:#4b6bfb}.event.user{border-color:#18813a}.event.result{border-color:#a06800}
.muted{color:#7a8497}nav.windows a{margin-right:10px}.now{font-weight:700}
.banner{display:flex;align-items:baseline;gap:16px;padding:8px 14px;border-radius:5px;margin-bottom:10px;
border-left:6px solid #c9cfdb;background:#f3f4f7}.banner b{font-size:20px;letter-spacing:.06em}
.banner.green{border-color:#18813a;background:#eaf6ee}.banner.yellow{border-color:#a06800;background:#fbf4e4}
.banner.red{border-color:#c0262d;background:#fcecec}.banner ul{margin:0;padding-left:18px;font-weight:400;
color:#1d2330}.overview td{border:0;padding:1px 8px}.num{text-align:right;white-space:nowrap}
tr.wait td{background:#fdf8ea}tr.wait td.task{color:#a06800;font-weight:600}
tr.run td.task{color:#18813a;font-weight:600}tr.stale td.task{color:#c0262d;font-weight:600}
td.task a{font-weight:600}
td.error{color:#c0262d;max-width:360px}.none{color:#7a8497;margin:10px 0 4px}
"""

# The status part of the dashboard, drawn in the browser from the `/api/status` document: first
# from the copy embedded in the page, then from each poll. Every string goes in as a text node.
_SCRIPT = """
const G = %(green)s, Y = %(yellow)s, R = %(red)s;
const DASH = '\\u2013';
function cls(v) { return G.includes(v) ? 'green' : Y.includes(v) ? 'yellow' : R.includes(v) ? 'red' : ''; }
// Strings become text nodes: nothing from the document is ever parsed as HTML.
function el(tag, c, ...kids) {
  const e = document.createElement(tag);
  if (c) e.className = c;
  e.append(...kids.map(k => (k === null || k === undefined ? DASH : k)));
  return e;
}
function word(v, c) { return el('span', c === undefined ? cls(v) : c, String(v)); }
// As the terminal's span and clock: 42s, 5m, 2h 15m, 3d 4h; 14:05:01, with the date if not today.
function span(s) {
  s = Math.max(0, Math.floor(s || 0));
  const m = Math.floor(s / 60), h = Math.floor(s / 3600), d = Math.floor(s / 86400);
  if (s < 60) return s + 's';
  if (s < 3600) return m + 'm';
  return s < 86400 ? `${h}h ${m %% 60}m` : `${d}d ${h %% 24}h`;
}
function p2(n) { return String(n).padStart(2, '0'); }
function clock(iso) {
  if (!iso) return DASH;
  const t = new Date(iso);
  const hms = `${p2(t.getHours())}:${p2(t.getMinutes())}:${p2(t.getSeconds())}`;
  if (t.toDateString() === new Date().toDateString()) return hms;
  return `${t.getFullYear()}-${p2(t.getMonth() + 1)}-${p2(t.getDate())} ${hms}`;
}
function tokens(n) { return n >= 1000 ? (n / 1000).toFixed(1) + 'k' : String(n); }
// cols: [name, class]; a cell is a string, a node (put in a td) or a td.
function table(title, cols, rows) {
  const head = el('tr', '', ...cols.map(([name, c]) => el('th', c, name)));
  const body = rows.map(([c, cells]) => el('tr', c, ...cells.map((x, i) =>
    x instanceof Node && x.tagName === 'TD' ? x : el('td', cols[i][1], x))));
  return [el('h3', '', title), el('table', '', head, ...body)];
}
function line(k, ...v) { return el('tr', '', el('td', 'k', k), el('td', '', ...v)); }
function overview(d) {
  const t = el('table', 'overview'), l = d.loop, h = d.health, w = d.watchdog, r = d.last_hour;
  if (!l) t.append(line('Loop', word('never ran here', 'muted')));
  else t.append(line('Loop', word(l.status, l.status === 'waiting' ? 'yellow' : cls(l.status)),
    `, last poll ${span(l.last_poll_age)} ago, round ${l.round}` +
    (l.next_due_at ? `, next due ${clock(l.next_due_at)}` : '')));
  if (!h) t.append(line('Health', word('never checked', 'muted')));
  else {
    const bad = Object.keys(h.checks).filter(k => !['ok', 'healthy'].includes(h.checks[k])).sort();
    t.append(line('Health', word(h.status), ` (${h.source}, ${span(h.age)} ago` +
      (bad.length ? `, not ok: ${bad.join(', ')}` : '') + ')'));
  }
  const wd = w && w.watchdog;
  if (!wd) t.append(line('Watchdog', word('not running', w ? 'red' : 'muted')));
  else if (wd.running) {
    t.append(line('Watchdog', word('running', 'green'), ` (pid ${wd.pid}, up ${span(wd.uptime)})`));
  }
  else t.append(line('Watchdog', word('down', 'red'), ` (${wd.reason})`));
  if (r.finished === null) t.append(line('Last hour', word('no figures', 'muted')));
  else t.append(line('Last hour',
    `${r.finished} finished (${r.completed} completed, ${r.failed} failed), ` +
    `${(r.throughput_per_hour || 0).toFixed(1)} tasks/h, error rate `,
    r.error_rate === null ? word('none finished', 'muted')
      : word((r.error_rate * 100).toFixed(1) + '%%', r.error_rate > 0 ? 'red' : 'green')));
  return t;
}
function components(w) {
  return table('Components', [['Name'], ['Status'], ['Health'], ['Restarts', 'num'], ['Message']],
    w.components.map(c => ['', [c.name, word(c.status, cls(c.status) || 'yellow'), word(c.health),
      String(c.restarts), c.message || '']]));
}
function active(list) {
  if (!list.length) return [el('p', 'none', 'Active tasks: none')];
  return table(`Active tasks (${list.length})`, [['Plan'], ['Task', 'task'], ['Title'], ['Worker'],
    ['Elapsed', 'num'], ['Turns', 'num'], ['Tokens', 'num']],
  list.map(a => [a.stale ? 'stale' : 'run', [a.plan, a.task_id, a.title, a.worker,
    span(a.elapsed) + (a.stale ? ' (no heartbeat)' : ''), String(a.num_turns), tokens(a.tokens)]]));
}
function queue(q) {
  const n = q.head.length;
  if (!n) return [el('p', 'none', 'Queue: empty')];
  return table(n === q.depth ? `Queue (${q.depth} pending)` : `Queue (first ${n} of ${q.depth} pending)`,
    [['#', 'num'], ['Plan'], ['Task', 'task'], ['Title'], ['Priority'], ['Score', 'num'], ['Waited', 'num'],
      ['Reason'], ['Estimated start'], ['Estimated end']],
    q.head.map((t, i) => ['wait', [String(i + 1), t.plan, t.task_id, t.title, t.priority || DASH,
      t.score === null ? DASH : String(Math.round(t.score)), span(t.waited), t.reason,
      clock(t.eta_start), clock(t.eta_done)]]));
}
function finished(list) {
  if (!list.length) return [el('p', 'none', 'Latest attempts: none yet')];
  return table(`Latest ${list.length} attempts`, [['Ended'], ['Plan'], ['Task', 'task'], ['Title'],
    ['Status'], ['Duration', 'num'], ['Tokens', 'num'], ['Cost', 'num'], ['Error', 'error']],
  list.map(f => {
    const link = el('a', '', f.task_id);
    link.href = '/attempts/' + encodeURIComponent(f.id);
    link.title = `attempt #${f.id}: its transcript`;
    return ['', [clock(f.ended_at), f.plan, link, f.title, word(f.status, cls(f.status) || 'yellow'),
      span(f.duration), tokens(f.tokens), '$' + f.cost_usd.toFixed(4), f.error || '']];
  }));
}
function parts(d) {
  const colour = {running: 'green', error: 'red'}[d.state] || 'yellow';
  const out = [el('div', 'banner ' + colour, el('b', colour, d.state.toUpperCase()),
    el('ul', '', ...d.notes.map(n => el('li', '', n))))];
  if (!d.has_state) return out;
  out.push(overview(d));
  if (d.watchdog && d.watchdog.components.length) out.push(...components(d.watchdog));
  out.push(...active(d.active), ...queue(d.queue), ...finished(d.finished));
  return out;
}
function draw(d) { document.getElementById('status').replaceChildren(...parts(d)); }
async function poll() {
  try {
    const r = await fetch('/api/status', {headers: {Accept: 'application/json'}});
    if (r.ok) {
      draw(await r.json());
      document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    }
  } catch (e) {}
}
draw(JSON.parse(document.getElementById('first').textContent));
setInterval(poll, %(poll)d * 1000);
poll();
"""


def _colour(value: str) -> str:
    if value in GREEN:
        return "green"
    if value in YELLOW:
        return "yellow"
    return "red" if value in RED else ""


def _scalar(value: Any) -> str:
    if value is None:
        return '<span class="muted">&ndash;</span>'
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, float):
        # As the script shows a JSON number: 300.0 is 300, and three decimals at most.
        value = int(value) if value.is_integer() else round(value, 3)
    text = html.escape(str(value))
    colour = _colour(str(value))
    return f'<span class="{colour}">{text}</span>' if colour else text


def render(value: Any) -> str:
    """A JSON value as HTML: a mapping as a key/value table, a list of mappings as a table."""
    if isinstance(value, list):
        if not value:
            return '<span class="muted">none</span>'
        if all(isinstance(item, Mapping) for item in value):
            columns = list(dict.fromkeys(key for item in value for key in item))
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{render(item.get(c))}</td>" for c in columns) + "</tr>"
                for item in value
            )
            return f"<table><tr>{head}</tr>{rows}</table>"
        return ", ".join(render(item) for item in value)
    if isinstance(value, Mapping):
        rows = "".join(
            f'<tr><td class="k">{html.escape(str(k))}</td><td>{render(v)}</td></tr>' for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    return _scalar(value)


def _layout(title: str, body: str, script: str = "") -> str:
    tail = f"<script>{script}</script>" if script else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · orchestrator</title>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{_STYLE}</style></head><body>"
        '<header><h1>orchestrator</h1><a href="/">dashboard</a><a href="/tasks">tasks</a>'
        '<a href="/metrics">metrics</a><a href="/healthz">healthz</a></header>'
        f"<main>{body}</main>{tail}</body></html>"
    )


# ---- the dashboard ----


def dashboard_page(
    status: Any,
    hours: Sequence[Mapping[str, Any]],
    runs: Sequence[Mapping[str, Any]],
    chosen: str,
    windows: Sequence[str],
) -> str:
    """The dashboard: the live status, the chart of the chosen window, the latest runs."""
    links = " ".join(
        f'<a class="now" href="/?window={w}">{w}</a>' if w == chosen else f'<a href="/?window={w}">{w}</a>'
        for w in windows
    )
    tasks = sum(int(h["tasks"]) for h in hours)
    cost = sum(float(h["cost_usd"]) for h in hours)
    body = (
        '<section><h2>Status <span id="updated" class="muted"></span></h2><div id="status">'
        '<noscript>The status is drawn by the page\'s script: <a href="/api/status">/api/status</a> '
        "gives it as JSON.</noscript></div>"
        f'<script type="application/json" id="first">{_embedded(status)}</script></section>'
        f"<section><h2>Tasks and cost per hour</h2><nav class=windows>window: {links}</nav>"
        f'<p class="muted">{tasks} attempts ended, {_usd(cost)} in the last {html.escape(chosen)}</p>'
        f"{chart(hours)}</section>"
        f"<section><h2>Runs</h2>{runs_table(runs)}</section>"
    )
    script = _SCRIPT % {
        "green": json.dumps(GREEN),
        "yellow": json.dumps(YELLOW),
        "red": json.dumps(RED),
        "poll": POLL_SECONDS,
    }
    return _layout("dashboard", body, script)


def _embedded(document: Any) -> str:
    # Inside <script> only `</script` ends the element: with `<`, `>` and `&` escaped as JSON
    # escapes, no string of the document can close it or open anything.
    text = json.dumps(document)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _usd(amount: float) -> str:
    # Cents hide a scripted or cheap run's cost.
    return f"${amount:.2f}" if amount >= 1 or amount == 0 else f"${amount:.4f}"


def chart(hours: Sequence[Mapping[str, Any]], width: int = 1200, height: int = 220) -> str:
    """Inline SVG: completed and failed attempts per hour as stacked bars, the cost as a line."""
    if not hours:
        return '<p class="muted">no hours in the window</p>'
    left, right, top, bottom = 44, 56, 26, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max(1, max(int(h["tasks"]) for h in hours))
    dearest = max(float(h["cost_usd"]) for h in hours) or 1.0
    step = plot_w / len(hours)
    bar = max(1.0, step * 0.8)
    parts = [
        f'<svg role="img" aria-label="tasks and cost per hour" width="100%" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#c9cfdb"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" fill="#4a5468">{most}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" fill="#4a5468">0</text>',
        f'<text x="{left + plot_w + 6}" y="{top + 8}" fill="#4b6bfb">{_usd(dearest)}</text>',
    ]
    points = []
    for index, hour in enumerate(hours):
        x = left + index * step + (step - bar) / 2
        done_h = plot_h * int(hour["completed"]) / most
        failed_h = plot_h * int(hour["failed"]) / most
        y = top + plot_h
        title = (
            f"{hour['hour']}: {hour['tasks']} ended ({hour['completed']} completed, {hour['failed']} not), "
            f"${float(hour['cost_usd']):.4f}"
        )
        parts.append(f"<g><title>{html.escape(title)}</title>")
        if done_h:
            parts.append(
                f'<rect x="{x:.1f}" y="{y - done_h:.1f}" width="{bar:.1f}" height="{done_h:.1f}" '
                'fill="#34a853"/>'
            )
        if failed_h:
            parts.append(
                f'<rect x="{x:.1f}" y="{y - done_h - failed_h:.1f}" width="{bar:.1f}" '
                f'height="{failed_h:.1f}" fill="#d93025"/>'
            )
        parts.append("</g>")
        cost_y = top + plot_h - plot_h * float(hour["cost_usd"]) / dearest
        points.append(f"{left + index * step + step / 2:.1f},{cost_y:.1f}")
    parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#4b6bfb" stroke-width="1.5"/>')
    for index in (0, len(hours) // 2, len(hours) - 1):
        label = str(hours[index]["hour"])[5:16].replace("T", " ")
        parts.append(
            f'<text x="{left + index * step + step / 2:.1f}" y="{height - 6}" text-anchor="middle" '
            f'fill="#4a5468">{html.escape(label)}</text>'
        )
    parts.append(
        f'<text x="{left}" y="12" fill="#34a853">■ completed</text>'
        f'<text x="{left + 86}" y="12" fill="#d93025">■ not completed</text>'
        f'<text x="{left + 200}" y="12" fill="#4b6bfb">— cost (USD)</text></svg>'
    )
    return "".join(parts)


def runs_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The runs, each linking to its page."""
    if not runs:
        return '<p class="muted">no runs yet</p>'
    rows = "".join(
        f'<tr><td><a href="/runs/{r["id"]}">run {r["id"]}</a></td><td>{_scalar(r["status"])}</td>'
        f"<td>{html.escape(str(r['started_at']))}</td><td>{_scalar(r['ended_at'])}</td>"
        f"<td>{_plans(r['plans'])}</td><td>{r['attempts']}</td><td>{r['completed']}</td>"
        f"<td>{r['failed']}</td><td>{r['tokens']}</td><td>${float(r['cost_usd']):.4f}</td></tr>"
        for r in runs
    )
    return (
        "<table><tr><th>run</th><th>status</th><th>started</th><th>ended</th><th>plans</th>"
        "<th>attempts</th><th>completed</th><th>failed</th><th>tokens</th><th>cost</th></tr>"
        f"{rows}</table>"
    )


def _plans(plans: Sequence[str]) -> str:
    return (
        ", ".join(f'<a href="/tasks?plan={urllib.parse.quote(p)}">{html.escape(p)}</a>' for p in plans)
        or '<span class="muted">&ndash;</span>'
    )


def attempts_table(attempts: Sequence[Mapping[str, Any]]) -> str:
    """Attempts, each linking to its transcript."""
    if not attempts:
        return '<p class="muted">no attempts</p>'
    rows = "".join(
        f'<tr><td><a href="/attempts/{a["id"]}">#{a["id"]}</a></td><td>{html.escape(a["plan"])}</td>'
        f"<td>{html.escape(a['task_id'])}</td><td>{html.escape(a['title'])}</td><td>{a['attempt']}</td>"
        f"<td>{_scalar(a['status'])}</td><td>{_scalar(a['duration_seconds'])}</td><td>{a['num_turns']}</td>"
        f"<td>{a['tokens']}</td><td>${float(a['cost_usd']):.4f}</td><td>{_scalar(a['error'])}</td></tr>"
        for a in attempts
    )
    return (
        "<table><tr><th>attempt</th><th>plan</th><th>task</th><th>title</th><th>#</th><th>status</th>"
        "<th>seconds</th><th>turns</th><th>tokens</th><th>cost</th><th>error</th></tr>"
        f"{rows}</table>"
    )


def run_page(run: Mapping[str, Any]) -> str:
    """One run and its attempts."""
    head = {k: v for k, v in run.items() if k != "attempt_rows"}
    body = (
        f"<section><h2>Run {run['id']}</h2>{render(head)}</section>"
        f"<section><h2>Attempts</h2>{attempts_table(run['attempt_rows'])}</section>"
    )
    return _layout(f"run {run['id']}", body)


def tasks_page(tasks: Sequence[Mapping[str, Any]], plan: str | None) -> str:
    """The tasks seen, grouped by plan, each with its latest attempt."""
    if not tasks:
        return _layout("tasks", '<section><h2>Tasks</h2><p class="muted">no tasks yet</p></section>')
    sections = []
    for name in dict.fromkeys(t["plan"] for t in tasks):
        rows = "".join(
            f"<tr><td>{html.escape(t['task_id'])}</td><td>{html.escape(t['title'])}</td>"
            f"<td>{_scalar(t['status'])}</td><td>{t['attempts']}</td>"
            f'<td><a href="/attempts/{t["last_attempt"]}">#{t["last_attempt"]}</a></td>'
            f"<td>{html.escape(str(t['last_started_at']))}</td><td>{t['tokens']}</td>"
            f"<td>${float(t['cost_usd']):.4f}</td></tr>"
            for t in tasks
            if t["plan"] == name
        )
        link = f'<a href="/tasks?plan={urllib.parse.quote(name)}">{html.escape(name)}</a>'
        sections.append(
            f"<section><h2>{link}</h2><table><tr><th>task</th><th>title</th><th>status</th><th>attempts</th>"
            "<th>latest attempt</th><th>started</th><th>tokens</th><th>cost</th></tr>"
            f"{rows}</table></section>"
        )
    title = f"tasks of {plan}" if plan else "tasks"
    return _layout(title, "".join(sections))


def attempt_page(attempt: Mapping[str, Any], events: Sequence[Mapping[str, Any]] | None) -> str:
    """One attempt and its agent transcript."""
    summary = dict(attempt)
    summary["run_id"] = attempt["run_id"]
    body = (
        f"<section><h2>Attempt #{attempt['id']}: {html.escape(attempt['task_id'])} "
        f"{html.escape(attempt['title'])}</h2>{render(summary)}"
        f'<p><a href="/runs/{attempt["run_id"]}">run {attempt["run_id"]}</a> · '
        f'<a href="/api/attempts/{attempt["id"]}/transcript">transcript as JSON</a></p></section>'
        f"<section><h2>Transcript</h2>{transcript(events)}</section>"
    )
    return _layout(f"attempt {attempt['id']}", body)


_SHOWN = 4000


def _pre(text: str) -> str:
    cut = text if len(text) <= _SHOWN else text[:_SHOWN] + f"\n… ({len(text) - _SHOWN} more characters)"
    return f"<pre>{html.escape(cut)}</pre>"


def transcript(events: Sequence[Mapping[str, Any]] | None) -> str:
    """The agent's events as the operator reads them: its text, its tool calls, their results."""
    if events is None:
        return '<p class="muted">no transcript stored for this attempt</p>'
    if not events:
        return '<p class="muted">no events yet</p>'
    return "".join(_event(event) for event in events)


def _event(event: Mapping[str, Any]) -> str:
    kind = str(event.get("type", "?"))
    subtype = str(event.get("subtype") or "")
    head = f"<b>{html.escape(kind)}</b>" + (
        f" <span class=muted>{html.escape(subtype)}</span>" if subtype else ""
    )
    parts: list[str] = []
    if kind == "system" and subtype == "init":
        parts.append(
            f"<span class=muted>model {html.escape(str(event.get('model', '?')))}, "
            f"tools {html.escape(', '.join(map(str, event.get('tools') or [])))}</span>"
        )
    elif kind in ("assistant", "user"):
        content = (event.get("message") or {}).get("content") or []
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "text":
                parts.append(_pre(str(block.get("text", ""))))
            elif block.get("type") == "tool_use":
                parts.append(
                    f"tool <b>{html.escape(str(block.get('name')))}</b>"
                    + _pre(json.dumps(block.get("input"), indent=1, ensure_ascii=False))
                )
            elif block.get("type") == "tool_result":
                result = block.get("content")
                if isinstance(result, list):
                    result = "\n".join(
                        str(r.get("text", r)) if isinstance(r, Mapping) else str(r) for r in result
                    )
                error = " <span class=red>error</span>" if block.get("is_error") else ""
                parts.append(f"tool result{error}" + _pre(str(result)))
            elif block.get("type") == "thinking":
                parts.append(f"<span class=muted>thinking</span>{_pre(str(block.get('thinking', '')))}")
    elif kind == "result":
        parts.append(
            " · ".join(
                [
                    _scalar("failed" if event.get("is_error") else "ok"),
                    # The events are what an agent printed: every value is escaped, numbers too.
                    f"{html.escape(str(event.get('num_turns', '?')))} turns",
                    _cost(event.get("total_cost_usd")),
                    *(
                        [f"{html.escape(str(event['duration_ms']))} ms"]
                        if event.get("duration_ms") is not None
                        else []
                    ),
                ]
            )
            + _pre(str(event.get("result") or ""))
        )
    elif kind == "transcript_truncated":
        parts.append(
            "<span class=yellow>the transcript reached its cap of "
            f"{html.escape(str(event.get('max_bytes')))} bytes: "
            "later events were not kept</span>"
        )
    else:
        parts.append(_pre(json.dumps(event, indent=1, ensure_ascii=False)[:_SHOWN]))
    return f'<div class="event {html.escape(kind)}">{head}<div>{"".join(parts)}</div></div>'


def _cost(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"${float(value):.4f}"
    return "$" + html.escape(str(value or 0))


def not_found(message: str) -> str:
    """The page for a path, run or attempt that does not exist."""
    return _layout("not found", f"<section><h2>Not found</h2><p>{html.escape(message)}</p></section>")
