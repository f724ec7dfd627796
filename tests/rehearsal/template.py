"""deploy/template.yaml as CloudFormation would see it: read, SAM-translated, inspected.

Shared by tests/integration/test_template.py (static checks) and the API Gateway emulation
(tests/rehearsal/apigw.py), so that both read the very same translated document.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"
REGION = "eu-west-1"

# API Gateway's documented default when authorizerResultTtlInSeconds is absent.
DEFAULT_AUTHORIZER_TTL = 300


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as a document (CloudFormation's YAML tags become ``Fn::`` maps)."""
    data, matches = decode(str(path))
    assert matches == [], matches
    assert isinstance(data, dict)
    return data


def body_digest(body: Any) -> str:
    """The digest that the node API's deployment names (``NodeApiDeployment<digest>``).

    CloudFormation does not redeploy a stage when only a REST API's body changes; a
    deployment whose logical id changes with the body is a new deployment (as SAM does).
    """
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]


def sam_translate(template: dict[str, Any]) -> dict[str, Any]:
    """The template after the SAM transform (aws-sam-translator), as CloudFormation deploys."""
    import pytest
    from samtranslator.translator.transform import transform

    document = copy.deepcopy(template)
    for resource in document["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            # The transform wants an S3 location; sam build puts build/lambda there.
            resource["Properties"]["CodeUri"] = "s3://bucket/key"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        result = transform(document, {"AWS::Region": REGION}, NoManagedPolicies())
    assert isinstance(result, dict)
    return result


def rest_apis(transformed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical id → OpenAPI body of every REST API in the translated template."""
    return {
        name: resource["Properties"]["Body"]
        for name, resource in transformed["Resources"].items()
        if resource["Type"] == "AWS::ApiGateway::RestApi"
    }


def security_schemes(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The authorizers of one API body (Swagger 2 or OpenAPI 3 spelling)."""
    schemes = body.get("securityDefinitions") or body.get("components", {}).get(
        "securitySchemes", {}
    )
    assert isinstance(schemes, dict)
    return schemes


def node_authorizer(document: dict[str, Any]) -> dict[str, Any]:
    """The node API's REQUEST authorizer, in its OpenAPI body (the node API is plain
    CloudFormation: SAM cannot give its stage a client certificate)."""
    schemes = security_schemes(document["Resources"]["NodeApi"]["Properties"]["Body"])
    authorizer = schemes["NodeAuthorizer"]["x-amazon-apigateway-authorizer"]
    assert isinstance(authorizer, dict)
    return authorizer


def function_of(transformed: dict[str, Any], authorizer: dict[str, Any]) -> str:
    """The logical id of the Lambda function an ``x-amazon-apigateway-authorizer`` invokes."""
    uri = authorizer["authorizerUri"]
    _, variables = uri["Fn::Sub"]
    (arn,) = variables.values()
    name = arn["Fn::GetAtt"][0]
    assert transformed["Resources"][name]["Type"] == "AWS::Lambda::Function"
    return str(name)


def cached_authorizer_violations(transformed: dict[str, Any]) -> list[str]:
    """Every REQUEST authorizer whose cached Allow could serve another certificate or node.

    API Gateway caches an authorizer's answer for ``authorizerResultTtlInSeconds`` (300 by
    default), keyed on its identity sources. Safe is a TTL of 0, or identity sources that
    name both the client certificate and the target node (the path parameter or the Host
    header, as the function's ``NODECERT_AUTHORIZER_TARGET`` says).
    """
    problems = []
    for api, body in rest_apis(transformed).items():
        for name, scheme in security_schemes(body).items():
            authorizer = scheme.get("x-amazon-apigateway-authorizer") or {}
            if str(authorizer.get("type", "")).lower() != "request":
                continue
            ttl = int(authorizer.get("authorizerResultTtlInSeconds", DEFAULT_AUTHORIZER_TTL))
            if ttl == 0:
                continue
            sources = {
                s.strip().lower()
                for s in str(authorizer.get("identitySource", "")).split(",")
                if s.strip()
            }
            function = transformed["Resources"][function_of(transformed, authorizer)]
            variables = function["Properties"].get("Environment", {}).get("Variables", {})
            kind, _, parameter = str(
                variables.get("NODECERT_AUTHORIZER_TARGET", "path:nodeId")
            ).partition(":")
            node = (
                "method.request.header.host"
                if kind == "host"
                else f"method.request.path.{parameter.lower()}"
            )
            has_cert = any("clientcert" in s for s in sources)
            if not (has_cert and node in sources):
                problems.append(
                    f"{api}.{name}: cached for {ttl} s on {sorted(sources)}, which does not"
                    f" name both the client certificate and the target node ({node})"
                )
    return problems


def unique_names(transformed: dict[str, Any], stack_name: str) -> dict[tuple[str, str], str]:
    """Every name AWS keeps unique per account and Region, as stack ``stack_name`` resolves it.

    Names the template leaves out are CloudFormation's to generate (stack name, logical id
    and a random suffix): those never collide, and are not listed.
    """
    from tests.rehearsal.stack import Stack  # the stand-in resolves, as CloudFormation would

    stack = Stack(transformed, {}, clients=None, name=stack_name)
    for logical in transformed["Resources"]:
        stack.physical[logical] = f"{stack_name}-{logical}-{stack.stack_id[:8]}"
        for attribute in ("Arn", "Name"):
            stack.attributes[(logical, attribute)] = f"{stack_name}-{logical}-{attribute}"
    unique = {
        "AWS::Scheduler::Schedule": ("Name",),
        "AWS::Scheduler::ScheduleGroup": ("Name",),
        "AWS::CloudWatch::Alarm": ("AlarmName",),
        "AWS::Lambda::Function": ("FunctionName",),
        "AWS::IAM::Role": ("RoleName",),
        "AWS::DynamoDB::Table": ("TableName",),
        "AWS::S3::Bucket": ("BucketName",),
        "AWS::Logs::LogGroup": ("LogGroupName",),
        "AWS::Logs::MetricFilter": ("MetricTransformations",),
        "AWS::ApiGateway::RestApi": ("Name",),
        "AWS::Cognito::UserPool": ("UserPoolName",),
    }
    names: dict[tuple[str, str], str] = {}
    for logical, resource in transformed["Resources"].items():
        for prop in unique.get(resource["Type"], ()):
            if prop in resource.get("Properties", {}):
                names[(logical, prop)] = json.dumps(stack.resolve(resource["Properties"][prop]))
    return names


# The conditions that IssuingCA decides (deploy/template.yaml).
ISSUING_CA_CONDITIONS = ("PrivateCA", "PrivateCATwoTier", "KMSIssuingKey")
ISSUING_CAS = ("PrivateCA", "PrivateCATwoTier", "KMS")


def issuing_ca_shape(
    template: dict[str, Any],
    issuing_ca: str,
    *,
    issuing_subordinate: str = "A",
    other_subordinate: str = "None",
    chain_packaged: bool = False,
) -> dict[str, Any]:
    """``template`` as deployed with ``IssuingCA: issuing_ca`` (the subordinate slots of a
    rotation, ``IssuingSubordinate`` and ``OtherSubordinate``, and ``NodeCAChainPackaged:
    Yes`` with ``chain_packaged``), everything else untouched.

    Every ``Fn::If`` on a condition that these parameters decide is replaced by its branch
    (``AWS::NoValue`` dropped), and resources under such a condition that is false are
    left out; other intrinsics and conditions stay as written.
    """
    known = {"PrivateCA", "PrivateCATwoTier", "KMS"}
    assert issuing_ca in known, issuing_ca
    assert issuing_subordinate in ("A", "B"), issuing_subordinate
    assert other_subordinate in ("None", "Staged", "Retiring", "Retired"), other_subordinate
    two_tier = issuing_ca == "PrivateCATwoTier"
    from_b = two_tier and issuing_subordinate == "B"
    other = two_tier and other_subordinate != "None"
    packaged = issuing_ca == "KMS" or chain_packaged
    truth = {
        "PrivateCA": issuing_ca != "KMS",
        "PrivateCATwoTier": two_tier,
        "KMSIssuingKey": issuing_ca == "KMS",
        "IssuingFromB": from_b,
        "OtherSubordinatePresent": other,
        "OtherSubordinateRetiring": two_tier and other_subordinate == "Retiring",
        "OtherSubordinateRetired": two_tier and other_subordinate == "Retired",
        "SubordinateA": issuing_ca != "KMS" and (not from_b or other),
        "SubordinateB": from_b or other,
        "AuthorizerChainPackaged": packaged,
        "AuthorizerFetchesChain": issuing_ca != "KMS" and not packaged,
    }
    no_value = {"Ref": "AWS::NoValue"}
    dropped = object()

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            items = [walk(v) for v in value]
            return [v for v in items if v is not dropped]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Fn::If"} and value["Fn::If"][0] in truth:
            name, yes, no = value["Fn::If"]
            chosen = yes if truth[name] else no
            return dropped if chosen == no_value else walk(chosen)
        items = {k: walk(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not dropped}

    document = copy.deepcopy(template)
    document["Resources"] = {
        logical: walk(resource)
        for logical, resource in document["Resources"].items()
        if truth.get(resource.get("Condition", ""), True)
    }
    document["Outputs"] = {
        name: walk(output)
        for name, output in document.get("Outputs", {}).items()
        if truth.get(output.get("Condition", ""), True)
    }
    return document
