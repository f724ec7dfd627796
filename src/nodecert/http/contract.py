"""The HTTP contract: every reply, problem document and status, built here and nowhere else.

The FastAPI app (:mod:`nodecert.http.app`), the direct route (:mod:`nodecert.http.direct`),
the Lambda handler (:mod:`nodecert.aws.handler`) and the server's own refusals
(:mod:`nodecert.server.serve`) all answer with what this module builds, so an error reads
the same whichever way a request came in. Which status and which members and headers each
error's problem document has is the wire-error table of the core
(:data:`nodecert.core.problems.WIRE_ERRORS`), which the client reads too.

Errors are RFC 9457 ``application/problem+json`` documents with a stable ``code``; 429 and
503 carry ``Retry-After``, 401 carries ``WWW-Authenticate``. The framework-neutral
:class:`Reply` is rendered by each front end into its own response type.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nodecert.core import problems
from nodecert.core.errors import (
    HeadersTooLargeError,
    HostUnavailableError,
    InvalidRequestError,
    MalformedRequestError,
    MethodNotAllowedError,
    NodecertError,
    NotFoundError,
    OverloadedError,
    RequestTimeoutError,
    UnsupportedTransferCodingError,
)
from nodecert.core.problems import PROBLEM_TYPE_BASE
from nodecert.core.values import CertificateRecord, NodeRecord, RevocationReason
from nodecert.issuing.authority import IssuedCertificate
from nodecert.support.times import utc_isoformat

__all__ = [
    "PROBLEM_TYPE_BASE",
    "HeadersTooLargeError",
    "HostUnavailableError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "OverloadedError",
    "Reply",
    "RequestTimeoutError",
    "UnsupportedTransferCodingError",
    "certificate_json",
    "error_reply",
    "issued_reply",
    "method_not_allowed",
    "no_route",
    "node_json",
    "parse_object",
    "problem",
    "reason_of",
    "repeated_query_parameter",
    "status_of",
]

log = logging.getLogger("nodecert")

_MAX_INSTANCE = 200
# Errors that say the service itself is in trouble, worth a line in the log.
_LOGGED = frozenset({"ca_unavailable", "store_unavailable", "internal_error"})


# What an OSError nobody translated is answered with: the request may succeed later.
_HOST_RETRY_AFTER_S = 10


@dataclass(frozen=True, slots=True)
class Reply:
    """A framework-neutral HTTP response.

    ``prepared`` is the body already encoded, when whoever built the reply had it cheaper
    than :func:`encode_json` (:func:`issued_reply`); it is always those same bytes.
    """

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    prepared: bytes | None = field(default=None, repr=False, compare=False)

    def encoded(self) -> bytes:
        """The body as bytes (JSON unless it is already text or bytes)."""
        if self.prepared is not None:
            return self.prepared
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return encode_json(self.body)


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps(body, separators=(",", ":")) makes a JSONEncoder and a C encoder on every
# call; the C encoder is made once here, with the C string escaper (no Python call per
# string).
def _c_iterencode() -> Callable[[object, int], Iterable[str]] | None:
    make = getattr(json.encoder, "c_make_encoder", None)
    escape = getattr(json.encoder, "c_encode_basestring_ascii", None)
    if make is None or escape is None:  # An interpreter without the _json accelerator.
        return None
    try:
        return make(  # type: ignore[no-any-return]
            None,  # No cycle check: a reply body is a tree of our own dicts and lists.
            _not_json,
            escape,
            None,
            ":",
            ",",
            False,
            False,
            True,
        )
    except TypeError:  # Another Python's signature: json.dumps it is.
        return None


_ITERENCODE = _c_iterencode()


def _encode_text(body: object) -> str:
    if _ITERENCODE is None:
        return json.dumps(body, separators=(",", ":"))
    return "".join(_ITERENCODE(body, 0))


def encode_json(body: object) -> bytes:
    """``json.dumps(body, separators=(",", ":")).encode()``, the same bytes, faster."""
    return _encode_text(body).encode()


# The escaped JSON of the CA chains, the long string every 201 repeats: escaped once, by
# issued_reply. Public certificates only: a reply's other strings (its private key, when
# the service made one) are escaped and forgotten, never kept here.
_ESCAPED_CHAINS: dict[str, str] = {}
_ESCAPED_MAX = 16


def _escaped_chain(chain: str) -> str:
    escaped = _ESCAPED_CHAINS.get(chain)
    if escaped is None:
        if len(_ESCAPED_CHAINS) >= _ESCAPED_MAX:  # Chains after many rotations: start again.
            _ESCAPED_CHAINS.clear()
        escaped = _ESCAPED_CHAINS[chain] = json.encoder.encode_basestring_ascii(chain)
    return escaped


def status_of(error: NodecertError) -> int:
    """The HTTP status for an error: its row of the wire-error table (the root's: 500)."""
    return problems.row_of(type(error)).status


def problem(error: NodecertError, *, instance: str | None = None) -> Reply:
    """The RFC 9457 problem reply for ``error``, as the wire-error table says."""
    rendered = problems.render(error, instance=instance)
    headers = {"Cache-Control": "no-store", **rendered.headers}
    return Reply(rendered.status, rendered.body, headers, "application/problem+json")


def error_reply(exc: BaseException, method: str, path: str) -> Reply:
    """The problem reply for an error raised while answering ``method path``.

    A ``NodecertError`` says what failed; anything else is logged (by class only: its
    message could hold input) and answered as a plain 500.
    """
    if isinstance(exc, NodecertError):
        if exc.code in _LOGGED:
            log.warning("%s %r: %s", method, path[:_MAX_INSTANCE], exc.detail)
        return problem(exc, instance=path)
    if isinstance(exc, OSError):
        # The machine, not the request: a full disk or no descriptors left is a 503 that a
        # retry may pass, never a 500. The OS's reason is logged, never the file's name.
        reason = exc.strerror or type(exc).__name__
        log.error("%s on %s %r: %s", type(exc).__name__, method, path[:_MAX_INSTANCE], reason)
        unavailable = HostUnavailableError(
            f"service: the machine refused a resource ({reason}); try again later",
            retry_after=_HOST_RETRY_AFTER_S,
        )
        return problem(unavailable, instance=path)
    log.error("unexpected %s on %s %r", type(exc).__name__, method, path[:_MAX_INSTANCE])
    error = NodecertError("internal error; the request was not completed")
    return problem(error, instance=path)


def method_not_allowed(method: str, allowed: Iterable[str], *, path: str) -> Reply:
    """The 405 for ``method`` on ``path``, whose resource answers the ``allowed`` methods.

    RFC 9110 section 15.5.6: ``Allow`` lists every method of the resource.
    """
    error = MethodNotAllowedError(f"method: {method[:20]} is not allowed here", allowed=allowed)
    return problem(error, instance=path)


def no_route(path: str) -> NotFoundError:
    """The error for a path that no route answers (raise it, or pass it to :func:`problem`)."""
    return NotFoundError(f"path: no route {path[:_MAX_INSTANCE]}")


def issued_reply(issued: IssuedCertificate) -> Reply:
    """The 201 reply for a newly issued certificate (``/generate-cert``, ``/v1/renew``).

    Its bytes are written here, with the CA chain's escape made once per chain
    (``_escaped_chain``) spliced in after the certificate: what :func:`encode_json` would
    write of the body, byte for byte (a property test holds the two equal).
    """
    record = issued.record
    rest: dict[str, Any] = {
        "serialNumber": record.serial,
        "notBefore": _time(record.not_before),
        "notAfter": _time(record.not_after),
        "userId": record.user_id,
        "nodeId": record.node_id,
        "keyType": record.key_type,
    }
    if record.renewed_from is not None:
        rest["renewedFrom"] = record.renewed_from
    if issued.private_key_pem is not None:
        rest["privateKey"] = issued.private_key_pem
    prepared = "".join(
        (
            '{"certificate":',
            _encode_text(issued.certificate_pem),
            ',"certificateChain":',
            _escaped_chain(issued.chain_pem),
            ",",
            _encode_text(rest)[1:],
        )
    ).encode()
    out = {"certificate": issued.certificate_pem, "certificateChain": issued.chain_pem, **rest}
    headers = {"Cache-Control": "no-store", "Location": f"/v1/certificates/{record.serial}"}
    return Reply(201, out, headers, prepared=prepared)


def certificate_json(row: CertificateRecord) -> dict[str, Any]:
    """The API view of a ledger row."""
    return {
        "serialNumber": row.serial,
        "userId": row.user_id,
        "nodeId": row.node_id,
        "keyType": row.key_type,
        "status": row.status.value,
        "notBefore": _time(row.not_before),
        "notAfter": _time(row.not_after),
        "fingerprintSha256": row.fingerprint_sha256,
        "createdAt": _time(row.created_at),
        "revokedAt": _time(row.revoked_at) if row.revoked_at else None,
        "revocationReason": row.revocation_reason.value if row.revocation_reason else None,
        "renewedFrom": row.renewed_from,
        "supersededBy": row.superseded_by,
        "profile": row.profile.value,
        "dnsNames": list(row.dns_names),
        "ipAddresses": list(row.ip_addresses),
    }


def node_json(row: NodeRecord) -> dict[str, Any]:
    """The API view of a node directory entry."""
    return {"nodeId": row.node_id, "owner": row.owner, "createdAt": _time(row.created_at)}


def _time(value: datetime) -> str:
    # A UTC time's text is cached (utc_isoformat); any other keeps its own offset.
    text = utc_isoformat(value) if value.tzinfo is UTC else value.isoformat()
    return text.replace("+00:00", "Z")


def parse_object(body: bytes, *, allowed: frozenset[str], empty_ok: bool = False) -> dict[str, Any]:
    """Parse a JSON object body, refusing other JSON, non-UTF-8, repeated and unknown fields.

    Raises:
        InvalidRequestError: naming what is wrong.
    """
    if not body.strip():
        if empty_ok:
            return {}
        raise InvalidRequestError("body: a JSON object is required")
    try:
        # RFC 8259 section 8.1: UTF-8 only. json.loads(bytes) would also guess UTF-16 and
        # UTF-32 from the first bytes, which the front proxy and the client may not.
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError("body: not valid JSON (it must be UTF-8)") from exc
    try:
        data = _DECODER.decode(text)
    except _DuplicateFieldError as exc:
        raise InvalidRequestError(f"body: duplicate field {str(exc)[:40]!r}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError("body: not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError(f"body: expected a JSON object, got {type(data).__name__}")
    try:
        # JSON can spell a lone surrogate ("\ud800"), which no UTF-8 encoder takes (a
        # database driver, a log file): refused here, whatever field holds it. Only a
        # \u escape can spell one (the text is valid UTF-8), and only many brackets can
        # nest deeply: a body with neither (the usual one) needs no second pass.
        if "\\u" in text or text.count("[") + text.count("{") >= _NESTING_CHECKED:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError("body: a string holds a lone surrogate (not Unicode)") from None
    except RecursionError:
        raise InvalidRequestError("body: not valid JSON (nested too deeply)") from None
    unknown = sorted(set(data) - allowed)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise InvalidRequestError(
            f"body: unknown field(s) {shown} (allowed: {', '.join(sorted(allowed))})"
        )
    return data


# Far below the depth at which json.dumps raises RecursionError (about 1,000).
_NESTING_CHECKED = 100


class _DuplicateFieldError(Exception):
    pass


def _unique_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated key is refused rather than resolved (json keeps the last): a proxy or a
    # firewall in front that keeps the first would disagree with nodecert on the request.
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateFieldError(key)
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259 section 6); Python accepts them.
    raise ValueError(f"{name} is not JSON")


# What json.loads(text, object_pairs_hook=..., parse_constant=...) builds on every call
# (a decoder and its scanner, a third of parsing an issuance body), built once: it keeps
# no state between documents.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_fields, parse_constant=_no_constant)


def repeated_query_parameter(query: str) -> str | None:
    """The first parameter that ``query`` (a raw query string) gives more than once, or None.

    A route never picks one of two copies (FastAPI keeps the last, a proxy in front may
    check the first): both front ends refuse the request instead, whichever the route.
    """
    seen: set[str] = set()
    for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name in seen:
            return name
        seen.add(name)
    return None


def reason_of(value: object) -> RevocationReason:
    """Parse a revocation ``reason`` field.

    Raises:
        InvalidRequestError: naming the accepted reasons.
    """
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return RevocationReason(value)
    except ValueError:
        accepted = ", ".join(r.value for r in RevocationReason)
        raise InvalidRequestError(f"reason: {str(value)[:40]!r} is not one of {accepted}") from None
