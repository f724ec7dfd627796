"""Integration fixtures: a moto server on loopback (real HTTP, real botocore serialization)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def aws_env() -> Iterator[None]:
    """Dummy credentials and no profile, so nothing can ever reach a real account.

    Module-scoped (clients read credentials when they are made), so that the opt-in real
    AWS smoke test in its own module sees the real environment again.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        yield


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_client(aws_env: None, moto_endpoint: str) -> Callable[[str], Any]:
    """Make a boto3 client for ``service`` that talks to the moto server."""
    from nodecert.aws import make_client

    def make(service: Any) -> Any:
        return make_client(service, region=REGION, max_attempts=1, endpoint_url=moto_endpoint)

    return make


@pytest.fixture
def unique() -> str:
    """A short unique suffix, so tests sharing the moto server never share a table."""
    return uuid.uuid4().hex[:10]
