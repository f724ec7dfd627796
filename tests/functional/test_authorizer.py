"""The API Gateway authorizer fed recorded events, over a real store.

The store fixture is parametrized; the DynamoDB store arrives on the ``aws`` branch and
joins the parameters there (see docs/node-side.md).
"""

import pytest

from nodecert.aws import authorizer
from nodecert.aws.authorizer import TargetSource, handle
from nodecert.core.errors import ConfigurationError
from nodecert.core.values import RevocationReason
from nodecert.store.sqlite.store import SQLiteStore
from nodecert.testing import MemoryStore
from tests.kit import ADMIN, admin_of, authority, decider, event, issue, new_ca, sign

REST = "authorizer_rest_request.json"
HTTP = "authorizer_http_v2.json"
PATH = TargetSource("path:nodeId")


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path):
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "nodecert.db")
        yield store
        store.close()
    else:
        yield MemoryStore()


@pytest.fixture
def ca(tmp_path):
    return new_ca(tmp_path / "ca")


@pytest.fixture
def auth(ca, store):
    return authority(ca, store)


def test_rest_allow_names_exactly_this_request_and_carries_the_identity(ca, store, auth):
    # No wildcard: `*` spans `/` in IAM matching (test_authorizer_policy.py).
    cert = issue(auth, "alice", "n1")
    out = handle(event(REST, pem=cert.pem), decider(ca, store), PATH)
    statement = out["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == [
        "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod/GET/nodes/n1/status",
    ]
    assert out["principalId"] == "alice"
    assert out["context"] == {"userId": "alice", "nodeId": "n1", "serial": cert.serial}


def test_the_identity_comes_from_the_pem_not_from_subject_dn(ca, store, auth):
    # The recorded event's subjectDN names "mallory"; the PEM is what counts.
    cert = issue(auth, "alice", "n1")
    out = handle(event(REST, pem=cert.pem), decider(ca, store), PATH)
    assert out["context"]["userId"] == "alice"


def test_http_api_simple_response(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    out = handle(event(HTTP, pem=cert.pem), decider(ca, store), PATH)
    assert out == {
        "isAuthorized": True,
        "context": {"userId": "alice", "nodeId": "n1", "serial": cert.serial},
    }


def test_host_target(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    decide = decider(ca, store)
    assert handle(event(HTTP, pem=cert.pem), decide, TargetSource("host"))["isAuthorized"]
    out = handle(event(REST, pem=cert.pem), decide, TargetSource("host"))
    # REST event's Host is nodes.example.com: not this node.
    assert out["policyDocument"]["Statement"][0]["Effect"] == "Deny"


def _deny_reason(out):
    if "isAuthorized" in out:
        assert out["isAuthorized"] is False
    else:
        assert out["policyDocument"]["Statement"][0]["Effect"] == "Deny"
        assert out["principalId"] == "anonymous"
    return out["context"]["reason"]


@pytest.mark.parametrize("name", [REST, HTTP])
def test_every_deny_reason(tmp_path, ca, store, auth, name):
    decide = decider(ca, store)
    cert = issue(auth, "alice", "n1")
    admin_of(auth).put_node(ADMIN, "n2", "alice")
    assert _deny_reason(handle(event(name, pem=cert.pem, node="n2"), decide, PATH)) == (
        "wrong_node"
    )
    foreign = sign(new_ca(tmp_path / "foreign"), "alice", "n1")
    assert _deny_reason(handle(event(name, pem=foreign.pem), decide, PATH)) == ("untrusted_issuer")
    late = decider(
        ca,
        store,
        clock=lambda: cert.certificate.not_valid_after_utc.replace(
            year=cert.certificate.not_valid_after_utc.year + 1
        ),
    )
    assert _deny_reason(handle(event(name, pem=cert.pem), late, PATH)) == "expired"
    other = issue(auth, "alice", "n1")
    admin_of(auth).revoke(ADMIN, other.serial, RevocationReason.KEY_COMPROMISE)
    assert _deny_reason(handle(event(name, pem=other.pem), decide, PATH)) == "revoked"
    assert handle(event(name, pem=cert.pem), decide, PATH)["context"]["userId"] == "alice"
    store.put_node("n1", "bob", at=cert.certificate.not_valid_before_utc)  # No sweep.
    assert _deny_reason(handle(event(name, pem=cert.pem), decide, PATH)) == "node_not_owned"


@pytest.mark.parametrize("name", [REST, HTTP])
def test_missing_certificate_or_target_is_denied(ca, store, auth, name):
    cert = issue(auth, "alice", "n1")
    no_cert = event(name, pem="")
    assert _deny_reason(handle(no_cert, decider(ca, store), PATH)) == "no_certificate"
    no_target = event(name, pem=cert.pem)
    no_target["pathParameters"] = {}
    assert _deny_reason(handle(no_target, decider(ca, store), PATH)) == "invalid_target"


@pytest.mark.parametrize("garbage", [{}, {"requestContext": "x"}, {"version": "2.0"}])
def test_garbage_events_are_denied_not_raised(ca, store, garbage):
    out = handle(garbage, decider(ca, store), PATH)
    assert out.get("isAuthorized") is False or (
        out["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    )


def test_store_unreachable_fails_closed(ca, store, auth):
    cert = issue(auth, "alice", "n1")
    if isinstance(store, SQLiteStore):
        # The file is gone and something that is not a database stands in its place: the
        # next connection cannot open it, as with a lost disk or a bad mount.
        store.close()
        for name in (store.path.name, store.path.name + "-wal", store.path.name + "-shm"):
            gone = store.path.with_name(name)
            if gone.exists():
                gone.rename(gone.with_name(name + ".moved"))
        store.path.mkdir()
    else:
        store.down = True
    assert _deny_reason(handle(event(REST, pem=cert.pem), decider(ca, store), PATH)) == (
        "store_unavailable"
    )


def test_lambda_handler_wires_itself_from_the_environment(tmp_path, monkeypatch):
    from nodecert.bootstrap import build_service
    from nodecert.core.config import Settings

    service = build_service(Settings(home=tmp_path))
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path))
    monkeypatch.setattr(authorizer, "_wired", None)
    out = authorizer.lambda_handler(event(HTTP, pem=cert.pem), None)
    assert out["isAuthorized"] is True
    monkeypatch.setattr(authorizer, "_wired", None)
    monkeypatch.setenv("NODECERT_STORE", "bogus")
    # A function that cannot start fails every invocation (API Gateway: 500, never Allow).
    with pytest.raises(ConfigurationError, match="NODECERT_STORE"):
        authorizer.lambda_handler(event(HTTP, pem=cert.pem), None)


def test_an_authorizer_without_a_ca_refuses_to_start_and_creates_none(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(authorizer, "_wired", None)
    with pytest.raises(ConfigurationError) as raised:
        authorizer.lambda_handler(event(REST, pem="x"), None)
    message = str(raised.value)
    assert "NODECERT_CA_BUNDLE" in message and "NODECERT_ACMPCA_CA_ARN" in message
    assert message in caplog.text  # in the function's log, for the operator
    assert not (tmp_path / "home" / "ca").exists()
    # Still refused on the next invocation: the failure is not cached as a decider.
    with pytest.raises(ConfigurationError):
        authorizer.lambda_handler(event(REST, pem="x"), None)
    assert authorizer._wired is None


def test_an_authorizer_with_a_bad_target_refuses_to_start(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle.pem"
    from nodecert.bootstrap import build_service
    from nodecert.core.config import Settings

    bundle.write_text(build_service(Settings(home=tmp_path)).authority.ca_chain_pem())
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path))
    monkeypatch.setenv("NODECERT_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("NODECERT_AUTHORIZER_TARGET", "header")
    monkeypatch.setattr(authorizer, "_wired", None)
    with pytest.raises(ConfigurationError, match="NODECERT_AUTHORIZER_TARGET"):
        authorizer.lambda_handler(event(REST, pem="x"), None)


def test_an_authorizer_with_a_bundle_and_retired_cas_refuses_to_start(tmp_path, monkeypatch):
    # The bundle holds the retired CA too (the truststore); trusting it would let in the
    # certificates the operator refused.
    from nodecert.bootstrap import build_decider
    from nodecert.core.config import Settings

    bundle = tmp_path / "bundle.pem"
    bundle.write_text("not read")
    retired = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/" + "a" * 36
    settings = Settings(home=tmp_path, ca_bundle=bundle, acmpca_retired_arns=(retired,))
    with pytest.raises(ConfigurationError, match="NODECERT_ACMPCA_RETIRED_ARNS"):
        build_decider(settings)


def test_lambda_handler_with_a_ca_bundle(tmp_path, monkeypatch):
    from nodecert.bootstrap import build_service
    from nodecert.core.config import Settings

    service = build_service(Settings(home=tmp_path))
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(service.authority.ca_chain_pem())
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path))
    monkeypatch.setenv("NODECERT_CA_BUNDLE", str(bundle))
    monkeypatch.setattr(authorizer, "_wired", None)
    assert authorizer.lambda_handler(event(REST, pem=cert.pem), None)["context"]["nodeId"] == "n1"


@pytest.mark.parametrize("name", [REST, HTTP])
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"requestContext": "x"}, "no_certificate"),
        ({"requestContext": {"identity": "x", "authentication": ["x"]}}, "no_certificate"),
        ({"pathParameters": "nodeId=n1"}, "invalid_target"),
        ({"pathParameters": {"nodeId": ""}}, "invalid_target"),
        ({"pathParameters": {"nodeId": 7}}, "invalid_target"),
    ],
)
def test_garbled_events_are_denied_with_what_is_missing(ca, store, auth, name, change, reason):
    cert = issue(auth, "alice", "n1")
    hostile = {**event(name, pem=cert.pem), **change}
    assert _deny_reason(handle(hostile, decider(ca, store), PATH)) == reason


@pytest.mark.parametrize("name", [REST, HTTP])
@pytest.mark.parametrize("node", ["..", "n1/..", "../n1", "n1%2F..", "nö1", "N1", "n1 "])
def test_hostile_target_nodes_are_denied(ca, store, auth, name, node):
    cert = issue(auth, "alice", "n1")
    out = handle(event(name, pem=cert.pem, node=node), decider(ca, store), PATH)
    assert _deny_reason(out) in ("wrong_node", "invalid_target")


@pytest.mark.parametrize("name", [REST, HTTP])
def test_a_pem_that_does_not_parse_is_malformed_and_never_logged(ca, store, auth, name, caplog):
    cert = issue(auth, "alice", "n1")
    broken = cert.pem.replace("MII", "MIX", 1)
    for pem in (broken, cert.pem[:200], "-----BEGIN CERTIFICATE-----\n!!\n", "\x00" * 64):
        out = handle(event(name, pem=pem), decider(ca, store), PATH)
        assert _deny_reason(out) == "malformed_certificate"
    body = cert.pem.splitlines()[1]
    assert body not in caplog.text


def test_an_event_that_is_not_an_object_is_denied(ca, store):
    assert _deny_reason(handle("x", decider(ca, store), PATH)) == "no_certificate"  # type: ignore[arg-type]


def test_a_packaged_chain_with_acm_pca_makes_no_aws_client(tmp_path, monkeypatch):
    # The template's NodeCAChainPackaged=Yes: NODECERT_CA=acmpca with its ARN, and the
    # chain deploy/build.sh packaged. Nothing may ask PCA for the chain (a throttled burst
    # of new environments would deny everyone), so no PCA client is even made.
    import nodecert.support.awsclients
    from nodecert.bootstrap import build_service
    from nodecert.core.config import Settings

    service = build_service(Settings(home=tmp_path))
    cert = issue(service.authority, "alice", "n1", admin=service.administration)
    bundle = tmp_path / "nodecert-ca.pem"
    bundle.write_text(service.authority.ca_chain_pem())
    made: list[str] = []

    def no_aws(service_name, **_):
        made.append(service_name)
        raise RuntimeError("no AWS in this test")

    monkeypatch.setattr(nodecert.support.awsclients, "make_client", no_aws)
    monkeypatch.setenv("NODECERT_HOME", str(tmp_path))
    monkeypatch.setenv("NODECERT_CA", "acmpca")
    monkeypatch.setenv(
        "NODECERT_ACMPCA_CA_ARN",
        "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/11111111-1111-1111-1111-111111111111",
    )
    # Without the bundle, wiring asks for a PCA client (so the spy does see one).
    monkeypatch.setattr(authorizer, "_wired", None)
    with pytest.raises(RuntimeError, match="no AWS"):
        authorizer.lambda_handler(event(REST, pem=cert.pem), None)
    assert made == ["acm-pca"]
    made.clear()
    monkeypatch.setenv("NODECERT_CA_BUNDLE", str(bundle))
    monkeypatch.setattr(authorizer, "_wired", None)
    allowed = authorizer.lambda_handler(event(REST, pem=cert.pem), None)
    assert allowed["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert allowed["context"]["nodeId"] == "n1"
    assert made == []
