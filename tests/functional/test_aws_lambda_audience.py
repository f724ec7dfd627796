"""Recorded API Gateway events whose authorizer claims are for another app client: 401.

The recorded events were made by a Cognito authorizer for app client ``4example0clientid``:
REST API events carry an ID token's claims (``aud``), HTTP API events an access token's
(``client_id``). A Cognito authorizer accepts any app client of the pool, so a Lambda
configured for another client must refuse them, before anything is done.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from nodecert.aws.handler import LambdaApp
from nodecert.bootstrap import build_service
from tests.kit import RECORDED_CLIENT_ID, api_event

from ..conftest import ADMIN, make_settings

ID_TOKEN_EVENT = "rest_generate_cert.json"  # requestContext.authorizer.claims
ACCESS_TOKEN_EVENT = "http_api_list_certificates.json"  # requestContext.authorizer.jwt.claims


def claims_of(event: dict) -> dict:
    authorizer = event["requestContext"]["authorizer"]
    return authorizer["jwt"]["claims"] if "jwt" in authorizer else authorizer["claims"]


@pytest.fixture
def service(tmp_path: Path):
    # As deployed: NODECERT_OIDC_AUDIENCE names the app client (deploy/template.yaml). The
    # JWKS is never fetched: the caller comes from the authorizer's claims.
    settings = make_settings(
        tmp_path / "home",
        oidc_issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE",
        oidc_audience=RECORDED_CLIENT_ID,
        oidc_jwks_url="http://127.0.0.1:9/unused",
    )
    service = build_service(settings)
    service.administration.put_node(ADMIN, "node-1", "alice")
    yield service
    service.close()


def answer(app: LambdaApp, event: dict) -> tuple[int, dict]:
    reply = app.handle(event)
    return reply["statusCode"], json.loads(reply["body"])


@pytest.mark.parametrize("name", [ID_TOKEN_EVENT, ACCESS_TOKEN_EVENT])
def test_the_configured_app_client_is_accepted(service, name: str) -> None:
    status, body = answer(LambdaApp.for_service(service), api_event(name))
    assert status in (200, 201), body


@pytest.mark.parametrize(
    ("name", "change", "why"),
    [
        (ID_TOKEN_EVENT, {"aud": "another0client"}, "audience"),
        (ID_TOKEN_EVENT, {"token_use": "refresh"}, "token_use"),
        (ACCESS_TOKEN_EVENT, {"client_id": "another0client"}, "client_id"),
        # An access token with a matching aud but another client_id is another client's.
        (
            ACCESS_TOKEN_EVENT,
            {"client_id": "another0client", "aud": RECORDED_CLIENT_ID},
            "client_id",
        ),
    ],
)
def test_claims_for_another_client_or_use_are_401_and_change_nothing(
    service, name: str, change: dict, why: str
) -> None:
    event = copy.deepcopy(api_event(name))
    claims_of(event).update(change)

    status, body = answer(LambdaApp.for_service(service), event)

    assert status == 401, body
    assert body["code"] == "unauthenticated"
    assert why in body["detail"]
    assert service.authority.ledger.find(user_id="alice") == []


def test_a_lambda_without_an_app_client_refuses_authorizer_claims(tmp_path: Path) -> None:
    service = build_service(make_settings(tmp_path / "home"))  # No NODECERT_OIDC_AUDIENCE.
    status, body = answer(LambdaApp.for_service(service), api_event(ID_TOKEN_EVENT))
    assert status == 401, body
    assert "NODECERT_OIDC_AUDIENCE" in body["detail"]
    service.close()
