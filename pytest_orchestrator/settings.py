"""One resolver for every setting: flag, then ORCHESTRATOR_* env, orchestrator.yaml, ini, default.

Plain Python: the plugin reads the flags and ini keys from pytest and hands them over as
a `Sources`; any other front end can do the same without pytest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_file import SECTIONS, ConfigFile, ConfigFileError, raw_setting
from .prompt import DEFAULT_PROMPT, check_template
from .retry import RetryPolicy
from .sandbox import DEFAULT_SANDBOX
from .sandbox.workspace import check_template as _workspace


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names where it came from."""


def _positive_float(raw: str) -> float:
    value = float(raw)
    # inf and nan parse, then break every timer and budget that uses them.
    if not math.isfinite(value) or not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _path_list(raw: str) -> tuple[str, ...]:
    # Both separators are accepted so one value works in env vars and ini lines.
    parts = [p.strip() for chunk in raw.splitlines() for p in chunk.split(os.pathsep)]
    return tuple(p for p in parts if p)


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be at least 0")
    return value


def _optional_budget(raw: str) -> float:
    return _positive_float(raw) if raw.strip() else 0.0


def _tools(raw: str) -> tuple[str, ...]:
    tools = tuple(t.strip() for t in raw.replace("\n", ",").split(",") if t.strip())
    if not tools:
        raise ValueError("must name at least one tool")
    return tools


def _template_file(raw: str) -> str:
    return raw.strip()


def _optional_url(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


@dataclass(frozen=True)
class Setting:
    """A setting known to the flag, the environment and the ini file under derived names."""

    name: str
    help: str
    default: str
    parse: Callable[[str], Any]
    metavar: str = "VALUE"
    # Paths from the ini file are relative to the ini file; from flag or env, to the cwd.
    is_path: bool = False

    @property
    def flag(self) -> str:
        """The command-line flag."""
        return "--orchestrator-" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable."""
        return "ORCHESTRATOR_" + self.name.upper()

    @property
    def ini(self) -> str:
        """The ini key."""
        return "orchestrator_" + self.name

    @property
    def dest(self) -> str:
        """The attribute on config.option."""
        return "orchestrator_" + self.name


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "sandbox",
        "name of the sandbox container the agent runs in",
        DEFAULT_SANDBOX,
        _text,
        metavar="NAME",
    ),
    Setting(
        "docker_timeout",
        "seconds to wait for each Docker API call before the check fails",
        "5",
        _positive_float,
        metavar="SECONDS",
    ),
    Setting(
        "state_dir",
        "directory holding the orchestrator state database (state.db)",
        ".orchestrator",
        _text,
        metavar="DIR",
        is_path=True,
    ),
    Setting(
        "freeze_threshold",
        "seconds without a heartbeat after which a running orchestrator counts as frozen",
        "300",
        _positive_float,
        metavar="SECONDS",
    ),
    Setting(
        "credential_paths",
        "Claude Code credential files looked for inside the sandbox ('~' is the container "
        "user's home), separated by the path separator",
        os.pathsep.join(
            (
                "~/.claude/.credentials.json",
                "/root/.claude/.credentials.json",
                "/home/ubuntu/.claude/credentials.json",
                "/root/.claude/credentials.json",
            )
        ),
        _path_list,
        metavar="PATHS",
    ),
    Setting(
        "check_paths",
        "extra check modules or directories collected by --orchestrator-health, "
        "separated by the path separator",
        "",
        _path_list,
        metavar="PATHS",
        is_path=True,
    ),
    Setting(
        "plan_dirs",
        "directories whose markdown plans are collected when pytest walks them "
        "(plans named on the command line are always collected)",
        "plans",
        _path_list,
        metavar="DIRS",
        is_path=True,
    ),
    Setting(
        "workspace",
        "directory inside the sandbox where the agent works; {plan} in it gives each plan a "
        "directory of its own (e.g. /workspace/{plan})",
        "/workspace",
        _workspace,
        metavar="DIR",
    ),
    Setting(
        "claude_command",
        "the Claude Code executable inside the sandbox",
        "claude",
        _text,
        metavar="PATH",
    ),
    Setting(
        "claude_max_retries",
        "retries Claude Code makes by itself when an API call fails, before the attempt ends "
        "(CLAUDE_CODE_MAX_RETRIES); the orchestrator's own retries come on top",
        "2",
        _count,
        metavar="N",
    ),
    Setting(
        "max_turns",
        "most agent turns per task (claude --max-turns)",
        "50",
        _positive_int,
        metavar="N",
    ),
    Setting(
        "allowed_tools",
        "tools the agent may use, comma-separated (claude --allowedTools)",
        "Bash,Read,Write,Edit,Glob,Grep",
        _tools,
        metavar="TOOLS",
    ),
    Setting(
        "max_budget_usd",
        "per-task spending cap passed to claude --max-budget-usd (empty: none)",
        "",
        _optional_budget,
        metavar="USD",
    ),
    Setting(
        "max_cost",
        "once the run's tasks have cost this many USD, no new task is dispatched (empty: no limit)",
        "",
        _optional_budget,
        metavar="USD",
    ),
    Setting(
        "task_timeout",
        "seconds a task may run before pytest-timeout stops it, unless --timeout is given",
        "600",
        _positive_float,
        metavar="SECONDS",
    ),
    Setting(
        "retry_attempts",
        "attempts per task when failures are transient (API 429/5xx/overloaded, agent crash, "
        "Docker transport)",
        "3",
        _positive_int,
        metavar="N",
    ),
    Setting(
        "retry_delay",
        "seconds before the first retry; later ones wait retry_factor times longer, with jitter",
        "1",
        _positive_float,
        metavar="SECONDS",
    ),
    Setting(
        "retry_factor",
        "growth of the delay between retries",
        "2",
        _positive_float,
        metavar="X",
    ),
    Setting(
        "retry_max_delay",
        "the longest wait between two attempts",
        "60",
        _positive_float,
        metavar="SECONDS",
    ),
    Setting(
        "prompt_file",
        "file holding the prompt template; {task_id}, {title}, {description}, {files}, "
        "{acceptance_criteria}, {implementation_notes}, {plan}, {milestone} and {guidance} "
        "are filled in (empty: the built-in template)",
        "",
        _template_file,
        metavar="FILE",
        is_path=True,
    ),
    Setting(
        "guidance",
        "guidance for the selected tasks: they run again, resuming their Claude session",
        "",
        str.strip,
        metavar="TEXT",
    ),
    Setting(
        "otlp_endpoint",
        "OTLP/HTTP endpoint for traces and metrics (default: OTEL_EXPORTER_OTLP_ENDPOINT; "
        "unset disables export)",
        "",
        _optional_url,
        metavar="URL",
    ),
    Setting(
        "otlp_timeout",
        "seconds the telemetry export may take at the end of a run",
        "3",
        _positive_float,
        metavar="SECONDS",
    ),
    Setting(
        "transcript_max_bytes",
        "bytes of each attempt's agent transcript kept under the state directory; at the cap the "
        "transcript ends with a truncation marker (0: keep no transcripts)",
        str(4 * 1024 * 1024),
        _count,
        metavar="BYTES",
    ),
    Setting(
        "serve_token",
        "bearer token `orchestrator serve` requires on everything but /healthz (empty: none); "
        "best given as ORCHESTRATOR_SERVE_TOKEN, never printed",
        "",
        str.strip,
        metavar="TOKEN",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one run; `origin` says where each value came from."""

    sandbox: str
    docker_timeout: float
    state_dir: Path
    freeze_threshold: float
    credential_paths: tuple[str, ...]
    check_paths: tuple[Path, ...]
    plan_dirs: tuple[Path, ...]
    workspace: str
    claude_command: str
    claude_max_retries: int
    max_turns: int
    allowed_tools: tuple[str, ...]
    max_budget_usd: float
    max_cost: float
    task_timeout: float
    retry_attempts: int
    retry_delay: float
    retry_factor: float
    retry_max_delay: float
    prompt_file: Path | None
    guidance: str
    otlp_endpoint: str
    otlp_timeout: float
    transcript_max_bytes: int
    # A secret: kept out of the dataclass's repr, so no log line or traceback shows it.
    serve_token: str = field(repr=False)
    origin: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def prompt_template(self) -> str:
        """The prompt template: the configured file's text, or the built-in one."""
        if self.prompt_file is None:
            return DEFAULT_PROMPT
        return self.prompt_file.read_text(encoding="utf-8")

    @property
    def retry_policy(self) -> RetryPolicy:
        """How transient task failures are retried."""
        return RetryPolicy(self.retry_attempts, self.retry_delay, self.retry_factor, self.retry_max_delay)


@dataclass(frozen=True)
class Sources:
    """Where raw setting values come from, highest precedence first (except the default)."""

    flags: Mapping[str, str | None]
    environ: Mapping[str, str]
    ini: Callable[[str], str]
    ini_base: Path
    cwd: Path
    root: Path
    # orchestrator.yaml, between the environment and the ini file.
    file: ConfigFile | None = None


def _raw_value(setting: Setting, sources: Sources) -> tuple[str, str, Path]:
    """Return (raw value, where it came from, base dir for relative paths)."""
    cli = sources.flags.get(setting.name)
    if cli is not None:
        return cli, setting.flag, sources.cwd
    if setting.env in sources.environ:
        return sources.environ[setting.env], setting.env, sources.cwd
    if setting.name == "otlp_endpoint" and sources.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return sources.environ["OTEL_EXPORTER_OTLP_ENDPOINT"], "OTEL_EXPORTER_OTLP_ENDPOINT", Path()
    file = sources.file
    if file is not None and setting.name in file.data:
        value = file.data[setting.name]
        if isinstance(value, dict) or (
            isinstance(value, list) and any(isinstance(v, dict | list) for v in value)
        ):
            raise ConfigError(f"{file.where(setting.name)}: {setting.name} takes a value or a list of values")
        return raw_setting(value), file.where(setting.name), file.path.parent
    ini = sources.ini(setting.ini)
    if ini:
        return str(ini), f"ini {setting.ini}", sources.ini_base
    return setting.default, "default", sources.root


_REASONS: dict[Callable[[str], Any], str] = {
    _positive_float: "expected a finite number > 0",
    _optional_budget: "expected a finite number > 0",
    _positive_int: "expected a whole number >= 1",
    _count: "expected a whole number >= 0",
}


def resolve(sources: Sources) -> Settings:
    """Resolve and validate every setting; raise ConfigError naming the bad value's origin."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if sources.file is not None:
        try:
            sources.file.check_keys((), sources.file.data, [s.name for s in SETTINGS] + list(SECTIONS))
        except ConfigFileError as exc:
            raise ConfigError(str(exc)) from None
    for setting in SETTINGS:
        raw, source, base = _raw_value(setting, sources)
        try:
            value = setting.parse(raw)
        except ValueError as exc:
            reason = _REASONS.get(setting.parse, str(exc))
            raise ConfigError(
                f"invalid {setting.name.replace('_', ' ')} {raw!r} from {source}: {reason}"
            ) from None
        if setting.is_path and isinstance(value, tuple):
            value = tuple(base / Path(p).expanduser() for p in value)
        elif setting.is_path and value:
            value = base / Path(value).expanduser()
        elif setting.is_path:
            value = None
        values[setting.name] = value
        origin[setting.name] = source
    settings = Settings(**values, origin=origin)
    if settings.prompt_file is not None:
        problem = check_template(settings.prompt_file)
        if problem:
            raise ConfigError(
                f"invalid prompt file {settings.prompt_file} from {origin['prompt_file']}: {problem}"
            )
    return settings
