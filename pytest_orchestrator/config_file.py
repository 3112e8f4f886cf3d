"""The config file, `orchestrator.yaml`: read with each value's line, and `${VAR}` substituted.

Plain Python. The file is parsed first and variables are substituted into the parsed string
values afterwards, never into the raw text, so a variable's value cannot add YAML structure.
Substitution follows Docker Compose: ``${VAR}``, ``${VAR:-default}`` (unset or empty),
``${VAR-default}`` (unset), ``${VAR:?message}`` and ``${VAR?message}`` (required), ``$VAR``,
and ``$$`` for a literal ``$``.

Every error names the file and line, `orchestrator.yaml:12: ...`, and an unknown key
suggests the nearest known one.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_NAME = "orchestrator.yaml"
CONFIG_ENV = "ORCHESTRATOR_CONFIG"

# Sections with their own structure; every other top-level key is a setting (`settings.SETTINGS`).
SECTIONS = (
    "watchdog",
    "components",
    "monitor",
    "loop",
    "queue",
    "health",
    "dashboard",
    "notifications",
    "serve",
)

Key = tuple[str | int, ...]


class ConfigFileError(Exception):
    """The config file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class ConfigFile:
    """A parsed config file: plain values, and the line of each key and list item."""

    path: Path
    data: dict[str, Any]
    lines: Mapping[Key, int]

    def where(self, *key: str | int) -> str:
        """`orchestrator.yaml:12` for the value at `key`, or just the file's name."""
        # A missing key is reported at the mapping that lacks it.
        while key and key not in self.lines:
            key = key[:-1]
        line = self.lines.get(key)
        return f"{self.path.name}:{line}" if line else self.path.name

    def error(self, key: Key, message: str) -> ConfigFileError:
        """An error about the value at `key`."""
        return ConfigFileError(f"{self.where(*key)}: {message}")

    def check_keys(self, key: Key, mapping: Mapping[str, Any], known: Iterable[str]) -> None:
        """Refuse a key of `mapping` (found at `key`) that is not `known`, naming the nearest one."""
        names = list(known)
        for name in mapping:
            if name not in names:
                raise self.error((*key, name), unknown(name, names))


def unknown(name: str, known: list[str]) -> str:
    """`unknown key 'sandbx' (did you mean 'sandbox'?)`."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(known))}"
    return f"unknown key {name!r}{hint}"


def find(
    explicit: str | None,
    environ: Mapping[str, str],
    root: Path,
    cwd: Path,
    flag: str = "--orchestrator-config",
) -> Path | None:
    """The config file to read: the one named by `flag` or ORCHESTRATOR_CONFIG, else the root's."""
    named = explicit or environ.get(CONFIG_ENV)
    if named:
        path = cwd / Path(named).expanduser()
        if not path.is_file():
            origin = flag if explicit else CONFIG_ENV
            raise ConfigFileError(f"config file {named} from {origin} not found")
        return path
    default = root / CONFIG_NAME
    return default if default.is_file() else None


def load(path: Path, environ: Mapping[str, str]) -> ConfigFile:
    """Parse the config file at `path`, substituting variables from `environ`."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path.name}: cannot read the config file: {exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigFileError(f"{path.name}{line}: invalid YAML: {exc.problem or exc.context}") from None
    reader = _Reader(path, environ)
    data = reader.value(root, ()) if root is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path.name}:1: expected a mapping of settings at the top level")
    return ConfigFile(path, data, reader.lines)


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>\{[^}]*\}?))"
)


class _Reader:
    def __init__(self, path: Path, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ
        self.lines: dict[Key, int] = {}

    def fail(self, node: Any, message: str) -> ConfigFileError:
        return ConfigFileError(f"{self.path.name}:{node.start_mark.line + 1}: {message}")

    def value(self, node: Any, key: Key) -> Any:
        import yaml

        self.lines[key] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            mapping: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, "a key must be a plain name")
                name = str(key_node.value)
                if name in mapping:
                    first = self.lines[(*key, name)]
                    raise self.fail(key_node, f"{name!r} is given twice (first at line {first})")
                mapping[name] = self.value(value_node, (*key, name))
                self.lines[(*key, name)] = key_node.start_mark.line + 1
            return mapping
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*key, index)) for index, item in enumerate(node.value)]
        try:
            value = yaml.SafeLoader("").construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            # An implicit date out of range (2001-13-01), or an explicit tag that does not fit.
            raise self.fail(node, f"invalid value {node.value!r}: {exc}") from None
        if isinstance(value, str):
            return self.substitute(value, node)
        return value

    def substitute(self, text: str, node: Any) -> str:
        def replace(match: re.Match[str]) -> str:
            if match["escaped"]:
                return "$"
            if match["invalid"] is not None:
                raise self.fail(node, f"invalid variable {match.group(0)!r}: write ${{NAME}} or $$ for a $")
            name = match["braced"] or match["named"]
            value = self.environ.get(name)
            op, arg = match["op"], match["arg"] or ""
            empty = value is None or (value == "" and op is not None and op.startswith(":"))
            if op in ("-", ":-"):
                return arg if empty else str(value)
            if op in ("?", ":?"):
                if empty:
                    raise self.fail(node, f"{name} is required: {arg or 'set it in the environment'}")
                return str(value)
            return value or ""

        return _VARIABLE.sub(replace, text)


def raw_setting(value: Any) -> str:
    """A config file value as the text a setting's parser reads (a list: one item per line)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "\n".join(raw_setting(item) for item in value)
    if isinstance(value, dict):
        raise TypeError("a mapping")
    return str(value)


class Reader:
    """Typed reads of the file's values; each error names the file and line of the value."""

    def __init__(self, file: ConfigFile | None) -> None:
        self.file = file
        self.warnings: list[str] = []

    def fail(self, key: Key, message: str) -> ConfigFileError:
        if self.file is None:
            return ConfigFileError(message)
        return self.file.error(key, message)

    def where(self, key: Key) -> str:
        return self.file.where(*key) if self.file is not None else ""

    def mapping(self, key: Key, value: Any, known: tuple[str, ...] | None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"{key[-1]} must be a mapping")
        if known is not None and self.file is not None:
            self.file.check_keys(key, value, known)
        return value

    def number(self, key: Key, value: Any, least: float = 0.0, above: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise self.fail(key, f"{key[-1]} must be a number, not {value!r}")
        if value == float("inf") or value < least or (above and value == least):
            bound = f"> {least:g}" if above else f">= {least:g}"
            raise self.fail(key, f"{key[-1]} must be a finite number {bound}, not {value!r}")
        return float(value)

    def seconds(self, key: Key, value: Any) -> float:
        return self.number(key, value, least=0.0, above=True)

    def count(self, key: Key, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(key, f"{key[-1]} must be a whole number >= 1, not {value!r}")
        return value

    def argv(self, key: Key, value: Any) -> tuple[str, ...]:
        # A string is split like a shell would, and still never runs through one.
        if isinstance(value, str):
            argv = shlex.split(value)
        elif isinstance(value, list) and all(isinstance(a, str | int | float) for a in value):
            argv = [str(a) for a in value]
        else:
            raise self.fail(key, f"{key[-1]} must be a list of arguments, not {value!r}")
        if not argv:
            raise self.fail(key, f"{key[-1]} must not be empty")
        return tuple(argv)
