"""Time `orchestrator sandbox up` on an existing image against the floor of `docker run -d`.

Cases, each in a fresh process, interleaved round by round:
- floor: `docker run -d --init` of the same image (the Go CLI: no interpreter to start);
- from no container: `sandbox up --wait 0` (the image is found by its tag, nothing built);
- from a stopped container: `sandbox up --wait 0` after `docker stop`;
- already running: `sandbox up` (says so);
- the health wait: `sandbox up` from a stopped container with the health checks.

And the floors of a Python tool on the Docker SDK, which `sandbox up` is: the interpreter
and the SDK's import, then the same engine calls in the fewest lines (`containers.run`,
`containers.get(...).start()`). The distance from these to `sandbox up` is this tool's
own cost; the distance from `docker run -d` to them is the interpreter's and the SDK's.

    python tests/bench/bench_sandbox_up.py [--rounds 7]

Needs root, a running Docker engine, debootstrap and the Claude Code CLI (see .ci/setup).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench._common import bench_env, timed

ORCHESTRATOR = [sys.executable, "-m", "pytest_orchestrator", "sandbox"]


def _quiet(args: list[str]) -> None:
    subprocess.run(args, capture_output=True, check=False)


def main() -> int:
    """Run the benchmark and print medians and the ratios to the floor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()

    import docker

    from pytest_orchestrator.sandbox.image import ensure_image, image_inputs
    from tests.support.debian_image import ensure_base_image, find_claude_binary

    client = docker.from_env(version="auto")
    base = ensure_base_image()
    binary = find_claude_binary()
    inputs = image_inputs("/workspace", base, None, binary)
    ensure_image(client, inputs)
    build = ["--base-image", base, "--claude-binary", str(binary)]
    env = {
        **bench_env(),
        "ANTHROPIC_API_KEY": "sk-ant-api03-" + "Bench" * 6,
        "GH_TOKEN": "ghp_" + "Bench" * 6,
    }
    floor_name, name = f"orch-bench-{uuid.uuid4().hex[:8]}", f"orch-bench-{uuid.uuid4().hex[:8]}"
    times: dict[str, list[float]] = {
        "floor": [],
        "no container": [],
        "stopped": [],
        "running": [],
        "stopped, health": [],
        "sdk floor, run": [],
        "sdk floor, start": [],
    }
    sdk = "import docker, sys; client = docker.from_env(version='auto'); "
    sdk_run = [
        sys.executable,
        "-c",
        sdk + "client.containers.run(sys.argv[1], detach=True, init=True, name=sys.argv[2])",
    ]
    sdk_start = [sys.executable, "-c", sdk + "client.containers.get(sys.argv[1]).start()"]
    try:
        with tempfile.TemporaryDirectory() as here:
            cwd = Path(here)
            for _ in range(options.rounds):
                times["floor"].append(
                    timed(["docker", "run", "-d", "--init", "--name", floor_name, inputs.tag], cwd, env)
                )
                _quiet(["docker", "stop", "-t", "1", floor_name])
                times["sdk floor, start"].append(timed([*sdk_start, floor_name], cwd, env))
                _quiet(["docker", "rm", "-f", floor_name])
                times["sdk floor, run"].append(timed([*sdk_run, inputs.tag, floor_name], cwd, env))
                _quiet(["docker", "rm", "-f", floor_name])
                up = [*ORCHESTRATOR, "up", "--name", name]
                times["no container"].append(timed([*up, "--wait", "0", *build], cwd, env))
                times["running"].append(timed(up, cwd, env))
                _quiet(["docker", "stop", "-t", "1", name])
                times["stopped"].append(timed([*up, "--wait", "0"], cwd, env))
                _quiet(["docker", "stop", "-t", "1", name])
                times["stopped, health"].append(timed(up, cwd, env))
                _quiet(["docker", "rm", "-f", name])
    finally:
        _quiet(["docker", "rm", "-f", floor_name, name])
        _quiet(["docker", "volume", "rm", f"{name}-workspace"])
    medians = {case: statistics.median(values) for case, values in times.items()}
    floor = medians["floor"]
    # Each case against the SDK floor of the same engine work.
    sdk_floor = {"no container": "sdk floor, run", "stopped": "sdk floor, start"}
    print(f"image {inputs.tag}, {options.rounds} rounds, medians:")
    for case, median in medians.items():
        line = f"  {case:<17} {median:6.3f}s  {median / floor:4.2f}x the floor"
        if case in sdk_floor:
            line += f", {(median - medians[sdk_floor[case]]) * 1000:+.0f} ms against the {sdk_floor[case]}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
