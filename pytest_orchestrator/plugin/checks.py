"""Find the check modules and turn their `check_*` functions into pytest items."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import pytest

from ..health import BUILTIN_CHECKS
from ..redact import redact

CHECK_PREFIX = "check_"
CHECK_NAME = pytest.StashKey[str]()
LEVELS = ("error", "warning")


class CheckRecord:
    """What a check says about itself; the `check` fixture hands it to the check function."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.message = ""
        # Set by warn(): this failure only degrades the health, whatever the check's marker says.
        self.level: str | None = None

    def ok(self, message: str) -> None:
        """Record the message shown when the check passes."""
        self.message = message

    def fail(self, message: str) -> NoReturn:
        """End the check as failed with an actionable message (no traceback)."""
        pytest.fail(redact(message), pytrace=False)

    def warn(self, message: str) -> NoReturn:
        """End the check as failed at warning level: the health is degraded, not unhealthy."""
        self.level = "warning"
        self.fail(message)


CHECK_RECORD = pytest.StashKey[CheckRecord]()


class CheckModule(pytest.Module):
    """A module of health checks: its `check_*` functions are the items, whatever python_functions says."""

    def funcnamefilter(self, name: str) -> bool:
        """Functions named `check_*` are checks."""
        return name.startswith(CHECK_PREFIX)

    def classnamefilter(self, name: str) -> bool:
        """Checks are functions; classes are never collected."""
        return False


def builtin_checks_dir() -> Path:
    """Where the built-in checks live: inside the installed wheel, or the repository's checks/."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / "checks"
    return shipped if shipped.is_dir() else package.parent / "checks"


def _builtin_order(path: Path) -> tuple[int, str]:
    name = path.stem.removeprefix(CHECK_PREFIX)
    rank = BUILTIN_CHECKS.index(name) if name in BUILTIN_CHECKS else len(BUILTIN_CHECKS)
    return rank, path.name


def check_files(extra: Sequence[Path], origin: str) -> list[Path]:
    """The built-in check modules in their fixed order, then the configured ones, sorted."""
    files = sorted(builtin_checks_dir().glob(f"{CHECK_PREFIX}*.py"), key=_builtin_order)
    for path in extra:
        if path.is_dir():
            files.extend(sorted(path.rglob(f"{CHECK_PREFIX}*.py")))
        elif path.is_file() and path.suffix == ".py":
            files.append(path)
        else:
            raise pytest.UsageError(f"check path {path} (from {origin}) is not a .py file or a directory")
    unique: dict[Path, None] = dict.fromkeys(p.resolve() for p in files)
    return list(unique)


def _nodeid(path: Path, rootpath: Path) -> str:
    if path.parent == builtin_checks_dir().resolve():
        return f"checks/{path.name}"
    try:
        return path.relative_to(rootpath).as_posix()
    except ValueError:
        return path.as_posix()


class HealthChecks(pytest.Directory):
    """The check modules, wherever they live, as one collector straight under the session.

    pytest collects it in place of the rootdir, so `-k`, `-m`, deselection and
    `--collect-only` work as usual, while `-k` matches check names, never the directories
    the checks happen to be installed in (a directory under the session is not matched).
    """

    def __init__(self, *, files: Sequence[Path], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.files = files

    def collect(self) -> Iterator[CheckModule]:
        """One module per check file, in order."""
        for path in self.files:
            yield CheckModule.from_parent(self, path=path, nodeid=_nodeid(path, self.config.rootpath))


def mark_checks(items: Iterable[pytest.Item]) -> list[str]:
    """Name and mark each check item; return the names. A check defined twice is a usage error."""
    seen: dict[str, str] = {}
    for item in items:
        name = item.name.removeprefix(CHECK_PREFIX)
        if name in seen:
            raise pytest.UsageError(f"check '{name}' is defined twice: {seen[name]} and {item.nodeid}")
        seen[name] = item.nodeid
        _mark(item, name)
    return list(seen)


def _mark(item: pytest.Item, name: str) -> None:
    item.stash[CHECK_NAME] = name
    marker = item.get_closest_marker("check")
    level = marker.kwargs.get("level", "error") if marker else "error"
    if level not in LEVELS:
        raise pytest.UsageError(f"{item.nodeid}: check level {level!r} is not one of {', '.join(LEVELS)}")
    if name not in BUILTIN_CHECKS:
        # Registered first so the marker also passes --strict-markers.
        item.config.addinivalue_line("markers", f"{name}: the {name} health check")
    if marker is None:
        item.add_marker("check")
    item.add_marker(name)


def check_level(item: pytest.Item) -> str:
    """'error' or 'warning', from the item's check marker."""
    marker = item.get_closest_marker("check")
    return str(marker.kwargs.get("level", "error")) if marker else "error"
