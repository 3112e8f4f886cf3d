"""One resolver for every setting: command-line flag, then ORCHESTRATOR_* env, then ini, then default."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names where it came from."""


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _path_list(raw: str) -> tuple[str, ...]:
    # Both separators are accepted so one value works in env vars and ini lines.
    parts = [p.strip() for chunk in raw.splitlines() for p in chunk.split(os.pathsep)]
    return tuple(p for p in parts if p)


def _optional_url(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


@dataclass(frozen=True)
class Setting:
    """A setting known to the flag, the environment and the ini file under derived names."""

    name: str
    help: str
    default: str
    parse: Callable[[str], Any]
    metavar: str = "VALUE"
    # Paths from the ini file are relative to the ini file; from flag or env, to the cwd.
    is_path: bool = False

    @property
    def flag(self) -> str:
        return "--orchestrator-" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return "ORCHESTRATOR_" + self.name.upper()

    @property
    def ini(self) -> str:
        return "orchestrator_" + self.name

    @property
    def dest(self) -> str:
        return "orchestrator_" + self.name


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "sandbox",
        "name of the sandbox container the agent runs in",
        "orchestrator-sandbox",
        _text,
        metavar="NAME",
    ),
    Setting(
        "docker_timeout",
        "seconds to wait for each Docker API call before the check fails",
        "5",
        _positive_float,
        metavar="SECONDS",
    ),
    Setting(
        "state_dir",
        "directory holding the orchestrator state database (state.db)",
        ".orchestrator",
        _text,
        metavar="DIR",
        is_path=True,
    ),
    Setting(
        "freeze_threshold",
        "seconds without a heartbeat after which a running orchestrator counts as frozen",
        "300",
        _positive_float,
        metavar="SECONDS",
    ),
    Setting(
        "credential_paths",
        "Claude Code credential files looked for inside the sandbox ('~' is the container "
        "user's home), separated by the path separator",
        os.pathsep.join(
            (
                "~/.claude/.credentials.json",
                "/root/.claude/.credentials.json",
                "/home/ubuntu/.claude/credentials.json",
                "/root/.claude/credentials.json",
            )
        ),
        _path_list,
        metavar="PATHS",
    ),
    Setting(
        "check_paths",
        "extra check modules or directories collected by --orchestrator-health, "
        "separated by the path separator",
        "",
        _path_list,
        metavar="PATHS",
        is_path=True,
    ),
    Setting(
        "otlp_endpoint",
        "OTLP/HTTP endpoint for traces and metrics (default: OTEL_EXPORTER_OTLP_ENDPOINT; "
        "unset disables export)",
        "",
        _optional_url,
        metavar="URL",
    ),
    Setting(
        "otlp_timeout",
        "seconds the telemetry export may take at the end of a run",
        "3",
        _positive_float,
        metavar="SECONDS",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one run; `origin` says where each value came from."""

    sandbox: str
    docker_timeout: float
    state_dir: Path
    freeze_threshold: float
    credential_paths: tuple[str, ...]
    check_paths: tuple[Path, ...]
    otlp_endpoint: str
    otlp_timeout: float
    origin: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


def add_options(parser: pytest.Parser) -> None:
    """Register every setting as a flag and an ini key, from one help text."""
    group = parser.getgroup("orchestrator")
    for setting in SETTINGS:
        text = f"{setting.help} (env {setting.env}, default {setting.default!r})"
        group.addoption(setting.flag, dest=setting.dest, metavar=setting.metavar, help=text)
        parser.addini(setting.ini, help=setting.help)


def _raw_value(
    setting: Setting, config: pytest.Config, environ: Mapping[str, str]
) -> tuple[str, str, Path]:
    """Return (raw value, where it came from, base dir for relative paths)."""
    cli = config.getoption(setting.dest, default=None)
    if cli is not None:
        return cli, setting.flag, config.invocation_params.dir
    if setting.env in environ:
        return environ[setting.env], setting.env, config.invocation_params.dir
    if setting.name == "otlp_endpoint" and environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return environ["OTEL_EXPORTER_OTLP_ENDPOINT"], "OTEL_EXPORTER_OTLP_ENDPOINT", Path()
    ini = config.getini(setting.ini)
    if ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        return str(ini), f"ini {setting.ini}", base
    return setting.default, "default", config.rootpath


def resolve(config: pytest.Config, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve and validate every setting; raise ConfigError naming the bad value's origin."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for setting in SETTINGS:
        raw, source, base = _raw_value(setting, config, environ)
        try:
            value = setting.parse(raw)
        except ValueError as exc:
            reason = str(exc) if setting.parse is not _positive_float else "expected a number > 0"
            raise ConfigError(
                f"invalid {setting.name.replace('_', ' ')} {raw!r} from {source}: {reason}"
            ) from None
        if setting.is_path and isinstance(value, tuple):
            value = tuple(base / Path(p).expanduser() for p in value)
        elif setting.is_path:
            value = base / Path(value).expanduser()
        values[setting.name] = value
        origin[setting.name] = source
    return Settings(**values, origin=origin)
