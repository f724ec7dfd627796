"""IssuingCA KMS on Lambda: the operator's chain, packaged, and a certificate signed in KMS.

The operator's steps of docs/aws.md ("The issuing key in KMS") against moto's KMS (server
mode): ``nodecert ca init`` for the stack's key, the chain as ``deploy/build.sh`` packages
it, then the issuing function with the environment the SAM-translated template gives it
(``IssuingCA=KMS``), pointed at moto's KMS and DynamoDB, issuing through a recorded API
Gateway event. Failure paths first: on Lambda a local CA without the packaged chain or
without a KMS key does not start, and a chain that is not an issuing CA and its root is
refused with nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.aws import handler as aws_lambda
from nodecert.aws.cahome import install_packaged_chain
from nodecert.cli import main
from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError
from nodecert.core.identity import Identity
from nodecert.store.dynamodb.store import create_tables
from tests.integration.test_template_issuing_ca import environment, resolved
from tests.rehearsal.template import load, sam_translate

from .conftest import REGION

EVENTS = Path(__file__).resolve().parents[1] / "events"


def _settings(tmp_path, **values):
    return Settings(home=tmp_path / "home", **values)


# Failure paths.


def test_on_lambda_a_local_ca_needs_the_packaged_chain_and_a_kms_key(tmp_path):
    with pytest.raises(ConfigurationError, match="NODECERT_CA_BUNDLE must name the CA chain"):
        install_packaged_chain(_settings(tmp_path, ca_kms_key_id="k"), on_lambda=True)
    bundle = tmp_path / "chain.pem"
    root = trustme.CA()
    bundle.write_bytes(root.create_child_ca().cert_pem.bytes() + root.cert_pem.bytes())
    with pytest.raises(ConfigurationError, match="NODECERT_CA_KMS_KEY_ID"):
        install_packaged_chain(_settings(tmp_path, ca_bundle=bundle), on_lambda=True)
    assert not (tmp_path / "home").exists()


def test_off_lambda_nothing_changes(tmp_path):
    # nodecert serve and the tests make their CA as before; an ACM PCA stack is untouched.
    install_packaged_chain(_settings(tmp_path), on_lambda=False)
    # A local CA on Lambda with neither a KMS key nor a chain: as before, left to the CA.
    install_packaged_chain(_settings(tmp_path), on_lambda=True)
    install_packaged_chain(_settings(tmp_path, ca="acmpca", acmpca_ca_arn="a"), on_lambda=True)
    assert not (tmp_path / "home").exists()


def _chains():
    root, other = trustme.CA(), trustme.CA()
    issuing = root.create_child_ca()
    pem = {
        "issuing": issuing.cert_pem.bytes(),
        "root": root.cert_pem.bytes(),
        "other": other.cert_pem.bytes(),
    }
    return {
        "the root alone": pem["root"],
        "root first": pem["root"] + pem["issuing"],
        "another root": pem["issuing"] + pem["other"],
        "three certificates": pem["issuing"] + pem["root"] + pem["other"],
        "not PEM": b"not a certificate",
    }


@pytest.mark.parametrize("case", list(_chains()))
def test_a_chain_that_is_not_an_issuing_ca_and_its_root_is_refused(tmp_path, case):
    bundle = tmp_path / "chain.pem"
    bundle.write_bytes(_chains()[case])
    settings = _settings(tmp_path, ca_bundle=bundle, ca_kms_key_id="k")
    with pytest.raises(ConfigurationError, match="NODECERT_CA_BUNDLE"):
        install_packaged_chain(settings, on_lambda=True)
    assert not (tmp_path / "home" / "ca" / "ca.crt").exists()


def test_a_missing_bundle_is_a_configuration_error(tmp_path):
    settings = _settings(tmp_path, ca_bundle=tmp_path / "absent.pem", ca_kms_key_id="k")
    with pytest.raises(ConfigurationError, match="cannot read certificates"):
        install_packaged_chain(settings, on_lambda=True)


# The operator's steps, then issuance on "Lambda".


@pytest.fixture
def kms_stack(aws_client, moto_endpoint, unique, monkeypatch, tmp_path):
    """The stack's key in moto, the operator's chain, and the issuer's environment."""
    key_arn = aws_client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")[
        "KeyMetadata"
    ]["Arn"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    # The operator, once: a root (its key taken offline) and an intermediate for the key.
    operator = tmp_path / "operator"
    with monkeypatch.context() as patch:
        patch.setenv("NODECERT_HOME", str(operator))
        patch.setenv("NODECERT_CA_KMS_KEY_ID", key_arn)
        patch.setenv("NODECERT_AWS_REGION", REGION)
        assert main(["ca", "init", "--root-key-out", str(tmp_path / "root.key")]) == 0
    assert not (operator / "ca" / "root.key").exists()
    chain = tmp_path / "nodecert-ca.pem"  # cat ca.crt root.crt, as docs/aws.md says
    chain.write_bytes(
        (operator / "ca" / "ca.crt").read_bytes() + (operator / "ca" / "root.crt").read_bytes()
    )
    nodes, certificates, limits = f"nodes-{unique}", f"certificates-{unique}", f"limits-{unique}"
    create_tables(
        aws_client("dynamodb"),
        nodes_table=nodes,
        certificates_table=certificates,
        limits_table=limits,
        outbox_table=f"outbox-{unique}",
    )
    # What the template gives the issuing function with IssuingCA=KMS, pointed at moto.
    variables = environment(resolved(sam_translate(load()), "KMS"), "NodecertFunction")
    assert variables["NODECERT_CA_KMS_KEY_ID"] == "IssuingKey.Arn"
    variables |= {
        "NODECERT_CA_KMS_KEY_ID": key_arn,
        "NODECERT_CA_BUNDLE": str(chain),  # /var/task/nodecert-ca.pem on Lambda
        "NODECERT_HOME": str(tmp_path / "lambda-tmp"),
        "NODECERT_AWS_REGION": REGION,
        "NODECERT_DYNAMODB_NODES_TABLE": nodes,
        "NODECERT_DYNAMODB_CERTIFICATES_TABLE": certificates,
        "NODECERT_DYNAMODB_LIMITS_TABLE": limits,
        "NODECERT_DYNAMODB_OUTBOX_TABLE": f"outbox-{unique}",
        "NODECERT_OIDC_ISSUER": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE",
        "NODECERT_OIDC_AUDIENCE": "4example0clientid",
        "NODECERT_TRUST_DOMAIN": "nodecert.example",
        "NODECERT_METRICS": "off",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "nodecert-issuer")
    aws_lambda.application.cache_clear()
    yield {
        "key": key_arn,
        "operator": operator,
        "home": tmp_path / "lambda-tmp",
        "chain": chain,
        "tables": (nodes, certificates, limits),
    }
    aws_lambda.application.cache_clear()


def _event(name):
    return json.loads((EVENTS / name).read_text())


def test_the_issuer_without_the_packaged_chain_does_not_start(kms_stack, monkeypatch):
    # The first deploy of docs/aws.md's steps: the key exists, the chain is not built in.
    monkeypatch.delenv("NODECERT_CA_BUNDLE")
    aws_lambda.application.cache_clear()
    with pytest.raises(ConfigurationError, match="NODECERT_CA_BUNDLE must name the CA chain"):
        aws_lambda.lambda_handler(_event("rest_generate_cert.json"), None)
    assert not (kms_stack["home"] / "ca").exists()


def test_the_sweep_without_the_packaged_chain_does_not_start(kms_stack, monkeypatch):
    from nodecert.aws import sweep

    monkeypatch.delenv("NODECERT_CA_BUNDLE")
    sweep._outbox.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="NODECERT_CA_BUNDLE must name"):
            sweep._outbox()
    finally:
        sweep._outbox.cache_clear()


def test_the_issuer_signs_in_kms_under_the_operators_root(kms_stack, aws_client):
    put = aws_lambda.lambda_handler(_event("rest_put_node_admin.json"), None)
    assert put["statusCode"] == 200, put["body"]

    issued = aws_lambda.lambda_handler(_event("rest_generate_cert.json"), None)

    assert issued["statusCode"] == 201, issued["body"]
    data = json.loads(issued["body"])
    certificate = x509.load_pem_x509_certificate(data["certificate"].encode())
    issuing, root = x509.load_pem_x509_certificates(data["certificateChain"].encode())
    operator = kms_stack["operator"] / "ca"
    assert issuing == x509.load_pem_x509_certificate((operator / "ca.crt").read_bytes())
    assert root == x509.load_pem_x509_certificate((operator / "root.crt").read_bytes())
    certificate.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(root)
    # The issuing CA is the KMS key's: KMS made the signature just checked.
    der = aws_client("kms").get_public_key(KeyId=kms_stack["key"])["PublicKey"]
    assert issuing.public_key() == serialization.load_der_public_key(der)
    assert Identity.from_certificate(certificate) == Identity(user_id="alice", node_id="node-1")
    # The execution environment holds certificates only: no CA key, no root key.
    written = sorted(p.name for p in (kms_stack["home"] / "ca").iterdir() if p.is_file())
    assert "ca.key" not in written and "root.key" not in written
    assert {"ca.crt", "root.crt"} <= set(written)


def test_the_authorizer_trusts_the_packaged_chain_and_never_calls_kms(kms_stack):
    from nodecert.aws.authorizer import TargetSource, handle
    from nodecert.bootstrap import build_decider
    from tests.kit import event

    assert aws_lambda.lambda_handler(_event("rest_put_node_admin.json"), None)["statusCode"] == 200
    issued = aws_lambda.lambda_handler(_event("rest_generate_cert.json"), None)
    pem = json.loads(issued["body"])["certificate"]
    # The authorizer's environment as the template gives it with IssuingCA=KMS: the chain,
    # no key (its role has nothing of KMS).
    variables = environment(resolved(sam_translate(load()), "KMS"), "NodeAuthorizerFunction")
    assert "NODECERT_CA_KMS_KEY_ID" not in variables
    nodes, certificates, limits = kms_stack["tables"]
    variables |= {
        "NODECERT_CA_BUNDLE": str(kms_stack["chain"]),
        "NODECERT_HOME": str(kms_stack["home"].parent / "authorizer-tmp"),
        "NODECERT_AWS_REGION": REGION,
        "NODECERT_DYNAMODB_NODES_TABLE": nodes,
        "NODECERT_DYNAMODB_CERTIFICATES_TABLE": certificates,
        "NODECERT_DYNAMODB_LIMITS_TABLE": limits,
        "NODECERT_TRUST_DOMAIN": "nodecert.example",
        "NODECERT_METRICS": "off",
    }
    decider = build_decider(Settings.from_env(variables))
    allowed = handle(
        event("authorizer_rest_request.json", pem=pem, node="node-1"),
        decider,
        TargetSource("path:nodeId"),
    )
    assert allowed["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert allowed["context"]["userId"] == "alice"
    # A certificate for the same identity from a CA outside the chain is denied.
    stranger = trustme.CA().issue_cert("node-1.example").cert_chain_pems[0].bytes().decode()
    denied = handle(
        event("authorizer_rest_request.json", pem=stranger, node="node-1"),
        decider,
        TargetSource("path:nodeId"),
    )
    assert denied["policyDocument"]["Statement"][0]["Effect"] == "Deny"
