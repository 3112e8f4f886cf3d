"""The fixtures checks and conftest agents use: settings, the sandbox, the state, the check record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ..health import SANDBOX_DOWN
from ..settings import Settings
from .checks import CHECK_NAME, CHECK_RECORD, CheckRecord
from .options import config_file, settings_for

if TYPE_CHECKING:
    from ..metrics.health import HealthThresholds
    from ..sandbox import Sandbox, SandboxProbe
    from ..state import StateStore

THRESHOLDS = pytest.StashKey["HealthThresholds"]()


def health_thresholds_for(config: pytest.Config) -> HealthThresholds:
    """The `health:` section of the config file; a bad one is a usage error."""
    if THRESHOLDS not in config.stash:
        from ..config_file import ConfigFileError
        from ..metrics.health import health_thresholds

        try:
            config.stash[THRESHOLDS] = health_thresholds(config_file(config))
        except ConfigFileError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[THRESHOLDS]


@pytest.fixture(scope="session")
def orchestrator_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved orchestrator settings (flag > ORCHESTRATOR_* env > ini > default)."""
    return settings_for(pytestconfig)


@pytest.fixture(scope="session")
def sandbox_probe(orchestrator_settings: Settings) -> SandboxProbe:
    """What the engine says about the sandbox container; never skips or raises."""
    from ..sandbox import probe

    return probe(orchestrator_settings.sandbox, orchestrator_settings.docker_timeout)


@pytest.fixture(scope="session")
def sandbox(sandbox_probe: SandboxProbe, orchestrator_settings: Settings) -> Sandbox:
    """The running sandbox container; skips the requesting item when it is not running."""
    from ..sandbox import attach

    if not sandbox_probe.running:
        pytest.skip(SANDBOX_DOWN)
    return attach(orchestrator_settings.sandbox, orchestrator_settings.docker_timeout, sandbox_probe)


@pytest.fixture(scope="session")
def orchestrator_state(orchestrator_settings: Settings) -> Iterator[StateStore | None]:
    """The state database, read-only; None when no run has written state yet."""
    from ..state import StateError, StateStore

    try:
        store = StateStore.read(orchestrator_settings.state_dir)
    except StateError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield store
    if store is not None:
        store.close()


@pytest.fixture(scope="session")
def health_thresholds(pytestconfig: pytest.Config) -> HealthThresholds:
    """When the numbers degrade the health: the `health:` section of the config file."""
    return health_thresholds_for(pytestconfig)


@pytest.fixture
def check(request: pytest.FixtureRequest) -> CheckRecord:
    """The running check's record: `check.ok(message)` and `check.fail(message)`."""
    record = CheckRecord(request.node.stash.get(CHECK_NAME, request.node.name))
    request.node.stash[CHECK_RECORD] = record
    return record
