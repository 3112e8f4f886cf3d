"""Agents: one module per agent protocol. An agent is a function `run(task, sandbox, context)`
returning a TaskResult; the plugin's dispatch hook calls the one in use."""
