"""A reply's bytes: ``Reply.encoded`` writes what ``json.dumps(body, separators=(",", ":"))``
would, and ``send_reply`` sends what Starlette's ``Response`` would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
def test_a_string_seen_before_is_written_the_same_again(text: str) -> None:
    # The string cache must give the escaped form of that string, never of another.
    first = encode_json({"certificateChain": text, "n": [text, text[::-1]]})
    assert encode_json({"certificateChain": text, "n": [text, text[::-1]]}) == first
    assert json.loads(first) == {"certificateChain": text, "n": [text, text[::-1]]}


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
