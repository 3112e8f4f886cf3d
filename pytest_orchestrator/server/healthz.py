"""`/healthz`: the health document, cached for a while, the checks run once however many ask.

The checks are `orchestrator health`'s, run the same way (`pytest --orchestrator-health` in a
child process, so this process never imports pytest). A request on a cold cache starts one
run; requests arriving while it runs wait for that run's document instead of starting their
own (single-flight: goss#1110 fixed the stampede of concurrent requests each running the checks).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..health.document import FAILING


@dataclass(frozen=True)
class Health:
    """One run's health document, and how long it took."""

    document: Mapping[str, Any]
    duration: float
    # The JSON body, encoded once: a cached answer costs no encoding.
    body: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "body", json.dumps(self.document, indent=2).encode("utf-8"))

    @property
    def status(self) -> str:
        """The document's overall status."""
        return str(self.document.get("status", "unhealthy"))

    @property
    def http_status(self) -> int:
        """200 for healthy or degraded, 503 for unhealthy or critical."""
        return 200 if self.status in ("healthy", "degraded") and self.status not in FAILING else 503


class HealthCache:
    """The latest health document, fresh for `ttl` seconds; concurrent misses share one run."""

    def __init__(self, check: Callable[[], Mapping[str, Any]], ttl: float) -> None:
        self._check = check
        self.ttl = ttl
        self._lock = threading.Lock()
        self._finished = threading.Condition(self._lock)
        self._latest: Health | None = None
        self._expires = 0.0
        self._running = False
        # Counts the runs started: the single-flight's evidence, exposed as a metric.
        self.runs = 0

    def get(self) -> Health:
        """The cached document while fresh; otherwise the document of the run started now or running."""
        with self._lock:
            if self._latest is not None and time.monotonic() < self._expires:
                return self._latest
            if self._running:
                generation = self.runs
                while self._running and self.runs == generation:
                    self._finished.wait()
                assert self._latest is not None
                return self._latest
            self._running = True
            self.runs += 1
        started = time.monotonic()
        # What the waiters get should the run itself be interrupted (Ctrl-C): never a hang.
        document: Mapping[str, Any] = unhealthy("the health checks were interrupted")
        try:
            document = self._check()
        except Exception as exc:  # the endpoint answers 503 with the reason, never a traceback
            from ..redact import redact

            document = unhealthy(redact(f"the health checks failed to run: {type(exc).__name__}: {exc}"))
        finally:
            health = Health(document, time.monotonic() - started)
            with self._lock:
                self._latest = health
                self._expires = time.monotonic() + self.ttl
                self._running = False
                self._finished.notify_all()
        return health

    @property
    def latest(self) -> Health | None:
        """The last document, fresh or not; None before the first run."""
        return self._latest


def unhealthy(error: str) -> dict[str, Any]:
    """A health document for a run that gave none: unhealthy, with the reason."""
    return {"status": "unhealthy", "timestamp": datetime.now(UTC).isoformat(), "checks": {}, "error": error}


def run_checks(cwd: Path, config: str | None, timeout: float) -> Callable[[], Mapping[str, Any]]:
    """The health checks as `orchestrator health` runs them, in the project at `cwd`."""
    from ..health.run import run_health
    from ..redact import redact

    flags = ["--orchestrator-config", config] if config else []

    def check() -> Mapping[str, Any]:
        found = run_health((), flags, cwd, timeout)
        if found.document:
            return found.document
        return unhealthy(redact(found.error or "the health checks printed no document"))

    return check
