"""``nodecert audit`` against a real ``nodecert serve``, and on the local home."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

from tests.processes import NODECERT, cli, free_port, nodecert_env, start_server, stop_server


def _lines(text: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in text.splitlines()]


def test_audit_over_the_api_to_stdout_and_to_a_file(tmp_path: Path) -> None:
    port = free_port()
    env = nodecert_env(tmp_path / "home", port, key_pool_size="0")
    server = start_server(env, tmp_path / "serve.log")
    try:
        cli(env, "nodes", "add", "n1", "--owner", "alice")
        client = {**env, "NODECERT_SERVER": f"http://127.0.0.1:{port}"}
        out = tmp_path / "out"
        out.mkdir()
        alice = {**client, "NODECERT_TOKEN": cli(env, "dev-token", "alice")}
        cli(alice, "request", "n1", "--key-type", "ec-p256", "--out", str(out))
        admin = {**client, "NODECERT_TOKEN": cli(env, "dev-token", "ops", "--admin")}

        entries = _lines(cli(admin, "audit"))
        assert [(e["action"], e["nodeId"]) for e in entries] == [
            ("certificate.issue", "n1"),
            ("node.add", "n1"),
        ]
        # An admin action from the CLI on the server's machine names its source.
        assert entries[1]["actor"].startswith("cli:")
        assert entries[1]["source"] == "cli"
        assert entries[0]["source"] == ""  # Issuance comes from the ledger (its request id).
        assert _lines(cli(admin, "audit", "--action", "node.")) == [entries[1]]

        log = tmp_path / "audit.jsonl"
        cli(admin, "audit", "--output", str(log))
        cli(admin, "audit", "--output", str(log), "--limit", "1")
        assert _lines(log.read_text()) == [*entries, entries[0]]
        assert stat.S_IMODE(log.stat().st_mode) == 0o600

        # alice reads her own entries; asking for bob's is refused in one line.
        assert {e["userId"] for e in _lines(cli(alice, "audit"))} == {"alice"}
        refused = subprocess.run(
            [NODECERT, "audit", "--user", "bob"], env=alice, capture_output=True, text=True
        )
        assert refused.returncode == 1
        assert refused.stderr.startswith("nodecert: error: user: you may read only your own")
        assert len(refused.stderr.splitlines()) == 1
    finally:
        stop_server(server)

    # On the server's machine, without a token: the home's own store.
    local = _lines(cli(env, "audit", "--local", "--node", "n1"))
    assert [e["action"] for e in local] == ["certificate.issue", "node.add"]


def test_a_bad_limit_is_refused_before_any_call(tmp_path: Path) -> None:
    env = nodecert_env(tmp_path / "home")
    done = subprocess.run(
        [NODECERT, "audit", "--limit", "0"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr == "nodecert: error: --limit: 0 is not from 1 to 1000\n"
