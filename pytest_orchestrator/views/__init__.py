"""The operator's terminal views: `orchestrator status`, `orchestrator logs` and `orchestrator crashes`.

Plain Python that reads state.db and the log files; it never imports pytest, and what it
imports beyond the standard library (the Docker SDK for a container's logs) it imports
when used, so each command starts in a few tens of milliseconds.
"""
