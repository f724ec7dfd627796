"""The whole serverless shape on moto: lambda_handler → bootstrap → ACM PCA + DynamoDB.

The environment is what deploy/template.yaml gives the function, with botocore pointed at
the moto server through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from nodecert.adapters import aws_lambda
from nodecert.identity import Identity
from nodecert.store.dynamodb import create_tables
from tests.integration.test_acmpca_moto import create_active_ca

EVENTS = Path(__file__).resolve().parents[1] / "events"


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
        "NODECERT_OIDC_ISSUER": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE",
        "NODECERT_OIDC_AUDIENCE": "4example0clientid",
        "NODECERT_TRUST_DOMAIN": "nodecert.example",
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
