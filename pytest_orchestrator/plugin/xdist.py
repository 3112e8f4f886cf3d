"""What the plugin takes from pytest-xdist: who this process is, the run's id, plan-level grouping."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from .rounds import loop_key, round_start

RUN_KEY = pytest.StashKey[str]()
RUN_START = pytest.StashKey[float]()
# The controller's start time in each worker's input, so that all of them order the plans alike.
START_INPUT = "orchestrator_start"


def workerinput(config: pytest.Config) -> dict[str, Any] | None:
    """xdist's input to this worker, or None on a controller or a single process."""
    return getattr(config, "workerinput", None)


def worker_id(config: pytest.Config) -> str:
    """The xdist worker running this process (`gw0`, ...), or 'main'."""
    return str((workerinput(config) or {}).get("workerid", "main"))


def is_controller(config: pytest.Config) -> bool:
    """Whether this process hands items to xdist workers and runs none itself (xdist's own rule)."""
    return (
        workerinput(config) is None
        and config.getoption("dist", "no") != "no"
        and bool(config.getoption("tx", None))
        and not config.getoption("collectonly", False)
    )


def run_key(config: pytest.Config) -> str:
    """The key shared by the controller and the workers of one invocation: xdist's testrunuid."""
    if RUN_KEY not in config.stash:
        # The rounds of a continuous loop are one run, for its budget.
        given = loop_key() or (workerinput(config) or {}).get("testrunuid")
        config.stash[RUN_KEY] = given or uuid.uuid4().hex
    return config.stash[RUN_KEY]


def run_start(config: pytest.Config) -> float:
    """When this invocation started: the same in the controller and its workers, and in a loop round."""
    if RUN_START not in config.stash:
        given = round_start() or (workerinput(config) or {}).get(START_INPUT)
        config.stash[RUN_START] = float(given) if given else time.time()
    return config.stash[RUN_START]


# Modes that would run a plan's tasks on several workers at once, or all of them on each.
_UNORDERED = ("worksteal", "each")


def group_by_plan(config: pytest.Config) -> None:
    """Under `-n` or `--tx`, hand each plan file to one worker, which runs its tasks in order
    (`--dist loadfile`)."""
    dist = config.getoption("dist", "no")
    if dist == "load":
        config.option.dist = "loadfile"
    elif dist == "no" and config.getoption("tx", None) and workerinput(config) is None:
        # `--tx` alone would start no worker: xdist distributes only with a --dist mode.
        config.option.dist = "loadfile"
    elif dist in _UNORDERED:
        raise pytest.UsageError(
            f"--dist {dist} would break the order of a plan's tasks: use --dist loadfile "
            "(the default for plans with -n) or loadgroup"
        )
    # xdist would hand out the plans with the most tasks first; the plugin ordered them by
    # priority in the collection, and xdist hands out its units in that order without this.
    config.option.loadscopereorder = False


def _tx_env(spec: str) -> dict[str, str]:
    """The `env:` settings of one `--tx` spec (`2*popen//env:NAME=value`), as execnet reads them."""
    import execnet

    count, star, rest = spec.partition("*")
    try:
        env = execnet.XSpec(rest if star and count.isdigit() else spec).env
        return {str(name): str(value) for name, value in env.items()}
    except Exception:
        # xdist itself says what is wrong with a spec.
        return {}


def check_engines(config: pytest.Config) -> None:
    """Refuse a `--tx` whose DOCKER_HOST execnet cut short: it splits every spec at `//`."""
    from ..redact import redact

    for spec in config.getoption("tx", None) or ():
        host = _tx_env(spec).get("DOCKER_HOST")
        if host is not None and (not host or host.endswith(":")):
            # The spec as written may carry the engine's password (ssh://user:password@host).
            raise pytest.UsageError(
                f"--tx {redact(spec)}: execnet splits a spec at '//', so its worker would get "
                f"DOCKER_HOST={host!r}; "
                "write the engine without '//': env:DOCKER_HOST=HOST:PORT (tcp) or "
                "env:DOCKER_HOST=unix:/path/to/docker.sock"
            )


def engine_environs(config: pytest.Config) -> dict[str, dict[str, str]]:
    """The Docker engines of this run's `--tx` specs (`popen//env:DOCKER_HOST=...`), each with the
    Docker variables that reach it: its spec's, over this process's."""
    from ..sandbox.docker import DOCKER_ENV, docker_env, engine_id

    found: dict[str, dict[str, str]] = {}
    for spec in config.getoption("tx", None) or ():
        overrides = {name: value for name, value in _tx_env(spec).items() if name in DOCKER_ENV}
        if "DOCKER_HOST" in overrides:
            environ = docker_env({**docker_env(), **overrides})
            found.setdefault(engine_id(environ), environ)
    return found
