"""The monitor's part of orchestrator.yaml: when a crash becomes a bug report, and where it goes."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config_file import ConfigFile, Reader

PRIORITIES = ("Critical", "High", "Medium", "Low")
TRACKERS = ("files", "github")
MONITOR_KEYS = (
    "crash_threshold_for_bug",
    "bug_rate_limit",
    "retention_days",
    "bug_priority",
    "bug_tracker",
    "critical_crashes_per_hour",
)

DEFAULT_PRIORITY: Mapping[str, str] = {
    "ImportError": "High",
    "ModuleNotFoundError": "High",
    "RuntimeError": "Medium",
    "TimeoutError": "Low",
}


@dataclass(frozen=True)
class TrackerSpec:
    """Where bug reports go besides their file: nowhere else (`files`) or a GitHub repository."""

    kind: str = "files"
    repo: str | None = None
    # The REST API's root; GitHub Enterprise has its own.
    api_url: str = "https://api.github.com"


@dataclass(frozen=True)
class MonitorSpec:
    """Thresholds of the health monitor, with the defaults of the specification."""

    crash_threshold_for_bug: int = 3
    bug_rate_limit: float = 3600.0
    retention_days: float = 7.0
    bug_priority: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PRIORITY))
    bug_tracker: TrackerSpec = TrackerSpec()
    # Crashes in one hour past which a report is Critical and the health is critical.
    critical_crashes_per_hour: int = 10


def monitor_spec(file: ConfigFile | None) -> MonitorSpec:
    """The `monitor:` section of the config file, validated; the defaults without one."""
    reader = Reader(file)
    data = file.data if file is not None else {}
    section = reader.mapping(("monitor",), data.get("monitor"), MONITOR_KEYS)
    defaults = MonitorSpec()
    priority = dict(defaults.bug_priority)
    raw = reader.mapping(("monitor", "bug_priority"), section.get("bug_priority"), None)
    for error_type, value in raw.items():
        name = str(value).capitalize() if isinstance(value, str) else value
        if name not in PRIORITIES:
            raise reader.fail(
                ("monitor", "bug_priority", error_type),
                f"priority of {error_type} must be one of {', '.join(PRIORITIES)}, not {value!r}",
            )
        priority[str(error_type)] = name
    return MonitorSpec(
        crash_threshold_for_bug=reader.count(
            ("monitor", "crash_threshold_for_bug"),
            section.get("crash_threshold_for_bug", defaults.crash_threshold_for_bug),
        ),
        bug_rate_limit=reader.number(
            ("monitor", "bug_rate_limit"), section.get("bug_rate_limit", defaults.bug_rate_limit)
        ),
        retention_days=reader.seconds(
            ("monitor", "retention_days"), section.get("retention_days", defaults.retention_days)
        ),
        bug_priority=priority,
        bug_tracker=_tracker(reader, section.get("bug_tracker")),
        critical_crashes_per_hour=reader.count(
            ("monitor", "critical_crashes_per_hour"),
            section.get("critical_crashes_per_hour", defaults.critical_crashes_per_hour),
        ),
    )


def _tracker(reader: Reader, value: Any) -> TrackerSpec:
    key = ("monitor", "bug_tracker")
    if isinstance(value, str):
        value = {"kind": value}
    body = reader.mapping(key, value, ("kind", "repo", "api_url"))
    kind = body.get("kind", "files")
    if kind not in TRACKERS:
        raise reader.fail((*key, "kind"), f"kind must be one of {', '.join(TRACKERS)}, not {kind!r}")
    if kind == "files":
        return TrackerSpec()
    repo = body.get("repo")
    if not isinstance(repo, str) or not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise reader.fail((*key, "repo"), f"a github bug tracker needs repo: OWNER/NAME, not {repo!r}")
    api_url = body.get("api_url", TrackerSpec.api_url)
    if not isinstance(api_url, str) or not api_url.startswith(("http://", "https://")):
        raise reader.fail((*key, "api_url"), f"api_url must be an http(s) URL, not {api_url!r}")
    host = urllib.parse.urlsplit(api_url).hostname or ""
    if api_url.startswith("http://") and host not in ("127.0.0.1", "localhost", "::1"):
        # The token goes in a header: in clear text only to this machine.
        raise reader.fail(
            (*key, "api_url"), f"api_url must use https for {host}: the token would travel in clear"
        )
    return TrackerSpec("github", repo, api_url.rstrip("/"))
