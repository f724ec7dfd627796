"""Total parsers for a compact JWS: its JOSE header and its claims, before PyJWT sees them.

A token comes from whoever can reach the service, so its header and claims are parsed
here into typed values, or refused with an :class:`AuthenticationError` that says which
member is wrong; nothing else ever escapes (no ``TypeError`` from an ``alg`` that is a list,
no ``OverflowError`` from an ``exp`` too large for a float, no ``RecursionError`` from deep
nesting). Only then does PyJWT verify the signature (:mod:`nodecert.core.tokens`).

The JSON is read strictly: UTF-8 only, no ``NaN``/``Infinity`` (RFC 8259 section 6), and a
member given twice is refused (RFC 7515 section 5.2 step 4 and RFC 7519 section 4: a
parser must reject it or keep the last, and a gateway in front may keep the first).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nodecert.core.errors import AuthenticationError

__all__ = [
    "MAX_NUMERIC_DATE",
    "Claims",
    "JOSEHeader",
    "claims_from_mapping",
    "numeric_date",
    "parse_claims",
    "parse_header",
    "split_token",
]

#: 9999-12-31T23:59:59Z: the last second a ``datetime`` (and an X.509 GeneralizedTime) holds.
MAX_NUMERIC_DATE = 253_402_300_799
_MALFORMED = "not a well-formed JWT"
_HEADER = f"{_MALFORMED}: header"
_MAX_HEADER_STRING = 256
_MAX_CLAIM_STRING = 1024
_MAX_LIST = 100
_MAX_X5C = 10
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class JOSEHeader:
    """The members of a JOSE header (RFC 7515 section 4.1) that nodecert reads.

    Attributes:
        alg: The signature algorithm, as written, if any (the caller decides which it
            accepts).
        kid: The key id, if any.
        typ: The media type, if any.
        x5c: The certificate chain, base64 DER strings, leaf first (empty if absent).
    """

    alg: str | None = None
    kid: str | None = None
    typ: str | None = None
    x5c: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Claims:
    """The registered and Cognito claims nodecert reads, typed; every claim in ``raw``.

    Times are NumericDates (RFC 7519 section 2): finite, from 0 to :data:`MAX_NUMERIC_DATE`.

    Attributes:
        raw: Every claim as parsed (for the ``claims`` ownership policy and the Principal).
    """

    iss: str | None = None
    sub: str | None = None
    aud: tuple[str, ...] = ()
    exp: int | float | None = None
    nbf: int | float | None = None
    iat: int | float | None = None
    jti: str | None = None
    token_use: str | None = None
    client_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


def split_token(token: str, *, what: str) -> tuple[str, str, str]:
    """The three base64url segments of a compact JWS.

    Raises:
        AuthenticationError: not three segments of the base64url alphabet.
    """
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise AuthenticationError(f"{what}: {_MALFORMED} (three base64url segments)")
    return parts[0], parts[1], parts[2]


def parse_header(token: str, *, what: str) -> JOSEHeader:
    """The JOSE header of ``token``, typed, before anything about the token is trusted.

    Raises:
        AuthenticationError: the token or its header is malformed, naming the member.
    """
    segment = split_token(token, what=what)[0]
    data = _json_object(segment, what=what, part="header")
    if "crit" in data:
        # RFC 7515 section 4.1.11: extensions we do not understand must be refused.
        raise AuthenticationError(f"{what}: {_HEADER} 'crit' names extensions not supported")
    if "b64" in data:
        # RFC 7797 unencoded payloads exist only with 'crit'; never sign over raw bytes.
        raise AuthenticationError(f"{what}: {_HEADER} 'b64' is not supported")
    return JOSEHeader(
        alg=_string(data, "alg", what=what, part=_HEADER, limit=_MAX_HEADER_STRING),
        kid=_string(data, "kid", what=what, part=_HEADER, limit=_MAX_HEADER_STRING),
        typ=_string(data, "typ", what=what, part=_HEADER, limit=_MAX_HEADER_STRING),
        x5c=_x5c(data.get("x5c"), what=what),
    )


def parse_claims(token: str, *, what: str) -> Claims:
    """The claims of ``token``, typed (the signature is not checked here).

    Raises:
        AuthenticationError: the payload is not a JSON object, or a claim nodecert reads
            has the wrong type, size or range, naming the claim.
    """
    segment = split_token(token, what=what)[1]
    return claims_from_mapping(_json_object(segment, what=what, part="claims"), what=what)


def claims_from_mapping(data: Mapping[str, Any], *, what: str, times: bool = True) -> Claims:
    """Typed :class:`Claims` from claims already decoded (a token's, or API Gateway's).

    Args:
        data: The claims.
        what: Names the token in error messages.
        times: Whether to read ``exp``/``nbf``/``iat``; API Gateway hands them over as
            text in formats of its own, after checking them itself.

    Raises:
        AuthenticationError: a claim nodecert reads has the wrong type, size or range.
    """
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise AuthenticationError(f"{what}: claims must be a JSON object")
    text = {
        name: _string(data, name, what=what, part="claim", limit=_MAX_CLAIM_STRING)
        for name in ("iss", "sub", "jti", "token_use", "client_id")
    }
    dates: dict[str, int | float | None] = {}
    if times:
        dates = {n: numeric_date(data.get(n), name=n, what=what) for n in ("exp", "nbf", "iat")}
    return Claims(
        iss=text["iss"],
        sub=text["sub"],
        aud=_audiences(data.get("aud"), what=what),
        exp=dates.get("exp"),
        nbf=dates.get("nbf"),
        iat=dates.get("iat"),
        jti=text["jti"],
        token_use=text["token_use"],
        client_id=text["client_id"],
        raw=dict(data),
    )


def numeric_date(value: object, *, name: str, what: str) -> int | float | None:
    """A NumericDate claim (RFC 7519 section 2): None if absent.

    Raises:
        AuthenticationError: not a finite JSON number from 0 to :data:`MAX_NUMERIC_DATE`
            (a boolean, a string, NaN, or an integer too large for a float included).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError(f"{what}: '{name}' must be a number (a NumericDate)")
    # Compared before any float conversion: an int of a thousand digits has none.
    if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= MAX_NUMERIC_DATE:
        raise AuthenticationError(f"{what}: '{name}' is out of range (0 to {MAX_NUMERIC_DATE})")
    return value


def _json_object(segment: str, *, what: str, part: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        text = raw.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except _DuplicateMemberError as exc:
        raise AuthenticationError(
            f"{what}: {_MALFORMED}: {part} member {str(exc)[:40]!r} given twice"
        ) from None
    except _ConstantError as exc:
        raise AuthenticationError(f"{what}: {_MALFORMED}: {part} hold {exc}, not JSON") from None
    except (binascii.Error, ValueError, RecursionError) as exc:
        # ValueError covers bad base64, bad UTF-8, bad JSON and over-long integers.
        raise AuthenticationError(f"{what}: {_MALFORMED}: {part} is not base64url JSON") from exc
    if not isinstance(data, dict):
        raise AuthenticationError(f"{what}: {_MALFORMED}: {part} must be a JSON object")
    return data


class _DuplicateMemberError(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateMemberError(key)
        data[key] = value
    return data


class _ConstantError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity (RFC 8259 section 6); Python's parser accepts them.
    raise _ConstantError(name)


def _string(data: Mapping[str, Any], name: str, *, what: str, part: str, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise AuthenticationError(f"{what}: {part} '{name}' must be a string")
    if len(value) > limit:
        raise AuthenticationError(f"{what}: {part} '{name}' is longer than {limit} characters")
    if not _is_unicode(value):
        raise AuthenticationError(f"{what}: {part} '{name}' is not valid Unicode")
    return value


def _is_unicode(value: str) -> bool:
    # JSON can spell a lone surrogate ("\ud800"); no UTF-8 encoder (a database driver, a
    # log handler writing a file) takes it.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _x5c(value: object, *, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= _MAX_X5C
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise AuthenticationError(
            f"{what}: {_HEADER} 'x5c' must be a list of 1 to {_MAX_X5C} base64 certificates"
        )
    return tuple(value)


def _audiences(value: object, *, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > _MAX_LIST
        or not all(
            isinstance(v, str) and len(v) <= _MAX_CLAIM_STRING and _is_unicode(v) for v in value
        )
    ):
        raise AuthenticationError(f"{what}: 'aud' must be a string or a list of strings")
    return tuple(value)
