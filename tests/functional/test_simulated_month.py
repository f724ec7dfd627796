"""A simulated month of timer-driven renewal (issue 11): 30 days, twice a day, 7-day certificates.

The real use cases with one injected clock (authority, node-side decision, renewal), the
real local CA, and ``nodecert.client`` talking to them through ``nodecert.testing``'s
``MockTransport``: the service side of ``POST /v1/renew`` without sockets. The node runs
:func:`nodecert.client.renewal.agent.renew_if_due` as ``nodecert renew`` on a timer would.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from cryptography import x509

from nodecert.client import Client, Request, Response
from nodecert.client.renewal.agent import RenewalTarget, renew_if_due
from nodecert.core.errors import NodecertError
from nodecert.core.policy import OwnershipMode, OwnershipPolicy, ValidityPolicy
from nodecert.core.values import CertificateStatus, Principal
from nodecert.http.contract import issued_reply
from nodecert.http.public_routes import PublicRoutes
from nodecert.issuing.authority import Authority, IssueRequest
from nodecert.issuing.quota import QuotaPolicy
from nodecert.issuing.renewal import RenewalRequest, Renewer, renewal_audience
from nodecert.nodeside.access import AccessDecider
from nodecert.testing import MemoryStore, MockTransport, json_response, problem_response
from tests.kit import ADMIN, TRUST_DOMAIN, admin_of, new_ca


def test_a_month_of_twice_daily_renew_when_due(tmp_path: Path) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    now = [start]

    def clock() -> datetime:
        return now[0]

    store = MemoryStore()
    ca = new_ca(tmp_path / "ca")
    authority = Authority(
        ca=ca,
        ledger=store,
        nodes=store,
        ownership=OwnershipPolicy(OwnershipMode.REGISTRY, store),
        validity=ValidityPolicy(),
        organization="nodecert",
        trust_domain=TRUST_DOMAIN,
        clock=clock,
        # Stricter than the default 10: a renewal that left its predecessors counting
        # would hit it within the month.
        quota=QuotaPolicy(per_minute=0, burst=0, max_active=5),
    )
    renewer = Renewer(
        authority=authority,
        decider=AccessDecider.from_chain(
            ca.chain(), ledger=store, nodes=store, trust_domain=TRUST_DOMAIN, clock=clock
        ),
        replay=store,
        audience=renewal_audience(TRUST_DOMAIN),
        clock=clock,
    )
    calls: list[datetime] = []

    def service(request: Request) -> Response:
        if (request.method, request.url) == ("GET", "https://svc/v1/ca/issuers"):
            # Each timer run asks whether its issuing CA retires (no rotation here).
            return json_response(routes.ca_issuers().body)
        assert (request.method, request.url) == ("POST", "https://svc/v1/renew")
        calls.append(now[0])
        token = request.headers["Authorization"].removeprefix("Bearer ")
        csr = json.loads(request.body or b"{}")["csr"]
        try:
            issued = renewer.renew(RenewalRequest(token, uuid.uuid4().hex, csr=csr))
        except NodecertError as exc:
            return problem_response(exc)
        return json_response(issued_reply(issued).body, 201)

    routes = PublicRoutes(authority, crl=None)
    admin_of(authority).put_node(ADMIN, "n1", "alice")
    first = authority.issue(
        Principal("alice"), IssueRequest(node_id="n1", request_id="r0", key_type="ec-p256")
    )
    cert, key = tmp_path / "n1.crt", tmp_path / "n1.key"
    cert.write_text(first.certificate_pem)
    key.write_text(str(first.private_key_pem))
    target = RenewalTarget(
        cert=cert, key=key, client=Client("https://svc", transport=MockTransport(service))
    )

    renewed = 0
    for run in range(60):  # 30 days, twice a day: every run either renews or says "not due".
        now[0] = start + timedelta(hours=12 * run)
        outcome = renew_if_due(target, now=now[0])
        current = x509.load_pem_x509_certificate(cert.read_bytes())
        assert current.not_valid_before_utc <= now[0] < current.not_valid_after_utc
        if outcome.renewed is not None:
            renewed += 1
            assert outcome.renewed.serial_number == current.serial_number
        else:
            assert outcome.due > now[0]
        live = [
            row
            for row in store.rows.values()
            if row.node_id == "n1"
            and row.status != CertificateStatus.REVOKED
            and row.not_after > now[0]
        ]
        assert len(live) <= 5

    # Renewed in the last third of each lifetime: about every 4.7 days, never every run.
    assert renewed == len(calls)
    assert 5 <= renewed <= 7
    assert all(later - earlier >= timedelta(days=4) for earlier, later in pairwise(calls))
