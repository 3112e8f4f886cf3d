"""The root-cause parser and the fingerprint: logs as the interpreters, shells and Docker print them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_orchestrator.crashes.diagnose import TAIL_CHARS, diagnose, fingerprint, in_workspace, normalise
from pytest_orchestrator.crashes.model import RootCause
from tests.conftest import require


def fp(cause: RootCause | None) -> str:
    assert cause is not None
    return fingerprint(cause, cause.error_type, cause.message)


# ---- Python tracebacks ----

# Python 3.12, `raise ... from e`: the final exception is the one that ended the process.
CHAINED = """\
2024-05-01 12:00:01,123 INFO app: loading config
Traceback (most recent call last):
  File "/workspace/myplan/app/config.py", line 14, in load
    return json.loads(path.read_text())["database"]
           ~~~~~~~~~~~~~~~~~~~~~~~~~~~~^^^^^^^^^^^^
KeyError: 'database'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/workspace/myplan/app/main.py", line 31, in <module>
    main()
  File "/workspace/myplan/app/main.py", line 27, in main
    settings = config.load(Path("/tmp/tmpk2x9_abc/settings.json"))
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/workspace/myplan/app/config.py", line 16, in load
    raise ConfigError(f"{path} has no database section") from exc
app.config.ConfigError: /tmp/tmpk2x9_abc/settings.json has no database section
"""


def test_chained_traceback_gives_the_final_exception_and_its_frames() -> None:
    cause = diagnose(CHAINED, 1)
    assert cause == RootCause(
        error_type="ConfigError",
        message="/tmp/tmpk2x9_abc/settings.json has no database section",
        kind="python",
        frame="/workspace/myplan/app/config.py:16 in load",
        frames=(
            "/workspace/myplan/app/main.py:<module>",
            "/workspace/myplan/app/main.py:main",
            "/workspace/myplan/app/config.py:load",
        ),
        files=("/workspace/myplan/app/main.py", "/workspace/myplan/app/config.py"),
    )


# Python 3.12, an exception raised while handling another, through library frames.
DURING_HANDLING = """\
Traceback (most recent call last):
  File "/usr/local/lib/python3.12/site-packages/urllib3/connection.py", line 203, in _new_conn
    sock = connection.create_connection(
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
ConnectionRefusedError: [Errno 111] Connection refused

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/workspace/app/sync.py", line 48, in <module>
    run(sys.argv[1:])
  File "/workspace/app/sync.py", line 41, in run
    push(client, batch)
  File "/workspace/app/sync.py", line 22, in push
    client.post(f"{API}/items", json=batch, timeout=31)
  File "/usr/local/lib/python3.12/site-packages/requests/api.py", line 115, in post
    return request("post", url, data=data, json=json, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/local/lib/python3.12/site-packages/requests/adapters.py", line 700, in send
    raise ConnectionError(e, request=request)
requests.exceptions.ConnectionError: HTTPConnectionPool(host='10.0.3.7', port=8080): Max retries exceeded with url: /items (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f1c2a3b4c50>: Failed to establish a new connection: [Errno 111] Connection refused'))
"""


def test_library_frames_are_not_in_app_but_the_last_frame_is_where_it_was_raised() -> None:
    cause = diagnose(DURING_HANDLING)
    assert cause is not None
    assert cause.error_type == "ConnectionError"
    assert cause.message.startswith("HTTPConnectionPool(host='10.0.3.7', port=8080): Max retries exceeded")
    assert cause.frame == "/usr/local/lib/python3.12/site-packages/requests/adapters.py:700 in send"
    assert cause.frames == (
        "/workspace/app/sync.py:<module>",
        "/workspace/app/sync.py:run",
        "/workspace/app/sync.py:push",
    )
    assert cause.files == ("/workspace/app/sync.py",)


MODULE_NOT_FOUND = """\
Traceback (most recent call last):
  File "/workspace/app/main.py", line 3, in <module>
    from app import worker
  File "/workspace/app/worker.py", line 5, in <module>
    import {module}
  File "<frozen importlib._bootstrap>", line 1360, in _find_and_load
ModuleNotFoundError: No module named '{module}'
"""


def test_module_not_found_in_a_traceback() -> None:
    cause = diagnose(MODULE_NOT_FOUND.format(module="yaml"), 1)
    assert cause == RootCause(
        "ModuleNotFoundError",
        "No module named 'yaml'",
        "python",
        frame="<frozen importlib._bootstrap>:1360 in _find_and_load",
        frames=("/workspace/app/main.py:<module>", "/workspace/app/worker.py:<module>"),
        files=("/workspace/app/main.py", "/workspace/app/worker.py"),
    )


def test_module_not_found_without_a_traceback() -> None:
    log = "$ python -m app.main\n/usr/bin/python3: Error while finding module specification for 'app.main' (ModuleNotFoundError: No module named 'app')\nImportError: cannot import name 'Settings' from 'app.config' (/workspace/app/config.py)\n"
    assert diagnose(log, 1) == RootCause(
        "ImportError", "cannot import name 'Settings' from 'app.config' (/workspace/app/config.py)", "python"
    )


def test_a_bare_import_error_after_an_earlier_traceback_is_the_last_word() -> None:
    log = CHAINED + "retrying with the defaults\nModuleNotFoundError: No module named 'psycopg'\n"
    cause = diagnose(log, 1)
    assert cause is not None and (cause.error_type, cause.message) == (
        "ModuleNotFoundError",
        "No module named 'psycopg'",
    )


def test_syntax_error_of_the_main_script_has_no_traceback_header() -> None:
    log = """\
  File "/workspace/app/main.py", line 12
    def handler(event:
                ^
SyntaxError: '(' was never closed
"""
    assert diagnose(log, 1) == RootCause(
        "SyntaxError",
        "'(' was never closed",
        "python",
        frame="/workspace/app/main.py:12",
        frames=("/workspace/app/main.py",),
        files=("/workspace/app/main.py",),
    )


def test_multi_line_message_is_joined_and_ends_at_the_next_record() -> None:
    log = """\
Traceback (most recent call last):
  File "/workspace/app/models.py", line 9, in <module>
    User(id="abc")
pydantic_core._pydantic_core.ValidationError: 1 validation error for User
id
  Input should be a valid integer, unable to parse string as an integer [type=int_parsing, input_value='abc', input_type=str]
2024-05-01 12:00:02,001 INFO supervisor: app exited with status 1
"""
    cause = diagnose(log, 1)
    assert cause is not None
    assert cause.error_type == "ValidationError"
    assert cause.message == (
        "1 validation error for User id Input should be a valid integer, unable to parse string as an integer "
        "[type=int_parsing, input_value='abc', input_type=str]"
    )


def test_the_verdict_of_make_is_not_part_of_the_message() -> None:
    log = MODULE_NOT_FOUND.format(module="yaml") + "make: *** [Makefile:12: run] Error 1\n"
    cause = diagnose(log, 2)
    assert cause is not None and cause.message == "No module named 'yaml'"


def test_recursion_counts_each_frame_once() -> None:
    repeat = '  File "/workspace/app/tree.py", line 3, in walk\n    return walk(node.parent)\n           ^^^^^^^^^^^^^^^^^\n'
    log = (
        'Traceback (most recent call last):\n  File "/workspace/app/tree.py", line 9, in <module>\n    walk(leaf)\n'
        + repeat * 3
        + "  [Previous line repeated 996 more times]\nRecursionError: maximum recursion depth exceeded\n"
    )
    assert diagnose(log, 1) == RootCause(
        "RecursionError",
        "maximum recursion depth exceeded",
        "python",
        frame="/workspace/app/tree.py:3 in walk",
        frames=("/workspace/app/tree.py:<module>", "/workspace/app/tree.py:walk"),
        files=("/workspace/app/tree.py",),
    )


# Python 3.12's exception group: the group is what crashed, not its first member.
GROUP = """\
  + Exception Group Traceback (most recent call last):
  |   File "/workspace/app/fetch.py", line 20, in <module>
  |     asyncio.run(main())
  |   File "/usr/local/lib/python3.12/asyncio/runners.py", line 194, in run
  |     return runner.run(main)
  |            ^^^^^^^^^^^^^^^^
  |   File "/workspace/app/fetch.py", line 15, in main
  |     async with asyncio.TaskGroup() as tg:
  | ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/workspace/app/fetch.py", line 8, in get
    |     raise TimeoutError(f"{url} took 31s")
    | TimeoutError: https://example.com/a took 31s
    +---------------- 2 ----------------
    | Traceback (most recent call last):
    |   File "/workspace/app/fetch.py", line 10, in get
    |     raise ValueError(url)
    | ValueError: https://example.com/b
    +------------------------------------
"""


def test_exception_group_is_the_group() -> None:
    assert diagnose(GROUP, 1) == RootCause(
        "ExceptionGroup",
        "unhandled errors in a TaskGroup (2 sub-exceptions)",
        "python",
        frame="/workspace/app/fetch.py:15 in main",
        frames=("/workspace/app/fetch.py:<module>", "/workspace/app/fetch.py:main"),
        files=("/workspace/app/fetch.py",),
    )


def test_python_313_colours_and_compose_prefixes_are_read_through() -> None:
    # Python 3.13 with FORCE_COLOR, as docker compose shows it (a service prefix, interleaved lines).
    log = (
        "web-1  | \x1b[1;35mStarting\x1b[0m\r\n"
        "web-1  | Traceback (most recent call last):\r\n"
        'web-1  |   File \x1b[35m"/workspace/app/main.py"\x1b[0m, line \x1b[35m9\x1b[0m, in \x1b[35mmain\x1b[0m\r\n'
        "db-1   | 2024-05-01 12:00:01.000 UTC [1] LOG:  database system is ready\r\n"
        "web-1  |     return \x1b[31mload\x1b[0m\x1b[1;31m(path)\x1b[0m\r\n"
        "web-1  |            \x1b[31m~~~~\x1b[0m\x1b[1;31m^^^^^^\x1b[0m\r\n"
        "web-1  | \x1b[1;35mRuntimeError\x1b[0m: \x1b[35mconfig has no key\x1b[0m\r\n"
        "web-1 exited with code 1\r\n"
    )
    assert diagnose(log, 1) == RootCause(
        "RuntimeError",
        "config has no key",
        "python",
        frame="/workspace/app/main.py:9 in main",
        frames=("/workspace/app/main.py:main",),
        files=("/workspace/app/main.py",),
    )


def test_real_python_module_not_found() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import nonexistent_mod_xyz"], capture_output=True, text=True, timeout=60
    )
    cause = diagnose(done.stderr, done.returncode)
    assert cause == RootCause(
        "ModuleNotFoundError",
        "No module named 'nonexistent_mod_xyz'",
        "python",
        frame="<string>:1 in <module>",
    )


def test_real_python_chained_crash_groups_across_checkouts(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "def load(path):\n"
        "    try:\n"
        "        return json.loads(open(path).read())['key']\n"
        "    except KeyError as exc:\n"
        "        raise RuntimeError(f'{path} has no key, run {sys.argv[1]}') from exc\n"
        "load(sys.argv[2])\n"
    )
    causes = []
    for run, blank in (("a", ""), ("b", "\n\n")):
        checkout = tmp_path / f"checkout-{run}"
        checkout.mkdir()
        # A moved checkout and shifted lines: the same crash.
        (checkout / "app.py").write_text(blank + script)
        (checkout / "data.json").write_text("{}")
        done = subprocess.run(
            [
                sys.executable,
                str(checkout / "app.py"),
                f"run-{run}-{len(blank)}",
                str(checkout / "data.json"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        cause = diagnose(done.stderr, done.returncode)
        assert cause is not None
        assert cause.error_type == "RuntimeError"
        assert cause.frame == f"{checkout / 'app.py'}:{6 + len(blank)} in load"
        assert cause.frames == (f"{checkout / 'app.py'}:<module>", f"{checkout / 'app.py'}:load")
        assert in_workspace(cause.files, str(checkout)) == ("app.py",)
        causes.append(cause)
    assert causes[0].message != causes[1].message
    assert fp(causes[0]) == fp(causes[1])


# ---- Node ----

NODE_TYPE_ERROR = """\
/app/src/handlers/order.js:42
    return cart.items.map(toLine).reduce(sum);
                      ^

TypeError: cart.items.map is not a function
    at total (/app/src/handlers/order.js:42:23)
    at handle (/app/src/handlers/order.js:17:10)
    at /app/node_modules/express/lib/router/layer.js:95:5
    at Object.<anonymous> (/app/src/server.js:8:1)
    at Module._compile (node:internal/modules/cjs/loader:1376:14)
    at node:internal/main/run_main_module:28:49

Node.js v20.11.1
"""


def test_node_error_with_its_stack() -> None:
    assert diagnose(NODE_TYPE_ERROR, 1) == RootCause(
        "TypeError",
        "cart.items.map is not a function",
        "node",
        frame="/app/src/handlers/order.js:42 in total",
        frames=(
            "/app/src/server.js:Object.<anonymous>",
            "/app/src/handlers/order.js:handle",
            "/app/src/handlers/order.js:total",
        ),
        files=("/app/src/server.js", "/app/src/handlers/order.js"),
    )


def test_node_esm_package_not_found_is_its_code() -> None:
    log = """\
node:internal/modules/esm/resolve:853
  throw new ERR_MODULE_NOT_FOUND(packageName, fileURLToPath(base), null);
        ^

Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'zod' imported from /app/src/schema.mjs
    at packageResolve (node:internal/modules/esm/resolve:853:9)
    at moduleResolve (node:internal/modules/esm/resolve:910:20)
    at ModuleLoader.getModuleJob (node:internal/modules/esm/loader:243:38)
    at ModuleWrap.<anonymous> (node:internal/modules/esm/module_job:85:39) {
  code: 'ERR_MODULE_NOT_FOUND'
}

Node.js v20.11.1
"""
    assert diagnose(log, 1) == RootCause(
        "ERR_MODULE_NOT_FOUND",
        "Cannot find package 'zod' imported from /app/src/schema.mjs",
        "node",
        frame="node:internal/modules/esm/resolve:853 in packageResolve",
    )


def test_node_commonjs_module_not_found_takes_the_code_below_the_stack() -> None:
    log = """\
node:internal/modules/cjs/loader:1147
  throw err;
  ^

Error: Cannot find module 'dotenv'
Require stack:
- /app/src/index.js
    at Module._resolveFilename (node:internal/modules/cjs/loader:1144:15)
    at Module.require (node:internal/modules/cjs/loader:1231:19)
    at require (node:internal/modules/helpers:177:18)
    at Object.<anonymous> (/app/src/index.js:1:1)
    at Module._compile (node:internal/modules/cjs/loader:1364:14) {
  code: 'MODULE_NOT_FOUND',
  requireStack: [ '/app/src/index.js' ]
}

Node.js v20.11.1
"""
    assert diagnose(log, 1) == RootCause(
        "MODULE_NOT_FOUND",
        "Cannot find module 'dotenv'",
        "node",
        frame="node:internal/modules/cjs/loader:1144 in Module._resolveFilename",
        frames=("/app/src/index.js:Object.<anonymous>",),
        files=("/app/src/index.js",),
    )


def test_node_module_not_found_without_a_stack() -> None:
    log = "npm warn config production Use `--omit=dev` instead.\nError: Cannot find module 'left-pad'\n"
    assert diagnose(log, 1) == RootCause("MODULE_NOT_FOUND", "Cannot find module 'left-pad'", "node")


def test_real_node_errors(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        require("node", "install Node.js 20 (.ci/setup installs it for the Claude Code CLI)")
    assert node is not None
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "src" / "a.js").write_text(
        "function foo(x) { return x.bar(); }\nfunction main() { foo({}); }\nmain();\n"
    )
    (app / "m.mjs").write_text("import 'left-pad-xyz';\n")
    done = subprocess.run([node, str(app / "src" / "a.js")], capture_output=True, text=True, timeout=60)
    cause = diagnose(done.stderr, done.returncode)
    assert cause is not None
    assert (cause.error_type, cause.message) == ("TypeError", "x.bar is not a function")
    assert cause.frame == f"{app}/src/a.js:1 in foo"
    assert cause.frames == (
        f"{app}/src/a.js:Object.<anonymous>",
        f"{app}/src/a.js:main",
        f"{app}/src/a.js:foo",
    )
    done = subprocess.run([node, str(app / "m.mjs")], capture_output=True, text=True, timeout=60)
    cause = diagnose(done.stderr, done.returncode)
    assert cause is not None
    assert (cause.error_type, cause.message) == (
        "ERR_MODULE_NOT_FOUND",
        f"Cannot find package 'left-pad-xyz' imported from {app}/m.mjs",
    )


# ---- OOM kills ----


def test_docker_oom_killed_outranks_the_log() -> None:
    cause = diagnose(CHAINED + "Killed\n", 137, oom_killed=True)
    assert cause == RootCause("OOMKilled", "Killed", "oom")
    assert diagnose("loading 12000000 rows\n", 137, oom_killed=True) == RootCause(
        "OOMKilled", "killed for want of memory (exit 137)", "oom"
    )


def test_exit_137_with_a_kill_line_is_oom_and_without_one_is_not() -> None:
    log = "loading 12000000 rows\nbash: line 1:    57 Killed                  python3 load.py\n"
    assert diagnose(log, 137) == RootCause("OOMKilled", "bash: line 1: 57 Killed python3 load.py", "oom")
    assert diagnose("Out of memory: Killed process 4242 (python3)\n", 137) == RootCause(
        "OOMKilled", "Out of memory: Killed process 4242 (python3)", "oom"
    )
    # `docker stop` past its grace period is SIGKILL too: no memory word, no OOM.
    assert diagnose("shutting down\n", 137) is None
    assert diagnose(log, 1) is None


def test_oom_flag_with_another_exit_code_comes_after_the_log() -> None:
    cause = diagnose(MODULE_NOT_FOUND.format(module="numpy"), 1, oom_killed=True)
    assert cause is not None and cause.error_type == "ModuleNotFoundError"
    assert diagnose("worker 3 lost\n", 1, oom_killed=True) == RootCause(
        "OOMKilled", "killed for want of memory (exit 1)", "oom"
    )


# ---- command not found ----


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("bash: terraform: command not found", "terraform"),
        ("bash: line 1: uv: command not found", "uv"),
        ("/workspace/scripts/deploy.sh: line 12: kubectl: command not found", "kubectl"),
        ("sh: 1: pnpm: not found", "pnpm"),
        ("/docker-entrypoint.sh: 7: exec: gunicorn: not found", "gunicorn"),
        ("sh: ./run.sh: not found", "./run.sh"),
        ("bash: ./bin/start: No such file or directory", "./bin/start"),
        ("zsh: command not found: poetry", "poetry"),
        ("/usr/bin/env: \u2018python\u2019: No such file or directory", "python"),
        ("env: 'node': No such file or directory", "node"),
        (
            'docker: Error response from daemon: failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "claude": executable file not found in $PATH: unknown.',
            "claude",
        ),
        (
            'OCI runtime exec failed: exec failed: unable to start container process: exec: "rg": executable file not found in $PATH: unknown',
            "rg",
        ),
        ("exec /usr/local/bin/entrypoint.sh: no such file or directory", "/usr/local/bin/entrypoint.sh"),
    ],
)
def test_command_not_found(line: str, command: str) -> None:
    log = f"\x1b[32m+ setup\x1b[0m\n{line}\n"
    assert diagnose(log, 127) == RootCause(
        "CommandNotFound", f"command not found: {command}", "command_not_found"
    )


def test_a_missing_file_argument_is_not_a_missing_command_unless_the_exit_says_so() -> None:
    log = "cat: /workspace/notes.txt: No such file or directory\n"
    assert diagnose(log, 1) is None
    assert diagnose("myscript: frobnicate: not found\n", 127) == RootCause(
        "CommandNotFound", "command not found: frobnicate", "command_not_found"
    )


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_real_shell_command_not_found(shell: str) -> None:
    done = subprocess.run(
        [shell, "-c", "nosuchcommand_xyz --version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 127
    assert diagnose(done.stderr, done.returncode) == RootCause(
        "CommandNotFound", "command not found: nosuchcommand_xyz", "command_not_found"
    )


# ---- the last error line, and nothing ----


@pytest.mark.parametrize(
    ("log", "error_type", "message"),
    [
        (
            "2024-05-01 12:00:01 INFO starting\n2024-05-01 12:00:03 ERROR worker-3: lost connection to 10.0.0.5:6379\nshutdown\n",
            "Error",
            "2024-05-01 12:00:03 ERROR worker-3: lost connection to 10.0.0.5:6379",
        ),
        (
            "connecting\n2024-05-01 12:00:03 [app] psycopg2.OperationalError: could not connect to server\n",
            "OperationalError",
            "could not connect to server",
        ),
        (
            "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\n",
            "panic",
            "runtime error: index out of range [5] with length 3",
        ),
        (
            'FATAL: password authentication failed for user "app"\n',
            "FATAL",
            'password authentication failed for user "app"',
        ),
        (
            "error: externally-managed-environment\n\nnote: If you believe this is a mistake, contact your distribution\n",
            "Error",
            "externally-managed-environment",
        ),
    ],
)
def test_the_last_error_line(log: str, error_type: str, message: str) -> None:
    assert diagnose(log, 1) == RootCause(error_type, message, "error_line")


def test_nothing_to_say_is_none() -> None:
    assert diagnose("", 1) is None
    assert diagnose("building\ndone in 3.2s\n", 143) is None


def test_progress_bars_and_colours_are_read_as_the_terminal_showed_them() -> None:
    log = "Downloading  10%\rDownloading  55%\rDownloading 100%\r\n\x1b[31;1mERROR\x1b[0m: checksum mismatch\r\n"
    assert diagnose(log, 1) == RootCause("Error", "checksum mismatch", "error_line")
    log = "Installing deps  40%\r\x1b[2Kbash: uv: command not found\r\n"
    assert diagnose(log, 127) == RootCause("CommandNotFound", "command not found: uv", "command_not_found")


def test_only_the_tail_is_read() -> None:
    noise = "".join(f"2024-05-01 12:00:{i % 60:02d} INFO processed item {i}\n" for i in range(40_000))
    assert len(noise) > 16 * TAIL_CHARS
    # The cause before the tail is out of sight; the one at the end of a megabyte is found.
    assert diagnose(MODULE_NOT_FOUND.format(module="yaml") + noise, 1) is None
    cause = diagnose(noise + MODULE_NOT_FOUND.format(module="yaml"), 1)
    assert cause is not None and cause.message == "No module named 'yaml'"


# ---- fingerprints and normalisation ----


def test_fingerprint_of_one_crash_with_other_numbers_paths_and_ids() -> None:
    second = (
        CHAINED.replace("/workspace/myplan/", "/workspace/otherplan/")
        .replace("tmpk2x9_abc", "tmpq8w1_zzz")
        .replace("line 16", "line 19")
        .replace("line 27", "line 30")
    )
    first, other = diagnose(CHAINED), diagnose(second)
    assert first is not None and other is not None and first != other
    assert fp(first) == fp(other)
    assert len(fp(first)) == 16 and int(fp(first), 16) >= 0


def test_fingerprint_tells_modules_and_frames_apart() -> None:
    yaml = diagnose(MODULE_NOT_FOUND.format(module="yaml"))
    toml = diagnose(MODULE_NOT_FOUND.format(module="toml"))
    assert yaml is not None and toml is not None and yaml.frames == toml.frames
    assert fp(yaml) != fp(toml)
    # A ConfigError raised somewhere else is another problem.
    elsewhere = diagnose(CHAINED.replace("in load\n    raise", "in reload\n    raise"))
    assert fp(elsewhere) != fp(diagnose(CHAINED))


def test_fingerprint_without_frames_is_the_normalised_message() -> None:
    assert fingerprint(None, "TimeoutError", "Timeout after 31s") == fingerprint(
        None, "TimeoutError", "Timeout after 600s"
    )
    assert fingerprint(None, "TimeoutError", "Timeout after 31s") != fingerprint(
        None, "TaskError", "Timeout after 31s"
    )
    bare = [diagnose(f"ModuleNotFoundError: No module named '{name}'\n") for name in ("boto3", "h5py")]
    assert fp(bare[0]) != fp(bare[1])
    commands = [
        diagnose(line, 127)
        for line in ("bash: uv: command not found", 'exec: "uv": executable file not found in $PATH')
    ]
    assert fp(commands[0]) == fp(commands[1])


def test_fingerprint_is_the_same_in_another_process() -> None:
    cause = diagnose(CHAINED)
    code = (
        "from pytest_orchestrator.crashes.diagnose import diagnose, fingerprint\n"
        "import sys; c = diagnose(sys.stdin.read()); print(fingerprint(c, c.error_type, c.message))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=CHAINED, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == fp(cause)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Timeout after 31s", "Timeout after 600s"),
        ("cannot open /tmp/tmpab12cd/x.py", "cannot open /tmp/tmpzz99yy/x.py"),
        ("No such file or directory: '/tmp/tmpab12cd_q'", "No such file or directory: '/tmp/tmpzz99yy_w'"),
        (
            "request 3f2b1c4e-9a8d-4c7b-b6a5-1234567890ab failed",
            "request 0e1d2c3b-4a59-4687-9a0b-fedcba987654 failed",
        ),
        ("at 2024-05-01T12:00:01.123Z: stalled", "at 2025-01-31T23:59:59Z: stalled"),
        ("connect ECONNREFUSED 127.0.0.1:5432", "connect ECONNREFUSED 10.1.2.3:6543"),
        ("<Foo object at 0x7f3a2b1c4d50>", "<Foo object at 0x55d0c0ffee00>"),
        ("container orchestrator-task-4f2a9c exited", "container orchestrator-task-b81e07 exited"),
        (
            "image sha256:9f86d081884c7d659a2feaa0c55ad015 missing",
            "image sha256:e3b0c44298fc1c149afbf4c8996fb924 missing",
        ),
        ("  worker   3\tdied ", "worker 12 died"),
    ],
)
def test_normalise_makes_one_problem_one_text(one: str, other: str) -> None:
    assert normalise(one) == normalise(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("No module named 'foo'", "No module named 'bar'"),
        ("No module named 'boto3'", "No module named 'h5py'"),
        ("cannot open /etc/app/config.yaml", "cannot open /etc/app/secrets.yaml"),
        ("Timeout after 31s", "Killed after 31s"),
    ],
)
def test_normalise_keeps_what_tells_problems_apart(one: str, other: str) -> None:
    assert normalise(one) != normalise(other)


# ---- files in the workspace ----


def test_in_workspace() -> None:
    files = (
        "/workspace/myplan/app/main.py",
        "/workspace/other/x.py",
        "/workspace/myplan/app/main.py",
        "src/util.py",
        "./src/cli.py",
        "../outside.py",
        "/workspace/myplanned/y.py",
        "<string>",
        "/workspace/myplan/../myplan/lib/z.py",
    )
    assert in_workspace(files, "/workspace/myplan/") == (
        "app/main.py",
        "src/util.py",
        "src/cli.py",
        "lib/z.py",
    )
    assert in_workspace(files, "/workspace")[:2] == ("myplan/app/main.py", "other/x.py")
    assert in_workspace(["/etc/passwd"], "/workspace") == ()
