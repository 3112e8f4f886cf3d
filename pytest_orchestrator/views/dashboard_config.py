"""The dashboard's part of orchestrator.yaml: how often the terminal view refreshes."""

from __future__ import annotations

from dataclasses import dataclass

from ..config_file import ConfigFile, Reader

DASHBOARD_KEYS = ("refresh",)


@dataclass(frozen=True)
class DashboardSpec:
    """Seconds between two frames of `orchestrator dashboard` (its --refresh wins)."""

    refresh: float = 5.0


def dashboard_spec(file: ConfigFile | None) -> DashboardSpec:
    """The `dashboard:` section of the config file; each bad value names its file and line."""
    reader = Reader(file)
    data = file.data if file is not None else {}
    section = reader.mapping(("dashboard",), data.get("dashboard"), DASHBOARD_KEYS)
    refresh = section.get("refresh", DashboardSpec.refresh)
    return DashboardSpec(refresh=reader.seconds(("dashboard", "refresh"), refresh))
