"""``nodecert serve`` runs the revocation drainer: a queued CA revocation gets to the CA."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from nodecert.core.values import RevocationReason
from nodecert.store.sqlite.store import SQLiteStore
from tests.processes import cli, free_port, nodecert_env, start_server, stop_server


def _wait_for(predicate, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_a_revocation_queued_while_the_ca_was_away_reaches_the_ca(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    env = nodecert_env(home, port, revocation_retry_s="1")
    cli(env, "init")
    cli(env, "nodes", "add", "drain-n1", "--owner", "dora")
    token = cli(env, "dev-token", "dora")
    process = start_server(env, tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}"
        cli(env, "request", "drain-n1", "--server", url, "--token", token, "--out", str(tmp_path))
        cert = x509.load_pem_x509_certificate((tmp_path / "drain-n1.crt").read_bytes())
        serial = format(cert.serial_number, "x")
        # What an outage leaves: the ledger row revoked and the CA revocation queued, not sent.
        store = SQLiteStore(home / "nodecert.db")
        store.revoke_and_queue(
            [serial], reason=RevocationReason.KEY_COMPROMISE, at=datetime.now(UTC)
        )
        assert store.count_pending_revocations() == 1
        assert _wait_for(lambda: store.count_pending_revocations() == 0), (
            "the drainer of nodecert serve did not send the queued revocation"
        )
    finally:
        stop_server(process)
