"""Time `pytest --orchestrator-health` (four checks, real engine, healthy) against the floor.

The floor is a bare pytest run of one test file that makes one Docker SDK call. Both
run side by side, interleaved, in fresh processes, so start-up costs count for both.

    python tests/bench/bench_health.py [--rounds 15]

Needs a running Docker engine and busybox-static (see .ci/setup).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench._common import PYTEST, bench_env, timed

FLOOR_TEST = """
import docker

def test_one_docker_call():
    client = docker.DockerClient(version="auto", timeout=5)
    assert client.containers.get({name!r}).status == "running"
"""


def main() -> int:
    """Run the benchmark and print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    options = parser.parse_args()

    import docker

    from tests.support.images import ensure_busybox_image

    client = docker.DockerClient(version="auto")
    image = ensure_busybox_image(client)
    name = f"orch-bench-{uuid.uuid4().hex[:8]}"
    container = client.containers.run(
        image,
        name=name,
        detach=True,
        environment={"GH_TOKEN": "bench-gh", "ANTHROPIC_API_KEY": "bench-key"},
    )
    env = bench_env()
    try:
        with (
            tempfile.TemporaryDirectory() as floor_dir,
            tempfile.TemporaryDirectory() as health_dir,
        ):
            Path(floor_dir, "test_floor.py").write_text(FLOOR_TEST.format(name=name))
            floor = [*PYTEST, "test_floor.py"]
            health = [
                *PYTEST,
                "--orchestrator-health",
                "--orchestrator-sandbox",
                name,
            ]
            # One warm-up each so the page cache holds both sets of modules.
            timed(floor, Path(floor_dir), env)
            timed(health, Path(health_dir), env)
            floor_times, health_times = [], []
            for _ in range(options.rounds):
                floor_times.append(timed(floor, Path(floor_dir), env))
                health_times.append(timed(health, Path(health_dir), env))
    finally:
        container.remove(force=True)

    floor_median = statistics.median(floor_times)
    health_median = statistics.median(health_times)
    print(f"rounds: {options.rounds}")
    print(
        f"floor  (pytest, one Docker SDK call): median {floor_median * 1000:.0f} ms, "
        f"min {min(floor_times) * 1000:.0f} ms"
    )
    print(
        f"health (pytest --orchestrator-health): median {health_median * 1000:.0f} ms, "
        f"min {min(health_times) * 1000:.0f} ms"
    )
    print(f"ratio (median): {health_median / floor_median:.3f}x  (target <= 1.25x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
