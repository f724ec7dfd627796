"""kill -9 under load, then restart: every serial a client got a 201 for is in the ledger."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nodecert.store.sqlite.store import SQLiteStore
from tests.processes import cli, free_port, nodecert_env, start_server, stop_server


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_kill_9_under_load_loses_no_issued_certificate(tmp_path: Path, synchronous: str) -> None:
    home, port = tmp_path / "home", free_port()
    env = nodecert_env(
        home,
        port,
        workers="2",
        log_level="WARNING",
        sqlite_synchronous=synchronous,
        # This test wants many certificates quickly; the quotas have tests of their own.
        quota_per_minute="0",
        max_active_per_node="0",
    )
    cli(env, "init")
    cli(env, "nodes", "add", "n1", "--owner", "alice")
    token = cli(env, "dev-token", "alice")
    log = tmp_path / "serve.log"
    server = start_server(env, log)
    issued: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        body = json.dumps({"nodeId": "n1", "keyType": "ec-p256"}).encode()
        for _ in range(400):  # Bounded: the kill normally comes long before.
            if stop.is_set():
                return
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/generate-cert",
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    serial = json.loads(response.read())["serialNumber"]
            except (OSError, http.client.HTTPException, ValueError):
                continue  # Refused or cut off by the kill: the client got no certificate.
            with lock:
                issued.append(serial)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(issued) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop_server(server, signal.SIGKILL)  # The whole group: master and workers, mid-request.
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(issued) >= 20, f"only {len(issued)} issued before the kill"

    restarted = start_server(env, log)
    try:
        store = SQLiteStore(home / "nodecert.db")
        recorded = {row.serial for row in store.find(user_id="alice")}
        store.close()
    finally:
        stop_server(restarted)
    missing = sorted(set(issued) - recorded)
    assert missing == []
    # Nothing half-written either: every row in the ledger is a complete certificate row.
    assert len(recorded) >= len(set(issued))
