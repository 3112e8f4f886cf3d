"""An in-memory OpenTelemetry tracer and meter, exported once over OTLP/HTTP with a bounded wait."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..redact import redact

SERVICE_NAME = "orchestrator"


def _display(endpoint: str) -> str:
    """The endpoint for messages, without any credentials in its userinfo."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def ns(seconds: float) -> int:
    return int(seconds * 1e9)


@contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    # The exporter logs each failure with a traceback; we report one line instead.
    logger = logging.getLogger("opentelemetry")
    previous = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = previous


class Telemetry:
    """An in-memory tracer and meter whose contents `export()` sends to an OTLP/HTTP endpoint."""

    def __init__(self, endpoint: str, timeout: float, service_name: str = SERVICE_NAME) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        resource = Resource.create({"service.name": service_name})
        self._spans = InMemorySpanExporter()
        self._tracer_provider = TracerProvider(resource=resource)
        self._tracer_provider.add_span_processor(SimpleSpanProcessor(self._spans))
        self._reader = InMemoryMetricReader()
        self._meter_provider = MeterProvider(resource=resource, metric_readers=[self._reader])
        self.tracer = self._tracer_provider.get_tracer("pytest_orchestrator")
        self.meter = self._meter_provider.get_meter("pytest_orchestrator")

    def span(
        self,
        name: str,
        start: float,
        stop: float,
        attributes: Mapping[str, Any],
        parent: Any = None,
    ) -> Any:
        """Record a finished span with explicit times; secrets are masked in string attributes."""
        from opentelemetry import trace

        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(name, context=context, start_time=ns(start))
        for key, value in attributes.items():
            span.set_attribute(key, redact(value) if isinstance(value, str) else value)
        span.end(end_time=ns(stop))
        return span

    def _export(self) -> list[str]:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import MetricExportResult
        from opentelemetry.sdk.trace.export import SpanExportResult

        failed = []
        spans = self._spans.get_finished_spans()
        if spans:
            exporter = OTLPSpanExporter(endpoint=f"{self.endpoint}/v1/traces", timeout=self.timeout)
            if exporter.export(spans) is not SpanExportResult.SUCCESS:
                failed.append("traces")
            exporter.shutdown()  # type: ignore[no-untyped-call]
        metrics = self._reader.get_metrics_data()
        if metrics is not None and metrics.resource_metrics:
            metric_exporter = OTLPMetricExporter(endpoint=f"{self.endpoint}/v1/metrics", timeout=self.timeout)
            result = metric_exporter.export(metrics, timeout_millis=self.timeout * 1000)
            if result is not MetricExportResult.SUCCESS:
                failed.append("metrics")
            metric_exporter.shutdown()
        return failed

    def export(self) -> str | None:
        """Send what was recorded; return a one-line warning if it did not all arrive."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                with _quiet_exporter_logs():
                    outcome["failed"] = self._export()
            except Exception as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        # The exporter's own timeout covers one request; the join bounds retries as well.
        worker = threading.Thread(target=run, name="orchestrator-otlp-export", daemon=True)
        worker.start()
        worker.join(self.timeout * 2 + 1)
        where = _display(self.endpoint)
        if worker.is_alive():
            return f"telemetry export to {where} timed out after {self.timeout * 2 + 1:g}s"
        if "error" in outcome:
            return redact(f"telemetry export to {where} failed: {outcome['error']}")
        if outcome.get("failed"):
            return (
                f"telemetry export to {where} failed for {' and '.join(outcome['failed'])} "
                "(is the collector running?)"
            )
        return None
