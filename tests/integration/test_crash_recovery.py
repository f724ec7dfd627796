"""kill -9 under load, then restart: every serial a client got a 201 for is in the ledger."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nodecert.store.sqlite import SQLiteStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "nodecert"), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{env['NODECERT_PORT']}/healthz"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return process
        except OSError:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
    raise AssertionError("server did not start")


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_kill_9_under_load_loses_no_issued_certificate(tmp_path: Path, synchronous: str) -> None:
    home, port = tmp_path / "home", _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODECERT_")}
    env.update(
        NODECERT_HOME=str(home),
        NODECERT_PORT=str(port),
        NODECERT_WORKERS="2",
        NODECERT_LOG_LEVEL="WARNING",
        NODECERT_SQLITE_SYNCHRONOUS=synchronous,
        # This test wants many certificates quickly; the quotas have tests of their own.
        NODECERT_QUOTA_PER_MINUTE="0",
        NODECERT_MAX_ACTIVE_PER_NODE="0",
    )
    nodecert = str(Path(sys.executable).parent / "nodecert")
    subprocess.run(
        [nodecert, "nodes", "add", "n1", "--owner", "alice"],
        env=env,
        check=True,
        capture_output=True,
    )
    token = subprocess.run(
        [nodecert, "dev-token", "alice"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    log = tmp_path / "serve.log"
    server = _start(env, log)
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
    os.killpg(server.pid, signal.SIGKILL)  # The whole group: master and workers, mid-request.
    server.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(issued) >= 20, f"only {len(issued)} issued before the kill"

    restarted = _start(env, log)
    try:
        store = SQLiteStore(home / "nodecert.db")
        recorded = {row.serial for row in store.find(user_id="alice")}
        store.close()
    finally:
        os.killpg(restarted.pid, signal.SIGTERM)
        restarted.wait(timeout=20)
    missing = sorted(set(issued) - recorded)
    assert missing == []
    # Nothing half-written either: every row in the ledger is a complete certificate row.
    assert len(recorded) >= len(set(issued))
