"""Private keys and tokens never reach a log line, an error message or the disk."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.processes import cli, free_port, nodecert_env, start_server, stop_server

from ..conftest import Env


def _secrets_in(text: str, secrets: list[str]) -> list[str]:
    found = []
    for secret in secrets:
        if secret in text:
            found.append(secret[:24] + "…")
    if "PRIVATE KEY" in text:
        found.append("a PEM private key marker")
    return found


def _key_fragments(pem: str) -> list[str]:
    # Every base64 line of the key body: any of them in a log would leak key material.
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def test_whole_flow_at_debug_logs_no_secret(
    env: Env, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    env.add_node("n1", "alice")
    token = env.token("alice")
    secrets = [token, token.split(".")[2]]
    headers = {"Authorization": f"Bearer {token}"}
    for body in ({"nodeId": "n1"}, {"nodeId": "n1", "keyType": "ec-p256"}):
        issued = env.client.post("/generate-cert", json=body, headers=headers).json()
        secrets += _key_fragments(issued["privateKey"])
    serial = issued["serialNumber"]
    env.client.get("/v1/certificates", headers=headers)
    env.client.post(f"/v1/certificates/{serial}/revoke", headers=headers)
    # Failures must not echo the secrets they were given either.
    responses = [
        env.client.post(
            "/generate-cert",
            json={"nodeId": "n1"},
            headers={"Authorization": f"Bearer {token[:-3]}xyz"},
        ),
        env.client.post("/generate-cert", json={"nodeId": "other"}, headers=headers),
        env.client.post(
            "/generate-cert", json={"nodeId": "n1", "csr": issued["privateKey"]}, headers=headers
        ),
    ]
    assert [r.status_code for r in responses] == [401, 403, 400]
    for response in responses:
        assert _secrets_in(response.text, secrets) == []
    assert caplog.records, "the flow logged nothing at all: the test would prove nothing"
    assert _secrets_in(caplog.text, secrets) == []
    # On disk: the ledger holds no key material; only the CA keys (the issuing CA's and
    # the root's, unless `nodecert ca init --root-key-out` put it elsewhere) and the dev
    # issuer key exist.
    home = env.service.settings.home
    key_files = sorted(
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
    )
    assert key_files == ["ca/ca.key", "ca/root.key", "dev-issuer.key"]
    database = b"".join(p.read_bytes() for p in home.glob("nodecert.db*"))
    assert all(fragment.encode() not in database for fragment in secrets)


def test_server_process_at_debug_logs_no_secret(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    env = nodecert_env(home, port, log_level="DEBUG")
    cli(env, "init")
    cli(env, "nodes", "add", "n1", "--owner", "alice")
    token = cli(env, "dev-token", "alice")
    log_path = tmp_path / "serve.log"
    server = start_server(env, log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        request = urllib.request.Request(
            url + "/generate-cert",
            data=json.dumps({"nodeId": "n1"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            issued = json.loads(response.read())
        bad = urllib.request.Request(
            url + "/generate-cert?token=" + token[:20],
            data=b"{}",
            headers={"Authorization": f"Bearer {token}x"},
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(bad, timeout=30)
    finally:
        stop_server(server)
    text = log_path.read_text()
    assert "DEBUG" in text or "debug" in text.lower()
    assert "/generate-cert" in text
    secrets = [token, token.split(".")[2], *_key_fragments(issued["privateKey"])]
    assert _secrets_in(text, secrets) == []
