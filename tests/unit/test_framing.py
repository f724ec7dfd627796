"""framing_refusal: the request-head checks `nodecert serve` adds to llhttp's, as a table.

The same checks over real sockets: tests/integration/test_serve_framing.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodecert.http.contract import MalformedRequestError, UnsupportedTransferCodingError, status_of
from nodecert.server.serve import framing_refusal

HOST = [(b"host", b"certs.example.com")]


@pytest.mark.parametrize(
    ("version", "headers", "refused"),
    [
        ("1.1", HOST, None),
        ("1.1", [*HOST, (b"transfer-encoding", b"chunked")], None),
        ("1.1", [*HOST, (b"transfer-encoding", b"Chunked ")], None),
        ("1.1", [*HOST, (b"transfer-encoding", b"gzip, chunked")], 501),
        ("1.1", [*HOST, (b"transfer-encoding", b"chunked, chunked")], 501),
        ("1.1", [*HOST, (b"transfer-encoding", b"gzip"), (b"transfer-encoding", b"chunked")], 501),
        ("1.1", [*HOST, (b"transfer-encoding", b"identity")], 501),
        ("1.1", [*HOST, (b"transfer-encoding", b"")], 501),
        ("1.0", [(b"transfer-encoding", b"chunked")], 400),
        ("1.0", [], None),
        ("1.1", [], 400),
        ("1.1", [*HOST, *HOST], 400),
        ("1.0", [*HOST, *HOST], 400),
        ("1.1", [(b"host", b"")], None),
        ("1.1", [(b"host", b"[::1]:8443")], None),
        ("1.1", [(b"host", b"127.0.0.1:80")], None),
        ("1.1", [(b"host", b"a/b")], 400),
        ("1.1", [(b"host", b"a b")], 400),
        ("1.1", [(b"host", b"user@host")], 400),
        ("1.1", [(b"host", b"host:port")], 400),
    ],
)
def test_framing_table(version, headers, refused):
    error = framing_refusal(version, headers)
    assert (None if error is None else status_of(error)) == refused


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    version=st.sampled_from(["1.0", "1.1"]),
    headers=st.lists(
        st.tuples(st.sampled_from([b"host", b"transfer-encoding", b"x"]), st.binary(max_size=30)),
        max_size=4,
    ),
)
def test_framing_refusal_is_total(version, headers):
    error = framing_refusal(version, headers)
    assert error is None or isinstance(
        error, MalformedRequestError | UnsupportedTransferCodingError
    )
    codings = [v for n, v in headers if n == b"transfer-encoding"]
    if codings and (version == "1.0" or [c.strip().lower() for c in codings] != [b"chunked"]):
        assert error is not None
