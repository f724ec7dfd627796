"""A simulated month of timer-driven renewal: the Done-when of issue 11.

The use cases in-process (Authority + Renewer, a real local CA, a real SQLite ledger with
the default quotas) under an injected clock. A twice-daily timer renews a 7-day
certificate when due (in the last third of its lifetime) for 30 days: the node always
holds a valid certificate, never has more than 5 active or superseded ones, and never
meets a 429.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.core.policy import OwnershipMode, OwnershipPolicy, ValidityPolicy
from nodecert.core.values import CertificateQuery, CertificateStatus, Principal
from nodecert.issuing.authority import Authority, IssueRequest
from nodecert.issuing.quota import QuotaPolicy
from nodecert.issuing.renewal import RenewalRequest, Renewer, mint_renewal_token, renewal_audience
from nodecert.nodeside.access import AccessDecider
from nodecert.store.sqlite.store import SQLiteStore
from tests.kit import ADMIN, TRUST_DOMAIN, admin_of, new_ca


class Clock:
    """The injected time: moved by the test, read by every use case.

    It starts a few minutes from now, since the CA made for the test is valid from now on.
    """

    def __init__(self) -> None:
        self.start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
        self.now = self.start

    def __call__(self) -> datetime:
        return self.now


def _due(certificate: x509.Certificate) -> datetime:
    # Renew-when-due as the CLI does by default: in the last third of the lifetime.
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return end - (end - start) / 3


def test_a_month_of_twice_daily_renew_when_due(tmp_path: Path) -> None:
    clock = Clock()
    ca = new_ca(tmp_path / "ca")
    store = SQLiteStore(tmp_path / "nodecert.db")
    authority = Authority(
        ca=ca,
        ledger=store,
        nodes=store,
        ownership=OwnershipPolicy(OwnershipMode.REGISTRY, store),
        validity=ValidityPolicy(default_days=7),
        organization="nodecert",
        trust_domain=TRUST_DOMAIN,
        clock=clock,
        quota=QuotaPolicy(per_minute=30, burst=30, max_active=10, limiter=store),
    )
    decider = AccessDecider.from_chain(
        ca.chain(), ledger=store, nodes=store, trust_domain=TRUST_DOMAIN, clock=clock
    )
    audience = renewal_audience(TRUST_DOMAIN)
    renewer = Renewer(
        authority=authority, decider=decider, replay=store, audience=audience, clock=clock
    )
    admin_of(authority).put_node(ADMIN, "n1", "alice")
    issued = authority.issue(
        Principal("alice"), IssueRequest(node_id="n1", request_id="first", key_type="ec-p256")
    )
    renewals = 0
    for run in range(61):  # 30 days of a timer at 03:00 and 15:00.
        clock.now = clock.start + timedelta(hours=12 * run)
        certificate = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
        if clock.now >= _due(certificate):
            key = serialization.load_pem_private_key(
                (issued.private_key_pem or "").encode(), password=None
            )
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            token = mint_renewal_token(certificate, key, audience=audience, now=clock.now)
            issued = renewer.renew(RenewalRequest(token=token, request_id=f"run-{run}"))
            renewals += 1
        current = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
        assert current.not_valid_before_utc <= clock.now < current.not_valid_after_utc
        assert decider.decide(current, "n1").allowed
        live = [
            row
            for status in (CertificateStatus.ACTIVE, CertificateStatus.SUPERSEDED)
            for row in store.query(CertificateQuery(node_id="n1", status=status, now=clock.now))
        ]
        assert len(live) <= 5, live
    assert renewals == 6  # Due after 4.67 days: renewed every 5 days.
    active = store.query(
        CertificateQuery(node_id="n1", status=CertificateStatus.ACTIVE, now=clock.now)
    )
    assert [row.serial for row in active] == [issued.record.serial]
    store.close()
