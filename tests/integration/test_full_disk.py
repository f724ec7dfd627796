"""A home on a full disk: 503 with Retry-After, nothing lost, and all well once space is back.

The home lives on a small tmpfs of its own, filled up by a file beside it. Mounting needs
root (or CAP_SYS_ADMIN); elsewhere the test skips with a hint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from nodecert.bootstrap import build_service
from nodecert.http.app import create_app
from nodecert.server.drainer import RevocationDrainer
from tests.processes import cli, free_port, nodecert_env, start_server, stop_server

from ..conftest import ADMIN, make_settings

_SIZE = "16m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("needs root to mount a small tmpfs (run `make test` as root to include it)")
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={_SIZE},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.strip()}); a container needs CAP_SYS_ADMIN"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    """Write one file until the disk refuses another byte; return it."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0")
    finally:
        os.close(fd)
    return filler


def _is_503(reply: object) -> bool:
    status = reply.status_code  # type: ignore[attr-defined]
    headers = reply.headers  # type: ignore[attr-defined]
    return bool(
        status == 503
        and int(headers["retry-after"]) > 0
        and headers["content-type"] == "application/problem+json"
    )


def test_crl_issue_and_revoke_on_a_full_disk_are_503s_and_heal(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = build_service(make_settings(small_disk / "home"))
    try:
        service.administration.put_node(ADMIN, "n1", "alice")
        assert service.dev_issuer is not None
        auth = {"Authorization": f"Bearer {service.dev_issuer.mint('alice')}"}
        client = TestClient(create_app(service), raise_server_exceptions=False)

        def issue() -> object:
            body = {"nodeId": "n1", "keyType": "ec-p256"}
            return client.post("/generate-cert", json=body, headers=auth)

        def revoke(serial: str) -> object:
            body = {"reason": "keyCompromise"}
            return client.post(f"/v1/certificates/{serial}/revoke", json=body, headers=auth)

        issued = []
        for _ in range(3):
            reply = issue()
            assert reply.status_code == 201, reply.text  # type: ignore[attr-defined]
            issued.append(reply.json()["serialNumber"])  # type: ignore[attr-defined]

        filler = _fill(small_disk)
        # The first CRL ever must create its number's file: no room for it.
        crl = client.get("/v1/crl")
        assert _is_503(crl), crl.text
        reply = issue()
        assert _is_503(reply), reply.text  # type: ignore[attr-defined]
        reply = revoke(issued[0])
        # The ledger may still have room in its write-ahead log for the revocation (200, the
        # CA told later), or not (503); never anything else.
        assert reply.status_code in (200, 503), reply.text  # type: ignore[attr-defined]
        assert reply.status_code == 200 or _is_503(reply)  # type: ignore[attr-defined]
        revoked_now = reply.status_code == 200  # type: ignore[attr-defined]
        drainer = RevocationDrainer(service.administration.finish_revocations)
        drainer.run_once()  # Whatever the disk says, it returns.
        assert "Traceback" not in caplog.text
        assert "internal_error" not in caplog.text

        # Nothing lost: every certificate answered with a 201 is listed, reads still work.
        listed = client.get("/v1/certificates", headers=auth)
        assert listed.status_code == 200
        assert {row["serialNumber"] for row in listed.json()["certificates"]} >= set(issued)

        filler.unlink()
        if not revoked_now:
            assert revoke(issued[0]).status_code == 200  # type: ignore[attr-defined]
        for _ in range(3):
            if drainer.run_once() == 0:
                break
        assert service.administration.outbox.count_pending_revocations() == 0  # type: ignore[attr-defined]
        reply = issue()
        assert reply.status_code == 201, reply.text  # type: ignore[attr-defined]
        crl = client.get("/v1/crl")
        assert crl.status_code == 200
        parsed = x509.load_der_x509_crl(crl.content)
        assert parsed.get_revoked_certificate_by_serial_number(int(issued[0], 16)) is not None
    finally:
        service.close()


def test_nodecert_serve_on_a_full_disk_answers_503_and_recovers_by_itself(
    small_disk: Path, tmp_path: Path
) -> None:
    # The same with a real `nodecert serve` (2 workers, the drainer running every second):
    # no 500, no traceback in its log, and no restart needed once there is room again.
    home, port = small_disk / "home", free_port()
    env = nodecert_env(home, port, workers="2", revocation_retry_s="1")
    cli(env, "init")
    cli(env, "nodes", "add", "n1", "--owner", "alice")
    token = cli(env, "dev-token", "alice")
    log = tmp_path / "serve.log"  # Not on the small disk: the log must not fill it.
    server = start_server(env, log)
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: object = None) -> tuple[int, Message, bytes]:
        request = urllib.request.Request(
            base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()
        except OSError as error:
            raise AssertionError(f"{method} {path}: {error!r}\n{log.read_text()}") from error

    try:
        issued = []
        for _ in range(3):
            status, _, body = call("POST", "/generate-cert", {"nodeId": "n1", "keyType": "ec-p256"})
            assert status == 201, body
            issued.append(json.loads(body)["serialNumber"])
        filler = _fill(small_disk)
        statuses = []
        for method, path, body in [
            ("GET", "/v1/crl", None),
            ("POST", "/generate-cert", {"nodeId": "n1", "keyType": "ec-p256"}),
            ("POST", f"/v1/certificates/{issued[0]}/revoke", {"reason": "keyCompromise"}),
            ("GET", "/v1/crl", None),
        ]:
            status, headers, answer = call(method, path, body)
            statuses.append(status)
            assert status in (200, 503), answer
            if status == 503:
                assert int(headers["Retry-After"]) > 0, headers
        assert statuses[0] == 503  # The first CRL's number has no room on the disk.
        time.sleep(2)  # Not a timing assertion: let the drainer meet the full disk too.
        filler.unlink()

        def healed() -> bool:
            status, _, answer = call("GET", "/v1/crl")
            if status != 200:
                return False
            crl = x509.load_der_x509_crl(answer)
            return crl.get_revoked_certificate_by_serial_number(int(issued[0], 16)) is not None

        if statuses[2] != 200:
            status, _, answer = call(
                "POST", f"/v1/certificates/{issued[0]}/revoke", {"reason": "keyCompromise"}
            )
            assert status == 200, answer
        assert _wait_for(healed), "the CRL never showed the revocation once space was back"
        status, _, answer = call("POST", "/generate-cert", {"nodeId": "n1", "keyType": "ec-p256"})
        assert status == 201, answer
        status, _, answer = call("GET", "/v1/certificates?nodeId=n1")
        listed = {row["serialNumber"] for row in json.loads(answer)["certificates"]}
        assert listed >= set(issued)
        assert server.poll() is None
    finally:
        stop_server(server)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert " 500 " not in text, text


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()
