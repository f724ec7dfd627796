"""``Reply.encoded`` writes the bytes ``json.dumps(body, separators=(",", ":"))`` would."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodecert.http.contract import Reply, encode_json

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
