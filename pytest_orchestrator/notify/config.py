"""The `notifications:` section of orchestrator.yaml: where to post, which events, the signing secret."""

from __future__ import annotations

import difflib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config_file import ConfigFile, Reader

EVENTS = (
    "task_failed",
    "task_needs_human",
    "health_degraded",
    "health_unhealthy",
    "component_fatal",
    "orchestrator_stopped",
    "run_finished",
)
NOTIFY_KEYS = ("webhook_url", "events", "secret", "timeout")
# The secret need not sit in a committed file: it is read from here when the file gives none.
SECRET_ENV = "ORCHESTRATOR_WEBHOOK_SECRET"
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class NotifySpec:
    """Where notifications go (no URL: nowhere), which events, the HMAC secret, the time bound."""

    webhook_url: str = ""
    events: frozenset[str] = frozenset(EVENTS)
    secret: str = field(default="", repr=False)
    # Seconds an event may take, retries included, before it is given up with a warning.
    timeout: float = DEFAULT_TIMEOUT

    @property
    def enabled(self) -> bool:
        """Whether anything is sent at all."""
        return bool(self.webhook_url)

    def wants(self, event: str) -> bool:
        """Whether `event` is sent."""
        return self.enabled and event in self.events

    @property
    def destination(self) -> str:
        """The URL's scheme and host, for messages: its path may hold a token (Slack's does)."""
        parts = urllib.parse.urlsplit(self.webhook_url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def notify_spec(file: ConfigFile | None, environ: Mapping[str, str]) -> NotifySpec:
    """The `notifications:` section, validated; nothing is sent without one or with an empty URL."""
    reader = Reader(file)
    data = file.data if file is not None else {}
    key = ("notifications",)
    section = reader.mapping(key, data.get("notifications"), NOTIFY_KEYS)
    url = section.get("webhook_url")
    if url is None:
        url = ""
    if not isinstance(url, str):
        raise reader.fail((*key, "webhook_url"), f"webhook_url must be an http(s) URL, not {url!r}")
    url = url.strip()
    if url:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise reader.fail(
                (*key, "webhook_url"), f"webhook_url must be an http(s) URL with a host, not {url!r}"
            )
    elif "events" in section or "secret" in section:
        # `webhook_url: ${SLACK_WEBHOOK:-}` unset is fine (notifications off); no URL key at all is a slip.
        if "webhook_url" not in section:
            raise reader.fail(key, "notifications needs webhook_url: the URL to POST each event to")
    events = frozenset(EVENTS)
    if "events" in section:
        events = _events(reader, section["events"])
    secret = section.get("secret")
    if secret is None or secret == "":
        secret = environ.get(SECRET_ENV, "")
    elif not isinstance(secret, str):
        raise reader.fail(
            (*key, "secret"), f"secret must be a string (or set {SECRET_ENV}), not a {type(secret).__name__}"
        )
    timeout = reader.seconds((*key, "timeout"), section.get("timeout", DEFAULT_TIMEOUT))
    return NotifySpec(url, events, secret, timeout)


def _events(reader: Reader, value: object) -> frozenset[str]:
    key = ("notifications", "events")
    if not isinstance(value, list) or not value:
        raise reader.fail(key, f"events must be a list of event names ({', '.join(EVENTS)}), not {value!r}")
    for index, name in enumerate(value):
        if name not in EVENTS:
            close = difflib.get_close_matches(str(name), EVENTS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known events: {', '.join(EVENTS)}"
            raise reader.fail((*key, index), f"unknown event {name!r}{hint}")
    return frozenset(str(name) for name in value)
