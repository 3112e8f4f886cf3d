"""Scripted GitHub REST API server on loopback, for the bug tracker's tests.

It answers the three calls of the issue tracker as GitHub does (shapes from the REST reference,
API version 2022-11-28):

* ``POST /repos/{owner}/{repo}/issues`` -> 201 with the new issue (``number``, ``html_url``, ...);
* ``PATCH /repos/{owner}/{repo}/issues/{n}`` -> 200 with the issue, 404 when it does not exist;
* ``POST /repos/{owner}/{repo}/issues/{n}/comments`` -> 201 with the comment.

Every request is recorded as it arrived: method, path, headers, JSON body. ``fail(status,
message)`` scripts the next answers as GitHub's errors (``{"message": ..., "documentation_url":
...}``).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as it reached the server."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes


class GitHubServer:
    """A thread serving the scripted API on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.issues: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[str]] = {}
        self._errors: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._http = _Server(("127.0.0.1", 0), _Handler)
        self._http.owner = self
        # A short poll interval makes shutdown() quick at teardown.
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        """The API root, as `api_url` of the tracker."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(self, status: int, message: str, times: int = 1, errors: list[Any] | None = None) -> None:
        """Answer the next `times` requests with GitHub's error `status`, `message` and `errors` (422)."""
        body: dict[str, Any] = {"message": message, "documentation_url": "https://docs.github.com/rest"}
        if errors is not None:
            body["errors"] = errors
        self._errors.extend([(status, body)] * times)

    def __enter__(self) -> GitHubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self._errors:
                return self._errors.pop(0)
            issues = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues", path)
            one = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)", path)
            comments = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", path)
            if method == "POST" and issues:
                number = len(self.issues) + 1
                issue = {
                    "number": number,
                    "html_url": f"https://github.com/{issues.group(1)}/issues/{number}",
                    "url": f"{self.url}/repos/{issues.group(1)}/issues/{number}",
                    "title": body["title"],
                    "body": body.get("body"),
                    "labels": [{"name": name} for name in body.get("labels", [])],
                    "state": "open",
                }
                self.issues[number] = issue
                return 201, issue
            if method == "PATCH" and one:
                found = self.issues.get(int(one.group(2)))
                if found is None:
                    return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
                found.update({k: v for k, v in body.items() if k in ("title", "body", "state")})
                return 200, found
            if method == "POST" and comments:
                number = int(comments.group(2))
                if number not in self.issues:
                    return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
                self.comments.setdefault(number, []).append(body["body"])
                html = f"{self.issues[number]['html_url']}#issuecomment-{len(self.comments[number])}"
                return 201, {"id": len(self.comments[number]), "body": body["body"], "html_url": html}
            return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: GitHubServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        owner = self.server.owner
        with owner._lock:
            owner.received.append(Received(self.command, self.path, dict(self.headers.items()), body, raw))
        if not isinstance(body, dict):
            status, answer = 400, {"message": "Problems parsing JSON"}
        else:
            status, answer = owner._answer(self.command, self.path, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = _serve
    do_PATCH = _serve
