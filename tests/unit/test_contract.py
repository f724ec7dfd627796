"""The HTTP contract: one wire-error table, problem documents, the 405, the schemas' choices."""

from __future__ import annotations

import inspect
import logging

import pytest

from nodecert.core import decision, errors
from nodecert.core.errors import NodecertError
from nodecert.core.keys import KeyType
from nodecert.core.problems import WIRE_ERRORS, row_of
from nodecert.core.values import CertificateStatus, Profile, RevocationReason
from nodecert.http import schemas
from nodecert.http.contract import (
    PROBLEM_TYPE_BASE,
    HeadersTooLargeError,
    MethodNotAllowedError,
    RequestTimeoutError,
    error_reply,
    method_not_allowed,
    no_route,
    problem,
    status_of,
)

EXPECTED = {
    "NodecertError": 500,
    "InvalidRequestError": 400,
    "InvalidIdentifierError": 400,
    "CSRError": 400,
    "PayloadTooLargeError": 413,
    "AuthenticationError": 401,
    "AuthorizationError": 403,
    "NotFoundError": 404,
    "ConflictError": 409,
    "QuotaExceededError": 429,
    "BackendUnavailableError": 503,
    "StoreUnavailableError": 503,
    "ConfigurationError": 500,
    "IdempotencyKeyReusedError": 400,
    "IdempotentReplayError": 409,
    "ConflictingInputError": 400,
    "AlreadyRenewedError": 409,
    "AccessDeniedError": 403,
    "MalformedRequestError": 400,
    "MethodNotAllowedError": 405,
    "RequestTimeoutError": 408,
    "HeadersTooLargeError": 431,
    "UnsupportedTransferCodingError": 501,
    "OverloadedError": 503,
    "HostUnavailableError": 503,
}


def _core_errors() -> list[type[NodecertError]]:
    return [
        cls
        for module in (errors, decision)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, NodecertError) and cls.__module__ == module.__name__
    ]


@pytest.mark.parametrize("cls", _core_errors(), ids=lambda c: c.__name__)
def test_every_core_error_has_its_status_in_the_one_table(cls: type[NodecertError]) -> None:
    # A class added to the core must get its status deliberately: a row of its own in the
    # wire-error table (core/problems.py) and in EXPECTED here, which pins the contract.
    assert cls.__name__ in EXPECTED, f"{cls.__name__}: give it a row in core/problems.py"
    assert row_of(cls).cls is cls
    assert row_of(cls).status == EXPECTED[cls.__name__]
    if cls is not decision.AccessDeniedError:  # Built from a Decision, tested with it.
        assert status_of(cls("x")) == EXPECTED[cls.__name__]


def test_http_only_errors_have_their_statuses() -> None:
    assert status_of(MethodNotAllowedError("PATCH")) == 405
    assert status_of(HeadersTooLargeError("headers: too large")) == 431
    assert status_of(RequestTimeoutError("request: not received in time")) == 408


def test_a_problem_document_names_its_code_in_its_type() -> None:
    reply = problem(errors.QuotaExceededError("quota: 3 per minute", retry_after=7), instance="/x")
    assert reply.status == 429
    assert reply.media_type == "application/problem+json"
    assert reply.body == {
        "type": PROBLEM_TYPE_BASE + "quota_exceeded",
        "title": errors.QuotaExceededError.title,
        "status": 429,
        "detail": "quota: 3 per minute",
        "code": "quota_exceeded",
        "instance": "/x",
    }
    assert reply.headers["Retry-After"] == "7"
    assert reply.headers["Cache-Control"] == "no-store"


def test_a_401_says_how_to_authenticate_and_a_503_when_to_retry() -> None:
    assert problem(errors.AuthenticationError("token: expired")).headers["WWW-Authenticate"] == (
        'Bearer realm="nodecert"'
    )
    assert problem(errors.StoreUnavailableError("store: down")).headers["Retry-After"] == "1"
    assert "Retry-After" not in problem(errors.InvalidRequestError("bad")).headers


def test_the_instance_is_bounded() -> None:
    reply = problem(no_route("/" + "a" * 5000), instance="/" + "a" * 5000)
    assert len(reply.body["instance"]) == 200
    assert len(reply.body["detail"]) < 250


def test_the_405_lists_every_method_once_in_order() -> None:
    reply = method_not_allowed("DELETE", ["PUT", "GET", "GET", "DELETE"], path="/v1/nodes/n1")
    assert reply.status == 405
    assert reply.headers["Allow"] == "DELETE, GET, PUT"
    assert reply.body["code"] == "method_not_allowed"
    assert reply.body["type"] == PROBLEM_TYPE_BASE + "method_not_allowed"
    assert reply.body["title"] == "Method not allowed"
    assert reply.body["instance"] == "/v1/nodes/n1"


def test_an_unexpected_error_is_a_plain_500_that_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="nodecert")
    reply = error_reply(RuntimeError("password=hunter2"), "POST", "/generate-cert")
    assert reply.status == 500
    assert "hunter2" not in reply.encoded().decode()
    assert "hunter2" not in caplog.text
    assert "RuntimeError" in caplog.text


@pytest.mark.parametrize(
    ("model", "field", "choices"),
    [
        (schemas.GenerateCertRequest, "keyType", KeyType),
        (schemas.NodeCertificateRequest, "keyType", KeyType),
        (schemas.RevokeRequest, "reason", RevocationReason),
        (schemas.Certificate, "status", CertificateStatus),
        (schemas.Certificate, "profile", Profile),
    ],
)
def test_the_schemas_list_exactly_the_enums_values(model, field, choices) -> None:
    schema = model.model_json_schema()["properties"][field]
    options = schema.get("anyOf", [schema])
    enums = [o["enum"] for o in options if "enum" in o]
    assert enums == [[c.value for c in choices]]


def test_the_openapi_problem_names_every_member_of_the_table() -> None:
    members = {member for row in WIRE_ERRORS for member in row.members}
    standard = {"type", "title", "status", "detail", "code", "instance"}
    assert set(schemas.Problem.model_fields) == standard | members
