"""Health telemetry reaches a real OTLP receiver, stays bounded, and is off when unset."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.checks import CHECKS
from tests.support.otlp_receiver import OTLPReceiver, Span

WARNING = "orchestrator: telemetry export to"
# A no-hang guard for a run with --orchestrator-otlp-timeout 1, not a benchmark.
BOUND = 30.0


# A hang guard for the in-process runs, not a benchmark.
pytestmark = [pytest.mark.usefixtures("dead_docker"), pytest.mark.timeout(120)]


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    """A running OTLP/HTTP receiver on loopback."""
    with OTLPReceiver() as running:
        yield running


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint whose TCP connections are accepted by the kernel and never answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def closed_endpoint() -> str:
    """A loopback endpoint with nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def health(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, Any], float]:
    """Run `pytest --orchestrator-health`; return result, document and duration."""
    began = time.monotonic()
    result = pytester.runpytest("--orchestrator-health", "-p", "no:cacheprovider", *args)
    elapsed = time.monotonic() - began
    document = json.loads("\n".join(result.outlines))
    return result, document, elapsed


def split(spans: list[Span]) -> tuple[Span, dict[str, Span]]:
    """The single parent span and the check spans by check name."""
    parents = [s for s in spans if s.name == "orchestrator.health"]
    assert len(parents) == 1, [s.name for s in spans]
    prefix = "orchestrator.health."
    children = {s.name[len(prefix) :]: s for s in spans if s.name.startswith(prefix)}
    assert len(children) == len(spans) - 1, [s.name for s in spans]
    return parents[0], children


def test_health_spans_and_metrics_arrive(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    result, document, _ = health(pytester)

    assert result.ret == 1
    assert document["status"] == "unhealthy"
    assert WARNING not in result.stderr.str()
    assert receiver.errors == []
    # The export is synchronous and finished before the subprocess exited.
    parent, children = split(receiver.spans())
    assert sorted(children) == sorted(CHECKS)
    assert parent.resource["service.name"] == "orchestrator"
    assert parent.parent_span_id == ""
    assert parent.attributes["health.status"] == "unhealthy"
    assert parent.status_code == 2  # STATUS_CODE_ERROR: the run was unhealthy
    for name, span in children.items():
        assert span.trace_id == parent.trace_id
        assert span.parent_span_id == parent.span_id
        assert span.resource["service.name"] == "orchestrator"
        assert parent.start_ns <= span.start_ns <= span.end_ns <= parent.end_ns
        assert span.attributes["check.name"] == name
        assert span.attributes["check.status"] == document["checks"][name]["status"]
        assert span.attributes["check.message"] == document["checks"][name]["message"]
        assert span.attributes["check.level"] == document["checks"][name]["level"]
    assert children["sandbox"].attributes["check.status"] == "failed"
    assert "docker daemon not reachable" in children["sandbox"].attributes["check.message"]
    assert children["orchestrator"].attributes["check.status"] == "ok"
    assert children["zombies"].attributes["check.level"] == "warning"

    total = receiver.metric("orchestrator_health_checks_total")
    assert total.kind == "sum"
    assert total.resource["service.name"] == "orchestrator"
    for name in CHECKS:
        assert total.value(check=name) == 1
    assert len(total.points) == len(CHECKS)
    status = receiver.metric("orchestrator_health_check_status")
    assert status.kind == "gauge"
    assert status.value(check="orchestrator") == 1
    assert status.value(check="sandbox") == 0
    assert status.value(check="claude_code") == 0
    assert status.value(check="claude_auth") == 0
    assert status.value(check="github_token") == 0
    assert status.value(check="zombies") == 0


def test_selected_check_only(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver
) -> None:
    # gzip is what many collectors' clients send; the flag also beats the environment.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", closed_endpoint())
    result, document, _ = health(pytester, "-k", "orchestrator", "--orchestrator-otlp-endpoint", receiver.url)

    assert result.ret == 0
    assert list(document["checks"]) == ["orchestrator"]
    assert WARNING not in result.stderr.str()
    parent, children = split(receiver.spans())
    assert list(children) == ["orchestrator"]
    assert children["orchestrator"].parent_span_id == parent.span_id
    assert parent.attributes["health.status"] == "healthy"
    assert receiver.metric("orchestrator_health_checks_total").value(check="orchestrator") == 1
    assert [p.attributes for p in receiver.metric("orchestrator_health_checks_total").points] == [
        {"check": "orchestrator"}
    ]
    assert {h.get("Content-Encoding") for _, h in receiver.requests} == {"gzip"}


def assert_bounded_warning(
    result: pytest.RunResult, document: dict[str, Any], elapsed: float, endpoint: str
) -> None:
    """The run failed as the checks say, with one warning line, no traceback, in bounded time."""
    assert elapsed < BOUND, f"health run took {elapsed:.1f}s"
    assert result.ret == 1
    assert document["checks"]["sandbox"]["status"] == "failed"
    assert document["checks"]["orchestrator"]["status"] == "ok"
    warnings = [line for line in result.errlines if WARNING in line]
    assert len(warnings) == 1, result.errlines
    assert warnings[0].startswith(WARNING), f"warning not on a line of its own: {warnings[0]!r}"
    assert f"{WARNING} {endpoint} " in warnings[0]
    assert "fail" in warnings[0] or "timed out" in warnings[0]
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    sys.stderr.write(f"\n[telemetry] {endpoint} cost {elapsed:.2f}s in total\n")


def test_unreachable_endpoint_is_bounded(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = closed_endpoint()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    result, document, elapsed = health(pytester, "--orchestrator-otlp-timeout", "1")
    assert_bounded_warning(result, document, elapsed, endpoint)


def test_silent_endpoint_is_bounded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, silent_endpoint: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_OTLP_ENDPOINT", silent_endpoint)
    monkeypatch.setenv("ORCHESTRATOR_OTLP_TIMEOUT", "1")
    result, document, elapsed = health(pytester)
    assert_bounded_warning(result, document, elapsed, silent_endpoint)


DISABLED_SCRIPT = """
import sys, pytest
code = pytest.main(["--orchestrator-health", "-p", "no:cacheprovider"])
prefixes = ("opentelemetry.exporter", "opentelemetry.sdk")
loaded = sorted(m for m in sys.modules if m.startswith(prefixes))
print("EXIT", int(code))
print("LOADED", ",".join(loaded) or "-")
"""


def test_disabled_imports_no_exporter(pytester: pytest.Pytester) -> None:
    result = pytester.run(sys.executable, "-c", DISABLED_SCRIPT, timeout=120)

    assert "EXIT 1" in result.outlines
    assert "LOADED -" in result.outlines
    assert WARNING not in result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


GH_TOKEN = "gh-secret-value-4711"
API_KEY = "anthropic-secret-value-0815"

LEAKY_CHECK = """
import os


def check_leaky(check):
    check.ok(f"token {os.environ['GH_TOKEN']} and key {os.environ['ANTHROPIC_API_KEY']}")


def check_leaky_failure(check):
    check.fail(f"rejected {os.environ['ANTHROPIC_API_KEY']} for {os.environ['GH_TOKEN']}")
"""


def leaky_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> tuple[pytest.RunResult, dict[str, Any]]:
    """Run the health checks plus two custom checks whose messages are built from the secrets."""
    monkeypatch.setenv("GH_TOKEN", GH_TOKEN)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    pytester.makepyfile(check_leaky=LEAKY_CHECK)
    result, document, _ = health(pytester, "--orchestrator-check-paths", "check_leaky.py")
    # The custom checks ran, so their messages really were built from the secrets.
    assert document["checks"]["leaky"]["status"] == "ok"
    assert document["checks"]["leaky_failure"]["status"] == "failed"
    return result, document


def test_secrets_stay_out_of_spans(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver
) -> None:
    leaky_run(pytester, monkeypatch, receiver.url)

    _, children = split(receiver.spans())
    assert {"leaky", "leaky_failure"} <= set(children)
    assert children["leaky"].attributes["check.message"] == "token *** and key ***"
    assert children["leaky_failure"].attributes["check.message"] == "rejected *** for ***"
    exported = json.dumps([[s.name, s.attributes, s.resource] for s in receiver.spans()])
    exported += json.dumps([[m.resource, [p.attributes for p in m.points]] for m in receiver.metrics()])
    for secret in (GH_TOKEN, API_KEY):
        assert secret not in exported


def test_secrets_stay_out_of_output(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver
) -> None:
    result, _ = leaky_run(pytester, monkeypatch, receiver.url)

    for secret in (GH_TOKEN, API_KEY):
        assert secret not in result.stdout.str(), "secret in the health document on stdout"
        assert secret not in result.stderr.str(), "secret in pytest's report on stderr"
