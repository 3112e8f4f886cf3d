"""Settings without pytest: `settings_for_project` finds what a pytest run in the same directory finds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_orchestrator.config_file import ConfigFileError
from pytest_orchestrator.project import find_project, settings_for_project
from pytest_orchestrator.settings import ConfigError, Settings

PRINT_SETTINGS = """
import dataclasses, json

def test_settings(orchestrator_settings):
    values = {f.name: str(getattr(orchestrator_settings, f.name))
              for f in dataclasses.fields(orchestrator_settings) if f.name != "origin"}
    print("SETTINGS=" + json.dumps({"values": values, "origin": dict(orchestrator_settings.origin)}))
"""

YAML = "max_turns: 7\ncheck_paths:\n  - mychecks\n  - more/checks\nsandbox: ${BOX:-from-the-file}\n"

LAYOUTS: dict[str, dict[str, str]] = {
    "pytest.ini": {
        "pytest.ini": "[pytest]\norchestrator_sandbox = ini-box\norchestrator_state_dir = var/state\n"
        "orchestrator_plan_dirs =\n    plans\n    more/plans\n",
        "orchestrator.yaml": YAML,
    },
    "pyproject.toml": {
        "pyproject.toml": '[project]\nname = "x"\n\n[tool.pytest.ini_options]\n'
        'orchestrator_plan_dirs = ["a", "b"]\norchestrator_docker_timeout = "9"\n'
        'orchestrator_state_dir = "st"\n',
        "orchestrator.yaml": YAML,
    },
    "tox.ini": {
        "tox.ini": "[tox]\nenvlist = py\n\n[pytest]\norchestrator_retry_attempts = 5\n",
        "orchestrator.yaml": "retry_delay: 2.5\n",
    },
    "setup.cfg": {
        "setup.cfg": "[metadata]\nname = x\n\n[tool:pytest]\norchestrator_workspace = /work\n",
    },
    "pyproject.toml without pytest": {
        "pyproject.toml": '[project]\nname = "x"\n',
        "orchestrator.yaml": YAML,
    },
    "no config file": {"orchestrator.yaml": "state_dir: here/state\n"},
    "setup.cfg without pytest, tox.ini with": {
        "setup.cfg": "[metadata]\nname = x\n",
        "tox.ini": "[pytest]\norchestrator_max_turns = 3\n",
    },
}


def _plugin_settings(pytester: pytest.Pytester, where: Path) -> dict[str, Any]:
    (where / "test_print_settings.py").write_text(PRINT_SETTINGS)
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", "test_print_settings.py")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    line = next(x for x in result.outlines if "SETTINGS=" in x)
    return dict(json.loads(line.partition("SETTINGS=")[2]))


def _as_printed(settings: Settings) -> dict[str, Any]:
    values = {name: str(getattr(settings, name)) for name in settings.origin}
    return {"values": values, "origin": dict(settings.origin)}


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_same_values_and_origins_as_a_pytest_run(
    pytester: pytest.Pytester, clean_env: None, layout: str
) -> None:
    _write(pytester.path, LAYOUTS[layout])
    assert _as_printed(settings_for_project(pytester.path)) == _plugin_settings(pytester, pytester.path)


def test_from_a_subdirectory_the_project_is_the_config_files(
    pytester: pytest.Pytester, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(pytester.path, LAYOUTS["pytest.ini"])
    sub = pytester.path / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    ours = settings_for_project(sub)
    assert ours.state_dir == pytester.path / "var" / "state"
    assert _as_printed(ours) == _plugin_settings(pytester, sub)


def test_environment_and_named_config_file_win_as_in_pytest(
    pytester: pytest.Pytester, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(pytester.path, {**LAYOUTS["pytest.ini"], "conf/other.yaml": "freeze_threshold: 42\n"})
    monkeypatch.setenv("ORCHESTRATOR_MAX_TURNS", "11")
    monkeypatch.setenv("ORCHESTRATOR_CONFIG", "conf/other.yaml")
    monkeypatch.setenv("BOX", "from-env")
    ours = settings_for_project(pytester.path)
    assert ours.origin["max_turns"] == "ORCHESTRATOR_MAX_TURNS"
    assert ours.origin["freeze_threshold"] == "other.yaml:1"
    assert _as_printed(ours) == _plugin_settings(pytester, pytester.path)


def test_a_flag_wins_and_names_itself() -> None:
    settings = settings_for_project(Path("/"), {"max_turns": "4"}, environ={})
    assert (settings.max_turns, settings.origin["max_turns"]) == (4, "--orchestrator-max-turns")


def test_a_bad_ini_value_is_the_same_error_as_in_pytest(pytester: pytest.Pytester, clean_env: None) -> None:
    pytester.makeini("[pytest]\norchestrator_docker_timeout = inf\n")
    with pytest.raises(ConfigError) as raised:
        settings_for_project(pytester.path)
    message = (
        "invalid docker timeout 'inf' from ini orchestrator_docker_timeout: expected a finite number > 0"
    )
    assert str(raised.value) == message
    pytester.makepyfile("def test_x(orchestrator_settings): pass")
    result = pytester.runpytest()
    assert message in result.stdout.str() + result.stderr.str()


def test_a_missing_named_config_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"^config file nope.yaml from --config not found$"):
        settings_for_project(tmp_path, environ={}, config="nope.yaml")


@pytest.mark.parametrize(
    ("files", "root", "ini"),
    [
        ({"a/pytest.ini": "", "a/b/setup.cfg": "[metadata]\n"}, "a", "a/pytest.ini"),
        ({"a/pyproject.toml": "[tool.pytest]\nminversion = '9'\n"}, "a", "a/pyproject.toml"),
        ({"a/pyproject.toml": "", "pytest.ini": "[pytest]\n"}, "", "pytest.ini"),
        ({"a/pyproject.toml": "[project]\n"}, "a", "a/pyproject.toml"),
        ({"a/setup.py": ""}, "a", None),
        ({"a/tox.ini": "[tox]\n"}, "a/b", None),
    ],
)
def test_the_root_is_found_as_pytest_finds_it(
    tmp_path: Path, files: dict[str, str], root: str, ini: str | None
) -> None:
    _write(tmp_path, files)
    (tmp_path / "a" / "b").mkdir(parents=True, exist_ok=True)
    project = find_project(tmp_path / "a" / "b")
    assert project.root == (tmp_path / root if root else tmp_path)
    assert project.inipath == (tmp_path / ini if ini else None)


def test_a_broken_ini_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest\n")
    with pytest.raises(ConfigError, match=r"pytest.ini"):
        settings_for_project(tmp_path, environ={})
