"""Orchestration overhead per task: wall time of `pytest plans/x.md` minus the time `claude` took.

N one-turn tasks run against the scripted Messages API server, with the real Claude
Code CLI in the Debian sandbox. A wrapper around `claude` inside the container records
when each process started and ended, so the agent's own time is measured, not guessed.

    python tests/bench/bench_dispatch.py [--tasks 20] [--rounds 3]

Needs a running Docker engine and the sandbox image (see .ci/setup).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench._common import PYTEST, bench_env

WRAPPER = """#!/bin/sh
start=$(date +%s%N)
claude "$@"
code=$?
echo "$start $(date +%s%N)" >> /tmp/claude-times
exit $code
"""


def _plan(tasks: int) -> str:
    body = ["# Benchmark milestone", ""]
    for n in range(1, tasks + 1):
        body += [f"## Task 1.{n}: Step {n}", "", "**Description:**", f"Do step {n}.", ""]
    return "\n".join(body)


def main() -> int:
    """Run the benchmark and print the overhead per task."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()

    import docker

    from tests.support.debian_image import ensure_debian_image
    from tests.support.messages_server import MessagesServer, reply

    client = docker.DockerClient(version="auto")
    image = ensure_debian_image()
    overheads, walls, agent_times, startups = [], [], [], []
    for _ in range(options.rounds):
        steps = [reply("STATUS: complete") for _ in range(options.tasks)]
        with MessagesServer(steps) as server, tempfile.TemporaryDirectory() as work:
            name = f"orch-bench-{uuid.uuid4().hex[:8]}"
            container = client.containers.run(
                image,
                name=name,
                detach=True,
                network_mode="host",
                environment={
                    "ANTHROPIC_BASE_URL": server.url,
                    "ANTHROPIC_API_KEY": "bench-key",
                    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                },
            )
            try:
                container.exec_run(
                    [
                        "sh",
                        "-c",
                        f"cat > /usr/local/bin/timed-claude <<'EOF'\n{WRAPPER}EOF\nchmod +x /usr/local/bin/timed-claude",
                    ]
                )
                Path(work, "plans").mkdir()
                Path(work, "plans", "bench.md").write_text(_plan(options.tasks))
                env = bench_env()
                args = [
                    *PYTEST,
                    "plans/bench.md",
                    "--orchestrator-sandbox",
                    name,
                    "--orchestrator-claude-command",
                    "timed-claude",
                ]
                started = time.perf_counter()
                subprocess.run([*args, "--collect-only"], cwd=work, env=env, capture_output=True, check=True)
                startups.append(time.perf_counter() - started)
                started = time.perf_counter()
                result = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - started
                if result.returncode != 0:
                    raise SystemExit(f"benchmark run failed ({result.returncode}):\n{result.stdout[-3000:]}")
                times = container.exec_run(["cat", "/tmp/claude-times"]).output.decode().split("\n")
                spans = [tuple(map(int, line.split())) for line in times if line.strip()]
                assert len(spans) == options.tasks, spans
                agent = sum(end - start for start, end in spans) / 1e9
            finally:
                container.remove(force=True)
        walls.append(wall)
        agent_times.append(agent)
        overheads.append((wall - agent) / options.tasks)
        print(f"round: wall {wall:.2f}s, claude {agent:.2f}s, overhead {overheads[-1] * 1000:.0f} ms/task")

    print(f"tasks per round: {options.tasks}, rounds: {options.rounds}")
    print(
        f"median wall {statistics.median(walls):.2f}s, median claude time {statistics.median(agent_times):.2f}s"
    )
    startup = statistics.median(startups)
    print(
        f"orchestration overhead per task (median): {statistics.median(overheads) * 1000:.0f} ms "
        "(target < 100 ms; includes pytest start-up spread over the tasks)"
    )
    print(
        f"pytest start-up and collection alone (--collect-only): {startup:.2f}s; overhead per task "
        f"without it: {statistics.median((w - a - startup) / options.tasks for w, a in zip(walls, agent_times, strict=True)) * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
