"""Whether this process is a round of the continuous loop, and what the loop told it."""

from __future__ import annotations

import os

# Set in a round's environment: "<round>:<start time>:<loop key>". The start time makes every
# xdist worker of the round take the same decisions, so they collect the same items; the key
# makes the loop's rounds one run, for its budget.
ROUND_ENV = "ORCHESTRATOR_LOOP_ROUND"


def loop_key() -> str | None:
    """The run key shared by the rounds of this process's loop, if it is a round."""
    parts = os.environ.get(ROUND_ENV, "").split(":")
    return parts[2] if len(parts) > 2 and parts[2] else None


def round_start() -> float | None:
    """When this process's round started, if it is a round of the loop."""
    value = os.environ.get(ROUND_ENV, "")
    try:
        return float(value.split(":")[1]) if value else None
    except (ValueError, IndexError):
        return None
