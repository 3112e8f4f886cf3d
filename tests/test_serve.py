"""`orchestrator serve` with real clients: HTTP requests to the real process, Prometheus, Chromium.

Every server here is the real command in a child process on a free loopback port, reading a
real state database; the health checks it runs are `pytest --orchestrator-health` against
a real sandbox container.
"""

from __future__ import annotations

import concurrent.futures
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from pytest_orchestrator.metrics.window import FAILED, FINISHED
from pytest_orchestrator.state import StateStore
from pytest_orchestrator.transcripts import TranscriptWriter, read_transcript, transcript_path
from pytest_orchestrator.views.terminal import span
from tests.conftest import AGENT_API_KEY, AGENT_GH_TOKEN, require, task_run_args
from tests.support.messages_server import reply
from tests.support.seeded_state import add_component, add_health, add_queue, seed

TOKEN = "serve-" + "Tk4" * 8


@dataclass
class Served:
    """A running `orchestrator serve`: its address, and what it printed once stopped."""

    url: str
    process: subprocess.Popen[str]
    first_line: str
    stdout: str = ""
    stderr: str = ""


def project(directory: Path, config: str = "") -> Path:
    """A project root (pytest.ini anchors it), with an orchestrator.yaml when `config` is given."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pytest.ini").write_text("[pytest]\n")
    if config:
        (directory / "orchestrator.yaml").write_text(config)
    return directory


@contextmanager
def serving(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Start `orchestrator serve --port 0` in `cwd`; it is stopped (SIGTERM) afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_orchestrator", "serve", "--port", "0", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"on (http://\S+?)/ ", line)
    if found is None:
        out, err = process.communicate(timeout=10)
        raise AssertionError(f"serve did not start: {line}{out}{err}")
    served = Served(found[1], process, line)
    try:
        yield served
    finally:
        process.terminate()
        served.stdout, served.stderr = process.communicate(timeout=10)


def get(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, timeout=kwargs.pop("timeout", 60), **kwargs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def health_rows(state_dir: Path) -> int:
    store = StateStore.read(state_dir)
    if store is None:
        return 0
    try:
        return int(store.conn.execute("SELECT COUNT(*) FROM health_checks").fetchone()[0])
    finally:
        store.close()


def samples(text: str) -> dict[str, float]:
    """The samples of a Prometheus text exposition, `name{labels}` -> value, through the client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


# ---- /healthz ----


def test_healthz_is_200_then_503_with_the_sandbox_stopped_then_200_again(
    tmp_path: Path, clean_env: None, make_sandbox: Callable[..., Any], agent_image: str
) -> None:
    sandbox = make_sandbox(
        image=agent_image, env={"GH_TOKEN": AGENT_GH_TOKEN, "ANTHROPIC_API_KEY": AGENT_API_KEY}
    )
    root = project(tmp_path / "p", "serve:\n  health_cache: 0.5\n")
    with serving(root, env={"ORCHESTRATOR_SANDBOX": sandbox.name}) as served:
        answer = get(served.url + "/healthz")
        assert (answer.status_code, answer.json()["status"]) == (200, "healthy")
        assert answer.headers["Content-Type"] == "application/json"
        assert set(answer.json()["checks"]) >= {"sandbox", "claude_code", "claude_auth", "github_token"}

        sandbox.stop(timeout=1)
        time.sleep(0.6)
        answer = get(served.url + "/healthz")
        assert (answer.status_code, answer.json()["status"]) == (503, "unhealthy")
        assert answer.json()["checks"]["sandbox"]["status"] == "failed"
        assert f"docker start {sandbox.name}" in answer.json()["checks"]["sandbox"]["message"]
        # The same document as Prometheus text, by query or by Accept.
        for asked in ({"params": {"format": "prometheus"}}, {"headers": {"Accept": "text/plain"}}):
            text = get(served.url + "/healthz", **asked)
            assert text.status_code == 503
            assert text.headers["Content-Type"].startswith("text/plain")
            found = samples(text.text)
            assert found['orchestrator_health_status{status="unhealthy"}'] == 1.0
            assert found['orchestrator_health_status{status="healthy"}'] == 0.0
            assert found['orchestrator_health_check_status{check="sandbox"}'] == 0.0
            assert 'orchestrator_health_check_status{check="claude_code"}' not in found  # skipped

        sandbox.start()
        time.sleep(0.6)
        answer = get(served.url + "/healthz")
        assert (answer.status_code, answer.json()["status"]) == (200, "healthy")
    everything = served.stdout + served.stderr
    assert AGENT_API_KEY not in everything and AGENT_GH_TOKEN not in everything
    assert "Traceback" not in everything


def test_a_hundred_requests_on_a_cold_cache_run_the_checks_once(tmp_path: Path, clean_env: None) -> None:
    root = project(tmp_path / "p")
    state_dir = root / ".orchestrator"
    StateStore.open(state_dir).close()
    gate = threading.Barrier(100)

    def ask(_: int) -> tuple[int, str]:
        gate.wait()
        answer = get(served.url + "/healthz")
        return answer.status_code, answer.json()["timestamp"]

    # A sandbox that does not exist: the checks answer quickly, unhealthy.
    with serving(root, env={"ORCHESTRATOR_SANDBOX": "orch-test-absent-sandbox"}) as served:
        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            answers = list(pool.map(ask, range(100)))
        counted = samples(get(served.url + "/healthz", params={"format": "prometheus"}).text)
        metrics = samples(get(served.url + "/metrics").text)
    assert {status for status, _ in answers} == {503}
    # One run: every request got the same document, the server counted one run, and the
    # state database holds one health row.
    assert len({stamp for _, stamp in answers}) == 1
    assert counted["orchestrator_serve_health_runs_total"] == 1.0
    assert metrics["orchestrator_serve_health_runs_total"] == 1.0
    assert health_rows(state_dir) == 1


def test_the_health_cache_keeps_a_document_for_its_time_and_tells_a_failed_run() -> None:
    from pytest_orchestrator.server import HealthCache

    calls: list[float] = []

    def check() -> dict[str, Any]:
        calls.append(time.monotonic())
        time.sleep(0.2)
        if len(calls) == 3:
            raise OSError("no python")
        return {"status": "degraded", "run": len(calls)}

    cache = HealthCache(check, ttl=0.5)
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        first = list(pool.map(lambda _: cache.get(), range(20)))
    assert len(calls) == 1 and {h.document["run"] for h in first} == {1}
    assert (first[0].http_status, cache.get().document["run"]) == (200, 1)
    time.sleep(0.6)
    assert cache.get().document["run"] == 2
    time.sleep(0.6)
    failed = cache.get()
    assert (failed.http_status, failed.status) == (503, "unhealthy")
    assert failed.document["error"] == "the health checks failed to run: OSError: no python"
    assert cache.runs == 3


def test_a_health_run_that_raised_is_told_without_its_secrets() -> None:
    from pytest_orchestrator.server import HealthCache

    token = "ghp_" + "Zx9" * 12

    def check() -> dict[str, Any]:
        raise OSError(f"cannot start the checks with GH_TOKEN={token}")

    health = HealthCache(check, ttl=5).get()
    assert health.http_status == 503
    assert (
        health.document["error"]
        == "the health checks failed to run: OSError: cannot start the checks with GH_TOKEN=***"
    )
    assert token.encode() not in health.body


# ---- /metrics, the API ----


def test_metrics_are_the_state_databases_figures(tmp_path: Path, clean_env: None) -> None:
    root = project(tmp_path / "p")
    state_dir = root / ".orchestrator"
    now = time.time()
    seeded = seed(state_dir, 2000, days=3, now=now)
    add_health(state_dir, {"sandbox": "ok", "claude_auth": "failed", "zombies": "skipped"}, "unhealthy")
    add_queue(state_dir, pending=4, running=1)
    add_component(state_dir, "sandbox", restarts=2)
    add_component(state_dir, "runner", restarts=5)
    with serving(root) as served:
        answer = get(served.url + "/metrics")
        assert answer.status_code == 200
        found = samples(answer.text)
        # A new attempt, recorded with an end time long before the last scrape: counted too.
        store = StateStore.open(state_dir)
        with store.writing() as conn:
            conn.execute(
                "INSERT INTO attempts (run_id, plan, task_id, status, started_at, ended_at, cost_usd) "
                "VALUES (1, 'plans/late.md', '1.1', 'completed', ?, ?, 1.5)",
                (now - 2 * 86400 - 20, now - 2 * 86400),
            )
        store.close()
        after = samples(get(served.url + "/metrics").text)
    for status, count in seeded.by_status.items():
        assert found[f'orchestrator_tasks_total{{status="{status}"}}'] == count
    assert found["orchestrator_tasks_running"] == 0
    assert sum(v for k, v in found.items() if k.startswith("orchestrator_tokens_total")) == seeded.tokens
    assert found["orchestrator_cost_usd_total"] == pytest.approx(seeded.cost)
    assert found["orchestrator_task_duration_seconds_count"] == seeded.attempts
    # The histogram's buckets, against the durations the seed wrote (5 + (i * 37) % 900).
    durations = [5 + (i * 37) % 900 for i in range(seeded.attempts)]
    assert found['orchestrator_task_duration_seconds_bucket{le="60.0"}'] == sum(d <= 60 for d in durations)
    assert found['orchestrator_task_duration_seconds_bucket{le="600.0"}'] == sum(d <= 600 for d in durations)
    assert found["orchestrator_task_duration_seconds_sum"] == pytest.approx(sum(durations), rel=1e-6)
    assert found['orchestrator_health_check_status{check="sandbox"}'] == 1.0
    assert found['orchestrator_health_check_status{check="claude_auth"}'] == 0.0
    assert 'orchestrator_health_check_status{check="zombies"}' not in found
    assert found["orchestrator_queue_depth"] == 4
    assert found['orchestrator_component_restarts_total{component="runner"}'] == 5
    assert found['orchestrator_component_restarts_total{component="sandbox"}'] == 2
    assert after['orchestrator_tasks_total{status="completed"}'] == seeded.by_status["completed"] + 1
    assert after["orchestrator_cost_usd_total"] == pytest.approx(seeded.cost + 1.5)
    assert after["orchestrator_task_duration_seconds_count"] == seeded.attempts + 1
    # No label names a task, a plan or an attempt.
    assert not [k for k in found if "plan" in k or "task_id" in k or "attempt" in k]


def test_the_api_serves_runs_tasks_and_redacted_transcripts(tmp_path: Path, clean_env: None) -> None:
    root = project(tmp_path / "p")
    state_dir = root / ".orchestrator"
    seed(state_dir, 60, days=1, runs=3)
    writer = TranscriptWriter(transcript_path(state_dir, 7), 10_000)
    writer.write({"type": "system", "subtype": "init", "session_id": "s1", "model": "m"})
    writer.write(
        {
            "type": "assistant",
            "message": {"content": [{"type": "text", "text": f"my key is {AGENT_API_KEY}"}]},
        }
    )
    writer.close()
    with serving(root) as served:
        runs = get(served.url + "/api/runs").json()["runs"]
        one = get(served.url + "/api/runs/2").json()
        tasks = get(served.url + "/api/tasks", params={"plan": "plans/plan1.md"}).json()["tasks"]
        transcript = get(served.url + "/api/attempts/7/transcript").json()
        none = get(served.url + "/api/attempts/8/transcript").json()
        missing = get(served.url + "/api/runs/99")
        bad = get(served.url + "/api/metrics", params={"since": "yesterday-ish"})
        hourly = get(served.url + "/api/hourly", params={"since": "24h"}).json()
        page = get(served.url + "/attempts/7")
    assert [r["id"] for r in runs] == [3, 2, 1]
    assert sum(r["attempts"] for r in runs) == 60
    assert one["attempts"] == len(one["attempt_rows"]) == 20
    assert {a["run_id"] for a in one["attempt_rows"]} == {2}
    assert {t["plan"] for t in tasks} == {"plans/plan1.md"}
    assert sum(t["attempts"] for t in tasks) == 12
    assert [e["type"] for e in transcript["events"]] == ["system", "assistant"]
    assert transcript["events"][1]["message"]["content"][0]["text"] == "my key is ***"
    assert transcript["attempt"]["id"] == 7 and transcript["stored"] and not transcript["truncated"]
    assert (none["events"], none["stored"]) == ([], False)
    assert (missing.status_code, missing.json()) == (404, {"error": "no run 99"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("since: expected a time span")
    assert sum(h["tasks"] for h in hourly["hours"]) == 60
    assert page.status_code == 200 and "my key is ***" in page.text and AGENT_API_KEY not in page.text
    # The browser is told the page loads nothing from elsewhere.
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'; connect-src 'self'")


def test_the_api_gives_the_terminal_views_json(tmp_path: Path, clean_env: None) -> None:
    root = project(tmp_path / "p")
    state_dir = root / ".orchestrator"
    seed(state_dir, 300, days=3, runs=3)
    add_queue(state_dir, pending=4, running=1)

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "pytest_orchestrator", *args, "--json"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    with serving(root) as served:
        api = {
            "status": get(served.url + "/api/status").json(),
            "queue": get(served.url + "/api/queue").json(),
            "metrics": get(served.url + "/api/metrics", params={"since": "7d"}).json(),
            "plan": get(served.url + "/api/metrics", params={"since": "7d", "plan": "plans/plan2.md"}).json(),
        }
        unknown = get(served.url + "/api/metrics", params={"plan": "plans/nope.md"})
    terminal = {
        "status": cli("dashboard"),
        "queue": cli("queue"),
        "metrics": cli("metrics", "--since", "7d"),
        "plan": cli("metrics", "--since", "7d", "--plan", "plans/plan2.md"),
    }
    # The moment each was read differs; everything else is the same document.
    moments = {"at", "now", "since", "until", "waited", "score", "age", "elapsed", "last_poll_age"}
    moments |= {"throughput_per_hour"}  # over a window ending a moment later

    def timeless(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: timeless(v) for k, v in value.items() if k not in moments and not k.startswith("eta")}
        if isinstance(value, list):
            return [timeless(v) for v in value]
        return value

    for name in terminal:
        assert timeless(api[name]) == timeless(terminal[name]), name
    assert api["metrics"]["throughput_per_hour"] == pytest.approx(
        terminal["metrics"]["throughput_per_hour"], rel=1e-3
    )
    assert api["queue"]["depth"] == 4
    assert api["plan"]["plan"] == "plans/plan2.md"
    assert 0 < api["plan"]["finished"] < api["metrics"]["finished"]
    assert unknown.status_code == 400 and "plans/nope.md" in unknown.json()["error"]


# ---- transcripts ----


def test_a_transcript_is_redacted_and_capped_and_pruned(tmp_path: Path) -> None:
    path = transcript_path(tmp_path, 3)
    writer = TranscriptWriter(path, 400)
    writer.write({"type": "user", "text": f"token {AGENT_GH_TOKEN}"})
    for n in range(20):
        writer.write({"type": "assistant", "n": n, "text": "x" * 50})
    writer.close()
    events = read_transcript(tmp_path, 3)
    assert events is not None
    assert events[0] == {"type": "user", "text": "token ***"}
    assert events[-1]["type"] == "transcript_truncated" and events[-1]["max_bytes"] == 400
    assert 1 < len(events) < 21
    assert path.stat().st_size <= 400 + 100
    assert AGENT_GH_TOKEN not in path.read_text()
    from pytest_orchestrator.transcripts import prune

    old = time.time() - 8 * 86400
    os.utime(path, (old, old))
    fresh = transcript_path(tmp_path, 4)
    TranscriptWriter(fresh, 400).write({"type": "x"})
    assert prune(tmp_path, time.time() - 7 * 86400) == 1
    assert not path.exists() and fresh.exists()


def test_a_transcript_left_by_an_earlier_state_is_replaced_not_continued(tmp_path: Path) -> None:
    """A state database deleted to start over numbers its attempts from 1 again; the transcripts stay."""
    path = transcript_path(tmp_path, 1)
    old = TranscriptWriter(path, 400)
    for n in range(3):
        old.write({"type": "assistant", "n": n, "text": "from the earlier state " + "x" * 50})
    old.close()
    writer = TranscriptWriter(path, 400)
    writer.write({"type": "user", "text": "the new attempt 1"})
    for n in range(3):
        writer.write({"type": "assistant", "n": n, "text": "y" * 50})
    writer.close()
    events = read_transcript(tmp_path, 1)
    assert events is not None
    assert events[0] == {"type": "user", "text": "the new attempt 1"}
    assert [e.get("type") for e in events] == ["user", "assistant", "assistant", "assistant"]
    assert "earlier state" not in path.read_text()
    assert path.stat().st_size <= 400


def test_an_unreadable_state_is_503_with_the_reason_on_every_path(tmp_path: Path) -> None:
    from pytest_orchestrator.server import App, HealthCache

    state_dir = tmp_path / ".orchestrator"
    state_dir.mkdir()
    (state_dir / "state.db").write_bytes(b"not a database, " * 512)
    app = App(state_dir, HealthCache(lambda: {"status": "healthy"}, 5))
    reason = f"cannot read state database {state_dir / 'state.db'}: file is not a database"
    for path in ("/api/status", "/api/queue", "/api/metrics", "/api/runs"):
        answer = app.handle(path, {}, {})
        assert (answer.status, json.loads(answer.body)) == (503, {"error": reason})
    for path in ("/metrics", "/"):
        answer = app.handle(path, {}, {})
        assert (answer.status, answer.body.decode()) == (503, f"orchestrator: {reason}\n")
    # /healthz is the health run's answer, whatever the state.
    assert app.handle("/healthz", {}, {}).status == 200


def test_a_client_that_never_finishes_its_request_is_dropped_and_others_are_served(tmp_path: Path) -> None:
    import socket
    import threading

    from pytest_orchestrator.server import App, HealthCache
    from pytest_orchestrator.server.app import make_server

    app = App(tmp_path / ".orchestrator", HealthCache(lambda: {"status": "healthy"}, 5))
    server = make_server(app, "127.0.0.1", 0, request_timeout=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stuck:
            stuck.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            assert get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            # The server hangs up on the silent client: its read ends, with nothing answered.
            assert stuck.recv(1024) == b""
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_but_steady_client_gets_the_whole_of_a_large_response() -> None:
    import socket
    import threading

    from pytest_orchestrator.server.app import Response, make_server

    # More than the kernel's socket buffers hold, read at a pace that takes far longer than the
    # timeout in all but never stays silent for as long.
    body = bytes(range(256)) * (192 * 1024)  # 48 MiB

    class Large:
        def handle(self, path: str, query: Any, headers: Any) -> Response:
            return Response(200, "application/octet-stream", body)

    server = make_server(Large(), "127.0.0.1", 0, request_timeout=1.0)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(server.server_address[:2], timeout=10) as client:
            client.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            started, received = time.monotonic(), bytearray()
            while chunk := client.recv(128 * 1024):
                received += chunk
                time.sleep(0.01)
            took = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert took > 2.0, f"read in {took:.2f}s: too fast to tell a bound on silence from one on the whole"
    assert received.endswith(body) and b"Content-Length: 50331648" in received


def test_the_transcript_page_escapes_every_value_of_an_event() -> None:
    """An event's fields are what an agent printed: none reaches the page as markup."""
    from pytest_orchestrator.server.page import transcript

    script = "<script>alert(1)</script>"
    shown = transcript(
        [
            {"type": "result", "num_turns": script, "total_cost_usd": script, "duration_ms": script},
            {"type": "transcript_truncated", "max_bytes": script},
            {"type": "result", "num_turns": 3, "total_cost_usd": 0.0123456, "duration_ms": 1500},
        ]
    )
    assert "<script>" not in shown
    assert shown.count("&lt;script&gt;") == 4
    assert "3 turns · $0.0123 · 1500 ms" in shown


def test_the_watchdogs_daily_prune_deletes_old_transcripts(tmp_path: Path) -> None:
    from pytest_orchestrator.crashes.config import MonitorSpec
    from pytest_orchestrator.monitor.crashes import Monitor

    state_dir = tmp_path / ".orchestrator"
    StateStore.open(state_dir).close()
    for attempt_id, days in ((1, 9), (2, 8), (3, 1)):
        writer = TranscriptWriter(transcript_path(state_dir, attempt_id), 1000)
        writer.write({"type": "system", "subtype": "init"})
        writer.close()
        old = time.time() - days * 86400
        os.utime(transcript_path(state_dir, attempt_id), (old, old))
    lines: list[str] = []
    Monitor(state_dir, MonitorSpec(retention_days=7), lines.append).prune()
    assert sorted(p.name for p in (state_dir / "transcripts").iterdir()) == ["3.jsonl"]
    assert lines == ["monitor: deleted 2 crash, health and resource rows and transcripts older than 7 days"]


# ---- authentication, addresses ----


def test_the_token_protects_everything_but_healthz(tmp_path: Path, clean_env: None) -> None:
    root = project(tmp_path / "p", "serve:\n  health_cache: 60\n")
    seed(root / ".orchestrator", 10, days=1, runs=1)
    with serving(
        root, env={"ORCHESTRATOR_SERVE_TOKEN": TOKEN, "ORCHESTRATOR_SANDBOX": "orch-test-absent"}
    ) as served:
        for path in ("/metrics", "/api/runs", "/tasks", "/runs/1"):
            refused = get(served.url + path)
            assert refused.status_code == 401, path
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            wrong = get(served.url + path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = get(served.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert right.status_code == 200, path
        assert get(served.url + "/healthz").status_code == 503
        # A browser: the token in the address becomes a cookie, and the address drops it.
        browser = requests.Session()
        first = browser.get(served.url + "/tasks", params={"token": TOKEN}, allow_redirects=False, timeout=30)
        assert first.status_code == 303 and first.headers["Location"] == "/tasks"
        assert "HttpOnly" in first.headers["Set-Cookie"]
        assert browser.get(served.url + "/tasks", timeout=30).status_code == 200
    assert TOKEN not in served.stdout + served.stderr


def test_loopback_is_quiet_and_any_other_address_warns(tmp_path: Path, clean_env: None) -> None:
    root = project(tmp_path / "p")
    with serving(root) as served:
        assert get(served.url + "/api/runs").json() == {"runs": []}
    assert served.first_line.startswith(f"serving {root / '.orchestrator'} on http://127.0.0.1:")
    assert served.stderr == ""
    with serving(root, "--host", "0.0.0.0") as served:
        port = served.url.rsplit(":", 1)[1]
        assert get(f"http://127.0.0.1:{port}/api/runs").status_code == 200
    assert served.stderr.splitlines() == [
        f"orchestrator: warning: serving on 0.0.0.0:{port} with no authentication: anyone who can reach it "
        "sees the runs, costs and agent transcripts; set serve_token (ORCHESTRATOR_SERVE_TOKEN) or bind to "
        "127.0.0.1"
    ]


def test_a_bad_port_or_host_is_one_line(tmp_path: Path, clean_env: None) -> None:
    root = project(tmp_path / "p")

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest_orchestrator", "serve", *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )

    done = serve("--port", "70000")
    assert done.returncode == 2 and "expected a port number from 0 to 65535, not '70000'" in done.stderr
    done = serve("--host", "no-such-host.invalid", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.startswith("orchestrator: cannot listen on no-such-host.invalid:0: unknown host")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("--port", str(port))
    assert (done.returncode, done.stderr) == (
        1,
        f"orchestrator: cannot listen on 127.0.0.1:{port}: Address already in use\n",
    )
    (root / "orchestrator.yaml").write_text("serve:\n  port: http\n")
    done = serve()
    assert (done.returncode, done.stderr) == (
        2,
        "orchestrator: orchestrator.yaml:2: port must be a whole number from 0 to 65535, not 'http'\n",
    )


# ---- real clients: Prometheus and Chromium ----


def _prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        require("Prometheus", "install Debian's `prometheus` package (.ci/setup does)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: orchestrator\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    process = subprocess.Popen(
        [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "prometheus.log", "w"),
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    answer = get(prometheus + "/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def test_prometheus_scrapes_the_completed_tasks_of_a_real_run(
    tmp_path: Path,
    agent_env: None,
    messages_server: Callable[..., Any],
    agent_sandbox: Callable[..., Any],
) -> None:
    server = messages_server(*[reply("STATUS: complete") for _ in range(3)])
    sandbox = agent_sandbox(server)
    root = project(tmp_path / "p")
    (root / "plans").mkdir()
    (root / "plans" / "p.md").write_text(
        "# Milestone\n\n"
        + "".join(f"## Task 1.{n}: Step {n}\n\n**Description:**\nDo it.\n\n" for n in (1, 2, 3))
    )
    with serving(root) as served:
        target = served.url.removeprefix("http://")
        prometheus = _prometheus(tmp_path, target)
        address = next(prometheus)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "plans/p.md", *task_run_args(sandbox)],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            store = StateStore.read(root / ".orchestrator")
            assert store is not None
            completed = store.conn.execute(
                "SELECT COUNT(*) FROM attempts WHERE status = 'completed'"
            ).fetchone()[0]
            attempt_ids = [r[0] for r in store.conn.execute("SELECT id FROM attempts")]
            store.close()
            assert completed == 3
            deadline = time.monotonic() + 60
            while True:
                found = query(address, 'orchestrator_tasks_total{status="completed"}')
                if found and float(found[0]["value"][1]) == completed:
                    break
                assert time.monotonic() < deadline, (
                    f"Prometheus never saw {completed} completed tasks: {found}"
                )
                time.sleep(0.5)
            assert found[0]["metric"]["job"] == "orchestrator"
            assert query(address, "orchestrator_task_duration_seconds_count")[0]["value"][1] == "3"
        finally:
            prometheus.close()
    # Each attempt's transcript was written as the events arrived, redacted.
    for attempt_id in attempt_ids:
        events = read_transcript(root / ".orchestrator", attempt_id)
        assert events is not None
        assert events[0]["type"] == "system" and events[-1]["type"] == "result"
        text = transcript_path(root / ".orchestrator", attempt_id).read_text()
        assert AGENT_API_KEY not in text and AGENT_GH_TOKEN not in text


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        require("Chromium", "install Debian's `chromium` package (.ci/setup does)")
    return subprocess.run(
        [
            str(binary),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


# A title that would run a script, or close the page's embedded document, if it were read as HTML.
HOSTILE = '</script><script>document.title="owned"</script><img src=x onerror="document.title=1">'


def _quiet_now(span: float, attempts: int) -> float:
    """A seeding moment with no attempt ending within two minutes after the hour window's start.

    The page is read a few seconds after seeding: an attempt on the window's edge would leave it.
    """
    now = time.time()
    step = span / (attempts + 1)
    for back in range(int(step)):
        ends = (now - back - span + step * (i + 1) for i in range(attempts))
        if not any(-5 <= end - (now - 3600) <= 120 for end in ends):
            return now - back
    raise AssertionError("no quiet moment")


def test_chromium_shows_the_dashboard_of_a_state_with_runs(tmp_path: Path, clean_env: None) -> None:
    root = project(tmp_path / "p", "serve:\n  health_cache: 60\n")
    state_dir = root / ".orchestrator"
    now = _quiet_now(2 * 86400, 400)
    seed(state_dir, 400, days=2, runs=4, now=now)
    add_queue(state_dir, pending=3)
    add_health(state_dir, {"docker": "ok", "disk_space": "degraded"}, "degraded")
    store = StateStore.open(state_dir)
    with store.writing() as conn:
        conn.execute("UPDATE attempts SET title = ? WHERE id = 400", (HOSTILE,))
        conn.execute("UPDATE queue SET title = ? WHERE task_id = '9.1'", (HOSTILE,))
    latest = store.conn.execute(
        "SELECT id, task_id, status FROM attempts ORDER BY ended_at DESC LIMIT 10"
    ).fetchall()
    newest = store.conn.execute("SELECT ended_at - started_at FROM attempts WHERE id = 400").fetchone()[0]
    hour = [
        r[0] for r in store.conn.execute("SELECT status FROM attempts WHERE ended_at >= ?", (now - 3600,))
    ]
    store.close()
    writer = TranscriptWriter(transcript_path(state_dir, 400), 100_000)
    writer.write({"type": "system", "subtype": "init", "model": "claude-opus", "tools": ["Write", "Bash"]})
    writer.write(
        {
            "type": "assistant",
            "message": {
                "content": [{"type": "tool_use", "name": "Write", "input": {"file_path": "hello.py"}}]
            },
        }
    )
    writer.write({"type": "result", "subtype": "success", "result": "STATUS: complete", "num_turns": 2})
    writer.close()
    with serving(root) as served:
        shot = tmp_path / "dashboard.png"
        done = chromium(
            "--screenshot=" + str(shot), "--window-size=1400,2400", served.url + "/", profile=tmp_path / "c1"
        )
        assert shot.exists() and shot.stat().st_size > 10_000, done.stderr[-2000:]
        dom = chromium("--dump-dom", "--virtual-time-budget=5000", served.url + "/", profile=tmp_path / "c2")
        attempt = chromium("--dump-dom", served.url + "/attempts/400", profile=tmp_path / "c3")
    page = " ".join(re.sub(r"<[^>]+>", " ", dom.stdout).split())
    assert "Tasks and cost per hour" in page
    # The chart's window is the whole hours of the last 24 hours.
    store = StateStore.read(state_dir)
    assert store is not None
    since = (time.time() - 86400) // 3600 * 3600
    ended = store.conn.execute("SELECT COUNT(*) FROM attempts WHERE ended_at >= ?", (since,)).fetchone()[0]
    store.close()
    assert 0 < ended < 400 and f"{ended} attempts ended" in page
    for run in (1, 2, 3, 4):
        assert f"run {run}" in page
    # The script ran: it polled /api/status and stamped the time.
    assert re.search(r"updated \d", page)
    assert "<svg" in dom.stdout and "<rect" in dom.stdout
    transcript = re.sub(r"<[^>]+>", " ", attempt.stdout)
    assert "STATUS: complete" in transcript and "Write" in transcript and "hello.py" in transcript
    # The terminal dashboard's content, in its words: the state, the last hour's line from the rows.
    # What the script drew, without the document it drew it from.
    drawn = re.sub(r"<script\b.*?</script>", " ", dom.stdout, flags=re.S)
    text = html.unescape(" ".join(re.sub(r"<[^>]+>", " ", drawn).split()))
    assert "STOPPED" in text and "nothing is running" in text
    assert "degraded (health," in text and "not ok: disk_space" in text
    finished = sum(s in FINISHED for s in hour)
    completed, failed = hour.count("completed"), sum(s in FAILED for s in hour)
    assert finished > 0
    assert (
        f"{finished} finished ({completed} completed, {failed} failed), {completed:.1f} tasks/h, "
        f"error rate {failed / finished:.1%}"
    ) in text
    assert "Queue (3 pending)" in text and re.search(r"9\.0 .*9\.1 .*9\.2 ", text)
    assert "Latest 10 attempts" in text
    shown = text[text.index("Latest 10 attempts") : text.index("Tasks and cost per hour")]
    for attempt_id, task_id, status in latest:
        assert f" {task_id} " in shown and f" {status} " in shown
        # Each links to its transcript.
        assert f'href="/attempts/{attempt_id}"' in dom.stdout
    assert f" {span(newest)} " in shown and re.search(r" \d+m ", shown)
    # The hostile title is text: shown as written, in the latest attempts and the queue, never run.
    assert text.count(HOSTILE) >= 2
    assert "owned" not in re.search(r"<title>(.*?)</title>", dom.stdout, re.S)[1]  # type: ignore[index]
    assert "<img" not in dom.stdout and "<script>document" not in dom.stdout
    # Kept for a person to look at (`--basetemp` keeps it after the run).
    print(f"screenshot: {shot}")
