"""Find the check modules and turn their `check_*` functions into pytest items."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from ..health import BUILTIN_CHECKS
from ..redact import redact

if TYPE_CHECKING:
    from ..config_file import ConfigFile
    from ..monitor.config import ComponentSpec, ProbeSpec
    from ..settings import Settings

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
        self.metrics: dict[str, float] = {}

    def ok(self, message: str) -> None:
        """Record the message shown when the check passes."""
        self.message = message

    def metric(self, name: str, value: float) -> None:
        """Record a number the check measured; it appears in the check's entry under `metrics`."""
        self.metrics[name] = value

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


class ProbeCheck(pytest.Item):
    """A watchdog probe from orchestrator.yaml, run once as a health check: `sandbox.liveness`."""

    def __init__(self, *, component: ComponentSpec, probe: ProbeSpec, state_dir: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.component = component
        self.probe = probe
        self.state_dir = state_dir
        # A readiness failure only degrades, as it never restarts anything.
        self.add_marker(pytest.mark.check(level="warning" if probe.role == "readiness" else "error"))

    def runtest(self) -> None:
        """Run the probe against the component as the watchdog last recorded it."""
        from ..monitor.probes import Target, run_probe

        record = self.stash.setdefault(CHECK_RECORD, CheckRecord(self.name))
        target = Target(state_dir=self.state_dir)
        if self.component.kind == "container":
            target.container = self.component.container
        else:
            target.pid = _recorded_pid(self.state_dir, self.component.name)
            target.log_path = self.state_dir / "logs" / f"{self.component.name}.log"
        result = run_probe(self.probe, target)
        if not result.ok:
            record.fail(f"{self.probe.kind} probe failed: {result.message}")
        record.ok(result.message)

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the probe is configured."""
        file, _, line = self.probe.where.partition(":")
        return self.path, int(line) - 1 if line.isdigit() else 0, f"probe {self.name} ({file or 'config'})"


def _recorded_pid(state_dir: Path, name: str) -> int | None:
    from ..state import StateError, StateStore
    from ..state.components import ComponentStore

    try:
        store = StateStore.read(state_dir)
    except StateError:
        return None
    if store is None:
        return None
    try:
        row = next((r for r in ComponentStore(store).components() if r.name == name), None)
    finally:
        store.close()
    return row.pid if row is not None and row.status in ("RUNNING", "STARTING") else None


def configured_probes(file: ConfigFile | None, settings: Settings) -> list[tuple[ComponentSpec, ProbeSpec]]:
    """The probes the config file declares, by component, in file order."""
    if file is None or not file.data.get("components"):
        return []
    from ..config_file import ConfigFileError
    from ..monitor.config import PROBE_ROLES, watchdog_spec

    try:
        spec = watchdog_spec(file, settings.sandbox, file.path.parent, settings.freeze_threshold)
    except ConfigFileError as exc:
        raise pytest.UsageError(str(exc)) from None
    found = []
    for name, body in file.data["components"].items():
        component = spec.component(name)
        if component is None or not isinstance(body, dict):
            continue
        for role in PROBE_ROLES:
            probe = component.probe(role)
            if role in body and probe is not None:
                found.append((component, probe))
    return found


class HealthChecks(pytest.Directory):
    """The check modules, wherever they live, as one collector straight under the session.

    pytest collects it in place of the rootdir, so `-k`, `-m`, deselection and
    `--collect-only` work as usual, while `-k` matches check names, never the directories
    the checks happen to be installed in (a directory under the session is not matched).
    """

    def __init__(
        self,
        *,
        files: Sequence[Path],
        probes: Sequence[tuple[ComponentSpec, ProbeSpec]] = (),
        state_dir: Path | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.files = files
        self.probes = probes
        self.state_dir = state_dir

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        """One module per check file, in order, then the configured probes."""
        for path in self.files:
            yield CheckModule.from_parent(self, path=path, nodeid=_nodeid(path, self.config.rootpath))
        for component, probe in self.probes:
            name = f"{component.name}.{probe.role}"
            yield ProbeCheck.from_parent(
                self,
                name=name,
                nodeid=f"{probe.where.partition(':')[0] or 'orchestrator.yaml'}::{name}",
                component=component,
                probe=probe,
                state_dir=self.state_dir or Path(".orchestrator"),
            )


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
