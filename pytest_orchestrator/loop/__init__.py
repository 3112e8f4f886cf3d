"""The continuous loop: rounds of dispatch until a stop is asked, its heartbeat, and the queue.

Plain Python. Each round is a whole task run (a pytest session, started by the plugin's
adapter); between rounds the loop waits `poll_interval`, beating its heartbeat, and checks
for the stop file and signals.
"""

from __future__ import annotations

from .config import LoopSpec, loop_spec, queue_spec
from .store import RUNNING, LoopRow, LoopStore, QueueRow, QueueStore

__all__ = ["RUNNING", "LoopRow", "LoopSpec", "LoopStore", "QueueRow", "QueueStore", "loop_spec", "queue_spec"]
