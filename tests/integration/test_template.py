"""deploy/template.yaml: cfn-lint is clean, and it agrees with the code that uses it."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

from nodecert.aws.handler import ROUTE_KEYS
from nodecert.backends.acmpca import NODE_TEMPLATE_ARN, api_passthrough_template
from nodecert.core.config import Settings
from nodecert.store._dynamodb import LIMITS_TTL_ATTRIBUTE
from nodecert.store.dynamodb import table_definitions

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"
SRC = Path(__file__).resolve().parents[2] / "src" / "nodecert"


@pytest.fixture(scope="module")
def template():
    data, matches = decode(str(TEMPLATE))
    assert matches == []
    return data


def test_cfn_lint_is_clean():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


TABLES = ("NodesTable", "CertificatesTable", "LimitsTable")


def test_tables_match_the_store(template):
    expected = table_definitions(nodes_table="n", certificates_table="c", limits_table="l")
    for logical, definition in zip(TABLES, expected, strict=True):
        properties = template["Resources"][logical]["Properties"]
        for key in ("BillingMode", "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes"):
            assert properties.get(key) == definition.get(key), (logical, key)


def test_the_limits_table_expires_items_on_the_attribute_the_code_writes(template):
    properties = template["Resources"]["LimitsTable"]["Properties"]
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": LIMITS_TTL_ATTRIBUTE,
        "Enabled": True,
    }


def test_every_table_reaches_the_function(template):
    variables = template["Resources"]["NodecertFunction"]["Properties"]["Environment"]["Variables"]
    for logical, setting in zip(
        TABLES,
        ("DYNAMODB_NODES_TABLE", "DYNAMODB_CERTIFICATES_TABLE", "DYNAMODB_LIMITS_TABLE"),
        strict=True,
    ):
        assert variables[f"NODECERT_{setting}"] == {"Ref": logical}


def test_lambda_environment_is_valid_settings(template):
    variables = template["Resources"]["NodecertFunction"]["Properties"]["Environment"]["Variables"]
    placeholders = {k: v if isinstance(v, str) else "x" for k, v in variables.items()}
    placeholders["NODECERT_OIDC_ISSUER"] = "https://cognito-idp.eu-west-1.amazonaws.com/pool"
    settings = Settings.from_env(placeholders)
    assert (settings.ca, settings.store) == ("acmpca", "dynamodb")


def _statements(template):
    (policy,) = template["Resources"]["NodecertFunction"]["Properties"]["Policies"]
    return policy["Statement"]


# A transaction needs no permission of its own: each of its items needs the permission of
# the single-item call (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
# transaction-apis-iam.html). nodecert's transactions update and put.
_TRANSACTION_ITEMS = {"dynamodb:UpdateItem", "dynamodb:PutItem"}


def _calls(module, service):
    called = set()
    for name in re.findall(r"client\.([a-z_]+)\(", (SRC / module).read_text()):
        if name in {"get_waiter", "create_table", "update_time_to_live"}:
            continue  # create_tables is for tests; the stack creates the tables.
        if name == "transact_write_items":
            called |= _TRANSACTION_ITEMS
            continue
        called.add(f"{service}:{''.join(p.title() for p in name.split('_'))}")
    return called


def _actions(statement):
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_iam_allows_only_the_calls_the_adapters_make(template):
    allowed = set().union(*(_actions(s) for s in _statements(template)))
    called = (
        _calls("backends/acmpca.py", "acm-pca")
        | _calls("store/dynamodb.py", "dynamodb")
        | _calls("store/dynamodb_limits.py", "dynamodb")
        | _calls("store/dynamodb_outbox.py", "dynamodb")
        | _calls("store/_dynamodb.py", "dynamodb")
    )
    assert called == allowed


def test_each_table_allows_only_the_calls_of_its_adapter(template):
    by_sid = {s["Sid"]: s for s in _statements(template)}
    ledger, limits = by_sid["LedgerAndNodeDirectory"], by_sid["RenewalTokensAndRateBuckets"]
    assert _actions(ledger) == _calls("store/dynamodb.py", "dynamodb")
    # The outbox reads and updates certificate rows (the ledger's statement allows it), and
    # puts, scans and deletes its own items in the limits table.
    outbox = _calls("store/dynamodb_outbox.py", "dynamodb")
    assert outbox <= _actions(ledger)
    own_items = outbox - {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert own_items == {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Scan"}
    assert _actions(limits) == _calls("store/dynamodb_limits.py", "dynamodb") | own_items
    assert limits["Resource"] == {"Fn::GetAtt": ["LimitsTable", "Arn"]}
    assert "LimitsTable" not in str(ledger["Resource"])


def test_issuance_is_limited_to_the_passthrough_templates(template):
    issue = next(s for s in _statements(template) if s["Action"] == "acm-pca:IssueCertificate")
    allowed = issue["Condition"]["StringEquals"]["acm-pca:TemplateArn"]
    arns = {a["Fn::Sub"].replace("${AWS::Partition}", "aws") for a in allowed}
    assert arns == {
        api_passthrough_template(Settings().acmpca_template_arn),
        NODE_TEMPLATE_ARN,
    }


# Open at API Gateway: the CA chain, liveness, and renewal, whose Bearer token is a
# proof-of-possession JWT (nodecert.issuing.renewal) that a Cognito authorizer would reject.
OPEN_ROUTES = {"GET /v1/ca", "GET /healthz", "POST /v1/renew"}


def _api_events(template):
    events = template["Resources"]["NodecertFunction"]["Properties"]["Events"]
    return {
        f"{e['Properties']['Method'].upper()} {e['Properties']['Path']}": e
        for e in events.values()
        if e["Type"] == "Api"
    }


def test_the_api_routes_are_exactly_the_lambda_adapters(template):
    assert set(_api_events(template)) == set(ROUTE_KEYS)
    # The nginx-side decision and the local CA's CRL have no place behind API Gateway
    # (docs/aws.md): the authorizer Lambda decides there, and ACM PCA publishes its own CRL.
    assert not {"POST /v1/authorize", "GET /v1/crl"} & set(ROUTE_KEYS)


def test_only_the_open_routes_skip_the_cognito_authorizer(template):
    auth = template["Resources"]["Api"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "CognitoAuthorizer"
    skipped = {
        key
        for key, e in _api_events(template).items()
        if e["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
    }
    assert skipped == OPEN_ROUTES


@pytest.fixture(scope="module")
def transformed(template):
    """The template after the SAM transform, as CloudFormation would deploy it."""
    from samtranslator.translator.transform import transform

    document = copy.deepcopy(template)
    # The transform wants an S3 location; sam build puts build/lambda there.
    document["Resources"]["NodecertFunction"]["Properties"]["CodeUri"] = "s3://bucket/key"

    class NoManagedPolicies:
        def load(self):
            return {}

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        return transform(document, {"AWS::Region": "eu-west-1"}, NoManagedPolicies())


def test_the_deployed_methods_use_cognito_except_the_open_routes(transformed):
    (api,) = [
        r for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"
    ]
    body = api["Properties"]["Body"]
    security = {
        f"{method.upper()} {path}": [name for entry in op["security"] for name in entry]
        for path, operations in body["paths"].items()
        for method, op in operations.items()
    }
    assert set(security) == set(ROUTE_KEYS)
    for key, names in security.items():
        # SAM marks a method without authorizer with a "NONE" entry, not in securityDefinitions.
        assert names == (["NONE"] if key in OPEN_ROUTES else ["CognitoAuthorizer"]), key
    assert set(body["securityDefinitions"]) == {"CognitoAuthorizer"}
