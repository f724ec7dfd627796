"""The wire-error table: each row rendered by the service and read back by the client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodecert.client._errors import error_from_response, http_status_of
from nodecert.core import errors
from nodecert.core.decision import AccessDeniedError, Decision, DenyReason
from nodecert.core.errors import NodecertError
from nodecert.core.problems import WIRE_ERRORS, WireError, parse, row_of, tree
from nodecert.http.contract import method_not_allowed, problem

DOCS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"

# One error of every row, with every field its document can carry set, as the service
# raises it. nothing_issued and a decision's identity and serial are the service's own
# bookkeeping, never on the wire, so they keep their defaults here.
SAMPLES: dict[type[NodecertError], NodecertError] = {
    NodecertError: NodecertError("internal error; the request was not completed"),
    errors.InvalidRequestError: errors.InvalidRequestError("body: not valid JSON"),
    errors.InvalidIdentifierError: errors.InvalidIdentifierError("nodeId: 'a b' is not an id"),
    errors.CSRError: errors.CSRError("csr: bad signature"),
    errors.IdempotencyKeyReusedError: errors.IdempotencyKeyReusedError("Idempotency-Key: reused"),
    errors.ConflictingInputError: errors.ConflictingInputError("authorize: nodeId disagrees"),
    errors.MalformedRequestError: errors.MalformedRequestError("request: not HTTP/1.1"),
    errors.AuthenticationError: errors.AuthenticationError("token: expired"),
    errors.AuthorizationError: errors.AuthorizationError("node n1: not yours"),
    AccessDeniedError: AccessDeniedError(Decision.deny(DenyReason.REVOKED, "revoked on 1 Dec")),
    errors.NotFoundError: errors.NotFoundError("no node 'n9'"),
    errors.MethodNotAllowedError: errors.MethodNotAllowedError(
        "method: PATCH is not allowed here", allowed=["PUT", "GET", "DELETE"]
    ),
    errors.RequestTimeoutError: errors.RequestTimeoutError("request: not received in time"),
    errors.ConflictError: errors.ConflictError("node n1: owned by bob"),
    errors.IdempotentReplayError: errors.IdempotentReplayError(
        "Idempotency-Key: request already made", serial_number="0a1b2c"
    ),
    errors.AlreadyRenewedError: errors.AlreadyRenewedError("certificate 0a: already renewed"),
    errors.PayloadTooLargeError: errors.PayloadTooLargeError("body: larger than 65536 bytes"),
    errors.QuotaExceededError: errors.QuotaExceededError("quota: 3 a minute", retry_after=17),
    errors.HeadersTooLargeError: errors.HeadersTooLargeError("headers: larger than 16384"),
    errors.ConfigurationError: errors.ConfigurationError("ca: not configured"),
    errors.UnsupportedTransferCodingError: errors.UnsupportedTransferCodingError("gzip"),
    errors.BackendUnavailableError: errors.BackendUnavailableError("ca: throttled", retry_after=5),
    errors.StoreUnavailableError: errors.StoreUnavailableError("store: busy", retry_after=2),
    errors.OverloadedError: errors.OverloadedError("server: too many connections", retry_after=3),
    errors.HostUnavailableError: errors.HostUnavailableError("disk full", retry_after=10),
}


def _fields(error: BaseException) -> dict[str, Any]:
    # Everything the instance carries, but the status the client notes on it.
    return {k: v for k, v in vars(error).items() if k != "http_status"}


def _over_the_wire(error: NodecertError) -> NodecertError:
    reply = problem(error, instance="/v1/x")
    headers = {name.lower(): value for name, value in reply.headers.items()}
    return error_from_response(reply.status, headers, reply.encoded())


def test_every_row_has_a_sample_and_every_code_one_row() -> None:
    assert set(SAMPLES) == {row.cls for row in WIRE_ERRORS}
    assert len({row.code for row in WIRE_ERRORS}) == len(WIRE_ERRORS)
    assert WIRE_ERRORS[0].cls is NodecertError
    for index, row in enumerate(WIRE_ERRORS[1:], start=1):  # Bases before subclasses.
        assert WIRE_ERRORS.index(row_of(row.cls.__bases__[0])) < index


@pytest.mark.parametrize("row", WIRE_ERRORS, ids=lambda r: r.code)
def test_the_client_rebuilds_every_row_with_the_same_fields(row: WireError) -> None:
    sent = SAMPLES[row.cls]
    got = _over_the_wire(sent)
    assert type(got) is row.cls
    assert _fields(got) == _fields(sent)
    assert got.args == sent.args
    assert http_status_of(got) == row.status


@pytest.mark.parametrize("row", WIRE_ERRORS, ids=lambda r: r.code)
def test_each_row_sends_what_it_names_and_nothing_else(row: WireError) -> None:
    reply = problem(SAMPLES[row.cls], instance="/v1/x")
    standard = {"type", "title", "status", "detail", "code", "instance"}
    assert set(reply.body) == standard | set(row.members)
    assert reply.body["status"] == reply.status == row.status
    assert set(reply.headers) == {"Cache-Control", *row.headers}


@pytest.mark.parametrize("row", [r for r in WIRE_ERRORS if "Retry-After" in r.headers])
def test_a_retry_after_row_says_one_second_when_the_error_names_none(row: WireError) -> None:
    bare = row.cls("try later")
    assert problem(bare).headers["Retry-After"] == "1"
    assert _over_the_wire(bare).retry_after == 1


def test_an_access_denied_without_a_reason_or_with_a_foreign_detail() -> None:
    plain = AccessDeniedError(Decision(False, None, detail="denied"))
    assert "reason" not in problem(plain).body
    assert _fields(_over_the_wire(plain)) == _fields(plain)
    body = json.dumps({"code": "access_denied", "detail": "no", "reason": "no_such_reason"})
    got = parse(403, {}, body.encode())
    assert isinstance(got, AccessDeniedError)
    assert got.decision.reason is None and got.detail == "certificate: denied: no"


def test_the_405_helper_and_the_row_agree() -> None:
    reply = method_not_allowed("PATCH", ["GET", "PUT"], path="/v1/nodes/n1")
    got = error_from_response(reply.status, reply.headers, reply.encoded())
    assert isinstance(got, errors.MethodNotAllowedError)
    assert got.allowed == ("GET", "PUT")
    assert got.detail == "method: PATCH is not allowed here"


def test_a_subclass_outside_the_table_is_rendered_by_its_base_row() -> None:
    class LaterQuotaError(errors.QuotaExceededError):
        code = "later_quota"

    assert row_of(LaterQuotaError).cls is errors.QuotaExceededError
    reply = problem(LaterQuotaError("slow down"))
    assert reply.status == 429 and reply.headers["Retry-After"] == "1"
    assert reply.body["code"] == "later_quota"


# What a newer service, a proxy in front or a hostile server may answer.


_FIRST_OF_STATUS = {row.status: row.cls for row in reversed(WIRE_ERRORS)}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        *sorted(_FIRST_OF_STATUS.items()),
        (502, errors.BackendUnavailableError),
        (504, errors.BackendUnavailableError),
    ],
)
def test_an_unknown_code_keeps_its_code_and_status_on_the_status_class(status, cls) -> None:
    body = json.dumps({"code": "brand_new_rule", "detail": "a newer service's refusal"})
    got = error_from_response(status, {}, body.encode())
    assert type(got) is cls
    assert got.code == "brand_new_rule" and got.detail == "a newer service's refusal"
    assert http_status_of(got) == status


@pytest.mark.parametrize("status", [402, 418, 422, 507, 599])
def test_a_status_outside_the_table_is_the_root_error(status: int) -> None:
    got = error_from_response(status, {}, b'{"code": "teapot"}')
    assert type(got) is NodecertError
    assert got.code == "teapot" and got.detail == f"HTTP {status} without a problem document"
    assert http_status_of(got) == status


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_MEMBERS = sorted({"code", "detail", *(m for row in WIRE_ERRORS for m in row.members)})


@given(
    status=st.sampled_from([400, 401, 403, 404, 405, 409, 429, 500, 502, 503, 599]),
    code=st.sampled_from([row.code for row in WIRE_ERRORS]) | _JSON,
    values=st.dictionaries(st.sampled_from(_MEMBERS), _JSON),
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "Allow", "WWW-Authenticate"]), st.text(max_size=30)
    ),
)
def test_any_document_of_any_types_gives_a_clean_error(status, code, values, headers) -> None:
    document = {**values, "code": code}
    got = error_from_response(status, headers, json.dumps(document).encode())
    _assert_clean(got, status)


@given(body=st.binary(max_size=200))
def test_any_bytes_give_a_clean_error(body: bytes) -> None:
    _assert_clean(error_from_response(503, {}, body), 503)


@pytest.mark.parametrize("row", WIRE_ERRORS, ids=lambda r: r.code)
def test_huge_fields_are_bounded(row: WireError) -> None:
    huge = "x\n" * 500_000
    document: dict[str, Any] = {"code": row.code, "detail": huge}
    document.update({member: huge for member in row.members})
    headers = {name: huge for name in row.headers}
    got = error_from_response(row.status, headers, json.dumps(document).encode())
    _assert_clean(got, row.status)
    assert type(got) is row.cls
    deep = b"[" * 100_000 + b"]" * 100_000
    _assert_clean(error_from_response(row.status, {}, deep), row.status)


def _assert_clean(got: NodecertError, status: int) -> None:
    assert isinstance(got, NodecertError)
    # 500 characters, after "certificate: denied: " for an access_denied.
    assert isinstance(got.detail, str) and 0 < len(got.detail) <= 521
    assert "\n" not in got.detail and "\r" not in got.detail
    assert isinstance(got.code, str) and len(got.code) <= 64
    assert got.retry_after is None or 0 <= got.retry_after <= 86_400
    assert http_status_of(got) == status
    for value in _fields(got).values():
        assert len(repr(value)) <= 2_000


# The tree and the docs are drawn from the table.


def test_the_docstring_tree_is_the_table() -> None:
    drawn = "\n".join("    " + line for line in tree().splitlines())
    assert errors.__doc__ is not None
    assert drawn in errors.__doc__, "paste nodecert.core.problems.tree() into core/errors.py"
    assert len(tree().splitlines()) == len(WIRE_ERRORS)  # Every row is under the root.
    assert "{1,64}" in errors.__doc__ and "128" not in errors.__doc__


def docs_table() -> str:
    """The wire-error table as docs/errors.md shows it."""
    lines = [
        "| code | status | class | carries | meaning |",
        "|---|---|---|---|---|",
    ]
    for row in WIRE_ERRORS:
        carries = [f"`{m}`" for m in row.members] + [f"`{h}:`" for h in row.headers]
        relayed = f" ({', '.join(map(str, row.relayed))} from a proxy)" if row.relayed else ""
        lines.append(
            f"| `{row.code}` | {row.status}{relayed} | `{row.cls.__name__}` |"
            f" {', '.join(carries)} | {row.summary} |"
        )
    return "\n".join(lines)


def test_the_docs_page_shows_the_table() -> None:
    text = DOCS.read_text()
    start = text.index("<!-- wire-errors -->\n") + len("<!-- wire-errors -->\n")
    end = text.index("\n<!-- /wire-errors -->")
    assert text[start:end] == docs_table(), "docs/errors.md: paste test_problems.docs_table()"


def test_the_docs_example_is_what_the_service_renders() -> None:
    text = DOCS.read_text()
    shown = json.loads(text[text.index("```json\n") + 8 : text.index("\n```\n")])
    sent = problem(SAMPLES[errors.IdempotentReplayError], instance="/generate-cert").body
    assert list(shown) == list(sent)  # The same members, in the same order.
    assert {k: shown[k] for k in ("type", "title", "status", "code")} == {
        k: sent[k] for k in ("type", "title", "status", "code")
    }


def test_every_wire_error_class_is_public() -> None:
    # The client raises any row's class: a caller catches it as nodecert.<Name>.
    import nodecert

    for row in WIRE_ERRORS:
        assert row.cls.__name__ in nodecert.__all__, row.cls.__name__
        assert getattr(nodecert, row.cls.__name__) is row.cls
