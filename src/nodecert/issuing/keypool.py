"""A bounded pool of pre-generated private keys, filled in the background.

RSA key generation costs tens of milliseconds (RSA-2048) to seconds (RSA-4096) with a long
tail, because it searches for primes. Generating keys ahead of demand takes that cost off
the request path. pyca ``cryptography`` releases the GIL during key generation, so the
filler thread uses a core of its own while requests are served.

Keys live only in this process's memory: they are never written anywhere, and a key is
handed out exactly once (``queue.get`` removes it).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Mapping

from nodecert.core.keys import KeyType, PrivateKey, generate_private_key

__all__ = ["KeyPool"]


class KeyPool:
    """Hands out fresh keys, from the pool when one is ready, generated inline otherwise.

    A key type's pool starts filling on its first use, so a service that never issues
    RSA-4096 never spends CPU on it.

    Args:
        sizes: How many keys to keep ready per key type; types not named are generated
            inline on every request.
        generate: The key generator (injected in tests).
    """

    def __init__(
        self,
        sizes: Mapping[KeyType, int],
        *,
        generate: Callable[[KeyType], PrivateKey] = generate_private_key,
    ) -> None:
        self._generate = generate
        self._queues: dict[KeyType, queue.Queue[PrivateKey]] = {
            key_type: queue.Queue(maxsize=size) for key_type, size in sizes.items() if size > 0
        }
        self._active: set[KeyType] = set()
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.hits = 0
        self.misses = 0

    def __call__(self, key_type: KeyType) -> PrivateKey:
        """A fresh private key of ``key_type`` that nobody else has been given."""
        pool = self._queues.get(key_type)
        if pool is None:
            return self._generate(key_type)
        try:
            key = pool.get_nowait()
            self.hits += 1
        except queue.Empty:
            self.misses += 1
            key = self._generate(key_type)
        with self._wake:
            self._active.add(key_type)
            self._wake.notify()
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._fill, name="nodecert-keypool", daemon=True
                )
                self._thread.start()
        return key

    def ready(self, key_type: KeyType) -> int:
        """How many keys of ``key_type`` are waiting."""
        pool = self._queues.get(key_type)
        return 0 if pool is None else pool.qsize()

    def drain(self) -> int:
        """Drop every pooled key (the pool refills on the next use); return how many.

        For a process that is about to be copied (a Lambda SnapStart snapshot): a key in
        the copy would be handed out by every restored copy, so it must not be there.
        """
        dropped = 0
        for pool in self._queues.values():
            while True:
                try:
                    pool.get_nowait()
                except queue.Empty:
                    break
                dropped += 1
        return dropped

    def close(self) -> None:
        """Stop the filler thread and drop every pooled key."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for pool in self._queues.values():
            while not pool.empty():
                pool.get_nowait()

    def _fill(self) -> None:
        while True:
            with self._wake:
                wanted = [kt for kt in self._active if not self._queues[kt].full()]
                while not wanted and not self._closed:
                    self._wake.wait()
                    wanted = [kt for kt in self._active if not self._queues[kt].full()]
                if self._closed:
                    return
            for key_type in wanted:
                with contextlib.suppress(queue.Full):
                    self._queues[key_type].put_nowait(self._generate(key_type))
