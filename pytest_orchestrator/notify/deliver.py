"""Delivery: a background thread posts each notification, retried with backoff, within a time bound.

The caller never waits on the receiver: `send` only queues. Each notification has at most
`timeout` seconds (retries included); past that it is given up with one warning line. At
the end of a process `close` waits at most the same bound for what is still queued.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..redact import redact, remember
from ..retry import RetryPolicy
from .config import SECRET_ENV, NotifySpec
from .events import Notification

if TYPE_CHECKING:
    from ..state import StateStore

SIGNATURE_HEADER = "X-Orchestrator-Signature"
EVENT_HEADER = "X-Orchestrator-Event"
# The same for every try of one notification, so a receiver can drop a repeat.
DELIVERY_HEADER = "X-Orchestrator-Delivery"
# The retry policy of task attempts, with delays fit for a bound of seconds; the bound ends it first.
DELIVERY_POLICY = RetryPolicy(attempts=6, delay=0.25, factor=2.0, max_delay=2.0)
# How long a notification waits for another writer's lock on state.db before it is sent undeduplicated.
STATE_WAIT = 2.0


def signature(body: bytes, secret: str) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of the raw body with the secret, as GitHub signs its webhooks."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret` (in constant time)."""
    return header is not None and hmac.compare_digest(signature(body, secret), header)


def encode(notification: Notification) -> bytes:
    """The body as sent: the redacted payload as compact JSON."""
    return json.dumps(notification.payload(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def post(
    notification: Notification,
    spec: NotifySpec,
    policy: RetryPolicy = DELIVERY_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """POST `notification` to the webhook, retrying transient failures until `spec.timeout` is spent.

    None when it was delivered (a 2xx answer); otherwise the warning line saying why not.
    """
    import requests

    from .. import __version__

    body = encode(notification)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"pytest-orchestrator/{__version__}",
        EVENT_HEADER: notification.event,
        DELIVERY_HEADER: uuid.uuid4().hex,
    }
    if spec.secret:
        headers[SIGNATURE_HEADER] = signature(body, spec.secret)
    start = time.monotonic()
    deadline = start + spec.timeout
    attempt, problem = 0, "not tried"
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            response = requests.post(
                spec.webhook_url, data=body, headers=headers, timeout=remaining, allow_redirects=False
            )
            response.close()
        except requests.Timeout:
            problem, transient = f"no answer within {spec.timeout:g}s", True
        except requests.RequestException as exc:
            # Never the exception's text: it quotes the URL, whose path may be a token.
            problem, transient = f"cannot connect ({type(exc).__name__})", True
        else:
            if response.status_code < 300:
                return None
            status = response.status_code
            problem, transient = f"HTTP {status}", status in (408, 425, 429) or status >= 500
        if not transient or attempt >= policy.attempts:
            break
        delay = policy.backoff(attempt)
        if time.monotonic() + delay >= deadline:
            break
        sleep(delay)
    tries = f"{attempt} {'try' if attempt == 1 else 'tries'}"
    return (
        f"webhook {notification.event} not delivered to {spec.destination}: {problem} "
        f"({tries} in {time.monotonic() - start:.1f}s); given up"
    )


@dataclass(frozen=True)
class _Job:
    notification: Notification | None = None
    # A transition: the subject, its state now, and the notification of entering it.
    subject: str = ""
    state: str = ""
    make: Callable[[str | None], Notification | None] | None = None


class Notifier:
    """Sends notifications from a background thread; deduplicates transitions through state.db."""

    def __init__(
        self,
        spec: NotifySpec,
        state_dir: Path | None,
        warn: Callable[[str], None],
        policy: RetryPolicy = DELIVERY_POLICY,
    ) -> None:
        self.spec = spec
        self.state_dir = state_dir
        self.warn = warn
        self.policy = policy
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False
        self._abandoned = False
        self._state_failed = False
        # The secret must never be printed, even by a component that echoes its environment.
        remember([f"{SECRET_ENV}={spec.secret}"])

    def send(self, notification: Notification | None) -> None:
        """Queue `notification` when its event is wanted; returns at once."""
        if notification is not None and self.spec.wants(notification.event):
            self._put(_Job(notification))

    def transition(self, subject: str, state: str, make: Callable[[str | None], Notification | None]) -> None:
        """`subject` is in `state` now: when that is a change, send `make(previous state)` (if any)."""
        if self.spec.enabled:
            self._put(_Job(subject=subject, state=state, make=make))

    def close(self, wait: float | None = None) -> None:
        """Wait at most `wait` seconds (the time bound) for queued notifications; drop the rest."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(self.spec.timeout if wait is None else wait)
        with self._lock:
            left = self._pending
            # The one still being tried is counted here; its own warning would only repeat it.
            self._abandoned = left > 0
        if left:
            self.warn(
                f"{left} webhook notification{'s' if left > 1 else ''} not sent: {self.spec.destination} "
                f"did not take {'them' if left > 1 else 'it'} within {self.spec.timeout:g}s"
            )

    def _put(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="orchestrator-notify", daemon=True)
                self._thread.start()
        self._queue.put(job)

    def _work(self) -> None:
        store: StateStore | None = None
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                try:
                    if job.make is not None:
                        if store is None:
                            store = self._open()
                        changed, previous = self._enter(store, job.subject, job.state)
                        notification = job.make(previous) if changed else None
                        if notification is None or not self.spec.wants(notification.event):
                            continue
                    else:
                        notification = job.notification
                    assert notification is not None
                    warning = post(notification, self.spec, self.policy)
                    if warning:
                        self._warn(warning)
                except Exception as exc:  # a notification must never take its process down
                    self._warn(f"webhook notification failed: {type(exc).__name__}: {exc}")
                finally:
                    with self._lock:
                        self._pending -= 1
        finally:
            if store is not None:
                store.close()

    def _warn(self, line: str) -> None:
        with self._lock:
            if self._abandoned:
                return
        self.warn(redact(line))

    def _open(self) -> StateStore | None:
        from ..state import DB_NAME, StateError, StateStore

        # A health run reads the state; it does not create one. Without it there is no memory,
        # and every entry is told.
        if self.state_dir is None or not (self.state_dir / DB_NAME).exists():
            return None
        try:
            return StateStore.open(self.state_dir, wait=min(STATE_WAIT, self.spec.timeout))
        except StateError as exc:
            # Tried again with the next transition; said once.
            if not self._state_failed:
                self._warn(f"webhook notifications not deduplicated: {exc}")
            self._state_failed = True
            return None

    def _enter(self, store: StateStore | None, subject: str, state: str) -> tuple[bool, str | None]:
        """Whether `state` is a change for `subject`, and the state before."""
        from ..state import StateError
        from .dedupe import enter

        if store is None:
            return True, None
        try:
            return enter(store, subject, state)
        except StateError as exc:
            self._warn(f"webhook notifications not deduplicated: {exc}")
            return True, None
