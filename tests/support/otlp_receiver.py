"""A small OTLP/HTTP receiver on loopback that decodes what exporters send it, for tests."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PROTOBUF = "application/x-protobuf"


def any_value(value: AnyValue) -> Any:
    """The plain Python value of an OTLP AnyValue."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Iterator[KeyValue] | Any) -> dict[str, Any]:
    """OTLP key/value pairs as a plain dict."""
    return {pair.key: any_value(pair.value) for pair in pairs}


@dataclass(frozen=True)
class Span:
    """One received span, with ids as hex strings and attributes as a plain dict."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str


@dataclass(frozen=True)
class DataPoint:
    """One received number data point of a sum or gauge."""

    attributes: dict[str, Any]
    value: float


@dataclass(frozen=True)
class Metric:
    """One received metric: its name, kind (sum, gauge, ...) and number data points."""

    name: str
    kind: str
    resource: dict[str, Any]
    points: list[DataPoint] = field(default_factory=list)

    def value(self, **attrs: Any) -> float:
        """The value of the single data point whose attributes include `attrs`."""
        found = [p.value for p in self.points if attrs.items() <= p.attributes.items()]
        if len(found) != 1:
            raise LookupError(f"{len(found)} points of {self.name} match {attrs}: {self.points}")
        return found[0]


def _decode_body(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


def _spans(request: ExportTraceServiceRequest) -> list[Span]:
    found = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    Span(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes=attributes(span.attributes),
                        resource=resource,
                        scope=scope_spans.scope.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code,
                        status_message=span.status.message,
                    )
                )
    return found


def _number(point: Any) -> float:
    if point.WhichOneof("value") == "as_double":
        return float(point.as_double)
    return int(point.as_int)


def _metrics(request: ExportMetricsServiceRequest) -> list[Metric]:
    found = []
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data") or ""
                points = []
                if kind in ("sum", "gauge"):
                    points = [
                        DataPoint(attributes(p.attributes), _number(p))
                        for p in getattr(metric, kind).data_points
                    ]
                found.append(Metric(metric.name, kind, resource, points))
    return found


class OTLPReceiver:
    """An OTLP/HTTP (protobuf) receiver on 127.0.0.1 that keeps every span and metric it gets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self._metrics: list[Metric] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.errors: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        """The base URL to use as OTEL_EXPORTER_OTLP_ENDPOINT."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                try:
                    receiver._receive(
                        self.path,
                        dict(self.headers.items()),
                        _decode_body(body, self.headers.get("Content-Encoding", "")),
                    )
                except LookupError as exc:
                    self._answer(404, str(exc).encode())
                    return
                except Exception as exc:  # a bad payload must show up in the test, not kill us
                    receiver.errors.append(f"{self.path}: {type(exc).__name__}: {exc}")
                    self._answer(400, str(exc).encode())
                    return
                response = (
                    ExportTraceServiceResponse()
                    if self.path.endswith("/v1/traces")
                    else ExportMetricsServiceResponse()
                )
                self._answer(200, response.SerializeToString(), PROTOBUF)

            def _answer(self, code: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> None:
        if path.endswith("/v1/traces"):
            spans = _spans(ExportTraceServiceRequest.FromString(body))
            with self._lock:
                self.requests.append((path, headers))
                self._spans.extend(spans)
        elif path.endswith("/v1/metrics"):
            metrics = _metrics(ExportMetricsServiceRequest.FromString(body))
            with self._lock:
                self.requests.append((path, headers))
                self._metrics.extend(metrics)
        else:
            raise LookupError(f"no OTLP signal at {path}")

    def spans(self) -> list[Span]:
        """Every span received so far."""
        with self._lock:
            return list(self._spans)

    def metrics(self) -> list[Metric]:
        """Every metric received so far, one entry per metric per export request."""
        with self._lock:
            return list(self._metrics)

    def metric(self, name: str) -> Metric:
        """The single received metric called `name`."""
        found = [m for m in self.metrics() if m.name == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} metrics named {name!r} received")
        return found[0]

    def wait_for(self, predicate: Callable[[OTLPReceiver], bool], timeout: float = 10) -> bool:
        """Poll `predicate(self)` until it holds or `timeout` s pass; return whether it held."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def start(self) -> OTLPReceiver:
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
