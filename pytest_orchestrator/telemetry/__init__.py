"""Traces and metrics through OpenTelemetry, exported over OTLP/HTTP only when an endpoint is set.

Spans and metrics are recorded in memory during the run and exported once at its
end, from the controller: one bounded export instead of a background exporter that
could hang a CI job on an unreachable collector. The OpenTelemetry SDK is imported
only when an endpoint is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..health import HealthReport
    from ..result import FinishedTask


def export_health(report: HealthReport, endpoint: str, timeout: float) -> str | None:
    """Emit the health spans and metrics of `report`; None when disabled or delivered."""
    if not endpoint or not report.checks:
        return None
    from .otlp import Telemetry, ns

    telemetry = Telemetry(endpoint, timeout)
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

    parent = telemetry.tracer.start_span("orchestrator.health", start_time=ns(begin))
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
    if report.status in ("unhealthy", "critical"):
        parent.set_status(trace.Status(trace.StatusCode.ERROR, report.status))
    parent.end(end_time=ns(end))
    return telemetry.export()


def export_tasks(finished: Sequence[FinishedTask], endpoint: str, timeout: float) -> str | None:
    """Emit an `orchestrator.task` span per task and the task counters; None when disabled or delivered."""
    if not endpoint or not finished:
        return None
    from .otlp import Telemetry

    telemetry = Telemetry(endpoint, timeout)
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
                **({"task.engine": result.engine} if result.engine else {}),
            },
        )
        tasks_total.add(1, {"status": result.status})
        tokens_total.add(result.tokens)
        cost_total.add(result.cost_usd)
    return telemetry.export()
