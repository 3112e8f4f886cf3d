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
    """Under `-n`, hand each plan file to one worker, which runs its tasks in order (`--dist loadfile`)."""
    dist = config.getoption("dist", "no")
    if dist == "load":
        config.option.dist = "loadfile"
    elif dist in _UNORDERED:
        raise pytest.UsageError(
            f"--dist {dist} would break the order of a plan's tasks: use --dist loadfile "
            "(the default for plans with -n) or loadgroup"
        )
    # xdist would hand out the plans with the most tasks first; the plugin ordered them by
    # priority in the collection, and xdist hands out its units in that order without this.
    config.option.loadscopereorder = False
