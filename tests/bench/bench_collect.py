"""Time `pytest --collect-only` of large generated plans against a bare pytest floor.

Plans of 1,000 and 10,000 tasks are written to a temporary directory; each is collected
with `pytest --collect-only -q PLAN` in a fresh process, and so is a test file holding one
trivial test (the floor: interpreter and pytest start-up, every installed plugin, this one
included). The runs are interleaved, round after round, and the report gives the median
wall time, the overhead over the floor and each process's peak RSS.

    python tests/bench/bench_collect.py [--tasks 1000 10000] [--rounds 7]
                                        [--format heading] [--base OTHER_CHECKOUT]

--format picks the plan format: `heading` (`## Task 1.1: Title` with labelled fields) or
`checklist` (spec-kit's `- [ ] T0001 [P] [US1] ...` lines). --base times a second checkout
of the project side by side (its directory goes first on PYTHONPATH), to compare a change
against the commit it started from.

Target: 1,000 tasks collect in under a second over the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench._common import PYTEST, bench_env

REPO = Path(__file__).resolve().parents[2]

FLOOR_TEST = "def test_floor():\n    pass\n"


def heading_plan(tasks: int) -> str:
    """A plan of `tasks` heading tasks in phases of 10, each with the usual labelled fields."""
    parts = ["---\nmilestone: bench\n---\n\n# Milestone: collection benchmark\n\n"]
    for n in range(tasks):
        phase, step = divmod(n, 10)
        if step == 0:
            parts.append(f"## Phase {phase + 1}\n\n")
        parts.append(
            f"### Task {phase + 1}.{step + 1}: Implement component {n}\n\n"
            f"**Type:** CODING\n"
            f"**Files:** `src/pkg/module_{n}.py`, `tests/test_module_{n}.py`\n\n"
            f"**Description:** Add the function `handle_{n}()` that parses a record and returns\n"
            f"a normalised value; see the design notes for the edge cases.\n\n"
            f"**Acceptance Criteria:**\n"
            f"- [ ] `handle_{n}()` returns the normalised value\n"
            f"- [ ] invalid records raise `ValueError`\n"
            f"- [ ] unit tests pass\n\n"
            f"**Tests:**\n- `tests/test_module_{n}.py`\n\n"
            f"```python\ndef handle_{n}(record):\n    ...\n```\n\n"
        )
    return "".join(parts)


def checklist_plan(tasks: int) -> str:
    """A spec-kit tasks.md of `tasks` checklist lines in phases of 10."""
    parts = ["# Tasks: collection benchmark\n\n"]
    for n in range(tasks):
        phase, step = divmod(n, 10)
        if step == 0:
            parts.append(f"\n## Phase {phase + 1}: User Story {phase + 1} (Priority: P2)\n\n")
        tag = "[P] " if step % 2 else ""
        parts.append(
            f"- [ ] T{n + 1:05} {tag}[US{phase + 1}] Implement handler {n} in src/pkg/module_{n}.py\n"
        )
    return "".join(parts)


FORMATS = {"heading": heading_plan, "checklist": checklist_plan}


@dataclass
class Series:
    """The timings and peak RSS of one command line over the rounds."""

    label: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peak_kib: list[int] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.seconds)

    def cpu(self) -> float:
        return statistics.median(self.cpu_seconds)

    def rss_mib(self) -> float:
        return statistics.median(self.peak_kib) / 1024


def run(args: list[str], cwd: Path, env: dict[str, str], series: Series, expect: int | None) -> None:
    """Run once; record the wall time, and the child's own CPU time and peak RSS (from wait4)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {process.returncode}:\n{output[-3000:]}")
    if (
        expect is not None
        and f"{expect} tests collected" not in output
        and f"{expect} test collected" not in output
    ):
        raise SystemExit(f"{' '.join(args)}: expected {expect} items collected:\n{output[-1500:]}")
    series.seconds.append(elapsed)
    series.cpu_seconds.append(usage.ru_utime + usage.ru_stime)
    series.peak_kib.append(usage.ru_maxrss)  # KiB on Linux


def main() -> int:
    """Generate the plans, time collection against the floor, print medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--format", choices=sorted(FORMATS), default="heading")
    parser.add_argument("--base", type=Path, help="a second checkout of the project to time side by side")
    options = parser.parse_args()

    checkouts = {"this": REPO}
    if options.base:
        checkouts["base"] = options.base.resolve()
    envs = {}
    for name, root in checkouts.items():
        env = bench_env()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
        envs[name] = env

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "test_floor.py").write_text(FLOOR_TEST)
        plans = {}
        for count in options.tasks:
            path = work / f"plan_{count}.md"
            path.write_text(FORMATS[options.format](count), encoding="utf-8")
            plans[count] = path.name
        commands: list[tuple[Series, list[str], str, int | None]] = []
        for name in checkouts:
            commands.append((Series(f"{name}: floor"), [*PYTEST, "--collect-only", "test_floor.py"], name, 1))
            for count, plan in plans.items():
                series = Series(f"{name}: {count} tasks")
                commands.append((series, [*PYTEST, "--collect-only", plan], name, count))
        # One warm-up each so the page cache holds the modules and the plans.
        for _, args, name, expect in commands:
            run(args, work, envs[name], Series("warm-up"), expect)
        for _ in range(options.rounds):
            for series, args, name, expect in commands:
                run(args, work, envs[name], series, expect)

    print(f"format: {options.format}, rounds: {options.rounds}, python {sys.version.split()[0]}")
    floors = {name: next(s for s, _, n, _ in commands if n == name) for name in checkouts}
    # CPU time is printed too: on a busy machine it varies less than the wall time.
    for series, _, name, _ in commands:
        floor = floors[name]
        over = ""
        if series is not floor:
            over = (
                f"  over the floor {series.median() - floor.median():6.3f} s"
                f" (CPU {series.cpu() - floor.cpu():6.3f} s, RSS {series.rss_mib() - floor.rss_mib():5.1f} MiB)"
            )
        print(
            f"{series.label:<22} median {series.median():6.3f} s  min {min(series.seconds):6.3f} s"
            f"  CPU {series.cpu():6.3f} s  peak RSS {series.rss_mib():6.1f} MiB{over}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
