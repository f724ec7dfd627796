"""Lambda routing on what API Gateway matched (``resource``/``routeKey`` + ``pathParameters``).

The raw path is not a route: behind a custom domain it carries the API mapping's base path,
and an HTTP API stage named like a route segment (``v1``) cannot be told apart from it.
Each case below is a recorded event (tests/events/*.json) that routing on the raw path got
wrong.
"""

from __future__ import annotations

import json

import pytest

from tests.kit import api_event as event


def test_a_custom_domain_base_path_does_not_hide_the_route(app):
    assert app.handle(event("rest_put_node_admin.json"))["statusCode"] == 200
    raw = event("rest_custom_domain_base_path.json")
    assert raw["path"] == "/certs/v1/nodes/node-1"  # What event.path routing 404'd on.

    response = app.handle(raw)

    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["owner"] == "alice"


def test_the_path_parameter_is_the_one_api_gateway_matched(app):
    app.handle(event("rest_put_node_admin.json"))
    raw = event("rest_custom_domain_base_path.json")
    # The URL path names node-1, the matched parameter another node: the parameter wins.
    raw["pathParameters"] = {"nodeId": "node-404"}
    assert app.handle(raw)["statusCode"] == 404


@pytest.mark.parametrize("params", [None, {}, {"nodeId": ""}, {"nodeId": "a/b"}, {"x": "y"}])
def test_a_route_without_its_parameter_is_404(app, params):
    raw = event("rest_custom_domain_base_path.json", pathParameters=params)
    response = app.handle(raw)
    assert response["statusCode"] == 404
    assert response["headers"]["Content-Type"] == "application/problem+json"


def test_a_greedy_proxy_resource_routes_on_what_it_matched(app):
    app.handle(event("rest_put_node_admin.json"))
    response = app.handle(event("rest_proxy_custom_domain.json"))
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"])["nodeId"] == "node-1"


def test_a_greedy_proxy_resource_with_an_unknown_path_is_404(app):
    raw = event("rest_proxy_custom_domain.json", pathParameters={"proxy": "v2/nope"})
    assert app.handle(raw)["statusCode"] == 404


def test_an_http_api_stage_named_v1_does_not_strip_the_routes_own_v1(app):
    raw = event("http_api_stage_v1_custom_domain.json")
    assert raw["rawPath"] == "/v1/ca" and raw["requestContext"]["stage"] == "v1"

    response = app.handle(raw)

    assert response["statusCode"] == 200, response["body"]
    assert "BEGIN CERTIFICATE" in response["body"]


def test_the_default_route_strips_a_leading_stage_only_when_that_finds_a_route(app):
    through_execute_api = app.handle(event("http_api_default_route_stage_v1.json"))
    assert through_execute_api["statusCode"] == 200, through_execute_api["body"]
    through_domain = event("http_api_default_route_stage_v1.json", rawPath="/v1/ca")
    assert app.handle(through_domain)["statusCode"] == 200


def test_a_method_the_matched_route_lacks_is_405_with_its_methods(app):
    raw = event("rest_custom_domain_base_path.json", httpMethod="POST")
    response = app.handle(raw)
    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == "DELETE, GET, PUT"


def test_an_http_api_route_key_with_any_uses_the_request_method(app):
    raw = event("http_api_stage_v1_custom_domain.json", routeKey="ANY /v1/ca")
    assert app.handle(raw)["statusCode"] == 200


class LambdaContext:
    """The part of the Lambda context object the handler reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_the_request_budget_is_the_lambda_time_left_less_a_margin(monkeypatch, tmp_path):
    import time

    from nodecert.aws import handler as aws_lambda
    from nodecert.support import budget

    monkeypatch.setenv("NODECERT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NODECERT_KEY_POOL_SIZE", "0")
    aws_lambda.application.cache_clear()
    seen = []
    try:
        app = aws_lambda.application()
        real_ca = app.handlers.public.ca

        def ca():
            seen.append((budget.deadline(), time.monotonic()))
            return real_ca()

        monkeypatch.setattr(app.handlers.public, "ca", ca)
        response = aws_lambda.lambda_handler(event("rest_ca.json"), LambdaContext(20_000))
        assert response["statusCode"] == 200
        outside = aws_lambda.lambda_handler(event("rest_ca.json"), object())
        assert outside["statusCode"] == 200
    finally:
        aws_lambda.application.cache_clear()
    (at, now), (none, _) = seen
    assert 17.0 <= at - now <= 18.0  # 20 s left, 2 s kept back.
    assert none is None  # Not on Lambda (no context): no budget.
