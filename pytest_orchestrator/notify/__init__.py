"""Webhook notifications: what happened (a task failed, the health degraded, ...) as a signed JSON POST.

Plain Python, no pytest. `config` reads the `notifications:` section, `events` builds each
notification, `deliver` posts it from a background thread within a bounded time, and
`dedupe` remembers in state.db the last state notified, so a state is told once per entry.
"""

from __future__ import annotations

from .config import EVENTS, SECRET_ENV, NotifySpec, notify_spec
from .deliver import SIGNATURE_HEADER, Notifier, signature
from .events import Notification

__all__ = [
    "EVENTS",
    "SECRET_ENV",
    "SIGNATURE_HEADER",
    "Notification",
    "Notifier",
    "NotifySpec",
    "notify_spec",
    "signature",
]
