"""Fakes that users (and nodecert's own tests) test their integration with.

``MockTransport`` lets :class:`nodecert.client.Client` run without a server, as httpx
ships its ``MockTransport``.
"""

from nodecert.testing.client import (
    MockTransport,
    UnreachableTransport,
    json_response,
    problem_response,
)

__all__ = ["MockTransport", "UnreachableTransport", "json_response", "problem_response"]
