"""The orchestrator's command-line options and ini keys, and the settings they resolve to."""

from __future__ import annotations

import os

import pytest

from ..settings import SETTINGS, ConfigError, Settings, Sources, resolve

SETTINGS_KEY = pytest.StashKey[Settings]()


def add_options(parser: pytest.Parser) -> None:
    """Add the mode flags, and every setting as a flag and an ini key from one help text."""
    group = parser.getgroup("orchestrator", "orchestrator (AI coding agents and their sandbox)")
    group.addoption(
        "--orchestrator-health",
        action="store_true",
        default=False,
        help="run the health checks and print the JSON health document on stdout "
        "(exit 0 healthy or degraded, 1 unhealthy)",
    )
    group.addoption(
        "--orchestrator-check",
        action="append",
        default=[],
        metavar="NAME",
        help="with --orchestrator-health, run only this check (repeatable)",
    )
    group.addoption(
        "--orchestrator-rerun",
        action="store_true",
        default=False,
        help="dispatch the selected tasks even when an earlier run completed them",
    )
    group.addoption(
        "--orchestrator-dry-run",
        action="store_true",
        default=False,
        help="collect and resolve order, resume and budget; print what would be dispatched, start no agent",
    )
    for setting in SETTINGS:
        text = f"{setting.help} (env {setting.env}, default {setting.default!r})"
        group.addoption(setting.flag, dest=setting.dest, metavar=setting.metavar, help=text)
        parser.addini(setting.ini, help=setting.help)


def sources(config: pytest.Config) -> Sources:
    """The run's flags, environment and ini keys, as the resolver reads them."""
    return Sources(
        flags={s.name: config.getoption(s.dest, default=None) for s in SETTINGS},
        environ=os.environ,
        ini=lambda key: str(config.getini(key) or ""),
        ini_base=config.inipath.parent if config.inipath else config.rootpath,
        cwd=config.invocation_params.dir,
        root=config.rootpath,
    )


def settings_for(config: pytest.Config) -> Settings:
    """The run's resolved settings; a bad value is a usage error naming its origin."""
    if SETTINGS_KEY not in config.stash:
        try:
            config.stash[SETTINGS_KEY] = resolve(sources(config))
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[SETTINGS_KEY]
