"""Fakes that users (and nodecert's own tests) test their integration with.

``MockTransport`` lets :class:`nodecert.client.Client` run without a server, as httpx
ships its ``MockTransport``; ``MemoryStore`` implements every store port in memory.
"""

from nodecert.testing.client import (
    MockTransport,
    UnreachableTransport,
    json_response,
    problem_response,
)
from nodecert.testing.stores import MemoryStore

__all__ = [
    "MemoryStore",
    "MockTransport",
    "UnreachableTransport",
    "json_response",
    "problem_response",
]
