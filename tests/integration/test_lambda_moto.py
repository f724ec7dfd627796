"""The whole serverless shape on moto: lambda_handler → bootstrap → ACM PCA + DynamoDB.

Issue, renew (proof-of-possession token, replay refused across containers) and revoke-all,
each through the handler with a recorded API Gateway event.

The environment is what deploy/template.yaml gives the function, with botocore pointed at
the moto server through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nodecert.aws import handler as aws_lambda
from nodecert.core.identity import Identity
from nodecert.core.tokens import mint_renewal_token, renewal_audience
from nodecert.store.dynamodb.limits import DynamoDBLimits
from nodecert.store.dynamodb.store import create_tables
from tests.integration.test_acmpca_moto import create_active_ca
from tests.rehearsal.scenario import pca_templates

EVENTS = Path(__file__).resolve().parents[1] / "events"
TRUST_DOMAIN = "nodecert.example"


def event(name):
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def lambda_env(aws_client, moto_endpoint, unique, monkeypatch, tmp_path):
    ca_arn = create_active_ca(aws_client("acm-pca"))
    nodes, certificates, limits = f"nodes-{unique}", f"certificates-{unique}", f"limits-{unique}"
    create_tables(
        aws_client("dynamodb"),
        nodes_table=nodes,
        certificates_table=certificates,
        limits_table=limits,
        outbox_table=f"outbox-{unique}",
    )
    variables = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "NODECERT_HOME": str(tmp_path / "home"),
        "NODECERT_CA": "acmpca",
        "NODECERT_STORE": "dynamodb",
        "NODECERT_ACMPCA_CA_ARN": ca_arn,
        "NODECERT_AWS_REGION": "eu-west-1",
        "NODECERT_DYNAMODB_NODES_TABLE": nodes,
        "NODECERT_DYNAMODB_CERTIFICATES_TABLE": certificates,
        "NODECERT_DYNAMODB_LIMITS_TABLE": limits,
        "NODECERT_DYNAMODB_OUTBOX_TABLE": f"outbox-{unique}",
        "NODECERT_OIDC_ISSUER": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE",
        "NODECERT_OIDC_AUDIENCE": "4example0clientid",
        "NODECERT_TRUST_DOMAIN": TRUST_DOMAIN,
        "NODECERT_MAX_VALIDITY_DAYS": "7",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    aws_lambda.application.cache_clear()
    yield
    aws_lambda.application.cache_clear()


def test_recorded_events_issue_through_pca_and_record_in_dynamodb(lambda_env):
    put = aws_lambda.lambda_handler(event("rest_put_node_admin.json"), None)
    assert put["statusCode"] == 200, put["body"]

    issued = aws_lambda.lambda_handler(event("rest_generate_cert.json"), None)

    assert issued["statusCode"] == 201, issued["body"]
    data = json.loads(issued["body"])
    certificate = x509.load_pem_x509_certificate(data["certificate"].encode())
    chain = x509.load_pem_x509_certificates(data["certificateChain"].encode())
    certificate.verify_directly_issued_by(chain[0])
    assert Identity.from_certificate(certificate) == Identity(user_id="alice", node_id="node-1")

    listed = aws_lambda.lambda_handler(event("http_api_list_certificates.json"), None)
    assert [c["serialNumber"] for c in json.loads(listed["body"])["certificates"]] == [
        data["serialNumber"]
    ]
    ca = aws_lambda.lambda_handler(event("rest_ca.json"), None)
    assert x509.load_pem_x509_certificates(ca["body"].encode()) == chain

    # The trust anchor alone, for trust stores: the chain's self-signed end.
    roots_event = event("rest_ca.json")
    roots_event.update(resource="/v1/ca/roots", path="/v1/ca/roots")
    roots = aws_lambda.lambda_handler(roots_event, None)
    assert roots["statusCode"] == 200, roots["body"]
    assert roots["headers"]["Content-Type"].startswith("application/x-pem-file")
    (root,) = x509.load_pem_x509_certificates(roots["body"].encode())
    assert root == chain[-1] and root.issuer == root.subject


@pytest.fixture
def moto_chain(lambda_env):
    """moto's ACM PCA taught the fixed extensions of nodecert's passthrough templates.

    moto leaves a template's extensions out (no AKI, no EKU clientAuth; see docs/aws.md), so
    the node side's RFC 5280 chain check rightly refuses what it issues. With the
    extensions the real templates add (the moto server runs in this process), renewal on
    the serverless shape is checked end to end: the chain, the PoP token, the ledger row
    and the owner in DynamoDB, the used-token item in the limits table, the new
    certificate from PCA.
    """
    with pca_templates():
        yield


def _renew_event(name, token):
    raw = event(name)
    raw["headers"]["Authorization" if "Authorization" in raw["headers"] else "authorization"] = (
        f"Bearer {token}"
    )
    return raw


@pytest.mark.parametrize("renew_event", ["rest_renew.json", "http_api_renew.json"])
def test_issue_then_renew_through_the_lambda_and_a_replay_is_refused(moto_chain, renew_event):
    assert aws_lambda.lambda_handler(event("rest_put_node_admin.json"), None)["statusCode"] == 200
    issued = aws_lambda.lambda_handler(event("rest_generate_cert.json"), None)
    assert issued["statusCode"] == 201, issued["body"]
    data = json.loads(issued["body"])
    certificate = x509.load_pem_x509_certificate(data["certificate"].encode())
    key = serialization.load_pem_private_key(data["privateKey"].encode(), None)
    app = aws_lambda.application()
    assert isinstance(app.handlers.node.renewer.replay, DynamoDBLimits)
    raw = _renew_event(
        renew_event, mint_renewal_token(certificate, key, audience=renewal_audience(TRUST_DOMAIN))
    )

    renewed = aws_lambda.lambda_handler(raw, None)

    assert renewed["statusCode"] == 201, renewed["body"]
    new = json.loads(renewed["body"])
    assert new["renewedFrom"] == data["serialNumber"]
    assert (new["userId"], new["nodeId"]) == ("alice", "node-1")
    assert new["serialNumber"] != data["serialNumber"]
    chain = x509.load_pem_x509_certificates(new["certificateChain"].encode())
    x509.load_pem_x509_certificate(new["certificate"].encode()).verify_directly_issued_by(chain[0])
    listed = aws_lambda.lambda_handler(event("http_api_list_certificates.json"), None)
    lineage = {
        c["serialNumber"]: c["renewedFrom"] for c in json.loads(listed["body"])["certificates"]
    }
    assert lineage == {new["serialNumber"]: data["serialNumber"], data["serialNumber"]: None}

    # Another container (a cold start) shares the limits table: the token stays used.
    aws_lambda.application.cache_clear()
    replay = aws_lambda.lambda_handler(raw, None)
    assert replay["statusCode"] == 401
    assert "already used" in json.loads(replay["body"])["detail"]


def test_revoke_all_through_the_lambda_then_renewal_is_refused(moto_chain):
    aws_lambda.lambda_handler(event("rest_put_node_admin.json"), None)
    issued = json.loads(aws_lambda.lambda_handler(event("rest_generate_cert.json"), None)["body"])
    key = serialization.load_pem_private_key(issued["privateKey"].encode(), None)
    certificate = x509.load_pem_x509_certificate(issued["certificate"].encode())

    revoked = aws_lambda.lambda_handler(event("rest_revoke_all_node.json"), None)

    assert revoked["statusCode"] == 200, revoked["body"]
    assert [c["serialNumber"] for c in json.loads(revoked["body"])["revoked"]] == [
        issued["serialNumber"]
    ]
    token = mint_renewal_token(certificate, key, audience=renewal_audience(TRUST_DOMAIN))
    refused = aws_lambda.lambda_handler(_renew_event("rest_renew.json", token), None)
    assert refused["statusCode"] == 403
    assert "revoked" in json.loads(refused["body"])["detail"]


def _node_certificate_event(dns_names):
    raw = event("rest_put_node_admin.json")
    raw.update(
        resource="/v1/nodes/{nodeId}/certificate",
        path="/v1/nodes/node-1/certificate",
        httpMethod="POST",
        body=json.dumps({"dnsNames": dns_names, "keyType": "ec-p256"}),
    )
    return raw


def test_a_node_server_certificate_renews_through_pca_with_its_profile_and_dns_names(
    moto_chain,
):
    """Renewal keeps the node-server template and the DNS names; the renewed certificate
    cannot be renewed again (409 already_renewed); once revoked, neither can its successor
    (403)."""
    assert aws_lambda.lambda_handler(event("rest_put_node_admin.json"), None)["statusCode"] == 200
    templates = []
    app = aws_lambda.application()
    for client in app.service.authority.ca._clients.values():
        client.meta.events.register(
            "provide-client-params.acm-pca.IssueCertificate",
            lambda params, **_: templates.append((params["TemplateArn"], params["ApiPassthrough"])),
        )
    names = ["node-1.example", "node-1.internal.example"]
    issued = aws_lambda.lambda_handler(_node_certificate_event(names), None)
    assert issued["statusCode"] == 201, issued["body"]
    data = json.loads(issued["body"])
    certificate = x509.load_pem_x509_certificate(data["certificate"].encode())
    key = serialization.load_pem_private_key(data["privateKey"].encode(), None)

    token = mint_renewal_token(certificate, key, audience=renewal_audience(TRUST_DOMAIN))
    renewed = aws_lambda.lambda_handler(_renew_event("rest_renew.json", token), None)

    assert renewed["statusCode"] == 201, renewed["body"]
    new = json.loads(renewed["body"])
    assert new["renewedFrom"] == data["serialNumber"]
    successor = x509.load_pem_x509_certificate(new["certificate"].encode())
    usages = successor.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usages  # The node-server template.
    # What PCA was asked, the second time as the first: the node-server template and the
    # DNS names in ApiPassthrough (moto ignores passthrough, so they are not in its
    # certificates; a real CA writes them: docs/aws.md).
    assert len(templates) == 2 and templates[0] == templates[1]
    template, passthrough = templates[1]
    assert template.endswith(":template/EndEntityCertificate_APIPassthrough/V1")
    sans = passthrough["Extensions"]["SubjectAlternativeNames"]
    assert [name["DnsName"] for name in sans if "DnsName" in name] == names

    # The renewed (superseded) certificate renews no more: one successor only.
    again = mint_renewal_token(certificate, key, audience=renewal_audience(TRUST_DOMAIN))
    refused = aws_lambda.lambda_handler(_renew_event("http_api_renew.json", again), None)
    assert refused["statusCode"] == 409, refused["body"]
    assert json.loads(refused["body"])["code"] == "already_renewed"
    assert len(templates) == 2  # PCA was not asked.

    # Revoked, the successor renews no more either.
    assert aws_lambda.lambda_handler(event("rest_revoke_all_node.json"), None)["statusCode"] == 200
    new_key = serialization.load_pem_private_key(new["privateKey"].encode(), None)
    late = mint_renewal_token(successor, new_key, audience=renewal_audience(TRUST_DOMAIN))
    revoked = aws_lambda.lambda_handler(_renew_event("rest_renew.json", late), None)
    assert revoked["statusCode"] == 403, revoked["body"]
    assert len(templates) == 2


def _issuers_event():
    raw = event("rest_ca.json")
    raw.update(resource="/v1/ca/issuers", path="/v1/ca/issuers")
    return raw


def test_after_a_pca_rotation_the_lambda_says_the_old_ca_retires_and_renews_onto_the_new(
    moto_chain, aws_client, monkeypatch
):
    # Issued by the CA the function used until now.
    aws_lambda.lambda_handler(event("rest_put_node_admin.json"), None)
    issued = json.loads(aws_lambda.lambda_handler(event("rest_generate_cert.json"), None)["body"])
    certificate = x509.load_pem_x509_certificate(issued["certificate"].encode())
    key = serialization.load_pem_private_key(issued["privateKey"].encode(), None)
    old = os.environ["NODECERT_ACMPCA_CA_ARN"]
    before = json.loads(aws_lambda.lambda_handler(_issuers_event(), None)["body"])["issuers"]
    assert {i["status"] for i in before} == {"active"}

    # The deploy of step 3 (docs/aws.md, "Rotating the issuing CA"): a new issuing CA, the
    # old one retiring. A new container reads the new environment.
    pca = aws_client("acm-pca")
    new = create_active_ca(pca)
    monkeypatch.setenv("NODECERT_ACMPCA_CA_ARN", new)
    monkeypatch.setenv("NODECERT_ACMPCA_RETIRING_ARNS", old)
    aws_lambda.application.cache_clear()

    answer = aws_lambda.lambda_handler(_issuers_event(), None)
    assert answer["statusCode"] == 200, answer["body"]
    states = {i["keyId"]: i["status"] for i in json.loads(answer["body"])["issuers"]}
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    assert states[aki.key_identifier.hex()] == "retiring"
    assert sorted(states.values()) == ["active", "retiring"]

    token = mint_renewal_token(certificate, key, audience=renewal_audience(TRUST_DOMAIN))
    renewed = aws_lambda.lambda_handler(_renew_event("rest_renew.json", token), None)
    assert renewed["statusCode"] == 201, renewed["body"]
    successor = x509.load_pem_x509_certificate(json.loads(renewed["body"])["certificate"].encode())
    new_ca = pca.get_certificate_authority_certificate(CertificateAuthorityArn=new)["Certificate"]
    successor.verify_directly_issued_by(x509.load_pem_x509_certificate(new_ca.encode()))
