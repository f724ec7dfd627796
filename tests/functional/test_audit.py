"""``GET /v1/audit``: what was issued, renewed, revoked and administered, by whom, when.

Admin actions and revocations come from the audit trail, issuance and renewal from the
ledger; one answer, newest first, filtered, and a user sees only what concerns them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.issuing.renewal import mint_renewal_token, renewal_audience

from ..conftest import Env


def _audit(env: Env, caller: str, /, *, admin: bool = False, **params: str) -> Any:
    return env.client.get("/v1/audit", params=params, headers=env.auth(caller, admin=admin))


def _renew(env: Env, issued: dict[str, Any]) -> dict[str, Any]:
    certificate = x509.load_pem_x509_certificate(str(issued["certificate"]).encode())
    key = serialization.load_pem_private_key(str(issued["privateKey"]).encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    token = mint_renewal_token(
        certificate, key, audience=renewal_audience(env.service.settings.trust_domain)
    )
    response = env.client.post("/v1/renew", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def story(env: Env) -> dict[str, Any]:
    """alice gets n1, a certificate, renews it, revokes it; n1 then goes to bob."""
    admin = env.auth("ops", admin=True)
    assert env.client.put("/v1/nodes/n1", json={"owner": "alice"}, headers=admin).status_code
    first = env.issue("alice", "n1", keyType="ec-p256")
    second = _renew(env, first)
    revoked = env.client.post(
        f"/v1/certificates/{second['serialNumber']}/revoke",
        json={"reason": "keyCompromise"},
        headers=env.auth("alice"),
    )
    assert revoked.status_code == 200
    assert env.client.put("/v1/nodes/n2", json={"owner": "bob"}, headers=admin).status_code
    env.issue("bob", "n2", keyType="ec-p256")
    return {"first": first["serialNumber"], "second": second["serialNumber"]}


def test_an_admin_reads_the_whole_story_newest_first(env: Env, story: dict[str, Any]) -> None:
    reply = _audit(env, "ops", admin=True)
    assert reply.status_code == 200, reply.text
    entries = reply.json()["entries"]
    assert [(e["action"], e["userId"], e["nodeId"]) for e in entries] == [
        ("certificate.issue", "bob", "n2"),
        ("node.add", "bob", "n2"),
        ("certificate.revoke", "alice", "n1"),
        ("certificate.renew", "alice", "n1"),
        ("certificate.issue", "alice", "n1"),
        ("node.add", "alice", "n1"),
    ]
    assert reply.json()["count"] == 6
    revoke = entries[2]
    assert (revoke["actor"], revoke["target"], revoke["detail"]) == (
        "alice",
        story["second"],
        "reason=keyCompromise",
    )
    # Where it came from: the front end that received the request.
    assert revoke["source"] == "http testclient"
    renewal = entries[3]
    assert renewal["target"] == story["second"]
    assert f"renewed_from={story['first']}" in renewal["detail"]
    assert all(e["at"].endswith("Z") for e in entries)


def test_filters_narrow_by_user_node_action_and_time(env: Env, story: dict[str, Any]) -> None:
    def actions(**params: str) -> list[str]:
        reply = _audit(env, "ops", admin=True, **params)
        assert reply.status_code == 200, reply.text
        return [e["action"] for e in reply.json()["entries"]]

    assert actions(node="n2") == ["certificate.issue", "node.add"]
    assert actions(user="alice", action="certificate.") == [
        "certificate.revoke",
        "certificate.renew",
        "certificate.issue",
    ]
    assert actions(action="node.add") == ["node.add", "node.add"]
    assert actions(limit="2") == ["certificate.issue", "node.add"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert actions(since=tomorrow) == []
    assert len(actions(until=tomorrow)) == 6
    assert actions(until="2020-01-01T00:00:00Z") == []


def test_a_user_reads_only_what_concerns_them(env: Env, story: dict[str, Any]) -> None:
    mine = _audit(env, "bob").json()["entries"]
    assert {e["userId"] for e in mine} == {"bob"}
    assert len(mine) == 2
    refused = _audit(env, "bob", user="alice")
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert _audit(env, "bob", user="bob").status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"user": "../x"}, "user"),
        ({"node": "a" * 65}, "node"),
        ({"action": "DROP TABLE"}, "action"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-01-01T00:00:00"}, "until"),
        ({"limit": "0"}, "limit"),
    ],
)
def test_bad_filters_are_400_naming_the_field(env: Env, params: dict[str, str], field: str) -> None:
    reply = _audit(env, "ops", admin=True, **params)
    assert reply.status_code == 400
    assert reply.json()["detail"].startswith(f"{field}:")


def test_the_audit_trail_needs_a_token(env: Env) -> None:
    assert env.client.get("/v1/audit").status_code == 401


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(["user", "node", "action", "since", "until", "limit"]),
    value=st.text(max_size=300),
)
def test_no_filter_value_reaches_a_5xx(env: Env, name: str, value: str) -> None:
    reply = _audit(env, "ops", admin=True, **{name: value})
    assert reply.status_code in (200, 400), (name, value, reply.text)


def test_secrets_never_reach_the_audit_trail(env: Env, story: dict[str, Any]) -> None:
    issued = env.issue("alice", "n1", keyType="ec-p256")
    text = _audit(env, "ops", admin=True, limit="1000").text
    assert "PRIVATE KEY" not in text
    assert str(issued["privateKey"]).splitlines()[1] not in text
    assert env.token("alice").split(".")[2] not in text


def test_refusals_of_an_authenticated_caller_are_recorded_once_a_minute(env: Env) -> None:
    env.add_node("n1", "alice")
    for _ in range(3):
        refused = env.client.post(
            "/generate-cert", json={"nodeId": "n1", "keyType": "ec-p256"}, headers=env.auth("bob")
        )
        assert refused.status_code == 403
    entries = _audit(env, "ops", admin=True, action="certificate.issue.denied").json()["entries"]
    assert len(entries) == 1  # Three refusals, one entry: the log and metrics count each.
    denial = entries[0]
    assert (denial["actor"], denial["userId"], denial["nodeId"]) == ("bob", "bob", "n1")
    assert denial["detail"].startswith("forbidden: ")
    assert denial["source"] == "http testclient"
    # bob reads his own refusal; alice, whose node it is, reads none of bob's entries.
    assert [e["action"] for e in _audit(env, "bob").json()["entries"]] == [
        "certificate.issue.denied"
    ]
    assert [e["action"] for e in _audit(env, "alice").json()["entries"]] == ["node.add"]


def test_an_anonymous_refusal_is_never_written(env: Env) -> None:
    for token in ("x.y.z", "", "not-a-token"):
        env.client.post(
            "/generate-cert", json={"nodeId": "n1"}, headers={"Authorization": f"Bearer {token}"}
        )
    assert _audit(env, "ops", admin=True).json()["entries"] == []
