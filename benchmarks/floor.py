"""The in-process keygen floor: how fast this machine makes RSA keys with no server at all.

A server that generates an RSA key per request cannot answer faster than the machine makes
keys, so ``processes`` processes (one per core) generate RSA keys with pyca/cryptography
for a fixed time and their rates are summed. A server-keygen figure is then read as a
share of this floor.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

__all__ = ["FloorResult", "rsa_keygen_floor"]


@dataclass(frozen=True)
class FloorResult:
    """Keys per second summed over the processes, and what they were made of."""

    bits: int
    processes: int
    seconds: float
    keys: int
    keys_per_s: float
    cpu_share: float = 0.0
    """CPU time of the processes over their wall time (1.0: each had a core to itself)."""
    median_ms: float = 0.0
    """Median time to make one key, over every key of every process."""


def _generate_for(seconds: float, bits: int) -> tuple[int, float, float, list[float]]:
    """Generate RSA keys for about ``seconds``.

    Returns:
        (keys, wall seconds, CPU seconds, each key's time in milliseconds).
    """
    from cryptography.hazmat.primitives.asymmetric import rsa

    cpu = time.process_time()
    began = time.perf_counter()
    deadline = began + seconds
    times: list[float] = []
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        rsa.generate_private_key(public_exponent=65537, key_size=bits)
        times.append((time.perf_counter() - start) * 1000.0)
    return len(times), time.perf_counter() - began, time.process_time() - cpu, times


def rsa_keygen_floor(*, seconds: float, processes: int = 2, bits: int = 2048) -> FloorResult:
    """Run :func:`_generate_for` in ``processes`` fresh processes at once and sum the rates."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        # Start every process (and import cryptography) before the timed part.
        list(pool.map(_generate_for, [0.0] * processes, [bits] * processes))
        runs = list(pool.map(_generate_for, [seconds] * processes, [bits] * processes))
    keys = sum(k for k, _, _, _ in runs)
    rate = sum(k / s for k, s, _, _ in runs if s > 0)
    share = sum(c for _, _, c, _ in runs) / max(sum(s for _, s, _, _ in runs), 1e-9)
    times = [t for _, _, _, each in runs for t in each]
    median = statistics.median(times) if times else 0.0
    return FloorResult(
        bits, processes, seconds, keys, round(rate, 2), round(share, 3), round(median, 2)
    )
