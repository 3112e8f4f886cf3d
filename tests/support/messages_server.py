"""Scripted Anthropic Messages API server for end-to-end tests of the real Claude Code CLI.

Point the CLI at it with ``ANTHROPIC_BASE_URL=server.url`` and any ``ANTHROPIC_API_KEY``; every
conversation request (one ``POST /v1/messages``) consumes the next scripted step.

What Claude Code 2.1.197 does in ``-p`` mode (observed, with or without
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``):

* Traffic: one ``HEAD /`` connectivity check at startup (answered 200, consumes no step), then
  one ``POST /v1/messages?beta=true`` with ``"stream": true`` per model call. No token counting,
  quota probe or title request was seen; should a ``/v1/messages/count_tokens`` call or a
  ``max_tokens: 1`` probe appear, it is answered without consuming a step (see ``side_requests``).
* Retries are POSTs too, so each one consumes a step. 500, 529, 429, 401, 408, 409 and dropped
  connections are retried ``CLAUDE_CODE_MAX_RETRIES`` times (default 10, clamped to 15) with
  backoff of about 0.5, 1, 2, 4, 8, 16, 32, 32... s plus jitter (about 3 min in all by default);
  a ``retry-after`` header replaces the backoff, and ``x-should-retry: false`` stops retrying.
  400 is never retried, so an exhausted script answers 400. ``API_TIMEOUT_MS`` is the
  per-request timeout (default 600000).
* The ``result`` event's ``usage`` is the sum over successful calls of the ``message_delta``
  usage (its ``output_tokens`` replaces the provisional count in ``message_start``).
  ``total_cost_usd`` is priced from the model the CLI *requested*, not the one echoed back:
  the default ``claude-opus-4-8`` and unknown names cost $5/$25 per MTok input/output,
  $0.50 cache read, $6.25 cache write; ``--model sonnet`` $3/$15; ``--model haiku`` $1/$5.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Usage:
    """Token counts the server reports for one model call."""

    input_tokens: int = 100
    output_tokens: int = 20
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the usage in Anthropic wire format."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
        }


@dataclass(frozen=True)
class Reply:
    """A final assistant text message (stop_reason end_turn)."""

    text: str
    usage: Usage = field(default_factory=Usage)
    delay: float = 0.0


@dataclass(frozen=True)
class ToolUse:
    """An assistant message ending in one tool_use block (stop_reason tool_use)."""

    name: str
    input: dict[str, Any]
    id: str | None = None
    text: str | None = None
    usage: Usage = field(default_factory=Usage)
    delay: float = 0.0


@dataclass(frozen=True)
class Error:
    """An HTTP error answer with an Anthropic error body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Hang:
    """Accept the request, send nothing for ``seconds``, then drop the connection."""

    seconds: float


Step = Reply | ToolUse | Error | Hang


@dataclass(frozen=True)
class Received:
    """One request as it reached the server (API key headers removed)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    at: float


_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

UsageLike = Usage | dict[str, int] | None


def _as_usage(usage: UsageLike) -> Usage:
    """Accept a Usage, a plain dict of token counts, or None for the default."""
    if usage is None:
        return Usage()
    if isinstance(usage, Usage):
        return usage
    return Usage(**usage)


def _error_body(status: int, message: str) -> dict[str, Any]:
    """Build an Anthropic error body."""
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def reply(text: str, *, usage: UsageLike = None, delay: float = 0.0) -> Reply:
    """Build a final text answer step."""
    return Reply(text=text, usage=_as_usage(usage), delay=delay)


def tool_use(
    name: str,
    input: dict[str, Any],
    id: str | None = None,
    *,
    text: str | None = None,
    usage: UsageLike = None,
    delay: float = 0.0,
) -> ToolUse:
    """Build a tool_use step, optionally preceded by a text block."""
    return ToolUse(name=name, input=input, id=id, text=text, usage=_as_usage(usage), delay=delay)


def error(
    status: int,
    *,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    message: str | None = None,
    should_retry: bool | None = None,
    delay: float = 0.0,
) -> Error:
    """Build an HTTP error step; ``should_retry`` sets the x-should-retry header the CLI obeys."""
    if body is None:
        kind = _ERROR_TYPES.get(status, "api_error")
        body = _error_body(status, message or f"scripted {status} {kind}")
    all_headers = dict(headers or {})
    if should_retry is not None:
        all_headers["x-should-retry"] = "true" if should_retry else "false"
    return Error(status=status, body=body, headers=all_headers, delay=delay)


def hang(seconds: float) -> Hang:
    """Build a step that answers nothing for ``seconds`` and then drops the connection."""
    return Hang(seconds=seconds)


def is_quota_probe(body: dict[str, Any]) -> bool:
    """Tell whether a request is a one-token quota probe rather than a conversation turn."""
    return body.get("max_tokens") == 1


def _sse(event: str, data: dict[str, Any]) -> bytes:
    """Encode one Server-Sent Event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class _Server(ThreadingHTTPServer):
    """HTTP server that carries a back-reference to its MessagesServer."""

    daemon_threads = True
    owner: MessagesServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up: the CLI drops connections on timeouts and at exit."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the owning MessagesServer."""

    # HTTP/1.1 lets the CLI reuse its keep-alive connection across turns.
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_HEAD(self) -> None:
        """Answer the CLI's startup connectivity check."""
        self.server.owner._record(self, None)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        """Answer 404: the CLI needs nothing served by GET."""
        self.server.owner._record(self, None)
        self.send_json(404, _error_body(404, f"MessagesServer does not serve GET {self.path}"))

    def do_POST(self) -> None:
        """Dispatch a Messages API call."""
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self.server.owner._record(self, None)
            self.send_json(400, _error_body(400, "request body is not JSON"))
            return
        self.server.owner._record(self, body)
        self.server.owner._handle(self, body)

    def send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        """Send a complete JSON response."""
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("request-id", "req_test")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, events: Iterable[bytes]) -> None:
        """Send an event stream with chunked encoding, flushing each event as the API does."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", "req_test")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for chunk in events:
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class MessagesServer:
    """Loopback Anthropic Messages API whose answers follow a script of steps."""

    def __init__(
        self,
        script: Iterable[Step] = (),
        *,
        model: str | None = None,
        is_side_request: Callable[[dict[str, Any]], bool] = is_quota_probe,
        respond: Callable[[dict[str, Any]], Step] | None = None,
    ) -> None:
        """Bind 127.0.0.1 on an ephemeral port and serve; ``model`` overrides the echoed name.

        ``respond`` picks each answer from the request instead of the script, for agents that
        run at the same time and whose calls interleave in any order.
        """
        self._lock = threading.Lock()
        self._script: list[Step] = list(script)
        self._requests: list[dict[str, Any]] = []
        self._side_requests: list[dict[str, Any]] = []
        self._log: list[Received] = []
        self._unscripted = 0
        self._stop = threading.Event()
        self._model = model
        self._is_side_request = is_side_request
        self._respond = respond
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="messages-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL to put in ANTHROPIC_BASE_URL."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Bodies of the POST /v1/messages calls that consumed (or lacked) a step, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def side_requests(self) -> list[dict[str, Any]]:
        """Bodies of POSTs answered without consuming a step (token counting, quota probes)."""
        with self._lock:
            return list(self._side_requests)

    @property
    def log(self) -> list[Received]:
        """Every request received, any method and path, with headers and arrival time."""
        with self._lock:
            return list(self._log)

    @property
    def remaining(self) -> int:
        """Number of scripted steps not yet consumed."""
        with self._lock:
            return len(self._script)

    @property
    def unscripted(self) -> int:
        """Number of calls that arrived after the script ran out."""
        with self._lock:
            return self._unscripted

    def add(self, *steps: Step) -> None:
        """Append steps to the script, e.g. before a --resume run."""
        with self._lock:
            self._script.extend(steps)

    def close(self) -> None:
        """Stop serving and release handlers that are hanging or delaying."""
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MessagesServer:
        """Return the already running server."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the server."""
        self.close()

    def _record(self, handler: _Handler, body: dict[str, Any] | None) -> None:
        """Append a request to the log."""
        headers = {key.lower(): value for key, value in handler.headers.items()}
        # Tests may print the log; keep whatever key they used out of it.
        headers.pop("x-api-key", None)
        headers.pop("authorization", None)
        entry = Received(handler.command, handler.path, headers, body, time.monotonic())
        with self._lock:
            self._log.append(entry)

    def _handle(self, handler: _Handler, body: dict[str, Any]) -> None:
        """Answer one POST, consuming a step if it is a conversation call."""
        route = handler.path.split("?", 1)[0].rstrip("/")
        if route == "/v1/messages/count_tokens":
            with self._lock:
                self._side_requests.append(body)
            handler.send_json(200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
            return
        if route != "/v1/messages":
            handler.send_json(404, _error_body(404, f"MessagesServer does not serve {route}"))
            return
        if self._is_side_request(body):
            with self._lock:
                self._side_requests.append(body)
            self._answer(handler, body, reply("ok", usage=Usage(1, 1)), 0)
            return
        with self._lock:
            self._requests.append(body)
            call = len(self._requests)
            step: Step
            if self._respond is not None:
                step = self._respond(body)
            elif self._script:
                step = self._script.pop(0)
            else:
                self._unscripted += 1
                # 400 is never retried by the CLI, so the run fails at once instead of backing off.
                step = error(400, message=f"MessagesServer script exhausted: no step for call {call}")
        self._answer(handler, body, step, call)

    def _answer(self, handler: _Handler, body: dict[str, Any], step: Step, call: int) -> None:
        """Write the answer for one step."""
        if isinstance(step, Hang):
            self._stop.wait(step.seconds)
            # Closing without a response looks to the CLI like a stalled upstream (ECONNRESET).
            handler.close_connection = True
            return
        if step.delay:
            self._stop.wait(step.delay)
        if isinstance(step, Error):
            handler.send_json(step.status, step.body, step.headers)
            return
        message = self._message(body, step, call)
        if body.get("stream"):
            handler.send_sse(self._events(message, step.usage))
        else:
            handler.send_json(200, message)

    def _message(self, body: dict[str, Any], step: Reply | ToolUse, call: int) -> dict[str, Any]:
        """Build the complete assistant message for a step."""
        content: list[dict[str, Any]] = []
        if step.text:
            content.append({"type": "text", "text": step.text})
        if isinstance(step, ToolUse):
            tool_id = step.id or f"toolu_test_{call:04d}"
            content.append({"type": "tool_use", "id": tool_id, "name": step.name, "input": step.input})
        return {
            "id": f"msg_test_{call:04d}",
            "type": "message",
            "role": "assistant",
            # The CLI prices by the model it asked for; the echoed name only shows in events.
            "model": self._model or body.get("model") or "claude-test",
            "content": content,
            "stop_reason": "tool_use" if isinstance(step, ToolUse) else "end_turn",
            "stop_sequence": None,
            "usage": step.usage.as_dict(),
        }

    def _events(self, message: dict[str, Any], usage: Usage) -> Iterator[bytes]:
        """Yield the SSE events the real API sends for ``message``."""
        # Like the real API: input/cache counts up front, a provisional output count of 1.
        start_usage = usage.as_dict() | {"output_tokens": min(1, usage.output_tokens)}
        start = message | {"content": [], "stop_reason": None, "usage": start_usage}
        yield _sse("message_start", {"type": "message_start", "message": start})
        for index, block in enumerate(message["content"]):
            delta: dict[str, Any]
            if block["type"] == "text":
                empty: dict[str, Any] = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                empty = block | {"input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
            yield _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": usage.as_dict(),
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})
