"""The routes of `orchestrator serve`: /healthz, /metrics, the JSON API and the web dashboard.

Plain Python on the standard library's `ThreadingHTTPServer`: one small process on one state
database, read-only. Each request opens its own read-only connection (a connection belongs
to one thread), so serving never disturbs a run that writes.
"""

from __future__ import annotations

import hmac
import json
import re
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..redact import redact
from ..state import StateError
from ..transcripts import TRUNCATED
from . import page
from .healthz import HealthCache

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..priority import QueueSpec
    from ..state import StateStore

JSON = "application/json"
HTML = "text/html; charset=utf-8"
TOKEN_COOKIE = "orchestrator_token"
# The pages load nothing from elsewhere, and the browser is told so.
PAGE_POLICY = (
    "default-src 'none'; connect-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'self'"
)
# The chart's windows, as the page offers them.
WINDOWS = ("24h", "7d", "30d")


@dataclass
class Response:
    """What a route answers."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class BadRequest(Exception):
    """The request cannot be answered as asked; the message says why, in one line."""


class NotFound(Exception):
    """No such page, run or attempt."""


def _json(data: Any, status: int = 200) -> Response:
    return Response(status, JSON, json.dumps(data, indent=1, default=str).encode("utf-8"))


class App:
    """Answers requests from the state database under `state_dir` and the health cache."""

    def __init__(
        self,
        state_dir: Path,
        health: HealthCache,
        token: str = "",
        *,
        stale_after: float | None = None,
        queue_spec: QueueSpec | None = None,
        root: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.health = health
        self.token = token
        # The freeze threshold: a loop, run or attempt silent for longer counts as dead.
        self.stale_after = stale_after
        # As `orchestrator queue` reads the queue: the age boost, and where the plans are.
        self.queue_spec = queue_spec
        self.root = root
        self._registry: Any = None

    # ---- dispatch ----

    def handle(self, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> Response:
        """The response to a GET of `path`."""
        try:
            if path == "/healthz":
                return self.healthz(query, headers)
            if self.token:
                refused = self._authorize(path, query, headers)
                if refused is not None:
                    return refused
            return self._route(path, query, headers)
        except BadRequest as exc:
            if path.startswith("/api/"):
                return _json({"error": str(exc)}, 400)
            return Response(400, "text/plain; charset=utf-8", f"{exc}\n".encode())
        except NotFound as exc:
            if path.startswith("/api/"):
                return _json({"error": str(exc)}, 404)
            return Response(404, HTML, page.not_found(str(exc)).encode("utf-8"))
        except StateError as exc:
            # The state database cannot be read (corrupt, unreadable, too new): not a bug of the
            # server, and not for ever; the message says what to do.
            message = redact(str(exc))
            if path.startswith("/api/"):
                return _json({"error": message}, 503)
            return Response(503, "text/plain; charset=utf-8", f"orchestrator: {message}\n".encode())

    def _authorize(self, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> Response | None:
        given = ""
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        else:
            cookies = dict(
                part.strip().split("=", 1) for part in headers.get("cookie", "").split(";") if "=" in part
            )
            given = urllib.parse.unquote(cookies.get(TOKEN_COOKIE, ""))
        if given and hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        offered = query.get("token", "")
        if offered and hmac.compare_digest(offered.encode(), self.token.encode()):
            # A browser cannot send a header on navigation: the token in the address becomes a
            # cookie once, and the address loses it.
            rest = urllib.parse.urlencode({k: v for k, v in query.items() if k != "token"})
            return Response(
                303,
                "text/plain; charset=utf-8",
                b"",
                {
                    "Location": path + (f"?{rest}" if rest else ""),
                    "Set-Cookie": f"{TOKEN_COOKIE}={urllib.parse.quote(self.token)}; HttpOnly; "
                    "SameSite=Strict; Path=/",
                },
            )
        return Response(
            401,
            "text/plain; charset=utf-8",
            b"unauthorized: send the serve_token as `Authorization: Bearer TOKEN` (or open /?token=TOKEN)\n",
            {"WWW-Authenticate": 'Bearer realm="orchestrator"'},
        )

    def _route(self, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> Response:
        if path == "/metrics":
            return self.metrics(headers)
        if path == "/":
            return self.dashboard(query)
        if path.startswith("/api/"):
            return _json(self.api(path[len("/api") :], query))
        if path == "/tasks":
            with self.state() as store:
                plan = query.get("plan") or None
                return self._html(page.tasks_page(_tasks(store, plan), plan))
        found = re.fullmatch(r"/runs/(\d+)", path)
        if found:
            with self.state() as store:
                return self._html(page.run_page(_run(store, int(found[1]))))
        found = re.fullmatch(r"/attempts/(\d+)", path)
        if found:
            with self.state() as store:
                attempt = _attempt(store, int(found[1]))
            return self._html(page.attempt_page(attempt, self._transcript(int(found[1]))))
        raise NotFound(f"no page {path}")

    @staticmethod
    def _html(text: str) -> Response:
        return Response(200, HTML, text.encode("utf-8"), {"Content-Security-Policy": PAGE_POLICY})

    @contextmanager
    def state(self) -> Iterator[StateStore]:
        """A read-only connection to the state database; an empty one when there is no state yet."""
        from ..state import StateStore

        store = StateStore.read(self.state_dir) or StateStore.empty()
        try:
            yield store
        finally:
            store.close()

    # ---- /healthz ----

    def healthz(self, query: Mapping[str, str], headers: Mapping[str, str]) -> Response:
        """The health document (JSON, or Prometheus text when asked), 200 or 503."""
        wanted = query.get("format", "")
        if wanted not in ("", "json", "prometheus"):
            raise BadRequest(f"unknown format {wanted!r}: json or prometheus")
        health = self.health.get()
        accept = headers.get("accept", "")
        if wanted == "prometheus" or (not wanted and _prefers_text(accept)):
            from prometheus_client.exposition import choose_encoder

            encoder, content_type = choose_encoder(accept)
            return Response(health.http_status, content_type, encoder(_Families(self._health_families())))
        return Response(health.http_status, JSON, health.body)

    def _health_families(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from .collector import CHECK_VALUES

        health = self.health.latest
        yield CounterMetricFamily(
            "orchestrator_serve_health_runs_total",
            "Health check runs this server started (one per cache miss, however many requests waited on it).",
            value=self.health.runs,
        )
        if health is None:
            return
        status = GaugeMetricFamily(
            "orchestrator_health_status", "The overall health: 1 for the current status.", labels=["status"]
        )
        for name in ("healthy", "degraded", "unhealthy", "critical"):
            status.add_metric([name], 1.0 if health.status == name else 0.0)
        checks = GaugeMetricFamily(
            "orchestrator_health_check_status",
            "Each health check: 1 passed, 0 failed (skipped checks are left out).",
            labels=["check"],
        )
        durations = GaugeMetricFamily(
            "orchestrator_health_check_duration_seconds", "How long each check took.", labels=["check"]
        )
        for name, check in (health.document.get("checks") or {}).items():
            value = CHECK_VALUES.get(str(check.get("status")))
            if value is not None:
                checks.add_metric([name], value)
            durations.add_metric([name], float(check.get("duration") or 0.0))
        yield from (status, checks, durations)

    # ---- /metrics ----

    def metrics(self, headers: Mapping[str, str]) -> Response:
        """The Prometheus exposition of the state database, in the format the scraper asks for."""
        from prometheus_client.exposition import choose_encoder

        if self._registry is None:
            from prometheus_client import CollectorRegistry

            from .collector import StateCollector

            # A private registry: nothing of this process's default metrics, only the state's.
            registry = CollectorRegistry(auto_describe=False)
            registry.register(StateCollector(self.state_dir, self._serve_families))
            self._registry = registry
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        return Response(200, content_type, encoder(self._registry))

    def _serve_families(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        yield CounterMetricFamily(
            "orchestrator_serve_health_runs_total",
            "Health check runs this server started (one per cache miss, however many requests waited on it).",
            value=self.health.runs,
        )

    # ---- /api ----

    def api(self, path: str, query: Mapping[str, str]) -> Any:
        """The JSON document of an /api path (without its /api prefix)."""
        now = time.time()
        if path == "/status":
            return self.status(now)
        if path == "/queue":
            from ..views.queue import snapshot as queue_snapshot

            with self.state() as store:
                verbose = query.get("verbose") in ("1", "true")
                return queue_snapshot(
                    store, now, verbose, spec=self.queue_spec, root=self.root, stale_after=self.stale_after
                ).as_dict()
        if path == "/metrics":
            since = _since(query.get("since", "24h"), now)
            from ..metrics import window
            from ..views.metrics import UnknownPlan, document, read

            try:
                numbers = read(self.state_dir, since, now, query.get("plan") or None)
            except UnknownPlan as exc:
                raise BadRequest(str(exc)) from None
            if numbers is None:
                with self.state() as store:
                    numbers = window(store.conn, since, now, query.get("plan") or None)
            return document(numbers)
        if path == "/hourly":
            from ..views.runs import hourly

            since = _since(query.get("since", "24h"), now)
            with self.state() as store:
                return {"since": _iso(since), "until": _iso(now), "hours": hourly(store, since, now)}
        if path == "/runs":
            with self.state() as store:
                from ..views.runs import runs

                return {"runs": runs(store, _limit(query))}
        if path == "/tasks":
            with self.state() as store:
                return {"tasks": _tasks(store, query.get("plan") or None)}
        found = re.fullmatch(r"/runs/(\d+)", path)
        if found:
            with self.state() as store:
                return _run(store, int(found[1]))
        found = re.fullmatch(r"/attempts/(\d+)(/transcript)?", path)
        if found:
            with self.state() as store:
                attempt = _attempt(store, int(found[1]))
            if not found[2]:
                return attempt
            events = self._transcript(int(found[1]))
            return {
                "attempt": attempt,
                "events": events or [],
                "stored": events is not None,
                "truncated": events is not None and any(e.get("type") == TRUNCATED for e in events[-1:]),
            }
        raise NotFound(f"no API path /api{path}")

    def status(self, now: float) -> Any:
        """The dashboard's content: what `orchestrator dashboard` shows."""
        from ..state import StateStore
        from ..views.dashboard import snapshot as dashboard_snapshot

        store = StateStore.read(self.state_dir)
        try:
            if self.stale_after is None:
                return dashboard_snapshot(store, now).as_dict()
            return dashboard_snapshot(store, now, stale_after=self.stale_after).as_dict()
        finally:
            if store is not None:
                store.close()

    def _transcript(self, attempt_id: int) -> list[dict[str, Any]] | None:
        from ..transcripts import read_transcript

        return read_transcript(self.state_dir, attempt_id)

    # ---- / ----

    def dashboard(self, query: Mapping[str, str]) -> Response:
        """The web dashboard: the terminal dashboard's content, the chart, the runs."""
        chosen = query.get("window", "24h")
        if chosen not in WINDOWS:
            raise BadRequest(f"unknown window {chosen!r}: one of {', '.join(WINDOWS)}")
        now = time.time()
        since = _since(chosen, now)
        from ..views.runs import hourly, runs

        with self.state() as store:
            hours = hourly(store, since, now)
            recent = runs(store, 20)
        return self._html(page.dashboard_page(self.status(now), hours, recent, chosen, WINDOWS))


class _Families:
    """A collector of ready families, for the exposition encoders."""

    def __init__(self, families: Iterator[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _prefers_text(accept: str) -> bool:
    """Whether an Accept header asks for Prometheus text rather than JSON."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return any(k in ("text/plain", "application/openmetrics-text") for k in kinds) and JSON not in kinds


def _since(raw: str, now: float) -> float:
    from ..views.terminal import parse_since

    try:
        return parse_since(raw, now)
    except ValueError as exc:
        raise BadRequest(f"since: {exc}") from None


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise BadRequest(f"limit must be a whole number from 1 to 1000, not {raw!r}")
    return int(raw)


def _iso(at: float) -> str | None:
    from ..views.terminal import iso

    return iso(at)


def _tasks(store: StateStore, plan: str | None) -> list[dict[str, Any]]:
    from ..views.runs import tasks

    return tasks(store, plan)


def _run(store: StateStore, run_id: int) -> dict[str, Any]:
    from ..views.runs import run

    found = run(store, run_id)
    if found is None:
        raise NotFound(f"no run {run_id}")
    return found


def _attempt(store: StateStore, attempt_id: int) -> dict[str, Any]:
    from ..views.runs import attempt

    found = attempt(store, attempt_id)
    if found is None:
        raise NotFound(f"no attempt {attempt_id}")
    return found


# ---- the HTTP server ----


class Server(ThreadingHTTPServer):
    """A threading HTTP server with room for a burst of connections (a cold /healthz stampede)."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops a burst's connections into SYN retries.
    request_queue_size = 256


# Seconds a connection may stay silent, in the middle of a request or kept alive between two:
# a client that never finishes its request would otherwise hold a thread for good.
REQUEST_TIMEOUT = 30.0
_CHUNK = 64 * 1024


def make_server(app: App, host: str, port: int, request_timeout: float = REQUEST_TIMEOUT) -> Server:
    """Bind `app` to host:port (0 picks a free port); OSError when the address cannot be used."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "orchestrator"
        protocol_version = "HTTP/1.1"
        timeout = request_timeout
        # Headers and body leave in two writes: with Nagle's algorithm the second waits for the
        # client's delayed ACK, 40 ms a response on a kept-alive connection.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                response = app.handle(parsed.path, query, headers)
            except Exception as exc:  # one line for the client, never a traceback
                message = redact(f"{type(exc).__name__}: {exc}")
                response = Response(500, "text/plain; charset=utf-8", f"internal error: {message}\n".encode())
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            # In pieces: the socket's timeout bounds each write, and one write of a whole
            # transcript would cut off a slow but steady client.
            body = memoryview(response.body)
            for at in range(0, len(body), _CHUNK):
                self.wfile.write(body[at : at + _CHUNK])

        def log_message(self, format: str, *args: Any) -> None:
            # Access logs would carry ?token=...; errors reach the client instead.
            return

    if ":" in host:
        import socket

        class Server6(Server):
            address_family = socket.AF_INET6

        return Server6((host.strip("[]"), port), Handler)
    return Server((host, port), Handler)
