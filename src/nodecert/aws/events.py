"""Reading an API Gateway proxy event (REST payload v1, HTTP API payload v2) into a request.

API Gateway builds these events, but a function can also be invoked directly, and an
integration can be misconfigured: every field is checked for its type, and an event that
is not what API Gateway sends is a 400 problem naming the field (never a 500, never a
guess). Header names are compared without regard to case; a header that matters
(``Authorization``, ``Idempotency-Key``) given twice with different values, in ``headers``
or ``multiValueHeaders``, is refused rather than one of them picked.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nodecert.core.errors import InvalidRequestError, PayloadTooLargeError
from nodecert.http.contract import repeated_query_parameter

__all__ = ["Request", "parse_event"]

# Headers whose value decides who the caller is or what is done once: never ambiguous.
_SINGLE = ("authorization", "idempotency-key")


@dataclass(frozen=True, slots=True)
class Request:
    """What the adapter routes on, read from one event."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    claims: Mapping[str, Any] | None
    # The route API Gateway matched (``/v1/nodes/{nodeId}``) and its parameters; None when
    # the route is greedy or ``$default`` and ``path`` is what is left to match.
    route: str | None = None
    params: dict[str, str] | None = None


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"event: {field} is not an object")
    return value


def _text(value: Any, field: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidRequestError(f"event: {field} is not a string")
    return _unicode(value, field)


def _unicode(value: str, field: str) -> str:
    """``value`` if it is valid Unicode: JSON can spell a lone surrogate (``"\\ud800"``),
    which no UTF-8 encoder takes (a ``UnicodeEncodeError`` wherever it is encoded)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError(f"event: {field[:60]} is not valid Unicode") from None
    return value


def _strings(value: Any, field: str) -> dict[str, str]:
    """A map of strings (query or path parameters); entries that are not strings dropped."""
    return {str(k): v for k, v in _object(value, field).items() if isinstance(v, str)}


def _headers(event: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in _object(event.get("headers"), "headers").items():
        if not isinstance(value, str):
            continue
        key = str(name).lower()
        value = _unicode(value, f"headers.{key}")
        if key in _SINGLE and key in headers and headers[key] != value:
            raise InvalidRequestError(f"headers: {key} given twice with different values")
        headers[key] = value
    multi = _object(event.get("multiValueHeaders"), "multiValueHeaders")
    for name, values in multi.items():
        key = str(name).lower()
        if key not in _SINGLE or not isinstance(values, list):
            continue
        # API Gateway puts the last value in ``headers`` and all of them here.
        if len({v for v in values if isinstance(v, str)}) > 1:
            raise InvalidRequestError(f"headers: {key} given twice with different values")
    return headers


def _query(event: Mapping[str, Any]) -> dict[str, str]:
    """The query parameters; a parameter given more than once is refused, never picked.

    REST APIs put the last copy in ``queryStringParameters`` and all of them in
    ``multiValueQueryStringParameters``; HTTP APIs comma-join the copies, so a repeat shows
    only in ``rawQueryString``. FastAPI refuses a repeated parameter the same way
    (:class:`~nodecert.http.direct.NodecertAPI`).
    """
    query = _strings(event.get("queryStringParameters"), "queryStringParameters")
    multi = _object(event.get("multiValueQueryStringParameters"), "multiValueQueryStringParameters")
    names = [str(k) for k, v in multi.items() if isinstance(v, list) and len(v) > 1]
    raw = event.get("rawQueryString")
    if isinstance(raw, str) and (name := repeated_query_parameter(raw)) is not None:
        names.append(name)
    if names:
        raise InvalidRequestError(f"{names[0][:40]}: sent more than once")
    return query


def _body(event: Mapping[str, Any], max_body_bytes: int) -> bytes:
    raw = _text(event.get("body"), "body")
    if len(raw) > max_body_bytes * 4 // 3 + 4:
        raise PayloadTooLargeError(f"body: over the {max_body_bytes}-byte limit")
    # Only a real true: API Gateway sends a boolean; a string "false" is not a yes.
    if event.get("isBase64Encoded") is True:
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequestError("body: not valid base64") from exc
    else:
        body = raw.encode()
    if len(body) > max_body_bytes:
        raise PayloadTooLargeError(f"body: over the {max_body_bytes}-byte limit")
    return body


def parse_event(
    event: Any, *, max_body_bytes: int, matches: Callable[[str], bool]
) -> tuple[str, str, Request]:
    """Read ``event``; returns the method and path (for a problem's ``instance``) as soon
    as they are known, and the request.

    Args:
        event: The proxy event, as the Lambda runtime decoded it.
        max_body_bytes: Larger bodies are a 413.
        matches: Whether a path is one of the adapter's routes (for a ``$default`` route
            reached through the execute-api endpoint, whose path leads with the stage).

    Raises:
        InvalidRequestError: the event is not what API Gateway sends.
        PayloadTooLargeError: the body is over ``max_body_bytes``.
    """
    if not isinstance(event, Mapping):
        raise InvalidRequestError("event: not an object")
    context = _object(event.get("requestContext"), "requestContext")
    authorizer = _object(context.get("authorizer"), "requestContext.authorizer")
    params = _strings(event.get("pathParameters"), "pathParameters")
    if event.get("version") == "2.0":
        http = _object(context.get("http"), "requestContext.http")
        method = _text(http.get("method"), "requestContext.http.method")
        path = _text(event.get("rawPath"), "rawPath") or "/"
        route_key = _text(event.get("routeKey"), "routeKey") or "$default"
        route = route_key.partition(" ")[2] if " " in route_key else None
        if route is None:
            # $default: no route to go by. The stage leads rawPath only through the
            # execute-api endpoint; a route of our own never starts with it.
            stage = context.get("stage")
            staged = isinstance(stage, str) and stage not in ("", "$default")
            if staged and path.startswith(f"/{stage}/"):
                trimmed = path[len(str(stage)) + 1 :]
                if not matches(path) and matches(trimmed):
                    path = trimmed
        jwt = _object(authorizer.get("jwt"), "requestContext.authorizer.jwt")
        claims = jwt.get("claims")
    else:
        method = _text(event.get("httpMethod"), "httpMethod")
        path = _text(event.get("path"), "path") or "/"
        route = _text(event.get("resource"), "resource") or None
        if route == "$default":
            # An HTTP API's $default route in payload format 1.0: no route to go by.
            route = None
        claims = authorizer.get("claims")
    if route is not None and "{proxy+}" in route:
        # A greedy route: what it matched is the path to route on, base path excluded.
        prefix = route.split("{proxy+}", 1)[0].rstrip("/")
        path = f"{prefix}/{params.get('proxy') or ''}"
        route = None
    method, path = method.upper(), path.rstrip("/") or "/"
    request = Request(
        method=method,
        path=path,
        headers=_headers(event),
        query=_query(event),
        body=_body(event, max_body_bytes),
        claims=claims if isinstance(claims, Mapping) else None,
        route=route.rstrip("/") or "/" if route is not None else None,
        params=params,
    )
    return method, path, request
