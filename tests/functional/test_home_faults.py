"""Files of the home that cannot be written: a 503 with Retry-After, never a 500.

The local CA keeps two counters beside its key (``ca/revocations``, ``ca/crlnumber``).
Here they are made unwritable the way any user can (a directory where the file should be:
``EISDIR``); ``tests/integration/test_full_disk.py`` does it with a full disk.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.bootstrap import build_service
from nodecert.http.app import create_app
from nodecert.issuing.service import Service
from nodecert.server.drainer import RevocationDrainer
from nodecert.support.files import CounterFile

from ..conftest import ADMIN, make_settings


@pytest.fixture
def served(tmp_path: Path) -> tuple[Service, TestClient, dict[str, str]]:
    service = build_service(make_settings(tmp_path / "home"))
    service.administration.put_node(ADMIN, "n1", "alice")
    assert service.dev_issuer is not None
    auth = {"Authorization": f"Bearer {service.dev_issuer.mint('alice')}"}
    return service, TestClient(create_app(service), raise_server_exceptions=False), auth


def _issue(client: TestClient, auth: dict[str, str]) -> str:
    reply = client.post("/generate-cert", json={"nodeId": "n1", "keyType": "ec-p256"}, headers=auth)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["serialNumber"])


def _break(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


def _assert_503(reply: object) -> None:
    status = reply.status_code  # type: ignore[attr-defined]
    headers = reply.headers  # type: ignore[attr-defined]
    assert status == 503, reply.text  # type: ignore[attr-defined]
    assert int(headers["retry-after"]) > 0
    assert headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "ca_unavailable"  # type: ignore[attr-defined]


def test_an_unwritable_crl_number_is_a_503_then_works_again(
    served: tuple[Service, TestClient, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    service, client, _ = served
    counter = Path(service.settings.home) / "ca" / "crlnumber"
    _break(counter)
    _assert_503(client.get("/v1/crl"))
    assert "Traceback" not in caplog.text
    counter.rmdir()
    assert client.get("/v1/crl").status_code == 200


def test_an_unwritable_revocation_count_keeps_the_revocation_queued_until_it_heals(
    served: tuple[Service, TestClient, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    service, client, auth = served
    serial = _issue(client, auth)
    count = Path(service.settings.home) / "ca" / "revocations"
    _break(count)

    # The ledger takes the revocation (the next access decision denies); telling the CA
    # fails and stays queued for the background drain.
    reply = client.post(
        f"/v1/certificates/{serial}/revoke", json={"reason": "keyCompromise"}, headers=auth
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "revoked"
    _assert_503(client.get("/v1/crl"))  # Nor can the CRL tell whether it is stale.

    drainer = RevocationDrainer(service.administration.finish_revocations)
    assert drainer.run_once() == 1  # Still queued, and the drainer is none the worse.
    assert "Traceback" not in caplog.text

    shutil.rmtree(count)
    assert drainer.run_once() == 1  # A refused revocation waits out one run (drainer.py)…
    assert drainer.run_once() == 0  # …then it is tried again, and sent.
    crl = x509.load_der_x509_crl(client.get("/v1/crl").content)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Service, TestClient, dict[str, str]]]:
    home = tmp_path_factory.mktemp("faults") / "home"
    # One certificate per example: the quotas have tests of their own.
    service = build_service(make_settings(home, quota_per_minute=0, max_active_per_node=0))
    service.administration.put_node(ADMIN, "n1", "alice")
    assert service.dev_issuer is not None
    auth = {"Authorization": f"Bearer {service.dev_issuer.mint('alice')}"}
    yield service, TestClient(create_app(service), raise_server_exceptions=False), auth
    service.close()


@settings(max_examples=30, deadline=None)
@given(code=st.sampled_from(sorted(errno.errorcode)))
def test_any_oserror_of_the_counter_files_is_a_503_never_a_500(
    shared: tuple[Service, TestClient, dict[str, str]], code: int
) -> None:
    service, client, auth = shared
    serial = _issue(client, auth)

    def fail(*_: object, **__: object) -> int:
        raise OSError(code, os.strerror(code))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CounterFile, "advance", fail)
        patch.setattr(CounterFile, "value", fail)
        _assert_503(client.get("/v1/crl"))
        reply = client.post(
            f"/v1/certificates/{serial}/revoke", json={"reason": "superseded"}, headers=auth
        )
        assert reply.status_code == 200, reply.text  # The ledger has it; the CA later.
        assert RevocationDrainer(service.administration.finish_revocations).run_once() >= 1
    assert client.get("/v1/crl").status_code == 200
