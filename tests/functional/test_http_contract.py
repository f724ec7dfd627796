"""Every front end answers from the one contract: the same problem, the 405 included."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nodecert.aws.handler import LambdaApp

from ..conftest import Env


def _lambda_event(method: str, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": path,
        "headers": headers or {},
        "requestContext": {"http": {"method": method}, "stage": "$default"},
        "body": "",
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/v1/ca"),
        ("GET", "/generate-cert"),
        ("PATCH", "/v1/nodes/n1"),
        ("GET", "/v1/renew"),
        ("GET", "/v1/no-such-route"),
        ("GET", "/v1/certificates"),
    ],
)
def test_fastapi_and_lambda_answer_alike(env: Env, method: str, path: str) -> None:
    lambda_app = LambdaApp.for_service(env.service)
    framework = env.client.request(method, path)
    aws = lambda_app.handle(_lambda_event(method, path))
    assert framework.status_code == aws["statusCode"]
    assert framework.status_code in (401, 404, 405)
    assert framework.json() == json.loads(aws["body"])
    assert framework.headers["content-type"] == aws["headers"]["Content-Type"]
    assert framework.headers.get("allow") == aws["headers"].get("Allow")
    assert framework.headers.get("www-authenticate") == aws["headers"].get("WWW-Authenticate")
