"""`orchestrator serve`: /healthz, /metrics, the JSON API and the web dashboard, in one process.

Plain Python without pytest (the health checks run in a child process, as `orchestrator
health` runs them). It reads the one state database, read-only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from .app import App, make_server
from .config import ServeSpec, serve_spec
from .healthz import HealthCache, run_checks

__all__ = [
    "App",
    "HealthCache",
    "ServeSpec",
    "is_loopback",
    "make_server",
    "run_checks",
    "serve",
    "serve_spec",
]


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warning(host: str, port: int, token: bool) -> str | None:
    """What to say about binding to `host`: None on loopback."""
    if is_loopback(host):
        return None
    if not token:
        return (
            f"warning: serving on {host}:{port} with no authentication: anyone who can reach it sees "
            "the runs, costs and agent transcripts; set serve_token (ORCHESTRATOR_SERVE_TOKEN) or bind "
            "to 127.0.0.1"
        )
    return (
        f"warning: serving on {host}:{port} over plain HTTP: the serve_token crosses the network "
        "unencrypted, and /healthz needs none"
    )


def serve(
    app: App,
    host: str,
    port: int,
    say: Callable[[str], None],
    warn: Callable[[str], None],
) -> None:
    """Serve `app` until interrupted; OSError when host:port cannot be bound."""
    server = make_server(app, host, port)
    try:
        bound = server.server_address[1]
        caution = warning(host, bound, bool(app.token))
        if caution:
            warn(caution)
        shown = f"[{host}]" if ":" in host else host
        say(f"serving {app.state_dir} on http://{shown}:{bound}/ (/healthz, /metrics, /api/...)")
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
