"""The operator's terminal views of the watchdog: `orchestrator status` and `orchestrator logs`.

Plain Python that reads state.db and the log files; it never imports pytest, and what it
imports beyond the standard library (the Docker SDK for a container's logs) it imports
when used, so each command starts in a few tens of milliseconds.
"""
