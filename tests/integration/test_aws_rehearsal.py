"""`make aws-rehearsal`: the AWS system of deploy/template.yaml, end to end on one machine.

moto (server mode) plays Cognito, ACM PCA, DynamoDB and S3; tests/rehearsal/apigw.py plays
API Gateway from the SAM-translated template (routes, authorizers, identity sources,
environments, integrations); a real TLS listener plays the mutual-TLS custom domain. The
story and what moto does not model: tests/rehearsal/scenario.py.
"""

from __future__ import annotations

import copy
import re
import shutil

import pytest

from tests.integration.conftest import REGION
from tests.rehearsal.scenario import RehearsalError, rehearse
from tests.rehearsal.template import load, node_authorizer
from tests.rehearsal.walkthrough import walkthrough

STORY = [
    "first deploy: the issuance half alone",
    "nodecert aws truststore",
    "second deploy adds the node half and its mutual-TLS domain",
    "the node backend refuses whoever is not API Gateway",
    "users sign in to Cognito",
    "no token, a forged token: 401 at API Gateway",
    "the admin registers nodes with their owners' sub",
    "alice gets a certificate for her node",
    "PCA throttled: a 503, and its retry with the same Idempotency-Key issues",
    "alice calls her node through the mutual-TLS domain: allowed",
    "alice calls bob's node: denied",
    "no client certificate, or one from another CA: no handshake",
    "alice revokes her certificate: denied",
    "the scheduled sweep leaves no revocation pending at the CA",
    "after a transfer to bob, alice is denied and bob allowed",
    "a path naming another node still reaches the node allowed",
]


@pytest.fixture
def clients(aws_env, moto_endpoint):
    import boto3

    session = boto3.session.Session()

    def make(service):
        return session.client(service, region_name=REGION, endpoint_url=moto_endpoint)

    return make


def test_the_template_rehearses_end_to_end(clients, moto_endpoint):
    assert rehearse(load(), clients, moto_endpoint) == STORY


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("aws", "curl", "jq", "openssl")),
    reason="the walkthrough needs aws, curl, jq and openssl on PATH",
)
def test_the_walkthrough_script_runs_against_the_rehearsal(clients, moto_endpoint):
    """deploy/aws/walkthrough.sh, as docs/aws.md shows it, against the deployed rehearsal."""
    steps = rehearse(load(), clients, moto_endpoint, walkthrough)
    assert steps == [*STORY[:4], "deploy/aws/walkthrough.sh runs as written"]


def _authorizer(document):
    return document["Resources"]["NodeAuthorizerFunction"]["Properties"]


def _wrong_handler(document):
    _authorizer(document)["Handler"] = "nodecert.aws.handler.lambda_handler"


def _missing_ca(document):
    del _authorizer(document)["Environment"]["Variables"]["NODECERT_ACMPCA_CA_ARN"]


def _cached_on_host(document):
    authorizer = node_authorizer(document)
    authorizer["identitySource"] = "method.request.header.Host"
    authorizer["authorizerResultTtlInSeconds"] = 300


def _wrong_table(document):
    variables = _authorizer(document)["Environment"]["Variables"]
    variables["NODECERT_DYNAMODB_NODES_TABLE"] = {"Ref": "CertificatesTable"}


def _no_client_certificate(document):
    del document["Resources"]["NodeApiStage"]["Properties"]["ClientCertificateId"]


def _no_chain_grant(document):
    # The authorizer's only PCA grant (its chain): without it, it reaches no PCA at all.
    statements = _authorizer(document)["Policies"][0]["Statement"]
    statements[:] = [s for s in statements if "AuthorizerFetchesChain" not in str(s)]


@pytest.mark.parametrize(
    ("mistake", "failing_step"),
    [
        # The backend lets in API Gateway's certificate only: a stage without it gets nowhere.
        (_no_client_certificate, "alice calls her node through the mutual-TLS domain: allowed"),
        (_wrong_handler, "alice calls her node through the mutual-TLS domain: allowed"),
        (_missing_ca, "alice calls her node through the mutual-TLS domain: allowed"),
        # A function whose role grants no acm-pca action reaches no PCA (the emulation
        # the packaged-chain rehearsal below relies on).
        (_no_chain_grant, "alice calls her node through the mutual-TLS domain: allowed"),
        (_wrong_table, "alice calls her node through the mutual-TLS domain: allowed"),
        # A cached Allow keyed on the Host header outlives the revocation. (It does not
        # open bob's node: the Allow policy names only that request's method ARN.)
        (_cached_on_host, "alice revokes her certificate: denied"),
    ],
)
def test_a_wiring_mistake_fails_the_rehearsal(clients, moto_endpoint, mistake, failing_step):
    document = copy.deepcopy(load())
    mistake(document)
    with pytest.raises(RehearsalError, match=re.escape(f"step {failing_step!r}")):
        rehearse(document, clients, moto_endpoint)


def test_two_stacks_deploy_side_by_side_in_one_account(clients, moto_endpoint):
    """Production and staging in one account and Region: both deploy, nothing shared."""
    from tests.rehearsal.apigw import Gateway
    from tests.rehearsal.stack import Stack
    from tests.rehearsal.template import sam_translate, unique_names

    translated = sam_translate(load())
    stacks = [Stack(translated, {}, clients, name=name).deploy() for name in ("prod", "staging")]
    for stack in stacks:
        gateway = Gateway(stack, moto_endpoint)
        try:
            reply = gateway.request("Api", "GET", "/healthz", headers={"User-Agent": "r"})
            assert reply.status == 200, reply.body
        finally:
            gateway.close()
    # What CloudFormation would name per account and Region differs between the two.
    first, second = (unique_names(translated, stack.name) for stack in stacks)
    assert not [key for key in first if first[key] == second[key]]
    pools = {stack.physical["UserPool"] for stack in stacks}
    cas = {stack.physical["CertificateAuthority"] for stack in stacks}
    assert len(pools) == len(cas) == 2


def test_the_authorizer_runs_on_the_packaged_chain_without_pca(clients, moto_endpoint):
    """NodeCAChainPackaged=Yes: docs/aws.md's two lines package the truststore, and the
    authorizer, whose role then grants no acm-pca action and whose container reaches no
    PCA, allows and denies as before."""
    steps = rehearse(load(), clients, moto_endpoint, parameters={"NodeCAChainPackaged": "Yes"})
    assert steps == [*STORY[:2], "the truststore packaged for the node authorizer", *STORY[2:]]


def test_the_two_tier_private_ca_rehearses_end_to_end(clients, moto_endpoint):
    """IssuingCA PrivateCATwoTier: the subordinate issues, the truststore holds the root."""
    from cryptography import x509

    from tests.rehearsal.scenario import _walk

    def story(world, stack):
        deployed, pca = world.stack, clients("acm-pca")
        root_arn = deployed.physical["RootCertificateAuthority"]
        issuing_arn = deployed.physical["CertificateAuthority"]
        described = {
            arn: pca.describe_certificate_authority(CertificateAuthorityArn=arn)[
                "CertificateAuthority"
            ]
            for arn in (root_arn, issuing_arn)
        }
        # moto ignores UsageMode (every CA says SHORT_LIVED_CERTIFICATE): the template's
        # modes are checked on the template (test_template_issuing_ca.py), not here.
        assert [described[root_arn][k] for k in ("Type", "Status")] == ["ROOT", "ACTIVE"]
        assert [described[issuing_arn][k] for k in ("Type", "Status")] == [
            "SUBORDINATE",
            "ACTIVE",
        ]
        # The subordinate was activated with the root as its chain, and the root signed it.
        got = pca.get_certificate_authority_certificate(CertificateAuthorityArn=issuing_arn)
        issuing = x509.load_pem_x509_certificate(got["Certificate"].encode())
        (root,) = x509.load_pem_x509_certificates(got["CertificateChain"].encode())
        issuing.verify_directly_issued_by(root)
        assert issuing.extensions.get_extension_for_class(x509.BasicConstraints).value == (
            x509.BasicConstraints(ca=True, path_length=0)
        )
        # Every function uses the subordinate; the root is idle.
        for function in deployed.functions.values():
            arn = function.environment.get("NODECERT_ACMPCA_CA_ARN")
            assert arn == issuing_arn, function.logical_id
        # The mutual-TLS domain's truststore anchors on the root.
        truststore = (
            clients("s3")
            .get_object(Bucket=deployed.physical["TruststoreBucket"], Key="truststore.pem")["Body"]
            .read()
        )
        assert root in x509.load_pem_x509_certificates(truststore)
        _walk(world, stack)

    parameters = {"IssuingCA": "PrivateCATwoTier"}
    assert rehearse(load(), clients, moto_endpoint, story, parameters) == STORY
