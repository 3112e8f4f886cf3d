"""The project a command runs in, found as pytest finds it, and its settings, without pytest.

The operator commands (`orchestrator status`, `orchestrator logs`) must see the same state
directory and sandbox as a pytest run in the same directory, yet start in a fraction of
pytest's time. So this module repeats pytest's search for its config file and reads the
`orchestrator_*` ini keys itself; the resolver then does what it does for the plugin.

What it does not repeat: `--rootdir`, `-c`/`--config-file`, `-o` and `PYTEST_ADDOPTS`, which
belong to a pytest command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_file import ConfigFile, find, load, raw_setting
from .settings import ConfigError, Settings, Sources, resolve

# pytest's order: in each directory from the start upward, the first of these that holds
# pytest configuration wins.
CONFIG_NAMES = (
    "pytest.toml",
    ".pytest.toml",
    "pytest.ini",
    ".pytest.ini",
    "pyproject.toml",
    "tox.ini",
    "setup.cfg",
)


@dataclass(frozen=True)
class Project:
    """Where pytest would anchor a run started in a directory: its rootdir and config file."""

    root: Path
    inipath: Path | None = None
    ini: Mapping[str, Any] = field(default_factory=dict)


def find_project(cwd: Path) -> Project:
    """The project a pytest run started in `cwd` (with no path arguments) would belong to."""
    start = Path(os.path.abspath(cwd))
    first_pyproject: Path | None = None
    for base in (start, *start.parents):
        for name in CONFIG_NAMES:
            path = base / name
            if not path.is_file():
                continue
            if name == "pyproject.toml" and first_pyproject is None:
                first_pyproject = path
            ini = _pytest_section(path)
            if ini is not None:
                return Project(base, path, ini)
    # pytest anchors on a pyproject.toml even without a pytest table, before looking for setup.py.
    if first_pyproject is not None:
        return Project(first_pyproject.parent, first_pyproject)
    for base in (start, *start.parents):
        if (base / "setup.py").is_file():
            return Project(base)
    return Project(start)


def _pytest_section(path: Path) -> Mapping[str, Any] | None:
    """The file's pytest configuration, or None when it holds none."""
    if path.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if path.name in ("pytest.toml", ".pytest.toml"):
            table = data.get("pytest", {})
            return table if isinstance(table, dict) else {}
        tool = data.get("tool", {}).get("pytest", {})
        native = {k: v for k, v in tool.items() if k != "ini_options"}
        if native:
            return native
        options = tool.get("ini_options")
        return options if isinstance(options, dict) else None
    import iniconfig

    try:
        parsed = iniconfig.IniConfig(str(path))
    except (OSError, UnicodeDecodeError, iniconfig.ParseError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if path.suffix == ".cfg":
        if "tool:pytest" in parsed:
            return dict(parsed["tool:pytest"].items())
        if "pytest" in parsed:
            raise ConfigError(
                f"{path}: a [pytest] section in setup.cfg is not read by pytest: rename it [tool:pytest]"
            )
        return None
    if "pytest" in parsed:
        return dict(parsed["pytest"].items())
    return {} if path.name in ("pytest.ini", ".pytest.ini") else None


def sources_for_project(
    cwd: Path,
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    config: str | None = None,
) -> Sources:
    """The settings' sources as a pytest run started in `cwd` would see them."""
    cwd = Path(os.path.abspath(cwd))
    project = find_project(cwd)
    path = find(config, environ, project.root, cwd, flag="--config")
    file: ConfigFile | None = load(path, environ) if path else None

    def ini(key: str) -> str:
        value = project.ini.get(key)
        if isinstance(value, dict):
            raise ConfigError(f"{project.inipath}: {key} takes a value, not a table")
        return raw_setting(value)

    return Sources(
        flags=flags,
        environ=environ,
        ini=ini,
        ini_base=project.inipath.parent if project.inipath else project.root,
        cwd=cwd,
        root=project.root,
        file=file,
    )


def settings_for_project(
    cwd: Path,
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    config: str | None = None,
) -> Settings:
    """The settings a pytest run started in `cwd` would resolve; raises ConfigError or ConfigFileError.

    `flags` holds settings given on the command line, by setting name; `config` names the
    config file as `--config` does.
    """
    sources = sources_for_project(cwd, flags or {}, os.environ if environ is None else environ, config)
    return resolve(sources)
