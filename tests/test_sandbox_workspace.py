"""Workspaces per plan: the `{plan}` placeholder, its slug, and the directory the sandbox mounts."""

from __future__ import annotations

import re

import pytest

from pytest_orchestrator.project import settings_for_project
from pytest_orchestrator.sandbox.workspace import (
    check_template,
    plan_slug,
    workspace_for,
    workspace_root,
)
from pytest_orchestrator.settings import ConfigError

pytestmark = pytest.mark.usefixtures("clean_env")


def test_a_slug_is_readable_safe_and_stable() -> None:
    slug = plan_slug("plans/hello_world.md")
    assert re.fullmatch(r"plans-hello_world-[0-9a-f]{8}", slug)
    assert plan_slug("plans/hello_world.md") == slug
    for key in ("../up/x.md", "plans/Ünïcode plan (v2).md", "a/.hidden/..md", "-x-.md", "plans/" + "z" * 300):
        found = plan_slug(key)
        assert re.fullmatch(r"[a-z0-9_][a-z0-9_-]*", found), (key, found)
        assert len(found) <= 60


def test_paths_that_read_alike_get_different_slugs() -> None:
    keys = ["plans/a-b.md", "plans/a/b.md", "plans/A b.md", "plans/a_b.md", "plans/a-b.MD", "plans/a-b"]
    slugs = [plan_slug(key) for key in keys]
    assert len(set(slugs)) == len(keys), dict(zip(keys, slugs, strict=True))


@pytest.mark.parametrize(
    ("template", "root"),
    [
        ("/workspace", "/workspace"),
        ("/workspace/", "/workspace"),
        ("/workspace/{plan}", "/workspace"),
        ("/work/p-{plan}/src", "/work"),
        ("/a/b/{plan}", "/a/b"),
    ],
)
def test_the_root_is_the_directory_above_the_placeholder(template: str, root: str) -> None:
    assert workspace_root(template) == root


def test_each_plan_has_its_directory_and_no_plan_means_the_root() -> None:
    one = workspace_for("/workspace/{plan}", "plans/one.md")
    two = workspace_for("/workspace/{plan}", "plans/two.md")
    assert one == f"/workspace/{plan_slug('plans/one.md')}"
    assert one != two
    assert workspace_for("/workspace/{plan}", None) == "/workspace"
    assert workspace_for("/workspace", "plans/one.md") == "/workspace"
    assert workspace_for("/w/{plan}/src", "plans/one.md") == f"/w/{plan_slug('plans/one.md')}/src"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("workspace", "must be an absolute path"),
        ("/workspace/{task}", "has {task}: the only placeholder is {plan}"),
        ("/workspace/{plan", "has a stray brace"),
        ("/{plan}", "{plan} needs a directory above it"),
    ],
)
def test_a_bad_workspace_setting_is_refused_with_its_origin(raw: str, reason: str, tmp_path) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        check_template(raw)
    with pytest.raises(ConfigError) as raised:
        settings_for_project(tmp_path, environ={"ORCHESTRATOR_WORKSPACE": raw})
    assert str(raised.value).startswith(f"invalid workspace {raw!r} from ORCHESTRATOR_WORKSPACE: {reason}")


def test_the_setting_keeps_the_placeholder(tmp_path) -> None:
    settings = settings_for_project(tmp_path, environ={"ORCHESTRATOR_WORKSPACE": "/workspace/{plan}"})
    assert settings.workspace == "/workspace/{plan}"
