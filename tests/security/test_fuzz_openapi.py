"""Schemathesis against the service's own OpenAPI document, with a valid token.

Bounded (a few examples per operation, no deadline) so it runs in every `make test`: no
response may be a 5xx, and every response must match the documented schema.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from nodecert.bootstrap import build_service
from nodecert.http.app import create_app

from ..conftest import ADMIN, make_settings

_HOME = Path(tempfile.mkdtemp(prefix="nodecert-fuzz-"))
_SERVICE = build_service(make_settings(_HOME, ownership="open"))
_SERVICE.administration.put_node(ADMIN, "n1", "fuzzer")
assert _SERVICE.dev_issuer is not None
_TOKEN = _SERVICE.dev_issuer.mint(
    "fuzzer", admin_group=_SERVICE.settings.admin_group, lifetime_s=24 * 3600
)
APP = create_app(_SERVICE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_5xx_and_responses_match_the_schema(case: schemathesis.Case) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {_TOKEN}"}
    # A schema-valid request may still be refused on its meaning (a CSR that does not
    # parse, a node the caller does not own, validityDays over the configured maximum),
    # so "positive data acceptance" does not apply; every other check does.
    excluded = [checks.positive_data_acceptance]
    response = case.call()
    if response.status_code == 413:
        # A body over the limit is refused before it is parsed: 413 is the right answer
        # even when the body is also schema-invalid, which schemathesis does not expect.
        assert len(response.request.body or b"") > _SERVICE.settings.max_body_bytes
        excluded.append(checks.negative_data_rejection)
    case.validate_response(response, excluded_checks=excluded)


@pytest.fixture(scope="module", autouse=True)
def _stop_pool() -> object:
    yield None
    _SERVICE.close()
