"""The orchestrator's command-line options and ini keys, and the settings they resolve to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..config_file import CONFIG_ENV, CONFIG_NAME, ConfigFile, ConfigFileError, find, load, raw_setting
from ..settings import SETTINGS, ConfigError, Settings, Sources, resolve

SETTINGS_KEY = pytest.StashKey[Settings]()
ROOT_KEY = pytest.StashKey[Path]()
CONFIG_KEY = pytest.StashKey["ConfigFile | None"]()


def add_options(parser: pytest.Parser) -> None:
    """Add the mode flags, and every setting as a flag and an ini key from one help text."""
    group = parser.getgroup("orchestrator", "orchestrator (AI coding agents and their sandbox)")
    group.addoption(
        "--orchestrator-health",
        action="store_true",
        default=False,
        help="run the health checks and print the JSON health document on stdout "
        "(exit 0 healthy or degraded, 1 unhealthy or critical; the document's status tells which)",
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
        "--orchestrator-config",
        metavar="FILE",
        help=f"the config file (env {CONFIG_ENV}, default {CONFIG_NAME} in the rootdir)",
    )
    group.addoption(
        "--orchestrator-wait",
        action="store_true",
        default=False,
        help="when another run holds a plan, wait for it to end instead of skipping the plan's tasks",
    )
    group.addoption(
        "--orchestrator-dry-run",
        action="store_true",
        default=False,
        help="collect and resolve order, resume and budget; print what would be dispatched, start no agent",
    )
    group.addoption(
        "--orchestrator-loop",
        action="store_true",
        default=False,
        help="keep dispatching: run the plans, wait loop.poll_interval, collect again, until the "
        "stop file (loop.stop_hook_file; exit 0), SIGTERM or Ctrl-C",
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
        # A TOML list ([tool.pytest.ini_options]) reads as one item per line, as in an ini file.
        ini=lambda key: raw_setting(config.getini(key)),
        ini_base=config.inipath.parent if config.inipath else project_root(config),
        cwd=config.invocation_params.dir,
        root=project_root(config),
        file=config_file(config),
    )


def config_file(config: pytest.Config) -> ConfigFile | None:
    """The run's orchestrator.yaml, parsed, or None when there is none."""
    if CONFIG_KEY not in config.stash:
        try:
            path = find(
                config.getoption("orchestrator_config", default=None),
                os.environ,
                project_root(config),
                config.invocation_params.dir,
            )
            config.stash[CONFIG_KEY] = load(path, os.environ) if path else None
        except ConfigFileError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[CONFIG_KEY]


def project_root(config: pytest.Config) -> Path:
    """The anchor of the state directory and of plan keys: pytest's rootdir, reckoned from the
    paths named on the command line only.

    Without a config file, pytest reckons its rootdir before plugins add their options, so the
    value of a plugin's option (`--json-report-file /elsewhere/r.json`) counts as a path and
    moves the rootdir. The state and the plan keys must not move with it: a second identical
    run would redo every completed task.
    """
    if ROOT_KEY not in config.stash:
        root = config.rootpath
        if config.inipath is None and config.getoption("rootdir", default=None) is None:
            root = _common_root(config)
        config.stash[ROOT_KEY] = root
    return config.stash[ROOT_KEY]


def _common_root(config: pytest.Config) -> Path:
    # pytest's rule without a config file (`determine_setup`), on the named paths only.
    base = config.invocation_params.dir
    named = [base / arg.split("::")[0] for arg in config.args]
    dirs = [p if p.is_dir() else p.parent for p in named if p.exists()] or [base]
    ancestor = Path(os.path.commonpath([os.path.abspath(d) for d in dirs]))
    for candidate in (ancestor, *ancestor.parents):
        if (candidate / "setup.py").is_file():
            return candidate
    # Then the common ancestor with the invocation directory, unless that is the filesystem root.
    root = Path(os.path.commonpath([os.path.abspath(base), str(ancestor)]))
    return ancestor if root == Path(root.anchor) else root


def settings_for(config: pytest.Config) -> Settings:
    """The run's resolved settings; a bad value is a usage error naming its origin."""
    if SETTINGS_KEY not in config.stash:
        try:
            config.stash[SETTINGS_KEY] = resolve(sources(config))
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[SETTINGS_KEY]
