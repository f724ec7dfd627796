"""Which ``POST /generate-cert`` requests the fast path sends to the thread pool."""

import pytest

from nodecert.core.values import Principal
from nodecert.http.routes import Issuance, Routes


@pytest.mark.parametrize(
    ("body", "rsa"),
    [
        (b'{"nodeId": "n1"}', True),  # RSA-2048 is the default.
        (b'{"nodeId": "n1", "keyType": "rsa-4096"}', True),
        (b'{"nodeId": "n1", "keyType": "ec-p256"}', False),
        (b'{"nodeId": "n1", "csr": "-----BEGIN"}', False),
        (b'{"nodeId": "n1", "keyType": "rsa-2048", "csr": "x"}', False),
        # Refused by the authority before any key is made: never worth the pool.
        (b'{"nodeId": "n1", "keyType": 5}', False),
    ],
)
def test_which_requests_need_the_thread_pool(body: bytes, rsa: bool) -> None:
    alice = Principal("alice")
    request = Routes.issue_request(alice, body, idempotency_key="k1")
    issuance = Issuance(authority=None, principal=alice, request=request)  # type: ignore[arg-type]
    assert issuance.makes_rsa_key is rsa
