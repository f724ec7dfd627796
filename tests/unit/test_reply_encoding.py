"""A reply's bytes: ``Reply.encoded`` writes what ``json.dumps(body, separators=(",", ":"))``
would, and ``send_reply`` sends what Starlette's ``Response`` would."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodecert.core.keys import KeyType, generate_private_key, private_key_pem
from nodecert.core.values import CertificateRecord
from nodecert.http import contract
from nodecert.http.contract import Reply, encode_json, issued_reply
from nodecert.http.direct import render, send_reply
from nodecert.issuing.values import IssuedCertificate

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities too, as json.dumps writes them.
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_JSON)
def test_the_bytes_are_json_dumps_bytes(body: object) -> None:
    assert encode_json(body) == json.dumps(body, separators=(",", ":")).encode()


_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
)


@given(
    certificate=st.text(),
    chain=st.text(),
    key=st.none() | st.text(),
    renewed_from=st.none() | st.text(),
    ids=st.tuples(st.text(), st.text(), st.text(), st.text()),
    times=st.tuples(_TIMES, _TIMES),
)
def test_an_issued_reply_is_the_json_dumps_bytes_of_its_body(
    certificate: str,
    chain: str,
    key: str | None,
    renewed_from: str | None,
    ids: tuple[str, str, str, str],
    times: tuple[datetime, datetime],
) -> None:
    # issued_reply writes its bytes itself, the chain's escape made once per chain: they
    # must be the body's json.dumps, whatever the strings hold, and each call its own.
    serial, user, node, key_type = ids
    record = CertificateRecord(
        serial=serial,
        user_id=user,
        node_id=node,
        key_type=key_type,
        not_before=times[0],
        not_after=times[1],
        fingerprint_sha256="00",
        request_id="r",
        created_at=times[0],
        renewed_from=renewed_from,
    )
    reply = issued_reply(IssuedCertificate(record, certificate, chain, key))
    assert list(reply.body)[:2] == ["certificate", "certificateChain"]
    assert reply.encoded() == json.dumps(reply.body, separators=(",", ":")).encode()
    again = issued_reply(IssuedCertificate(record, certificate + "x", chain, None))
    assert again.encoded() == json.dumps(again.body, separators=(",", ":")).encode()


def test_only_the_chains_are_remembered_never_a_private_key() -> None:
    key = private_key_pem(generate_private_key(KeyType.EC_P256))  # Made here: none on disk.
    chain = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmg\n-----END CERTIFICATE-----\n"
    record = CertificateRecord(
        serial="0A",
        user_id="alice",
        node_id="n1",
        key_type="ec-p256",
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2026, 1, 2, tzinfo=UTC),
        fingerprint_sha256="00",
        request_id="r",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    issued_reply(IssuedCertificate(record, chain[::-1], chain, key))
    assert chain in contract._ESCAPED_CHAINS
    assert key not in contract._ESCAPED_CHAINS
    assert chain[::-1] not in contract._ESCAPED_CHAINS
    assert not any(json.dumps(key) in escaped for escaped in contract._ESCAPED_CHAINS.values())


def test_the_remembered_chains_stay_few() -> None:
    for n in range(100):
        contract._escaped_chain(f"chain {n}")
    assert len(contract._ESCAPED_CHAINS) <= contract._ESCAPED_MAX


def test_a_value_json_cannot_write_is_a_type_error_as_with_json_dumps() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        Reply(200, {"when": object()}).encoded()


_HEADER_NAMES = st.sampled_from(
    [
        "Cache-Control",
        "Location",
        "Retry-After",
        "X-Nodecert-Reason",
        "Content-Type",
        "content-length",
        "ETag",
        "Expires",
    ]
)
_REPLIES = st.builds(
    Reply,
    status=st.sampled_from([100, 200, 201, 204, 304, 400, 401, 404, 413, 429, 500, 503]),
    body=_JSON | st.binary(max_size=40) | st.text(max_size=40),
    headers=st.dictionaries(
        _HEADER_NAMES, st.text(st.characters(min_codepoint=32, max_codepoint=255)), max_size=3
    ),
    media_type=st.sampled_from(
        [
            "application/json",
            "application/problem+json",
            "text/plain",
            "text/plain; charset=ascii",
            "application/pkix-crl",
        ]
    ),
)


async def _messages(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        raise AssertionError("a reply reads nothing")

    await app({"type": "http"}, receive, send)
    return sent


@given(_REPLIES)
def test_send_reply_sends_what_the_starlette_response_sends(reply: Reply) -> None:
    # The direct route skips the Response object; its bytes must not change for that.
    framework = asyncio.run(_messages(render(reply)))
    direct = asyncio.run(_messages(lambda _s, _r, send: send_reply(reply, send)))
    assert direct == framework
