"""Fixtures of the functional tests of the Lambda adapter."""

import pytest

from nodecert.aws.handler import LambdaApp


@pytest.fixture
def app(env):
    """The Lambda adapter over the test service (client and node-side routes)."""
    return LambdaApp.for_service(env.service)
