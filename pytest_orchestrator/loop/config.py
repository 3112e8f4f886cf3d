"""The loop's and the queue's parts of orchestrator.yaml: the loop's polls, stop file and concurrency;
the queue's age boost."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config_file import ConfigFile, Reader
from ..priority import QueueSpec

LOOP_KEYS = ("poll_interval", "stop_hook_file", "max_concurrent_tasks")
QUEUE_KEYS = ("age_boost_per_hour", "age_boost_cap")


@dataclass(frozen=True)
class LoopSpec:
    """Seconds between rounds, the file whose appearance ends the loop, and its -n default."""

    poll_interval: float = 30.0
    stop_hook_file: Path = Path(".orchestrator/stop")
    max_concurrent_tasks: int | None = None


def loop_spec(file: ConfigFile | None, root: Path) -> LoopSpec:
    """The `loop:` section of the config file; a relative stop file is under the project `root`."""
    reader = Reader(file)
    data = file.data if file is not None else {}
    section = reader.mapping(("loop",), data.get("loop"), LOOP_KEYS)
    stop = section.get("stop_hook_file", str(LoopSpec.stop_hook_file))
    if not isinstance(stop, str) or not stop.strip():
        raise reader.fail(("loop", "stop_hook_file"), f"stop_hook_file must be a path, not {stop!r}")
    try:
        stop_file = root / Path(stop).expanduser()
    except RuntimeError as exc:  # ~user of no such user
        raise reader.fail(("loop", "stop_hook_file"), f"stop_hook_file: {exc}") from None
    if stop_file.is_dir():
        raise reader.fail(("loop", "stop_hook_file"), f"stop_hook_file {stop!r} is a directory: name a file")
    concurrent = section.get("max_concurrent_tasks")
    return LoopSpec(
        poll_interval=reader.seconds(("loop", "poll_interval"), section.get("poll_interval", 30)),
        stop_hook_file=stop_file,
        max_concurrent_tasks=(
            reader.count(("loop", "max_concurrent_tasks"), concurrent) if concurrent is not None else None
        ),
    )


def queue_spec(file: ConfigFile | None) -> QueueSpec:
    """The `queue:` section of the config file: the age boost's rate (points an hour) and cap."""
    reader = Reader(file)
    data = file.data if file is not None else {}
    section = reader.mapping(("queue",), data.get("queue"), QUEUE_KEYS)
    defaults = QueueSpec()
    return QueueSpec(
        age_boost_per_hour=reader.number(
            ("queue", "age_boost_per_hour"), section.get("age_boost_per_hour", defaults.age_boost_per_hour)
        ),
        age_boost_cap=reader.number(
            ("queue", "age_boost_cap"), section.get("age_boost_cap", defaults.age_boost_cap)
        ),
    )
