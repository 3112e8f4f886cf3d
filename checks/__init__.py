"""The built-in health checks, collected by `pytest --orchestrator-health`."""
