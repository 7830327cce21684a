"""The README's promise: `make demo` sets up, serves, and its printed curl calls work."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands\s+```bash\n(.*?)```", readme, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands[:2] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "modelport --home .modelport demo" in makefile


def test_demo_then_every_printed_curl_works(tmp_path: Path) -> None:
    home, workdir, port = tmp_path / "home", tmp_path / "demo", free_port()
    env = os.environ | {"MODELPORT_HOME": str(home)}
    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport.cli.main",
            "demo",
            "--workdir",
            str(workdir),
            "--port",
            str(port),
            "--no-serve",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr + demo.stdout
    curls = [line.strip() for line in demo.stdout.splitlines() if line.strip().startswith("curl")]
    assert len(curls) >= 5

    server = start_server(env, tmp_path / "server.log", "--env", "production", port=port)
    try:
        for command in curls:
            result = subprocess.run(
                ["bash", "-c", command + " -sS -w '\\n%{http_code}'"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            body, _, status = result.stdout.rpartition("\n")
            assert result.returncode == 0 and status == "200", (
                command,
                result.stdout,
                result.stderr,
            )
            assert "error" not in json.loads(body)
    finally:
        stop_server(server)

    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport.cli.main",
            "apply",
            "-f",
            str(workdir / "modelport.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "nothing to change" in again.stdout
