"""What `orchestrator sandbox` builds and starts from: image inputs and tags, options, env files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_orchestrator.agents.claude_code import TESTED_BEFORE, TESTED_FROM
from pytest_orchestrator.cli import main
from pytest_orchestrator.sandbox import SandboxError
from pytest_orchestrator.sandbox.image import CLAUDE_VERSION, DEFAULT_BASE_IMAGE, ImageInputs, image_inputs
from pytest_orchestrator.sandbox.lifecycle import CREDENTIAL_ENV, Options, read_env_file

REPO = Path(__file__).resolve().parents[1]


def test_the_pinned_cli_is_the_one_ci_tests_and_in_the_tested_range() -> None:
    setup = (REPO / ".ci" / "setup").read_text()
    assert f"CLAUDE_VERSION={CLAUDE_VERSION}\n" in setup
    assert TESTED_FROM <= tuple(int(part) for part in CLAUDE_VERSION.split(".")) < TESTED_BEFORE


def test_the_help_names_the_real_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sandbox", "up", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default {DEFAULT_BASE_IMAGE})" in text
    assert ", ".join(CREDENTIAL_ENV) in text


def test_the_tag_names_the_version_and_a_digest_of_every_input() -> None:
    inputs = image_inputs("/workspace")
    assert re.fullmatch(rf"orchestrator-sandbox:{re.escape(CLAUDE_VERSION)}-[0-9a-f]{{12}}", inputs.tag)
    assert image_inputs("/workspace").tag == inputs.tag
    changed = [
        ImageInputs("other:base", CLAUDE_VERSION, "/workspace"),
        ImageInputs(DEFAULT_BASE_IMAGE, "2.1.200", "/workspace"),
        ImageInputs(DEFAULT_BASE_IMAGE, CLAUDE_VERSION, "/work"),
        ImageInputs(DEFAULT_BASE_IMAGE, CLAUDE_VERSION, "/workspace", user="dev"),
        ImageInputs(DEFAULT_BASE_IMAGE, CLAUDE_VERSION, "/workspace", uid=1001),
        ImageInputs(DEFAULT_BASE_IMAGE, CLAUDE_VERSION, "/workspace", Path("/x/claude"), 10),
        ImageInputs(DEFAULT_BASE_IMAGE, CLAUDE_VERSION, "/workspace", Path("/x/claude"), 11),
    ]
    digests = {inputs.digest} | {other.digest for other in changed}
    assert len(digests) == len(changed) + 1


def test_a_malformed_version_is_refused() -> None:
    with pytest.raises(SandboxError, match=r"--claude-version 'latest; rm -rf /' is not a version number"):
        image_inputs("/workspace", claude_version="latest; rm -rf /")


def test_options_given_now_win_over_those_recorded_and_drop_their_alternatives() -> None:
    recorded = {"base_image": "mine:1", "claude_binary": "/opt/claude", "network": "host", "unknown": "x"}
    assert Options().over(recorded) == Options(
        base_image="mine:1", claude_binary="/opt/claude", network="host"
    )
    assert Options(claude_version="2.1.200").over(recorded) == Options(
        base_image="mine:1", claude_version="2.1.200", network="host"
    )
    assert Options(image="theirs:2").over(recorded) == Options(image="theirs:2", network="host")
    assert Options(base_image="b:3").over({"image": "theirs:2"}) == Options(base_image="b:3")


def test_an_env_file_reads_as_docker_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("# comment\n\nA=1\nB= spaced = value \nFROM_ENV\nMISSING\n  C=3\nEMPTY=\n")
    assert read_env_file(path, {"FROM_ENV": "here"}) == {
        "A": "1",
        "B": " spaced = value ",
        "FROM_ENV": "here",
        "C": "3",
        "EMPTY": "",
    }


def test_a_bad_env_file_line_is_named_without_its_value(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("A=1\n9LIVES=sk-ant-api03-secretsecret\n")
    with pytest.raises(SandboxError) as raised:
        read_env_file(path, {})
    assert str(raised.value) == f"--env-file {path}:2: expected NAME=value"
    with pytest.raises(SandboxError, match="does not exist"):
        read_env_file(tmp_path / "absent.env", {})
