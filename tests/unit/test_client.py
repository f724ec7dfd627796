"""The client against ``nodecert.testing`` fakes: requests it builds, errors it raises (no I/O)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodecert.client import (
    Client,
    Request,
    Response,
    ServiceUnreachableError,
    UnexpectedReplyError,
    http_status_of,
)
from nodecert.core.decision import AccessDeniedError, Decision, DenyReason
from nodecert.core.errors import (
    AuthenticationError,
    BackendUnavailableError,
    ConflictError,
    CSRError,
    InvalidRequestError,
    NodecertError,
    NotFoundError,
    QuotaExceededError,
)
from nodecert.testing import (
    MockTransport,
    UnreachableTransport,
    json_response,
    problem_response,
)

URL = "https://certs.example/stage"


def _row(serial: str) -> dict[str, object]:
    return {
        "serialNumber": serial,
        "userId": "ann",
        "nodeId": "n1",
        "keyType": "ec-p256",
        "status": "active",
        "notBefore": "2026-01-01T00:00:00Z",
        "notAfter": "2026-01-08T00:00:00Z",
        "fingerprintSha256": "ab" * 32,
        "createdAt": "2026-01-01T00:00:00Z",
        "revokedAt": None,
        "revocationReason": None,
        "renewedFrom": None,
        "profile": "client",
    }


def _client(handler, **kwargs) -> tuple[Client, MockTransport]:
    transport = MockTransport(handler)
    return Client(URL, token="tok", transport=transport, **kwargs), transport


def test_issue_sends_what_the_contract_says() -> None:
    issued = {
        "certificate": "CERT",
        "certificateChain": "CHAIN",
        "privateKey": "KEY",
        "serialNumber": "0a",
        "notBefore": "2026-01-01T00:00:00Z",
        "notAfter": "2026-01-08T00:00:00Z",
        "userId": "ann",
        "nodeId": "n1",
        "keyType": "ec-p256",
    }
    client, transport = _client(lambda r: json_response(issued, 201), timeout=7)
    result = client.issue("n1", key_type="ec-p256", validity_days=3, idempotency_key="k-1")
    sent = transport.requests[0]
    assert (sent.method, sent.url) == ("POST", f"{URL}/generate-cert")
    assert sent.headers["Authorization"] == "Bearer tok"
    assert sent.headers["Idempotency-Key"] == "k-1"
    assert json.loads(sent.body or b"") == {"nodeId": "n1", "keyType": "ec-p256", "validityDays": 3}
    assert result.private_key == "KEY" and result.not_after == datetime(2026, 1, 8, tzinfo=UTC)
    assert "KEY" not in repr(result) and "tok" not in repr(client)


def test_listing_follows_every_cursor() -> None:
    pages = {
        None: {"certificates": [_row("03"), _row("02")], "nextCursor": "02"},
        "02": {"certificates": [_row("01")], "nextCursor": None},
    }

    def handler(request: Request) -> Response:
        query = dict(p.split("=") for p in request.url.split("?", 1)[1].split("&"))
        assert query["limit"] == "1000" and query["nodeId"] == "n1"
        return json_response(pages[query.get("cursor")])

    client, transport = _client(handler)
    assert [r.serial for r in client.certificates(node_id="n1")] == ["03", "02", "01"]
    assert len(transport.requests) == 2


def test_a_cursor_that_repeats_ends_the_listing() -> None:
    client, transport = _client(lambda r: json_response({"certificates": [], "nextCursor": "x"}))
    assert list(client.certificates()) == []
    assert len(transport.requests) == 2


@pytest.mark.parametrize(
    ("error", "cls", "status"),
    [
        (NotFoundError("no node 'n9'"), NotFoundError, 404),
        (CSRError("csr: bad signature"), CSRError, 400),
        (QuotaExceededError("slow down", retry_after=30), QuotaExceededError, 429),
        (BackendUnavailableError("CA down", retry_after=5), BackendUnavailableError, 503),
        (AuthenticationError("token: expired"), AuthenticationError, 401),
    ],
)
def test_problem_documents_become_the_error_classes(error, cls, status) -> None:
    client, _ = _client(lambda r: problem_response(error))
    with pytest.raises(cls) as raised:
        client.node("n9")
    assert type(raised.value) is cls
    assert raised.value.detail == error.detail and raised.value.code == error.code
    assert raised.value.retry_after == error.retry_after
    assert http_status_of(raised.value) == status


def test_an_access_denied_is_rebuilt_through_its_constructor_with_its_reason() -> None:
    denied = json.dumps(
        {"code": "access_denied", "detail": "certificate: revoked: x", "reason": "revoked"}
    )
    client, _ = _client(lambda r: Response(403, {}, denied.encode()))
    with pytest.raises(AccessDeniedError, match="revoked") as raised:
        client.node("n1")
    assert raised.value.decision == Decision.deny(DenyReason.REVOKED, "x")
    assert raised.value.detail == "certificate: revoked: x"


def test_a_class_outside_the_table_is_known_by_its_status_with_its_code_kept() -> None:
    # Only the wire-error table names classes: a subclass defined anywhere else (a newer
    # service's code, here one defined after the client was imported) is not searched for.
    class LaterError(ConflictError):
        code = "later_conflict"

    client, _ = _client(lambda r: problem_response(LaterError("renewed once already"), 409))
    with pytest.raises(ConflictError) as raised:
        client.node("n1")
    assert type(raised.value) is ConflictError
    assert raised.value.code == "later_conflict"
    assert http_status_of(raised.value) == 409


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (409, b'{"code": "something_new", "detail": "a new rule"}', ConflictError),
        (429, b"", QuotaExceededError),
        (502, b"<html>Bad gateway</html>", BackendUnavailableError),
        (500, b"[1, 2]", NodecertError),
        (418, b"{}", NodecertError),
    ],
)
def test_unknown_codes_and_foreign_bodies_fall_back_on_the_status(status, body, cls) -> None:
    client, _ = _client(lambda r: Response(status, {"retry-after": "12"}, body))
    with pytest.raises(NodecertError) as raised:
        client.nodes()
    assert type(raised.value) is cls
    assert raised.value.retry_after == 12
    assert "\n" not in raised.value.detail


def test_a_hostile_detail_is_one_bounded_line() -> None:
    body = json.dumps({"code": "forbidden", "detail": "x\n" * 10_000}).encode()
    client, _ = _client(lambda r: Response(403, {}, body))
    with pytest.raises(NodecertError) as raised:
        client.nodes()
    assert "\n" not in raised.value.detail and len(raised.value.detail) <= 500


def test_replies_that_are_not_the_contract_are_unexpected() -> None:
    for reply in (Response(200, {}, b"<html>"), json_response({"nodes": "x"}), json_response([])):
        client, _ = _client(lambda r, reply=reply: reply)
        with pytest.raises(UnexpectedReplyError):
            client.nodes()


@pytest.mark.parametrize(
    ("call", "body"),
    [
        (lambda c: c.ca_issuers(), b"<html>"),
        (lambda c: c.ca_issuers(), b'{"issuers": {}}'),
        (lambda c: list(c.certificates()), b'{"certificates": null}'),
        (lambda c: c.revoke_all(node_id="n1"), b'{"revoked": "all"}'),
        (lambda c: c.audit(), b'{"entries": [{"at": 1}]}'),
        (lambda c: c.audit(), b'{"entries": ["x"]}'),
        (lambda c: c.audit(), b"[]"),
    ],
)
def test_every_listing_refuses_a_reply_without_its_list(call, body) -> None:
    client, _ = _client(lambda r: Response(200, {}, body))
    with pytest.raises(UnexpectedReplyError):
        call(client)


def test_no_answer_is_service_unreachable() -> None:
    client = Client(URL, token="t", transport=UnreachableTransport())
    with pytest.raises(ServiceUnreachableError, match=r"cannot reach https://certs\.example"):
        client.nodes()
    assert isinstance(ServiceUnreachableError("x"), BackendUnavailableError)


def test_routes_without_a_token_and_ids_kept_in_their_segment() -> None:
    client, transport = _client(lambda r: Response(200, {}, b"PEM"))
    assert Client(URL, transport=transport).ca_chain() == "PEM"
    assert "Authorization" not in transport.requests[0].headers
    with pytest.raises(AuthenticationError, match="token is required"):
        Client(URL, transport=transport).nodes()
    client, transport = _client(lambda r: Response(204))
    client.delete_node("../v1/ca")
    assert transport.requests[-1].url == f"{URL}/v1/nodes/..%2Fv1%2Fca"


def test_revoke_all_needs_exactly_one_target() -> None:
    client, transport = _client(lambda r: json_response({"revoked": [_row("01")], "count": 1}))
    assert [r.serial for r in client.revoke_all(user_id="ann")] == ["01"]
    assert transport.requests[0].url == f"{URL}/v1/users/ann/revoke-all"
    for kwargs in ({}, {"node_id": "n1", "user_id": "ann"}):
        with pytest.raises(InvalidRequestError):
            client.revoke_all(**kwargs)


def test_problem_response_matches_the_services_statuses() -> None:
    assert problem_response(CSRError("x")).status == 400
    assert problem_response(QuotaExceededError("x", retry_after=3)).headers["retry-after"] == "3"
    assert problem_response(NodecertError("x")).status == 500


def test_problem_response_agrees_with_the_services_status_table() -> None:
    from nodecert.http.contract import status_of

    for error in (CSRError("x"), NotFoundError("x"), ConflictError("x"), AuthenticationError("x")):
        assert problem_response(error).status == status_of(error)


@pytest.mark.parametrize("token", ["", "abc def", "tok\r\nX-Injected: 1", "tök"])
def test_a_token_that_cannot_be_a_bearer_token_is_refused_unechoed(token: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        Client(URL, token=token, transport=UnreachableTransport())
    assert token not in refused.value.detail or not token


@given(value=st.text(max_size=40))
def test_any_retry_after_from_a_server_is_a_number_or_nothing(value: str) -> None:
    # A hostile server's Retry-After ("²", 10**100, "-1", spaces) never crashes the client.
    from nodecert.client._errors import error_from_response

    body = json.dumps({"code": "quota_exceeded", "detail": "slow down"}).encode()
    error = error_from_response(429, {"retry-after": value}, body)
    assert error.retry_after is None or 0 <= error.retry_after <= 86_400


def test_retry_after_reads_ascii_seconds_only() -> None:
    from nodecert.client._errors import error_from_response

    body = b'{"code": "quota_exceeded", "detail": "slow down"}'
    assert error_from_response(429, {"retry-after": "30"}, body).retry_after == 30
    assert error_from_response(429, {"retry-after": "\u00b2"}, body).retry_after is None
    assert error_from_response(429, {"retry-after": "9" * 400}, body).retry_after is None
