import pytest

from nodecert.http.routes import Routes


@pytest.mark.parametrize(
    ("body", "rsa"),
    [
        (b'{"nodeId": "n1"}', True),  # RSA-2048 is the default.
        (b'{"nodeId": "n1", "keyType": "rsa-4096"}', True),
        (b'{"nodeId": "n1", "keyType": "ec-p256"}', False),
        (b'{"nodeId": "n1", "csr": "-----BEGIN"}', False),
        (b'{"nodeId": "n1", "keyType": "rsa-2048", "csr": "x"}', False),
        (b"not json", False),
        (b"[1]", False),
        (b'{"nodeId": "n1", "keyType": 5}', False),
    ],
)
def test_which_requests_need_the_thread_pool(body: bytes, rsa: bool) -> None:
    assert Routes.generates_rsa_key(body) is rsa
