"""Repository-level pytest configuration: the plugin's own test suite uses pytester."""

pytest_plugins = ["pytester"]
