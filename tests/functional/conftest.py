"""Fixtures of the functional tests of the Lambda adapter."""

import pytest

from nodecert.aws.handler import LambdaApp
from tests.kit import RECORDED_CLIENT_ID


@pytest.fixture
def app(env):
    """The Lambda adapter over the test service (client and node-side routes).

    The service uses the dev issuer (no ``NODECERT_OIDC_AUDIENCE``), so the app client of
    the recorded events' authorizer claims is given here.
    """
    app = LambdaApp.for_service(env.service)
    app.client_ids = frozenset({RECORDED_CLIENT_ID})
    return app
