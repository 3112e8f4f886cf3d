"""Traces and metrics through OpenTelemetry, exported over OTLP/HTTP only when an endpoint is set.

Spans and metrics are recorded in memory during the run and exported once at its
end, from the controller: one bounded export instead of a background exporter that
could hang a CI job on an unreachable collector. Nothing here is imported unless an
endpoint is configured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .redact import redact

if TYPE_CHECKING:
    from .config import Settings
    from .health import HealthReport
    from .taskrun import Finished

SERVICE_NAME = "orchestrator"


def _display(endpoint: str) -> str:
    """The endpoint for messages, without any credentials in its userinfo."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def _ns(seconds: float) -> int:
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
        span = self.tracer.start_span(name, context=context, start_time=_ns(start))
        for key, value in attributes.items():
            span.set_attribute(key, redact(value) if isinstance(value, str) else value)
        span.end(end_time=_ns(stop))
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


def export_health(report: HealthReport, settings: Settings) -> str | None:
    """Emit the health spans and metrics of `report`; None when disabled or delivered."""
    if not settings.otlp_endpoint or not report.checks:
        return None
    telemetry = Telemetry(settings.otlp_endpoint, settings.otlp_timeout)
    results = list(report.checks.values())
    starts = [r.start for r in results if r.start is not None]
    stops = [r.stop for r in results if r.stop is not None]
    begin = min(starts) if starts else report.timestamp.timestamp()
    end = max(stops) if stops else begin
    checks_total = telemetry.meter.create_counter(
        "orchestrator_health_checks_total", description="Total health checks performed"
    )
    check_status = telemetry.meter.create_gauge(
        "orchestrator_health_check_status",
        description="Health check status (1=ok, 0=failed/skipped)",
    )
    from opentelemetry import trace

    parent = telemetry.tracer.start_span("orchestrator.health", start_time=_ns(begin))
    parent.set_attribute("health.status", report.status)
    for result in results:
        telemetry.span(
            f"orchestrator.health.{result.check_name}",
            result.start if result.start is not None else begin,
            result.stop if result.stop is not None else end,
            {
                "check.name": result.check_name,
                "check.status": result.status,
                "check.message": result.message,
                "check.level": result.level,
            },
            parent=parent,
        )
        checks_total.add(1, {"check": result.check_name})
        check_status.set(1 if result.status == "ok" else 0, {"check": result.check_name})
    if report.status == "unhealthy":
        parent.set_status(trace.Status(trace.StatusCode.ERROR, report.status))
    parent.end(end_time=_ns(end))
    return telemetry.export()


def export_tasks(finished: Sequence[Finished], settings: Settings) -> str | None:
    """Emit an `orchestrator.task` span per task and the task counters; None when disabled or delivered."""
    if not settings.otlp_endpoint or not finished:
        return None
    telemetry = Telemetry(settings.otlp_endpoint, settings.otlp_timeout)
    tasks_total = telemetry.meter.create_counter(
        "orchestrator_tasks_total", description="Total tasks executed"
    )
    tokens_total = telemetry.meter.create_counter(
        "orchestrator_tokens_total", description="Total tokens used"
    )
    cost_total = telemetry.meter.create_counter(
        "orchestrator_cost_usd_total", description="Total cost in USD"
    )
    for item in finished:
        result = item.result
        telemetry.span(
            "orchestrator.task",
            item.start,
            item.stop,
            {
                "task.id": result.task_id,
                "task.title": item.title,
                "task.status": result.status,
                "task.nodeid": item.nodeid,
                "claude.tokens": result.tokens,
                "claude.cost_usd": result.cost_usd,
                "claude.session_id": result.session_id,
                "claude.num_turns": result.num_turns,
                "gen_ai.system": "anthropic",
                "gen_ai.usage.input_tokens": result.usage.input_tokens,
                "gen_ai.usage.output_tokens": result.usage.output_tokens,
                **({"task.error": result.error} if result.error else {}),
            },
        )
        tasks_total.add(1, {"status": result.status})
        tokens_total.add(result.tokens)
        cost_total.add(result.cost_usd)
    return telemetry.export()
