"""A reply's bytes: ``Reply.encoded`` writes what ``json.dumps(body, separators=(",", ":"))``
would, and ``send_reply`` sends what Starlette's ``Response`` would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodecert.http import contract
from nodecert.http.contract import Reply, encode_json
from nodecert.http.direct import render, send_reply

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


@given(st.text(min_size=1, max_size=64))
def test_a_remembered_string_is_written_as_json_dumps_writes_it(text: str) -> None:
    # issued_reply remembers the CA chain escaped: it must be that string's escape, and
    # never stand in for another string.
    contract._remember_escaped(text)
    body = {"certificateChain": text, "n": [text, text[::-1], text + "x"]}
    assert encode_json(body) == json.dumps(body, separators=(",", ":")).encode()


def test_only_the_chains_are_remembered_never_a_private_key() -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n"
    chain = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmg\n-----END CERTIFICATE-----\n"
    contract._remember_escaped(chain)
    encode_json({"certificateChain": chain, "privateKey": key, "certificate": chain[::-1]})
    assert chain in contract._ESCAPED
    assert key not in contract._ESCAPED
    assert chain[::-1] not in contract._ESCAPED


def test_the_remembered_strings_stay_few() -> None:
    for n in range(100):
        contract._remember_escaped(f"chain {n}")
    assert len(contract._ESCAPED) <= contract._ESCAPED_MAX


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
