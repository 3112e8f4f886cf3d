"""Webhook receivers on loopback for tests: one that records what arrived, one that never answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Delivery:
    """One POST as it arrived: its headers, raw body and the body parsed."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def event(self) -> str:
        return str(self.payload["event"])


class Receiver:
    """An HTTP server that records every POST and answers with the next of `statuses` (the last repeats)."""

    def __init__(self, statuses: tuple[int, ...] = (200,)) -> None:
        self.statuses = list(statuses)
        self.requests: list[Delivery] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Delivery(self.path, dict(self.headers.items()), body))
                    index = min(len(receiver.requests), len(receiver.statuses)) - 1
                    status = receiver.statuses[index]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[Delivery]:
        """The requests answered with a 2xx, in order of arrival."""
        with self._lock:
            answered = [
                r for n, r in enumerate(self.requests) if self.statuses[min(n, len(self.statuses) - 1)] < 300
            ]
        return answered

    def events(self, predicate: Callable[[Delivery], bool] = lambda d: True) -> list[str]:
        """The event names delivered, in order."""
        return [d.event for d in self.delivered() if predicate(d)]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """At least `count` delivered requests, waited for up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.delivered()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} deliveries expected, got {[d.event for d in self.delivered()]}"
                )
            time.sleep(0.02)
        return self.delivered()


class DeadReceiver:
    """A port that accepts connections and never answers, nor closes them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._stopped = False

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def __enter__(self) -> DeadReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped = True
        self.sock.close()
        for conn in self.accepted:
            conn.close()
