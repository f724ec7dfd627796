import threading
import time

from cryptography.hazmat.primitives.asymmetric import ec

from nodecert.core.keys import KeyType, PrivateKey
from nodecert.issuing.keypool import KeyPool


class CountingGenerator:
    """A cheap generator that counts calls and hands out distinct EC keys."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, key_type: KeyType) -> PrivateKey:
        with self.lock:
            self.calls += 1
        return ec.generate_private_key(ec.SECP256R1())


def _wait_until(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_pool_fills_after_first_use_and_hands_each_key_out_once() -> None:
    generate = CountingGenerator()
    pool = KeyPool({KeyType.RSA_2048: 3}, generate=generate)
    try:
        assert pool.ready(KeyType.RSA_2048) == 0  # Nothing before first use.
        first = pool(KeyType.RSA_2048)
        assert pool.misses == 1
        _wait_until(lambda: pool.ready(KeyType.RSA_2048) == 3)
        keys = [pool(KeyType.RSA_2048) for _ in range(3)]
        assert pool.hits == 3
        numbers = {k.private_numbers().private_value for k in [first, *keys]}  # type: ignore[union-attr]
        assert len(numbers) == 4
        _wait_until(lambda: pool.ready(KeyType.RSA_2048) == 3)
        assert generate.calls == 7  # 1 inline + 3 + 3 refills, never more than the bound.
    finally:
        pool.close()
    assert pool.ready(KeyType.RSA_2048) == 0


def test_types_without_a_pool_are_generated_inline() -> None:
    generate = CountingGenerator()
    pool = KeyPool({KeyType.RSA_2048: 0}, generate=generate)
    pool(KeyType.EC_P256)
    pool(KeyType.RSA_2048)
    assert generate.calls == 2
    assert pool.hits == pool.misses == 0
    pool.close()
