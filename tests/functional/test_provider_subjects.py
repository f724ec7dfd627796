"""Users whose provider subject is not an id: issued, recorded, renewed, over HTTP and Lambda.

An Auth0 subject (``auth0|…``) or an email address used to be a 401. Now the user id is
the documented mapping of the subject (``nodecert user-id``), the certificate carries that
id, and the ledger row keeps the subject the token said.
"""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography import x509

from nodecert.aws.handler import LambdaApp
from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError
from nodecert.core.identity import Identity, user_id_for_subject
from tests.conftest import ADMIN
from tests.kit import RECORDED_CLIENT_ID, api_event

AUTH0_SUBJECT = "auth0|5f7c8ec7c33c6c004bbafe82"
MAPPED = "sha256.igveq6eh4pcfygnsisfs6a3fklyawldy4i4unu4qu7uen5vnldqq"


def bearer(env, subject: object, **extra: object) -> dict[str, str]:
    token = env.service.dev_issuer.mint("placeholder", extra={"sub": subject, **extra})
    return {"Authorization": f"Bearer {token}"}


def test_an_auth0_user_gets_a_certificate_for_the_mapped_id(env):
    assert user_id_for_subject(AUTH0_SUBJECT) == MAPPED
    env.add_node("n1", MAPPED)

    response = env.client.post(
        "/generate-cert", json={"nodeId": "n1"}, headers=bearer(env, AUTH0_SUBJECT)
    )

    assert response.status_code == 201, response.text
    data = response.json()
    assert data["userId"] == MAPPED
    certificate = x509.load_pem_x509_certificate(data["certificate"].encode())
    assert Identity.from_certificate(certificate) == Identity(user_id=MAPPED, node_id="n1")
    row = env.service.authority.ledger.get(data["serialNumber"])
    assert row.user_id == MAPPED and row.user_subject == AUTH0_SUBJECT
    # Its successor keeps the subject it was issued for.
    successor = env.service.authority.issue_successor(
        data["serialNumber"], request_id=uuid.uuid4().hex
    )
    assert successor.record.user_subject == AUTH0_SUBJECT


def test_a_subject_that_maps_is_not_the_owner_of_a_node_registered_under_the_raw_name(env):
    # An admin who registered the node under "sha256.…" of somebody else, or a subject
    # chosen to look like a mapped id, gets nothing: "sha256.x" maps again.
    env.add_node("n1", MAPPED)
    response = env.client.post("/generate-cert", json={"nodeId": "n1"}, headers=bearer(env, MAPPED))
    assert response.status_code == 403, response.text


def test_a_body_user_id_must_be_the_mapped_id(env):
    env.add_node("n1", MAPPED)
    headers = bearer(env, AUTH0_SUBJECT)
    raw = env.client.post(
        "/generate-cert", json={"nodeId": "n1", "userId": AUTH0_SUBJECT}, headers=headers
    )
    assert raw.status_code == 403
    mapped = env.client.post(
        "/generate-cert", json={"nodeId": "n1", "userId": MAPPED}, headers=headers
    )
    assert mapped.status_code == 201, mapped.text


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"sub": ""}, "'sub' claim: subject: must be 1 to 1024 characters"),
        # PyJWT itself refuses a "sub" that is not a string (RFC 7519 section 4.1.2).
        ({"sub": ["alice"]}, "token: "),
        # The claims parser bounds every string claim first (core/jose.py).
        ({"sub": "x" * 2000}, "'sub' is longer than 1024 characters"),
    ],
)
def test_an_unusable_subject_is_a_401_problem(env, claims, detail):
    response = env.client.get("/v1/certificates", headers=bearer(env, claims["sub"]))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]


class TestConfiguredClaims:
    @pytest.fixture
    def service_settings(self):
        return {"user_id_claim": "email", "admin_claim": "realm_access.roles"}

    def test_the_user_id_comes_from_the_configured_claim(self, env):
        env.add_node("n1", user_id_for_subject("alice@example.com"))
        headers = bearer(env, "36fa0f91-f94d-4a0c-afed-6b7d952e47da", email="alice@example.com")
        response = env.client.post("/generate-cert", json={"nodeId": "n1"}, headers=headers)
        assert response.status_code == 201, response.text
        row = env.service.authority.ledger.get(response.json()["serialNumber"])
        assert row.user_subject == "alice@example.com"

    def test_the_admin_role_comes_from_the_configured_path(self, env):
        roles = {"realm_access": {"roles": ["offline_access", "nodecert-admins"]}}
        admin = bearer(env, "kc-admin", email="admin@example.com", **roles)
        assert (
            env.client.put("/v1/nodes/n2", json={"owner": "bob"}, headers=admin).status_code == 200
        )
        # cognito:groups no longer counts once the admin claim is configured elsewhere.
        groups = {"cognito:groups": ["nodecert-admins"], "email": "eve@example.com"}
        other = bearer(env, "kc-eve", **groups)
        assert (
            env.client.put("/v1/nodes/n3", json={"owner": "eve"}, headers=other).status_code == 403
        )

    def test_the_lambda_reads_the_same_claims_from_the_authorizer(self, env):
        app = LambdaApp.for_service(env.service)
        app.client_ids = frozenset({RECORDED_CLIENT_ID})
        env.add_node("node-1", user_id_for_subject("alice@example.com"))
        event = api_event("rest_generate_cert.json")
        event["requestContext"]["authorizer"]["claims"]["email"] = "alice@example.com"
        issued = app.handle(event)
        assert issued["statusCode"] == 201, issued["body"]
        assert json.loads(issued["body"])["userId"] == user_id_for_subject("alice@example.com")


def test_the_lambda_maps_an_authorizer_subject(env):
    app = LambdaApp.for_service(env.service)
    app.client_ids = frozenset({RECORDED_CLIENT_ID})
    env.add_node("node-1", MAPPED)
    event = api_event("rest_generate_cert.json")
    event["requestContext"]["authorizer"]["claims"]["sub"] = AUTH0_SUBJECT
    issued = app.handle(event)
    assert issued["statusCode"] == 201, issued["body"]
    serial = json.loads(issued["body"])["serialNumber"]
    assert env.service.authority.ledger.get(serial).user_subject == AUTH0_SUBJECT


@pytest.mark.parametrize(
    "env_vars",
    [
        {"NODECERT_USER_ID_CLAIM": " sub"},
        {"NODECERT_ADMIN_CLAIM": "x" * 257},
        {"NODECERT_ADMIN_CLAIM": "roles "},
    ],
)
def test_a_claim_setting_with_spaces_or_too_long_is_refused(env_vars):
    with pytest.raises(ConfigurationError, match="claim name or dotted path"):
        Settings.from_env(env_vars)


def test_admin_principal_constant_is_unaffected():
    assert ADMIN.subject is None


def test_nodes_add_takes_the_owner_as_a_subject(service, monkeypatch, capsys):
    import os

    from nodecert.cli import main

    for key in [k for k in os.environ if k.startswith("NODECERT_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NODECERT_HOME", str(service.settings.home))
    assert main(["nodes", "add", "n1", "--owner-subject", AUTH0_SUBJECT]) == 0
    assert capsys.readouterr().out == f"n1\t{MAPPED}\n"
    assert service.authority.nodes.owner_of("n1") == MAPPED


class TestDevTokens:
    """``nodecert dev-token`` puts the subject and the role where the settings read them."""

    @pytest.fixture
    def service_settings(self):
        return {"user_id_claim": "email", "admin_claim": "realm_access.roles"}

    def test_a_dev_token_for_a_subject_in_the_configured_claims(self, env, monkeypatch, capsys):
        import os

        from nodecert.cli import main

        for key in [k for k in os.environ if k.startswith("NODECERT_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("NODECERT_HOME", str(env.service.settings.home))
        monkeypatch.setenv("NODECERT_USER_ID_CLAIM", "email")
        monkeypatch.setenv("NODECERT_ADMIN_CLAIM", "realm_access.roles")
        argv = ["dev-token", "--subject", "alice@example.com", "--admin", "--json"]
        assert main(argv) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["userId"] == user_id_for_subject("alice@example.com")
        principal = env.service.verifier.verify(document["token"])
        assert principal.user_id == document["userId"] and principal.is_admin
        assert principal.subject == "alice@example.com"
        assert main(["dev-token", "alice", "--subject", "bob@example.com"]) == 2
