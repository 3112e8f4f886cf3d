"""What the benchmarks share: how pytest is started, with which environment, and how a call is timed."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]


def bench_env() -> dict[str, str]:
    """The caller's environment without orchestrator or OpenTelemetry settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "OTEL_"))}
    return env


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    """The wall time of one run of `args`; a failed run ends the benchmark with its output."""
    started = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return elapsed


def median_ms(run: Callable[[], object], rounds: int) -> tuple[float, float]:
    """The median and minimum wall time of `run`, in milliseconds, after one warm-up."""
    run()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, min(times) * 1000


@contextmanager
def state_project() -> Iterator[tuple[Path, dict[str, str]]]:
    """A throwaway project whose state lives in `state/`, and the environment to run this
    checkout's `orchestrator` in it, its bytecode cached apart so each run is a warm start."""
    with tempfile.TemporaryDirectory() as project_dir, tempfile.TemporaryDirectory() as pycache:
        project = Path(project_dir)
        (project / "pytest.ini").write_text("[pytest]\norchestrator_state_dir = state\n")
        env = bench_env()
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(PYTHONPATH=str(REPO), PYTHONPYCACHEPREFIX=pycache)
        yield project, env
