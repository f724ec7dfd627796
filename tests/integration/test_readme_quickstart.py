"""The README's Quick start, run as written in a fresh directory against `nodecert serve`.

Two substitutions only, because port 8080 may be taken on a shared machine: the port
(in the curl line, and as NODECERT_SERVER for the CLI's default) and `<serial>`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.processes import NODECERT, free_port, nodecert_env, start_server, stop_server

README = Path(__file__).resolve().parents[2] / "README.md"


def _quick_start() -> str:
    text = README.read_text()
    section = text[text.index("In a second terminal") :]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_quick_start_works_as_written(tmp_path: Path) -> None:
    port = free_port()
    env = nodecert_env(tmp_path / ".nodecert", port)
    del env["NODECERT_HOME"]  # The default, ./.nodecert, as `make serve` in the directory.
    env["PATH"] = f"{Path(NODECERT).parent}{os.pathsep}{env['PATH']}"
    env["NODECERT_SERVER"] = f"http://127.0.0.1:{port}"
    serve_env = {**env, "NODECERT_HOME": str(tmp_path / ".nodecert")}
    server = start_server(serve_env, tmp_path / "serve.log")
    try:
        script = _quick_start().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        script = script.replace(
            "nodecert revoke <serial>", "nodecert revoke $(nodecert certs | head -1 | cut -f1)"
        )
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        stop_server(server)
    assert done.returncode == 0, done.stderr
    assert '"privateKey"' in done.stdout
    assert f"wrote {Path('scratch') / 'n1.key'} (mode 0600)" in done.stdout
    assert "scratch/n1.crt: OK" in done.stdout
    assert "user=alice node=n1" in done.stdout
    assert "\nrevoked " in done.stdout
    # Only ignored paths are written in the checkout: ./.nodecert and ./scratch.
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "scratch",
        "serve.log",
    ]
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == [
        "ca.crt",
        "n1.crt",
        "n1.key",
    ]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "scratch/n1.key", ".nodecert/ca.key", "n1.p12"],
        cwd=README.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ignored.stdout.split() == ["scratch/n1.key", ".nodecert/ca.key", "n1.p12"]
