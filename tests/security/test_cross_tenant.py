"""User A against user B's node, certificate and serial on every route: denied, no leaks."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from fastapi.testclient import TestClient

from nodecert.aws import authorizer
from nodecert.http.app import create_app
from nodecert.nodeside.access import AccessDecider
from tests import kit as nodeside

from ..conftest import Env

# Names outside the hex alphabet, so that a serial can never contain them by chance.
VICTIM, VICTIM_NODE = "victim-user", "victims-node"


@pytest.fixture
def victim_serial(env: Env) -> str:
    env.add_node(VICTIM_NODE, VICTIM)
    env.add_node("attackers-node", "attacker")
    return str(env.issue(VICTIM, VICTIM_NODE, keyType="ec-p256")["serialNumber"])


ROUTES = [
    ("POST", "/generate-cert", {"nodeId": VICTIM_NODE}, 403),
    ("POST", "/generate-cert", {"nodeId": VICTIM_NODE, "userId": VICTIM}, 403),
    ("GET", "/v1/certificates/{serial}", None, 404),
    ("POST", "/v1/certificates/{serial}/revoke", {"reason": "keyCompromise"}, 404),
    ("PUT", f"/v1/nodes/{VICTIM_NODE}", {"owner": "attacker"}, 403),
    ("GET", f"/v1/nodes/{VICTIM_NODE}", None, 403),
    ("DELETE", f"/v1/nodes/{VICTIM_NODE}", None, 403),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), ROUTES)
def test_attacker_is_denied_and_learns_nothing(
    env: Env, victim_serial: str, method: str, path: str, body: object, status: int
) -> None:
    response = env.client.request(
        method, path.format(serial=victim_serial), json=body, headers=env.auth("attacker")
    )
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert VICTIM not in detail
    if "{serial}" in path:
        # Someone else's serial reads exactly like a serial that was never issued.
        unknown = "ab" * 19
        other = env.client.request(
            method, path.format(serial=unknown), json=body, headers=env.auth("attacker")
        )
        assert other.status_code == status
        assert other.json()["detail"].replace(unknown, "S") == detail.replace(victim_serial, "S")
    # The victim's certificate and node are untouched.
    row = env.service.authority.ledger.get(victim_serial)
    assert row is not None
    assert row.status.value == "active"
    assert env.service.authority.nodes.owner_of(VICTIM_NODE) == VICTIM


def test_listings_show_only_the_callers_own(env: Env, victim_serial: str) -> None:
    mine = env.auth("attacker")
    for path in ("/v1/certificates", f"/v1/certificates?nodeId={VICTIM_NODE}", "/v1/nodes"):
        response = env.client.get(path, headers=mine)
        assert response.status_code == 200
        assert victim_serial not in response.text
        assert VICTIM not in response.text


# The node side: the attacker's own, genuine certificate against the victim's node.


def _attacker_certificate(env: Env) -> str:
    return str(env.issue("attacker", "attackers-node", keyType="ec-p256")["certificate"])


@pytest.mark.parametrize(
    "path", [f"/v1/nodes/{VICTIM_NODE}/revoke-all", f"/v1/users/{VICTIM}/revoke-all"]
)
def test_attacker_cannot_revoke_all_of_the_victims(env: Env, victim_serial: str, path: str) -> None:
    response = env.client.post(path, headers=env.auth("attacker"))
    assert response.status_code in (403, 404), response.text
    assert victim_serial not in response.text
    row = env.service.authority.ledger.get(victim_serial)
    assert row is not None
    assert row.status.value == "active"


def test_attackers_certificate_is_denied_at_the_victims_node(env: Env, victim_serial: str) -> None:
    pem = _attacker_certificate(env)
    headers = {"X-Client-Cert": urllib.parse.quote(pem), "X-Nodecert-Node": VICTIM_NODE}
    # /v1/authorize answers loopback callers (nginx beside the node) only.
    with TestClient(create_app(env.service), client=("127.0.0.1", 40000)) as nginx:
        response = nginx.post("/v1/authorize", headers=headers)
    assert response.status_code == 403
    assert response.headers["x-nodecert-reason"] == "wrong_node"
    assert VICTIM not in response.text


@pytest.mark.parametrize("event_name", ["authorizer_rest_request.json", "authorizer_http_v2.json"])
def test_the_gateway_authorizer_denies_the_attacker(
    env: Env, victim_serial: str, event_name: str
) -> None:
    decider = AccessDecider.from_chain(
        env.service.authority.ca.chain(),
        ledger=env.service.authority.ledger,
        nodes=env.service.authority.nodes,
        trust_domain="nodecert.local",
    )
    pem = _attacker_certificate(env)
    answer = authorizer.handle(
        nodeside.event(event_name, pem=pem, node=VICTIM_NODE), decider, authorizer.TargetSource()
    )
    text = json.dumps(answer)
    if "isAuthorized" in answer:
        assert answer["isAuthorized"] is False
    else:
        assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert VICTIM not in text
    # The same certificate at its own node is allowed: the deny is about the node.
    own = authorizer.handle(
        nodeside.event(event_name, pem=pem, node="attackers-node"),
        decider,
        authorizer.TargetSource(),
    )
    assert own.get("isAuthorized", True) is True
    assert "Deny" not in json.dumps(own.get("policyDocument", {}))
