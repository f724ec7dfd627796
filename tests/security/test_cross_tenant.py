"""User A against user B's node, certificate and serial on every route: denied, no leaks."""

from __future__ import annotations

import pytest

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
