"""The plugin works when pip-installed from its wheel into another environment."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from tests.support.checks import CHECKS

REPO = Path(__file__).resolve().parents[1]


def test_installed_wheel_finds_the_builtin_checks_from_an_empty_directory(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(REPO),
        ],
        check=True,
    )
    wheel = next(dist.glob("pytest_orchestrator-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        # `orchestrator sandbox up` builds from it.
        shipped = archive.read("pytest_orchestrator/sandbox/Dockerfile")
    assert shipped == (REPO / "pytest_orchestrator" / "sandbox" / "Dockerfile").read_bytes()
    env_dir = tmp_path / "venv"
    # System site-packages supply pytest, docker and the rest; the wheel itself is what is tested.
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
    )
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import pytest_orchestrator.plugin.checks as c; print(c.builtin_checks_dir())",
        ],
        cwd=empty,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where
    assert sorted(p.name for p in Path(where).glob("check_*.py")) == [
        "check_claude_auth.py",
        "check_claude_code.py",
        "check_error_rate.py",
        "check_github_token.py",
        "check_last_completion.py",
        "check_orchestrator.py",
        "check_sandbox.py",
        "check_task_backlog.py",
        "check_zombies.py",
    ]
    result = subprocess.run(
        [str(python), "-m", "pytest", "--orchestrator-health", "-p", "no:cacheprovider"],
        cwd=empty,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "DOCKER_HOST": f"unix://{tmp_path}/dead.sock",
            "HOME": str(tmp_path),
        },
    )
    doc = json.loads(result.stdout)
    assert list(doc["checks"]) == list(CHECKS)
    assert doc["checks"]["orchestrator"]["message"] == "idle"
    assert result.returncode == 1
