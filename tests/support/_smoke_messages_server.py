"""Smoke run: the real claude CLI against MessagesServer writes hello.py; prints the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    # Allow `python tests/support/_smoke_messages_server.py` from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.messages_server import MessagesServer, Step, Usage, reply, tool_use


def main() -> int:
    """Run one two-turn session and check the file and the result event."""
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp, "work")
        home = Path(tmp, "home")
        workdir.mkdir()
        home.mkdir()
        script: list[Step] = [
            tool_use(
                "Write",
                {"file_path": str(workdir / "hello.py"), "content": 'print("Hello, World!")\n'},
                usage=Usage(input_tokens=1000, output_tokens=50, cache_read_input_tokens=200),
            ),
            reply("STATUS: complete", usage=Usage(input_tokens=1100, output_tokens=10)),
        ]
        with MessagesServer(script) as server:
            env = os.environ | {
                "HOME": str(home),
                "ANTHROPIC_BASE_URL": server.url,
                "ANTHROPIC_API_KEY": "test-key",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            }
            proc = subprocess.run(
                [
                    "claude",
                    "-p",
                    "make hello.py",
                    "--output-format",
                    "stream-json",
                    "--verbose",
                    "--permission-mode",
                    "acceptEdits",
                    "--max-turns",
                    "5",
                    "--allowedTools",
                    "Write,Read,Bash",
                ],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            turns = len(server.requests)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        print("exit code:", proc.returncode, "| turns served:", turns)
        print(
            "events:", " ".join(f"{e['type']}/{e.get('subtype', '')}".rstrip("/") for e in events)
        )
        result = events[-1] if events else {}
        print(json.dumps(result, indent=2))
        written = (workdir / "hello.py").read_text() if (workdir / "hello.py").exists() else None
        print("hello.py:", repr(written))
        ok = (
            proc.returncode == 0
            and written == 'print("Hello, World!")\n'
            and result.get("subtype") == "success"
            and result.get("num_turns") == 2
            and result["usage"]["input_tokens"] == 2100
            and result["usage"]["output_tokens"] == 60
            and result["usage"]["cache_read_input_tokens"] == 200
        )
        print("OK" if ok else "FAILED", file=sys.stderr if not ok else sys.stdout)
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
