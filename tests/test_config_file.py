"""orchestrator.yaml: precedence, variable substitution, and errors that name the file and line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pytest_orchestrator.config_file import ConfigFileError, find, load
from pytest_orchestrator.settings import ConfigError, Settings, Sources, resolve

pytestmark = pytest.mark.usefixtures("clean_env")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orchestrator.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def settings(
    tmp_path: Path,
    environ: dict[str, str] | None = None,
    flags: dict[str, str] | None = None,
    ini: dict[str, str] | None = None,
) -> Settings:
    environ = environ or {}
    path = find(None, environ, tmp_path, tmp_path)
    file = load(path, environ) if path else None
    sources = Sources(
        flags=flags or {},
        environ=environ,
        ini=lambda key: (ini or {}).get(key, ""),
        ini_base=tmp_path,
        cwd=tmp_path,
        root=tmp_path,
        file=file,
    )
    return resolve(sources)


def test_precedence_is_flag_env_file_ini_default(tmp_path: Path) -> None:
    write(tmp_path, "max_turns: 7\nsandbox: from-file\nretry_attempts: 5\nstate_dir: state\n")
    ini = {
        "orchestrator_max_turns": "9",
        "orchestrator_task_timeout": "42",
        "orchestrator_retry_attempts": "4",
    }
    got = settings(
        tmp_path,
        environ={"ORCHESTRATOR_SANDBOX": "from-env", "ORCHESTRATOR_RETRY_ATTEMPTS": "2"},
        flags={"retry_attempts": "1"},
        ini=ini,
    )
    assert (got.retry_attempts, got.origin["retry_attempts"]) == (1, "--orchestrator-retry-attempts")
    assert (got.sandbox, got.origin["sandbox"]) == ("from-env", "ORCHESTRATOR_SANDBOX")
    assert (got.max_turns, got.origin["max_turns"]) == (7, "orchestrator.yaml:1")
    assert (got.task_timeout, got.origin["task_timeout"]) == (42.0, "ini orchestrator_task_timeout")
    assert got.origin["workspace"] == "default"
    # A path from the file is relative to the file.
    assert got.state_dir == tmp_path / "state"


def test_the_issue_example_loads(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        # orchestrator.yaml
        sandbox: ${ORCHESTRATOR_SANDBOX_NAME:-orchestrator-sandbox}
        state_dir: .orchestrator
        max_turns: 30
        allowed_tools: [Read, Edit, Bash]
        """,
    )
    got = settings(tmp_path)
    assert got.sandbox == "orchestrator-sandbox"
    assert got.allowed_tools == ("Read", "Edit", "Bash")
    assert got.origin["allowed_tools"] == "orchestrator.yaml:5"


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${NAME}", {"NAME": "box"}, "box"),
        ("$NAME-x", {"NAME": "box"}, "box-x"),
        ("${NAME:-fallback}", {"NAME": ""}, "fallback"),
        ("${NAME-fallback}", {"NAME": ""}, ""),
        ("${NAME-fallback}", {}, "fallback"),
        ("a$$b", {}, "a$b"),
        ("$${NAME}", {"NAME": "box"}, "${NAME}"),
        ("${NAME:?set the sandbox}", {"NAME": "box"}, "box"),
    ],
)
def test_variables_are_substituted_compose_style(
    tmp_path: Path, value: str, environ: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, f"workspace: '{value}'\n")
    assert load(path, environ).data["workspace"] == expected


def test_a_variable_cannot_inject_structure(tmp_path: Path) -> None:
    path = write(tmp_path, "sandbox: ${EVIL}\nmax_turns: 5\n")
    data = load(path, {"EVIL": "x\nmax_turns: 999\ncomponents: {}"}).data
    assert data["max_turns"] == 5
    assert data["sandbox"] == "x\nmax_turns: 999\ncomponents: {}"
    assert sorted(data) == ["max_turns", "sandbox"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "max_turns: 5\nsandbx: box\n",
            "orchestrator.yaml:2: unknown key 'sandbx' (did you mean 'sandbox'?)",
        ),
        ("sandbox: [unclosed\n", "orchestrator.yaml:2: invalid YAML: *"),
        ("sandbox: a\nsandbox: b\n", "orchestrator.yaml:2: 'sandbox' is given twice (first at line 1)"),
        (
            "\n\nmax_turns: many\n",
            "invalid max turns 'many' from orchestrator.yaml:3: expected a whole number >= 1",
        ),
        ("sandbox: ${NAME:?name the sandbox}\n", "orchestrator.yaml:1: NAME is required: name the sandbox"),
        ("sandbox: ${NAME\n", "orchestrator.yaml:1: invalid variable '${NAME': write ${NAME} or $$ for a $"),
        ("sandbox: {name: x}\n", "orchestrator.yaml:1: sandbox takes a value or a list of values"),
        ("allowed_tools: [{a: 1}]\n", "orchestrator.yaml:1: allowed_tools takes a value or a list of values"),
        (
            "\nmax_turns: 2001-13-01\n",
            "orchestrator.yaml:2: invalid value '2001-13-01': month must be in 1..12",
        ),
        ("max_turns: !!int abc\n", "orchestrator.yaml:1: invalid value 'abc': *"),
        ("- sandbox\n", "orchestrator.yaml:1: expected a mapping of settings at the top level"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, text)
    with pytest.raises((ConfigError, ConfigFileError)) as caught:
        settings(tmp_path)
    assert re.fullmatch(re.escape(message).replace(r"\*", ".*"), str(caught.value))


def test_the_file_is_found_by_flag_env_or_root(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text("max_turns: 3\n")
    assert find("other.yaml", {}, tmp_path / "nowhere", tmp_path) == tmp_path / "other.yaml"
    assert find(None, {"ORCHESTRATOR_CONFIG": "other.yaml"}, tmp_path, tmp_path) == tmp_path / "other.yaml"
    assert find(None, {}, tmp_path, tmp_path) is None
    with pytest.raises(
        ConfigFileError, match=re.escape("config file missing.yaml from ORCHESTRATOR_CONFIG not found")
    ):
        find(None, {"ORCHESTRATOR_CONFIG": "missing.yaml"}, tmp_path, tmp_path)


def test_the_plugin_reads_the_file_and_reports_its_errors_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", orchestrator="max_turns: 3\nsandboxx: box\n")
    result = pytester.runpytest("--orchestrator-health")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: orchestrator.yaml:2: unknown key 'sandboxx' (did you mean 'sandbox'?)"]
    )
    assert "Traceback" not in result.stderr.str()
    pytester.makefile(".yaml", elsewhere="sandbox: from-the-file\n")
    pytester.makepyfile(
        test_settings="def test_settings(orchestrator_settings):\n"
        "    assert orchestrator_settings.sandbox == 'from-the-file'\n"
        "    assert orchestrator_settings.origin['sandbox'] == 'elsewhere.yaml:1'\n"
    )
    result = pytester.runpytest("--orchestrator-config", "elsewhere.yaml", "test_settings.py")
    assert result.parseoutcomes() == {"passed": 1}


def test_the_shipped_example_documents_every_setting_and_loads(tmp_path: Path) -> None:
    from pytest_orchestrator.settings import SETTINGS

    example = Path(__file__).resolve().parents[1] / "orchestrator.example.yaml"
    text = example.read_text(encoding="utf-8")
    undocumented = [s.name for s in SETTINGS if s.name != "guidance" and f"{s.name}:" not in text]
    assert undocumented == []
    # Uncommented, every documented default must still resolve.
    names = "|".join(s.name for s in SETTINGS)
    uncommented = re.sub(rf"^# ((?:{names}): )", r"\1", text, flags=re.MULTILINE)
    (tmp_path / "orchestrator.yaml").write_text(uncommented, encoding="utf-8")
    got = settings(tmp_path)
    assert got.sandbox == "orchestrator-sandbox"
    assert got.origin["max_turns"] == "orchestrator.yaml:" + str(
        text.splitlines().index("# max_turns: 50") + 1
    )


# ---- the monitor and loop sections ----


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "monitor:\n  crash_threshold_for_bug: 0\n",
            "orchestrator.yaml:2: crash_threshold_for_bug must be a whole number >= 1, not 0",
        ),
        (
            "monitor:\n  bug_priority: {ImportError: Urgent}\n",
            "orchestrator.yaml:2: priority of ImportError must be one of Critical, High, Medium, Low, not 'Urgent'",
        ),
        (
            "monitor:\n  bug_tracker: {kind: jira}\n",
            "orchestrator.yaml:2: kind must be one of files, github, not 'jira'",
        ),
        (
            "monitor:\n  bug_tracker: {kind: github}\n",
            "orchestrator.yaml:2: a github bug tracker needs repo: OWNER/NAME, not None",
        ),
        ("monitor:\n  retention_dayz: 7\n", "orchestrator.yaml:2: unknown key 'retention_dayz'"),
        (
            "loop:\n  poll_interval: 0\n",
            "orchestrator.yaml:2: poll_interval must be a finite number > 0, not 0",
        ),
        (
            "loop:\n  max_concurrent_tasks: two\n",
            "orchestrator.yaml:2: max_concurrent_tasks must be a whole number >= 1, not 'two'",
        ),
    ],
)
def test_a_bad_monitor_or_loop_value_is_one_line_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    from pytest_orchestrator.crashes.config import monitor_spec
    from pytest_orchestrator.loop import loop_spec

    config = load(write(tmp_path, text), {})
    with pytest.raises(ConfigFileError) as raised:
        monitor_spec(config)
        loop_spec(config, tmp_path)
    assert str(raised.value).startswith(message)


def test_monitor_and_loop_sections_are_read(tmp_path: Path) -> None:
    from pytest_orchestrator.crashes.config import monitor_spec
    from pytest_orchestrator.loop import loop_spec

    text = (
        "monitor:\n  crash_threshold_for_bug: 5\n  bug_priority: {KeyError: low}\n"
        "  bug_tracker: {kind: github, repo: acme/agents}\n"
        "loop:\n  poll_interval: 2.5\n  stop_hook_file: run/stop\n  max_concurrent_tasks: 3\n"
    )
    config = load(write(tmp_path, text), {})
    monitor = monitor_spec(config)
    assert monitor.crash_threshold_for_bug == 5
    assert monitor.bug_priority["KeyError"] == "Low" and monitor.bug_priority["ImportError"] == "High"
    assert (monitor.bug_tracker.kind, monitor.bug_tracker.repo) == ("github", "acme/agents")
    loop = loop_spec(config, tmp_path)
    assert (loop.poll_interval, loop.stop_hook_file, loop.max_concurrent_tasks) == (
        2.5,
        tmp_path / "run/stop",
        3,
    )
