"""The node-side HTTP routes through the ASGI app: authorize, renew, CRL, revoke-all."""

import urllib.parse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from nodecert.core.tokens import mint_renewal_token, renewal_audience
from nodecert.http.app import create_app
from tests.kit import TRUST_DOMAIN, issue

SECRET = "s3cret-s3cret-s3cret"


def client(service, host="127.0.0.1"):
    return TestClient(create_app(service), client=(host, 40000))


def token(service, user, admin=False):
    group = service.settings.admin_group if admin else None
    return {"Authorization": "Bearer " + service.dev_issuer.mint(user, admin_group=group)}


def forwarded(cert, node):
    return {"X-Client-Cert": urllib.parse.quote(cert.pem), "X-Nodecert-Node": node}


def test_authorize_allows_the_right_node_with_identity_headers(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    r = client(service).post("/v1/authorize", headers=forwarded(cert, "n1"))
    assert r.status_code == 200
    assert r.headers["x-nodecert-user"] == "alice"
    assert r.headers["x-nodecert-node"] == "n1"
    assert r.headers["x-nodecert-serial"] == cert.serial


def test_authorize_denies_with_a_reason(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    r = client(service).post("/v1/authorize", headers=forwarded(cert, "n2"))
    assert r.status_code == 403
    assert r.headers["x-nodecert-reason"] == "wrong_node"
    assert (r.json()["code"], r.json()["reason"]) == ("access_denied", "wrong_node")
    r = client(service).post("/v1/authorize", headers={"X-Nodecert-Node": "n1"})
    assert r.headers["x-nodecert-reason"] == "no_certificate"


def test_authorize_takes_a_json_body_too(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    r = client(service).post("/v1/authorize", json={"certificate": cert.pem, "nodeId": "n1"})
    assert r.status_code == 200


def test_authorize_is_not_an_open_oracle(make_service):
    service = make_service()
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    r = client(service, host="203.0.113.9").post("/v1/authorize", headers=forwarded(cert, "n1"))
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    with_secret = make_service(authorize_secret=SECRET)
    remote = client(with_secret, host="203.0.113.9")
    assert remote.post("/v1/authorize", headers=forwarded(cert, "n1")).status_code == 401
    wrong = {**forwarded(cert, "n1"), "X-Nodecert-Authorize-Secret": "nope"}
    assert remote.post("/v1/authorize", headers=wrong).status_code == 401
    right = {**forwarded(cert, "n1"), "X-Nodecert-Authorize-Secret": SECRET}
    assert remote.post("/v1/authorize", headers=right).status_code == 200
    # With a secret configured, loopback alone is not enough.
    assert client(with_secret).post("/v1/authorize", headers=forwarded(cert, "n1")).status_code == (
        401
    )


def _renew_headers(cert, **kwargs):
    pop = mint_renewal_token(cert.certificate, cert.key, audience=renewal_audience(TRUST_DOMAIN))
    return {"Authorization": "Bearer " + pop}


def test_renew_over_http_then_replay_then_revoked(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    http = client(service)
    headers = _renew_headers(cert)
    r = http.post("/v1/renew", headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["renewedFrom"] == cert.serial
    assert (body["userId"], body["nodeId"]) == ("alice", "n1")
    assert r.headers["cache-control"] == "no-store"
    listed = http.get("/v1/certificates", headers=token(service, "alice")).json()
    assert {c["serialNumber"]: c["renewedFrom"] for c in listed["certificates"]} == {
        body["serialNumber"]: cert.serial,
        cert.serial: None,
    }
    replay = http.post("/v1/renew", headers=headers)
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]
    http.post(f"/v1/certificates/{cert.serial}/revoke", headers=token(service, "alice"))
    revoked = http.post("/v1/renew", headers=_renew_headers(cert))
    assert revoked.status_code == 403
    assert "revoked" in revoked.json()["detail"]
    # Its reason member, as on /v1/authorize: the wire-error table's row for access_denied.
    assert (revoked.json()["code"], revoked.json()["reason"]) == ("access_denied", "revoked")


def test_renew_with_a_csr_keeps_the_key_on_the_client(service):
    from nodecert.core.identity import Identity
    from nodecert.core.keys import KeyType, build_csr, generate_private_key

    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    key = generate_private_key(KeyType.EC_P384)
    csr = build_csr(key, Identity("x", "y"), organization="o", trust_domain="t.example")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    r = client(service).post("/v1/renew", headers=_renew_headers(cert), json={"csr": pem})
    assert r.status_code == 201
    assert "privateKey" not in r.json()
    renewed = x509.load_pem_x509_certificate(r.json()["certificate"].encode())
    assert renewed.public_key() == key.public_key()
    assert r.json()["userId"] == "alice"  # The CSR's subject is ignored.


def test_renew_without_a_token(service):
    assert client(service).post("/v1/renew").status_code == 401


def test_renew_with_two_authorization_headers_is_401(service):
    twice = [("Authorization", "Bearer a.b.c"), ("Authorization", "Bearer d.e.f")]
    r = client(service).post("/v1/renew", headers=twice)
    assert (r.status_code, r.json()["detail"]) == (401, "Authorization: sent more than once")


def test_crl_is_der_signed_and_lists_revoked_certificates(service, tmp_path):
    alice = issue(service.authority, "alice", "n1", admin=service.administration)
    kept = issue(service.authority, "alice", "n1", admin=service.administration)
    http = client(service)
    http.post(
        f"/v1/certificates/{alice.serial}/revoke",
        headers=token(service, "alice"),
        json={"reason": "keyCompromise"},
    )
    issue(service.authority, "bob", "n9", admin=service.administration)
    http.post("/v1/users/bob/revoke-all", headers=token(service, "bob"))
    r = http.get("/v1/crl")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(r.content)
    ca = x509.load_pem_x509_certificate(http.get("/v1/ca").content)
    assert crl.is_signature_valid(ca.public_key())
    assert crl.next_update_utc > crl.last_update_utc
    serials = {format(entry.serial_number, "x") for entry in crl}
    assert alice.serial in serials
    assert kept.serial not in serials
    assert len(serials) == 2
    assert _pkilint_findings(r.content) == []


def _pkilint_findings(der):
    # The same validators as pkilint's lint_crl (type CRL, profile PKIX), via the library:
    # its CLI leaves the file open, which filterwarnings=error turns into a failure.
    from pkilint import loader, pkix, report
    from pkilint.pkix import crl, extension, name

    validator = crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )
    document = loader.RFC5280CertificateListDocumentLoader().load_der_document(der, "crl")
    results = validator.validate(document.root)
    assert report.get_findings_count(results) == sum(len(r.finding_descriptions) for r in results)
    return [f"{d.finding.code} {d.message}" for r in results for d in r.finding_descriptions]


def test_revoke_all_for_a_node_owner_or_admin_only(service):
    a1 = issue(service.authority, "alice", "n1", admin=service.administration)
    a2 = issue(service.authority, "alice", "n1", admin=service.administration)
    issue(service.authority, "bob", "n2", admin=service.administration)
    http = client(service)
    assert http.post("/v1/nodes/n1/revoke-all", headers=token(service, "bob")).status_code == 403
    r = http.post("/v1/nodes/n1/revoke-all", headers=token(service, "alice"))
    assert r.status_code == 200
    assert {c["serialNumber"] for c in r.json()["revoked"]} == {a1.serial, a2.serial}
    for cert in (a1, a2):
        denied = http.post("/v1/authorize", headers=forwarded(cert, "n1"))
        assert denied.headers["x-nodecert-reason"] == "revoked"
    again = http.post("/v1/nodes/n2/revoke-all", headers=token(service, "admin", admin=True))
    assert again.json()["count"] == 1


def test_revoke_all_for_a_user(service):
    issue(service.authority, "alice", "n1", admin=service.administration)
    http = client(service)
    assert http.post("/v1/users/alice/revoke-all", headers=token(service, "bob")).status_code == (
        403
    )
    r = http.post("/v1/users/alice/revoke-all", headers=token(service, "alice"))
    assert r.json()["count"] == 1


def test_deleting_or_transferring_a_node_denies_at_once(service):
    a = issue(service.authority, "alice", "n1", admin=service.administration)
    b = issue(service.authority, "bob", "n2", admin=service.administration)
    http = client(service)
    admin = token(service, "admin", admin=True)
    assert http.put("/v1/nodes/n1", headers=admin, json={"owner": "carol"}).status_code == 200
    assert (
        http.post("/v1/authorize", headers=forwarded(a, "n1")).headers["x-nodecert-reason"]
        == "revoked"
    )
    assert http.delete("/v1/nodes/n2", headers=admin).status_code == 200
    assert http.post("/v1/authorize", headers=forwarded(b, "n2")).status_code == 403


@pytest.mark.parametrize("mode", ["claims", "open"])
def test_the_node_side_works_without_a_node_directory(make_service, mode):
    # The claims and open policies keep no directory: ownership was proven at issuance,
    # so the node side checks the chain, the node and the ledger (revocation) only.
    service = make_service(ownership=mode)
    mint = service.dev_issuer.mint("alice", extra={"custom:nodes": ["n1"]})
    http = client(service)
    issued = http.post(
        "/generate-cert",
        json={"nodeId": "n1", "keyType": "ec-p256"},
        headers={"Authorization": f"Bearer {mint}"},
    )
    assert issued.status_code == 201, issued.text
    pem = issued.json()["certificate"]
    allowed = http.post("/v1/authorize", json={"certificate": pem, "nodeId": "n1"})
    assert allowed.status_code == 200, allowed.text
    wrong = http.post("/v1/authorize", json={"certificate": pem, "nodeId": "n2"})
    assert wrong.headers["x-nodecert-reason"] == "wrong_node"
    key = serialization.load_pem_private_key(issued.json()["privateKey"].encode(), None)
    cert = x509.load_pem_x509_certificate(pem.encode())
    pop = mint_renewal_token(cert, key, audience=renewal_audience(service.settings.trust_domain))
    renewed = http.post("/v1/renew", headers={"Authorization": f"Bearer {pop}"})
    assert renewed.status_code == 201, renewed.text
    serial = issued.json()["serialNumber"]
    http.post(f"/v1/certificates/{serial}/revoke", headers={"Authorization": f"Bearer {mint}"})
    revoked = http.post("/v1/authorize", json={"certificate": pem, "nodeId": "n1"})
    assert revoked.headers["x-nodecert-reason"] == "revoked"


def test_renew_with_an_unknown_key_algorithm_in_x5c_is_401_not_500(service):
    from tests.unit.test_renewal import _token, x5c_with_unknown_key_algorithm

    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    head = {"x5c": [x5c_with_unknown_key_algorithm(cert.certificate)]}
    pop = _token(cert.certificate, cert.key, headers=head, aud=renewal_audience(TRUST_DOMAIN))
    r = client(service).post("/v1/renew", headers={"Authorization": "Bearer " + pop})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthenticated"


@pytest.mark.parametrize("body", ["node", "certificate", "both"])
def test_authorize_refuses_a_body_that_contradicts_the_proxy_headers(service, body):
    # Issue 12: with X-Client-Cert (for n0) and X-Nodecert-Node: n1, a body {"nodeId": "n0"}
    # turned a 403 into a 200, and a body certificate made the answer name another user.
    mine = issue(service.authority, "bob", "n0", admin=service.administration)
    theirs = issue(service.authority, "alice", "n1", admin=service.administration)
    fields = {
        "node": {"nodeId": "n0"},
        "certificate": {"certificate": theirs.pem},
        "both": {"nodeId": "n1", "certificate": theirs.pem},
    }[body]
    r = client(service).post("/v1/authorize", headers=forwarded(mine, "n1"), json=fields)
    assert r.status_code == 400
    assert r.json()["code"] == "conflicting_input"
    assert "x-nodecert-user" not in r.headers


def test_authorize_refuses_a_body_beside_either_proxy_header(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    only_node = client(service).post(
        "/v1/authorize", headers={"X-Nodecert-Node": "n1"}, json={"certificate": cert.pem}
    )
    assert only_node.json()["code"] == "conflicting_input"
    only_cert = client(service).post(
        "/v1/authorize",
        headers={"X-Client-Cert": urllib.parse.quote(cert.pem)},
        json={"nodeId": "n1"},
    )
    assert only_cert.json()["code"] == "conflicting_input"


def test_authorize_accepts_a_body_that_repeats_the_proxy_headers(service):
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    same = {"certificate": cert.pem, "nodeId": "n1"}
    r = client(service).post("/v1/authorize", headers=forwarded(cert, "n1"), json=same)
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [("nodeId", 1), ("nodeId", ["n1"]), ("nodeId", True), ("certificate", ["PEM"])],
)
def test_authorize_refuses_a_body_field_of_the_wrong_type(service, field, value):
    # {"nodeId": 1} used to be decided for node "1" (str() of anything).
    issue(service.authority, "alice", "1", admin=service.administration)
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    body = {"certificate": cert.pem, "nodeId": "1", field: value}
    r = client(service).post("/v1/authorize", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == f"{field}: must be a string"
