"""The CRL: strictly increasing numbers, cached until a revocation or half its lifetime,
ETag / Last-Modified / 304 (issue 12)."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from nodecert.bootstrap import build_service
from nodecert.core.config import Settings
from nodecert.core.values import CertificateQuery, CertificateStatus, RevocationReason
from nodecert.http.app import create_app
from nodecert.issuing.crl import CRLPublisher
from tests.kit import ADMIN, issue


class Clock:
    def __init__(self):
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self):
        return self.now


def _number(der):
    crl = x509.load_der_x509_crl(der)
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


@pytest.fixture
def service(tmp_path):
    return build_service(Settings(home=tmp_path))


def _publisher(service, clock):
    return CRLPublisher(
        ledger=service.authority.ledger,
        signer=service.authority.ca,
        lifetime=timedelta(hours=1),
        clock=clock,
    )


def test_two_crls_in_the_same_second_have_strictly_increasing_numbers(service):
    # The number used to be epoch seconds: a revocation and a rebuild within one second
    # produced two different CRLs with the same number (RFC 5280 section 5.2.3).
    clock = Clock()
    publisher = _publisher(service, clock)
    first = publisher.published()
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    service.administration.revoke(ADMIN, cert.serial, RevocationReason.KEY_COMPROMISE)
    second = publisher.published()
    assert second.der != first.der
    assert _number(second.der) > _number(first.der)


def test_numbers_are_persisted_across_publishers_and_a_clock_set_back(service):
    clock = Clock()
    first = _publisher(service, clock).published()
    clock.now -= timedelta(days=2)
    again = _publisher(service, clock).published()
    assert _number(again.der) > _number(first.der)


def test_the_signed_crl_is_cached_until_a_revocation(service):
    clock = Clock()
    publisher = _publisher(service, clock)
    signed = []
    sign = service.authority.ca.sign_crl
    service.authority.ca.sign_crl = lambda builder: signed.append(1) or sign(builder)
    first = publisher.published()
    assert publisher.published() is first
    clock.now += timedelta(minutes=20)
    assert publisher.published() is first
    assert len(signed) == 1
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    service.administration.revoke(ADMIN, cert.serial, RevocationReason.UNSPECIFIED)
    fresh = publisher.published()
    assert fresh is not first
    assert int(cert.serial, 16) in {e.serial_number for e in x509.load_der_x509_crl(fresh.der)}


def test_a_revocation_by_another_process_is_seen(tmp_path, service):
    clock = Clock()
    publisher = _publisher(service, clock)
    first = publisher.published()
    other = build_service(Settings(home=tmp_path))  # Another worker, or the CLI.
    cert = issue(other.authority, "bob", "n9", admin=other.administration)
    other.administration.revoke(ADMIN, cert.serial, RevocationReason.UNSPECIFIED)
    assert publisher.published().etag != first.etag


def test_the_cache_is_renewed_at_half_its_lifetime(service):
    clock = Clock()
    publisher = _publisher(service, clock)
    first = publisher.published()
    clock.now += timedelta(minutes=31)
    renewed = publisher.published()
    assert renewed.this_update == clock.now
    assert renewed.next_update - clock.now == timedelta(hours=1)
    assert _number(renewed.der) > _number(first.der)


def test_http_etag_last_modified_and_304(service):
    http = TestClient(create_app(service), client=("127.0.0.1", 40000))
    r = http.get("/v1/crl")
    assert r.status_code == 200
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    assert etag.startswith('"') and etag.endswith('"')
    assert modified.endswith("GMT")
    again = http.get("/v1/crl")
    assert (again.content, again.headers["etag"]) == (r.content, etag)
    unchanged = http.get("/v1/crl", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert http.get("/v1/crl", headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    assert http.get("/v1/crl", headers={"If-None-Match": "*"}).status_code == 304
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    service.administration.revoke(ADMIN, cert.serial, RevocationReason.UNSPECIFIED)
    changed = http.get("/v1/crl", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag


def test_building_reads_only_revoked_unexpired_rows_once(service):
    for i in range(3):
        cert = issue(service.authority, "alice", f"n{i}")
        service.administration.revoke(ADMIN, cert.serial, RevocationReason.UNSPECIFIED)
    now = datetime.now(UTC)
    revoked = service.authority.ledger.query(
        CertificateQuery(status=CertificateStatus.REVOKED, now=now)
    )
    crl = x509.load_der_x509_crl(_publisher(service, Clock()).published().der)
    assert {format(e.serial_number, "x") for e in crl} == {row.serial for row in revoked}
