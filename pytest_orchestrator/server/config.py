"""The `serve:` section of orchestrator.yaml: where `orchestrator serve` listens, how long /healthz caches."""

from __future__ import annotations

from dataclasses import dataclass

from ..config_file import ConfigFile, Reader

SERVE_KEYS = ("host", "port", "health_cache", "health_timeout")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class ServeSpec:
    """The address to listen on, how long a health document stays fresh, how long its checks may take."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    health_cache: float = 5.0
    health_timeout: float = 120.0


def serve_spec(file: ConfigFile | None) -> ServeSpec:
    """The `serve:` section; each bad value is an error naming its file and line."""
    reader = Reader(file)
    data = file.data if file is not None else {}
    section = reader.mapping(("serve",), data.get("serve"), SERVE_KEYS)
    host = section.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host.strip():
        raise reader.fail(("serve", "host"), f"host must be an address or a host name, not {host!r}")
    port = section.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise reader.fail(("serve", "port"), f"port must be a whole number from 0 to 65535, not {port!r}")
    return ServeSpec(
        host=host.strip(),
        port=port,
        health_cache=reader.number(("serve", "health_cache"), section.get("health_cache", 5.0)),
        health_timeout=reader.seconds(("serve", "health_timeout"), section.get("health_timeout", 120.0)),
    )
