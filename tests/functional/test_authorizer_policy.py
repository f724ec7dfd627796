"""The REST authorizer's Allow names exactly this request: checked with IAM's own matching.

API Gateway evaluates the returned policy against the request's method ARN with IAM's
resource matching: ``*`` is any run of characters, ``/`` included, and ``?`` is exactly one
character; nothing else is special. :func:`allows` implements that, and hypothesis
generates request paths (hostile characters included) and other requests: the policy must
allow this request's ARN and no ARN of another node, method or path.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.aws.authorizer import TargetSource, handle
from nodecert.aws.targets import METHODS, MethodARN, TargetError
from nodecert.testing import MemoryStore
from tests.kit import authority, decider, event, issue, new_ca

REST = "authorizer_rest_request.json"
HTTP = "authorizer_http_v2.json"
PATH = TargetSource("path:nodeId")
HOST = TargetSource("host")
API = "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod"
ALPHABET = r"[A-Za-z0-9._~:@!+,;=-]+"  # what docs/node-side.md promises, written out again


def _pattern(resource: str) -> re.Pattern[str]:
    # IAM: `*` any run (also across `/`), `?` one character, everything else literal.
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in resource)
    return re.compile("".join(parts), re.DOTALL)


def allows(policy: dict[str, Any], arn: str) -> bool:
    """IAM's evaluation of ``policy`` for ``execute-api:Invoke`` on ``arn``: Deny wins."""
    allowed = False
    for statement in policy["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        if not any(_pattern(a).fullmatch("execute-api:Invoke") for a in actions):
            continue
        if not any(_pattern(r).fullmatch(arn) for r in resources):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = allowed or statement["Effect"] == "Allow"
    return allowed


def test_the_evaluator_sees_what_a_wildcard_spans():
    # The policy this authorizer used to return; the evaluator must catch what it let in.
    old = {
        "Statement": [
            {
                "Action": "execute-api:Invoke",
                "Effect": "Allow",
                "Resource": [f"{API}/*/nodes/n1", f"{API}/*/nodes/n1/*"],
            }
        ]
    }
    assert allows(old, f"{API}/GET/nodes/n1/status")
    assert allows(old, f"{API}/GET/nodes/n9/x/nodes/n1")
    assert allows(old, f"{API}/DELETE/nodes/n9/x/nodes/n1/y")
    assert not allows(old, f"{API}/GET/nodes/n9/status")
    one = {"Statement": [{"Action": "*", "Effect": "Allow", "Resource": f"{API}/GET/n?"}]}
    assert allows(one, f"{API}/GET/n1") and allows(one, f"{API}/GET/n/")
    assert not allows(one, f"{API}/GET/n") and not allows(one, f"{API}/GET/n12")
    brackets = {"Statement": [{"Action": "*", "Effect": "Allow", "Resource": f"{API}/GET/[n]"}]}
    assert allows(brackets, f"{API}/GET/[n]") and not allows(brackets, f"{API}/GET/n")
    deny = {"Effect": "Deny", "Action": "execute-api:*", "Resource": f"{API}/GET/*"}
    assert not allows({"Statement": [*old["Statement"], deny]}, f"{API}/GET/nodes/n1")


@pytest.fixture(scope="module")
def world():
    store = MemoryStore()
    ca = new_ca()
    auth = authority(ca, store)
    alice = issue(auth, "alice", "n1")
    issue(auth, "bob", "n9")
    return alice, decider(ca, store)


def _rest(pem: str, method: str, path: list[str], *, resource: str, node: str) -> dict[str, Any]:
    data = event(REST, pem=pem, node=node)
    data["methodArn"] = f"{API}/{method}/" + "/".join(path)
    data["resource"] = resource
    data["path"] = "/" + "/".join(path)
    data["httpMethod"] = method
    return data


SAFE = st.text("abcnN19._~:@!+,;=-", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
HOSTILE = st.sampled_from(["*", "?", "n*", "n?", "%2F", "%2a", "..", ".", "", "ö", " ", "$", "{x}"])
SEGMENTS = st.lists(st.one_of(SAFE, SAFE, SAFE, HOSTILE, st.text(max_size=6)), max_size=5)
NODES = st.one_of(st.just("n1"), st.just("n9"), SAFE, HOSTILE)


@st.composite
def other_arns(draw: st.DrawFn, method: str, path: list[str]) -> str:
    """Another request: another method, another node, or a path that ends in this one."""
    kind = draw(st.sampled_from(["method", "node", "suffix", "any"]))
    if kind == "method":
        other = draw(st.sampled_from(sorted(METHODS | {"*", "ANY"})))
        return f"{API}/{other}/" + "/".join(path)
    if kind == "node":
        node = draw(NODES)
        rest = draw(SEGMENTS)
        return f"{API}/{method}/" + "/".join(["nodes", node, *rest])
    if kind == "suffix":
        # `…/*/nodes/n1` used to match this: another node's path that ends in ours.
        prefix = draw(st.lists(NODES, min_size=1, max_size=3))
        return f"{API}/{method}/" + "/".join(["nodes", "n9", *prefix, *path])
    return f"{API}/" + draw(st.text(max_size=40))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(sorted(METHODS | {"*", "ANY", "get", "G?T"})),
    node=NODES,
    rest=SEGMENTS,
    proxy=st.booleans(),
    data=st.data(),
)
def test_an_allow_names_this_request_and_nothing_else(world, method, node, rest, proxy, data):
    alice, decide = world
    path = ["nodes", node, *rest] if proxy or not rest else ["nodes", node]
    resource = "/nodes/{nodeId}/{proxy+}" if len(path) > 2 else "/nodes/{nodeId}"
    request = _rest(alice.pem, method, path, resource=resource, node=node)
    out = handle(request, decide, PATH)
    policy = out["policyDocument"]
    arn = request["methodArn"]
    trailing = len(path) > 2 and path[-1] == ""
    core = path[:-1] if trailing else path
    fits = len(core) == 2 if resource == "/nodes/{nodeId}" else len(core) >= 3
    strict = all(re.fullmatch(ALPHABET, s) and s not in (".", "..") for s in core)
    if node != "n1" or method not in METHODS or not strict or not fits:
        assert not allows(policy, arn)
        assert policy["Statement"][0]["Effect"] == "Deny"
        return
    assert out["principalId"] == "alice", out["context"]
    assert allows(policy, arn)
    for resource in policy["Statement"][0]["Resource"]:
        assert "*" not in resource and "?" not in resource
    # Anything else a cached or reused policy could be applied to is denied.
    for _ in range(5):
        other = data.draw(other_arns(method, path))
        assert allows(policy, other) == (other == arn), other


@pytest.mark.parametrize(
    ("arn_path", "resource", "parameter"),
    [
        ("nodes/n9/status", "/nodes/{nodeId}/status", "n1"),  # the ARN names another node
        ("nodes/n1/status", "/nodes/{nodeId}", "n1"),  # the path does not fit the route
        ("nodes/n1/status", "/other/{nodeId}/status", "n1"),
        ("nodes/n1", "/nodes/{proxy+}", "n1"),  # the route has no node parameter
        ("nodes/n1", None, "n1"),
        ("nodes/n1//status", "/nodes/{nodeId}/{proxy+}", "n1"),
        ("nodes/n1/%2e%2e/n9", "/nodes/{nodeId}/{proxy+}", "n1"),
    ],
)
def test_a_path_target_the_event_disagrees_about_is_denied(world, arn_path, resource, parameter):
    alice, decide = world
    request = event(REST, pem=alice.pem, node=parameter)
    request["methodArn"] = f"{API}/GET/{arn_path}"
    request["resource"] = resource
    out = handle(request, decide, PATH)
    assert out["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert out["context"]["reason"] == "invalid_target"


def _host_event(name: str, pem: str, **changes: Any) -> dict[str, Any]:
    data = event(name, pem=pem, node="n1")
    data.update(changes)
    return data


def _allowed(out: dict[str, Any]) -> bool:
    if "isAuthorized" in out:
        return bool(out["isAuthorized"])
    return out["policyDocument"]["Statement"][0]["Effect"] == "Allow"


N1 = "n1.nodes.example.com"
N9 = "n9.nodes.example.com"


@pytest.mark.parametrize(
    "changes",
    [
        {"headers": {"Host": N1}, "multiValueHeaders": {"Host": [N1, N9]}},
        {"headers": {"Host": N1}, "multiValueHeaders": {"Host": [N1, N1]}},
        {"headers": {"Host": N1}, "multiValueHeaders": {"host": [N9]}},
        {"headers": {"Host": N1, "host": N9}, "multiValueHeaders": {}},
        {"headers": {"Host": f"{N1},{N9}"}, "multiValueHeaders": {}},
        {"headers": {"Host": f"{N1}, {N1}"}, "multiValueHeaders": {}},
        {"headers": {"Host": N9}, "multiValueHeaders": {}},  # the path names n1
        {"headers": {"Host": N1}, "multiValueHeaders": {"Host": N1}},
        {"headers": {"Host": ["n1"]}, "multiValueHeaders": {}},
        {"headers": {"Host": "n1*.nodes.example.com"}, "multiValueHeaders": {}},
        {"headers": {}, "multiValueHeaders": {}, "requestContext": {}},
    ],
)
def test_an_ambiguous_host_is_denied(world, changes):
    alice, decide = world
    rest = _host_event(REST, alice.pem, **changes)
    assert _allowed(handle(rest, decide, HOST)) is False
    v2 = _host_event(HTTP, alice.pem, headers=changes["headers"])
    if "multiValueHeaders" in changes and any(changes["multiValueHeaders"].values()):
        v2 = _host_event(HTTP, alice.pem, headers={"host": f"{N1},{N9}"})
    if "requestContext" in changes:
        v2["requestContext"].pop("domainName")
    assert _allowed(handle(v2, decide, HOST)) is False


def test_one_host_that_agrees_with_the_path_is_allowed_exactly(world):
    alice, decide = world
    rest = _host_event(REST, alice.pem, headers={"Host": N1}, multiValueHeaders={"Host": [N1]})
    out = handle(rest, decide, HOST)
    assert out["policyDocument"]["Statement"][0]["Resource"] == [rest["methodArn"]]
    assert out["context"]["nodeId"] == "n1"
    rest["pathParameters"] = {}  # A route without {nodeId}: the Host alone names the node.
    rest["resource"] = "/status"
    rest["methodArn"] = f"{API}/GET/status"
    assert handle(rest, decide, HOST)["policyDocument"]["Statement"][0]["Resource"] == [
        f"{API}/GET/status"
    ]
    v2 = _host_event(HTTP, alice.pem, headers={"host": f"{N1}:443"})
    assert handle(v2, decide, HOST)["isAuthorized"] is True


HOST_VALUES = st.one_of(st.just(N1), st.just(N9), st.text(max_size=30), st.integers())


@settings(max_examples=200, deadline=None)
@given(
    headers=st.dictionaries(st.sampled_from(["Host", "host", "HOST"]), HOST_VALUES, max_size=3),
    multi=st.dictionaries(
        st.sampled_from(["Host", "host"]),
        st.one_of(st.lists(HOST_VALUES, max_size=3), HOST_VALUES),
        max_size=2,
    ),
)
def test_the_host_target_allows_only_one_host_naming_the_node(world, headers, multi):
    alice, decide = world
    request = _host_event(REST, alice.pem, headers=headers, multiValueHeaders=multi)
    out = handle(request, decide, HOST)
    values = list(headers.values())
    for listed in multi.values():
        values += listed if isinstance(listed, list) else [listed]
    one_value_each = all(isinstance(v, list) and len(v) == 1 for v in multi.values())
    # No Host at all: the recording's requestContext.domainName names "nodes", not n1.
    assert _allowed(out) == (bool(values) and set(values) == {N1} and one_value_each)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_method_arn_parsing_is_total_and_round_trips(text):
    for value in (text, f"{API}/GET/{text}", f"{API}/{text}"):
        try:
            arn = MethodARN.parse(value)
        except TargetError:
            continue
        assert str(arn) == value
        assert "*" not in value and "?" not in value and "%" not in value


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@settings(max_examples=300, deadline=None)
@given(
    shape=st.sampled_from([REST, HTTP]),
    target=st.sampled_from([PATH, HOST]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "methodArn",
                "resource",
                "headers",
                "multiValueHeaders",
                "pathParameters",
                "requestContext",
                "routeArn",
            ]
        ),
        JSON,
    ),
)
def test_any_event_field_of_any_type_is_parsed_never_raised(world, shape, target, fields):
    # Fail-closed catches exceptions, but an exception there is a bug: every field is parsed
    # by a total function, so the catch-all (which logs "while deciding") never runs.
    alice, decide = world
    request = {**event(shape, pem=alice.pem, node="n1"), **fields}
    records = _Records()
    logger = logging.getLogger("nodecert")
    logger.addHandler(records)
    try:
        out = handle(request, decide, target)
    finally:
        logger.removeHandler(records)
    assert not [m for m in records.messages if "while deciding" in m]
    if _allowed(out) and "policyDocument" in out:
        (resource,) = out["policyDocument"]["Statement"][0]["Resource"]
        assert "*" not in resource and "?" not in resource
