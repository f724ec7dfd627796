"""Listing, revocation, the node directory and the public routes, over the ASGI app."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from ..conftest import Env


def _two_users(env: Env) -> tuple[str, str]:
    env.add_node("a1", "alice")
    env.add_node("node-of-bob", "bob")
    a = env.issue("alice", "a1", keyType="ec-p256")["serialNumber"]
    b = env.issue("bob", "node-of-bob", keyType="ec-p256")["serialNumber"]
    return str(a), str(b)


def test_users_list_only_their_own_certificates(env: Env) -> None:
    a, b = _two_users(env)
    listed = env.client.get("/v1/certificates", headers=env.auth("alice")).json()["certificates"]
    assert [c["serialNumber"] for c in listed] == [a]
    assert listed[0]["status"] == "active"
    assert b not in env.client.get("/v1/certificates", headers=env.auth("alice")).text


def test_list_filters_by_node_and_status(env: Env) -> None:
    env.add_node("a1", "alice")
    env.add_node("a2", "alice")
    first = env.issue("alice", "a1", keyType="ec-p256")["serialNumber"]
    second = env.issue("alice", "a2", keyType="ec-p256")["serialNumber"]
    env.client.post(f"/v1/certificates/{first}/revoke", headers=env.auth("alice"))

    def serials(query: str) -> list[str]:
        response = env.client.get(f"/v1/certificates?{query}", headers=env.auth("alice"))
        assert response.status_code == 200, response.text
        return [c["serialNumber"] for c in response.json()["certificates"]]

    assert serials("nodeId=a2") == [second]
    assert serials("status=revoked") == [first]
    assert serials("status=active") == [second]
    assert serials("status=expired") == []
    assert (
        env.client.get("/v1/certificates?status=bogus", headers=env.auth("alice")).status_code
        == 400
    )
    assert (
        env.client.get("/v1/certificates?nodeId=a%2Fb", headers=env.auth("alice")).status_code
        == 400
    )


def test_owner_revokes_once_and_again_without_error(env: Env) -> None:
    a, _ = _two_users(env)
    first = env.client.post(
        f"/v1/certificates/{a}/revoke", json={"reason": "keyCompromise"}, headers=env.auth("alice")
    )
    assert first.status_code == 200
    assert first.json()["status"] == "revoked"
    assert first.json()["revocationReason"] == "keyCompromise"
    again = env.client.post(f"/v1/certificates/{a}/revoke", headers=env.auth("alice"))
    assert again.status_code == 200
    assert again.json()["revokedAt"] == first.json()["revokedAt"]
    assert again.json()["revocationReason"] == "keyCompromise"


def test_a_user_cannot_see_or_revoke_another_users_certificate(env: Env) -> None:
    _, b = _two_users(env)
    for response in (
        env.client.post(f"/v1/certificates/{b}/revoke", headers=env.auth("alice")),
        env.client.get(f"/v1/certificates/{b}", headers=env.auth("alice")),
    ):
        assert response.status_code == 404
        # Names are chosen with letters outside hex, so a serial cannot contain them.
        assert "bob" not in response.text
    row = env.service.authority.ledger.get(b)
    assert row is not None and row.status.value == "active"


def test_admin_may_revoke_anyones_certificate(env: Env) -> None:
    _, b = _two_users(env)
    response = env.client.post(
        f"/v1/certificates/{b}/revoke", headers=env.auth("carol", admin=True)
    )
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"


@pytest.mark.parametrize(
    ("serial", "body", "status"),
    [
        ("zz", None, 400),
        ("ab" * 21, None, 400),
        ("abcdef", None, 404),
        ("{a}", {"reason": "bored"}, 400),
    ],
)
def test_revoke_bad_input(env: Env, serial: str, body: object, status: int) -> None:
    a, _ = _two_users(env)
    serial = serial.replace("{a}", a)
    response = env.client.post(
        f"/v1/certificates/{serial}/revoke", json=body, headers=env.auth("alice")
    )
    assert response.status_code == status, response.text


def test_node_directory_is_admin_only(env: Env) -> None:
    user = env.auth("alice")
    assert env.client.put("/v1/nodes/n1", json={"owner": "alice"}, headers=user).status_code == 403
    assert env.client.get("/v1/nodes/n1", headers=user).status_code == 403
    assert env.client.delete("/v1/nodes/n1", headers=user).status_code == 403


def test_admin_manages_nodes_and_transfer_revokes(env: Env) -> None:
    admin = env.auth("root", admin=True)
    put = env.client.put("/v1/nodes/n1", json={"owner": "alice"}, headers=admin)
    assert put.status_code == 200
    assert put.json()["owner"] == "alice"
    assert env.client.get("/v1/nodes/n1", headers=admin).json()["owner"] == "alice"
    serial = env.issue("alice", "n1", keyType="ec-p256")["serialNumber"]
    # Alice sees her own nodes.
    mine = env.client.get("/v1/nodes", headers=env.auth("alice")).json()["nodes"]
    assert [n["nodeId"] for n in mine] == ["n1"]
    # Transfer to bob: alice's certificate for n1 is revoked at once.
    assert env.client.put("/v1/nodes/n1", json={"owner": "bob"}, headers=admin).status_code == 200
    row = env.service.authority.ledger.get(str(serial))
    assert row is not None and row.status.value == "revoked"
    assert row.revocation_reason is not None and row.revocation_reason.value == "affiliationChanged"
    refused = env.client.post("/generate-cert", json={"nodeId": "n1"}, headers=env.auth("alice"))
    assert refused.status_code == 403
    # Delete: bob's certificate goes too.
    bobs = env.issue("bob", "n1", keyType="ec-p256")["serialNumber"]
    assert env.client.delete("/v1/nodes/n1", headers=admin).status_code == 204
    assert env.service.authority.ledger.get(str(bobs)).status.value == "revoked"  # type: ignore[union-attr]
    assert env.client.get("/v1/nodes/n1", headers=admin).status_code == 404
    assert env.client.delete("/v1/nodes/n1", headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/nodes/bad%20id", {"owner": "alice"}),
        ("/v1/nodes/n1", {"owner": "a b"}),
        ("/v1/nodes/n1", {}),
        ("/v1/nodes/n1", {"owner": "x", "extra": 1}),
    ],
)
def test_put_node_bad_input(env: Env, path: str, body: object) -> None:
    response = env.client.put(path, json=body, headers=env.auth("root", admin=True))
    assert response.status_code == 400


def test_ca_chain_is_public_pem(env: Env) -> None:
    response = env.client.get("/v1/ca")
    assert response.status_code == 200
    certs = x509.load_pem_x509_certificates(response.content)
    assert len(certs) == 2  # The issuing intermediate, then the root.
    assert all(c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca for c in certs)
    assert certs[-1].issuer == certs[-1].subject and certs[0].issuer == certs[-1].subject


def test_healthz_openapi_and_unknown_routes(env: Env) -> None:
    assert env.client.get("/healthz").json() == {"status": "ok"}
    spec = env.client.get("/openapi.json").json()
    assert "/generate-cert" in spec["paths"]
    assert spec["paths"]["/generate-cert"]["post"]["requestBody"]["required"] is True
    missing = env.client.get("/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = env.client.get("/generate-cert")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"


def test_listing_comes_in_pages_newest_first(env: Env) -> None:
    env.add_node("a1", "alice")
    issued = [env.issue("alice", "a1", keyType="ec-p256")["serialNumber"] for _ in range(5)]
    headers = env.auth("alice")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = env.client.get(f"/v1/certificates?{query}", headers=headers).json()
        assert len(body["certificates"]) <= 2
        seen += [c["serialNumber"] for c in body["certificates"]]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(issued))


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("cursor=abc", "cursor"),
        # One copy of each: which one a proxy or cache in front read is anyone's guess.
        ("status=active&status=revoked", "status: sent more than once"),
        ("nodeId=a1&nodeId=a2", "nodeId: sent more than once"),
        ("limit=1&limit=2", "limit: sent more than once"),
    ],
)
def test_bad_paging_is_400(env: Env, query: str, fragment: str) -> None:
    response = env.client.get(f"/v1/certificates?{query}", headers=env.auth("alice"))
    assert response.status_code == 400
    assert response.json()["detail"].startswith(fragment)


def test_a_cursor_must_be_one_of_the_callers_certificates_of_that_node(env: Env) -> None:
    env.add_node("a1", "alice")
    env.add_node("a2", "alice")
    env.add_node("b1", "bob")
    mine = env.issue("alice", "a1", keyType="ec-p256")["serialNumber"]
    other_node = env.issue("alice", "a2", keyType="ec-p256")["serialNumber"]
    bobs = env.issue("bob", "b1", keyType="ec-p256")["serialNumber"]
    headers = env.auth("alice")

    def listing(query: str) -> Any:
        return env.client.get(f"/v1/certificates?{query}", headers=headers)

    assert listing(f"cursor={mine}").status_code == 200
    # Someone else's serial, or one of another node under a node filter: not this listing,
    # and the answer does not tell whether the serial exists.
    for query in (f"cursor={bobs}", f"nodeId=a1&cursor={other_node}", "cursor=ffff"):
        refused = listing(query)
        assert refused.status_code == 400, query
        assert refused.json()["detail"].endswith("is not in this listing")
    # A revoked cursor (revoked between two pages) still pages on from its place.
    env.client.post(f"/v1/certificates/{mine}/revoke", headers=headers)
    assert listing(f"status=active&cursor={mine}").json()["certificates"] == []
