"""deploy/template.yaml: cfn-lint is clean, and it agrees with the code that uses it."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

from nodecert.backends.acmpca.backend import NODE_TEMPLATE_ARN, api_passthrough_template
from nodecert.core.config import Settings
from nodecert.http.api import ROUTES
from nodecert.store.dynamodb.audit import AUDIT_DAYS, day_partition
from nodecert.store.dynamodb.store import table_definitions
from nodecert.store.dynamodb.tables import LIMITS_TTL_ATTRIBUTE
from nodecert.store.dynamodb.upgrade import MOVED, OLD_PREFIXES, REVOKE, SWEEP
from tests.rehearsal.template import (
    TEMPLATE,
    body_digest,
    cached_authorizer_violations,
    function_of,
    issuing_ca_shape,
    node_authorizer,
    rest_apis,
    sam_translate,
    security_schemes,
    unique_names,
)

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "nodecert"


@pytest.fixture(scope="module")
def raw_template():
    data, matches = decode(str(TEMPLATE))
    assert matches == []
    return data


@pytest.fixture(scope="module")
def template(raw_template):
    """The template as deployed by default (``IssuingCA: PrivateCA``); other shapes below."""
    return issuing_ca_shape(raw_template, "PrivateCA")


def test_cfn_lint_is_clean():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


TABLES = ("NodesTable", "CertificatesTable", "LimitsTable", "OutboxTable")
_TABLE_KEYS = (
    "BillingMode",
    "KeySchema",
    "AttributeDefinitions",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
)


def test_tables_match_the_store(template):
    expected = table_definitions(
        nodes_table="n", certificates_table="c", limits_table="l", outbox_table="o"
    )
    for logical, definition in zip(TABLES, expected, strict=True):
        properties = template["Resources"][logical]["Properties"]
        for key in _TABLE_KEYS:
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
        (
            "DYNAMODB_NODES_TABLE",
            "DYNAMODB_CERTIFICATES_TABLE",
            "DYNAMODB_LIMITS_TABLE",
            "DYNAMODB_OUTBOX_TABLE",
        ),
        strict=True,
    ):
        for function in ("NodecertFunction", "NodecertAdminFunction", "RevocationSweepFunction"):
            assert _variables(template, function)[f"NODECERT_{setting}"] == {"Ref": logical}
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
        _calls("backends/acmpca/backend.py", "acm-pca")
        | _calls("backends/acmpca/authorities.py", "acm-pca")
        | _calls("store/dynamodb/store.py", "dynamodb")
        | _calls("store/dynamodb/limits.py", "dynamodb")
        | _calls("store/dynamodb/outbox.py", "dynamodb")
        | _calls("store/dynamodb/audit.py", "dynamodb")
        | _calls("store/dynamodb/upgrade.py", "dynamodb")
        | _calls("store/dynamodb/tables.py", "dynamodb")
    )
    assert called == allowed


LEDGER_SIDS = ("LedgerAndNodeDirectory", "NodeDirectoryDelete", "LedgerIndexes")


def test_each_table_allows_only_the_calls_of_its_adapter(template):
    by_sid = {s["Sid"]: s for s in _statements(template)}
    ledger_statements = [by_sid[sid] for sid in LEDGER_SIDS]
    ledger = set().union(*map(_actions, ledger_statements))
    limits = by_sid["RenewalTokensAndRateBuckets"]
    assert ledger == _calls("store/dynamodb/store.py", "dynamodb")
    # The limits table: tokens and buckets only, never scanned (the audit trail left it).
    assert _actions(limits) == _calls("store/dynamodb/limits.py", "dynamodb")
    assert "dynamodb:Scan" not in _actions(limits)
    assert limits["Resource"] == {"Fn::GetAtt": ["LimitsTable", "Arn"]}
    assert "LimitsTable" not in str([s["Resource"] for s in ledger_statements])
    # The outbox table: a revocation queues (put) and is taken off (delete), in its own two
    # partitions; reading the queue is the sweep's alone.
    outbox = by_sid["RevocationOutbox"]
    assert _actions(outbox) == {"dynamodb:PutItem", "dynamodb:DeleteItem"}
    assert outbox["Resource"] == {"Fn::GetAtt": ["OutboxTable", "Arn"]}
    assert outbox["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [REVOKE, SWEEP]}
    }
    audit = by_sid["AuditTrail"]
    others = [s for s in _statements(template) if s is not outbox and s is not audit]
    assert "OutboxTable" not in str(others)


AUDIT_KEYS = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [AUDIT_DAYS, day_partition("*")]}}


def test_the_audit_trail_is_put_by_both_api_functions_and_queried_by_the_admins(template):
    # The issuer records refusals; the admin function records actions and lists them, by
    # Query of the outbox table's audit partitions only (no index, no Scan, no other key).
    calls = _calls("store/dynamodb/audit.py", "dynamodb")
    assert calls == {"dynamodb:PutItem", "dynamodb:Query"}
    for function, allowed in (
        ("NodecertFunction", {"dynamodb:PutItem"}),
        ("NodecertAdminFunction", calls),
    ):
        statements = _function_statements(template, function)
        (audit,) = [s for s in statements if s["Sid"] == "AuditTrail"]
        assert _actions(audit) == allowed, function
        assert audit["Resource"] == {"Fn::GetAtt": ["OutboxTable", "Arn"]}
        assert audit["Condition"] == AUDIT_KEYS
        limits = [s for s in statements if "LimitsTable" in str(s["Resource"])]
        assert limits, function
        assert "dynamodb:Scan" not in set().union(*map(_actions, limits)), function
    # The prefix the condition allows is exactly the partitions the code writes.
    assert day_partition("2026-12-07").startswith(day_partition(""))
    assert day_partition("") == AUDIT_DAYS + "#"


def test_the_ledger_grants_are_as_narrow_as_the_calls(template):
    by_sid = {s["Sid"]: s for s in _statements(template)}
    # Every query names an index; only the node directory is ever deleted from.
    source = (SRC / "store" / "dynamodb" / "store.py").read_text()
    assert source.count("self._client.query(") + source.count('"IndexName"') >= 2
    assert _actions(by_sid["LedgerIndexes"]) == {"dynamodb:Query"}
    assert all("/index/*" in str(r) for r in by_sid["LedgerIndexes"]["Resource"])
    assert "dynamodb:Query" not in _actions(by_sid["LedgerAndNodeDirectory"])
    assert by_sid["NodeDirectoryDelete"]["Resource"] == {"Fn::GetAtt": ["NodesTable", "Arn"]}
    assert re.findall(r"delete_item\(\s*TableName=self\.(\w+)", source) == ["_nodes"]


def test_issuance_is_limited_to_the_passthrough_templates(template):
    issue = next(s for s in _statements(template) if s["Action"] == "acm-pca:IssueCertificate")
    allowed = issue["Condition"]["StringEquals"]["acm-pca:TemplateArn"]
    arns = {a["Fn::Sub"].replace("${AWS::Partition}", "aws") for a in allowed}
    assert arns == {
        api_passthrough_template(Settings().acmpca_template_arn),
        NODE_TEMPLATE_ARN,
    }


# The template's API is the route table's rows that the Lambda handler serves.
ROUTE_KEYS = {route.key for route in ROUTES if route.on_lambda}
# Open at API Gateway: every route whose caller nodecert does not authenticate with an OIDC
# identity (the CA chain, liveness, and renewal, whose Bearer token is a proof-of-possession
# JWT, nodecert.issuing.renewal, that a Cognito authorizer would reject).
OPEN_ROUTES = {route.key for route in ROUTES if route.on_lambda and not route.access.authenticated}


API_FUNCTIONS = ("NodecertFunction", "NodecertAdminFunction")


def reserved(parameter):
    """Reserved concurrency from ``parameter``, unless ReservedConcurrency is Off."""
    return {"Fn::If": ["Reserved", {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}


# Issuance runs in a function of its own (its own reserved concurrency); reads and
# administration in another, with the same code and no permission to issue.
ISSUANCE_ROUTES = {route.key for route in ROUTES if route.on_lambda and route.issues}


def _api_events(template, functions=API_FUNCTIONS):
    return {
        f"{e['Properties']['Method'].upper()} {e['Properties']['Path']}": e
        for function in functions
        for e in template["Resources"][function]["Properties"]["Events"].values()
        if e["Type"] == "Api"
    }


def test_issuance_is_split_from_reads_and_administration(template):
    assert set(_api_events(template, ["NodecertFunction"])) == ISSUANCE_ROUTES
    admin = set(_api_events(template, ["NodecertAdminFunction"]))
    assert admin == ROUTE_KEYS - ISSUANCE_ROUTES
    issuer, reads = (template["Resources"][f]["Properties"] for f in API_FUNCTIONS)
    assert reads["Handler"] == issuer["Handler"]
    assert reads["Environment"] == issuer["Environment"]
    assert issuer["ReservedConcurrentExecutions"] == reserved("IssuerReservedConcurrency")
    assert reads["ReservedConcurrentExecutions"] == reserved("AdminReservedConcurrency")
    (policy,) = reads["Policies"]
    actions = set().union(*(_actions(s) for s in policy["Statement"]))
    assert not {"acm-pca:IssueCertificate", "acm-pca:GetCertificate"} & actions
    # Apart from issuing, the same grants as the issuer (the same code serves both).
    issuer_actions = set().union(*(_actions(s) for s in _statements(template)))
    assert issuer_actions - actions == {"acm-pca:IssueCertificate", "acm-pca:GetCertificate"}


def test_the_api_routes_are_exactly_the_lambda_adapters(template):
    assert set(_api_events(template)) == ROUTE_KEYS
    # The nginx-side decision and the local CA's CRL have no place behind API Gateway
    # (docs/aws.md): the authorizer Lambda decides there, and ACM PCA publishes its own CRL.
    assert not {"POST /v1/authorize", "GET /v1/crl"} & ROUTE_KEYS


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
def transformed(raw_template):
    """The template after the SAM transform, as CloudFormation would deploy it."""
    return sam_translate(raw_template)


def test_the_deployed_methods_use_cognito_except_the_open_routes(transformed):
    body = transformed["Resources"]["Api"]["Properties"]["Body"]
    security = {
        f"{method.upper()} {path}": [name for entry in op["security"] for name in entry]
        for path, operations in body["paths"].items()
        for method, op in operations.items()
    }
    assert set(security) == ROUTE_KEYS
    for key, names in security.items():
        # SAM marks a method without authorizer with a "NONE" entry, not in securityDefinitions.
        assert names == (["NONE"] if key in OPEN_ROUTES else ["CognitoAuthorizer"]), key
    assert set(body["securityDefinitions"]) == {"CognitoAuthorizer"}


# The node half (issue 13 item 1) and its caching rule (issue 12 item 4).


def _functions(transformed):
    return {
        name: r["Properties"]
        for name, r in transformed["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
    }


def test_every_function_handler_exists(transformed):
    import importlib

    handlers = {name: p["Handler"] for name, p in _functions(transformed).items()}
    assert handlers == {
        "NodecertFunction": "nodecert.aws.handler.lambda_handler",
        "NodecertAdminFunction": "nodecert.aws.handler.lambda_handler",
        "NodeAuthorizerFunction": "nodecert.aws.authorizer.lambda_handler",
        "RevocationSweepFunction": "nodecert.aws.sweep.sweep_handler",
    }
    for handler in handlers.values():
        module, _, name = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), handler


def test_the_mtls_domain_uses_the_truststore_and_maps_the_node_api(transformed):
    resources = transformed["Resources"]
    domain = resources["NodeDomain"]
    assert domain["Type"] == "AWS::ApiGateway::DomainName"
    assert domain["Condition"] == "NodeDomainReady"
    properties = domain["Properties"]
    assert properties["SecurityPolicy"] == "TLS_1_2"
    assert properties["RegionalCertificateArn"] == {"Ref": "NodeDomainCertificateArn"}
    mtls = properties["MutualTlsAuthentication"]
    assert mtls["TruststoreUri"] == {"Fn::Sub": "s3://${TruststoreBucket}/${NodeTruststoreKey}"}
    assert mtls["TruststoreVersion"] == {"Ref": "NodeTruststoreVersion"}
    bucket = resources["TruststoreBucket"]
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    mapping = resources["NodeBasePathMapping"]["Properties"]
    assert mapping["RestApiId"] == {"Ref": "NodeApi"}
    assert mapping["DomainName"] == {"Ref": "NodeDomain"}
    assert mapping["Stage"] == {"Ref": "NodeApiStage"}
    assert resources["NodeApiStage"]["Properties"]["RestApiId"] == {"Ref": "NodeApi"}


def test_the_node_api_is_reachable_only_through_the_domain(transformed):
    body = rest_apis(transformed)["NodeApi"]
    # OpenAPI 3 carries it in servers[]; Swagger 2 at the top level.
    holders = [body, *body.get("servers", [])]
    flags = [
        h["x-amazon-apigateway-endpoint-configuration"]["disableExecuteApiEndpoint"]
        for h in holders
        if "x-amazon-apigateway-endpoint-configuration" in h
    ]
    assert flags == [True]


def test_every_node_route_runs_the_node_authorizer_and_proxies_to_the_backend(transformed):
    body = rest_apis(transformed)["NodeApi"]
    assert set(body["paths"]) == {"/nodes/{nodeId}", "/nodes/{nodeId}/{proxy+}"}
    for path, operations in body["paths"].items():
        (operation,) = operations.values()
        assert operation["security"] == [{"NodeAuthorizer": []}], path
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "http_proxy"
        assert integration["uri"].startswith("https://${stageVariables.nodeBackend}/nodes/{nodeId}")
        # The backend learns the caller from the authorizer, never from a client header.
        assert integration["requestParameters"]["integration.request.header.X-Nodecert-User"] == (
            "context.authorizer.userId"
        )
    (scheme,) = security_schemes(body).values()
    authorizer = scheme["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "request"
    assert function_of(transformed, authorizer) == "NodeAuthorizerFunction"


def test_no_cached_authorizer_can_reuse_an_allow_across_certificates_or_nodes(transformed):
    assert cached_authorizer_violations(transformed) == []


def _with_node_authorizer(template, sources, ttl):
    document = copy.deepcopy(template)
    authorizer = node_authorizer(document)
    authorizer["identitySource"] = sources
    if ttl is None:
        del authorizer["authorizerResultTtlInSeconds"]  # API Gateway's default: 300 s
    else:
        authorizer["authorizerResultTtlInSeconds"] = ttl
    return sam_translate(document)


@pytest.mark.parametrize(
    ("sources", "ttl"),
    [
        ("method.request.header.Host", None),  # the old advice: any trusted certificate
        ("method.request.header.Host", 300),
        ("context.identity.clientCert.clientCertPem", 60),
        ("method.request.header.X-Anything, context.identity.clientCert.serialNumber", None),
    ],
)
def test_the_caching_rule_fails_on_a_cache_keyed_on_less_than_both(template, sources, ttl):
    (problem,) = cached_authorizer_violations(_with_node_authorizer(template, sources, ttl))
    assert "NodeApi.NodeAuthorizer" in problem


def test_the_caching_rule_accepts_a_cache_keyed_on_certificate_and_node(template):
    transformed = _with_node_authorizer(
        template, "context.identity.clientCert.clientCertPem, method.request.path.nodeId", 60
    )
    assert cached_authorizer_violations(transformed) == []


def _variables(template, function):
    return template["Resources"][function]["Properties"]["Environment"]["Variables"]


def test_the_authorizer_environment_names_a_ca_and_the_tables(template):
    variables = _variables(template, "NodeAuthorizerFunction")
    assert variables["NODECERT_CA"] == "acmpca"
    # The activation's Ref is the CA's ARN, and waits for the CA to be ACTIVE.
    assert variables["NODECERT_ACMPCA_CA_ARN"] == {"Ref": "CertificateAuthorityActivation"}
    assert variables["NODECERT_DYNAMODB_NODES_TABLE"] == {"Ref": "NodesTable"}
    assert variables["NODECERT_DYNAMODB_CERTIFICATES_TABLE"] == {"Ref": "CertificatesTable"}
    assert variables["NODECERT_TRUST_DOMAIN"] == {"Ref": "TrustDomain"}
    placeholders = {k: v if isinstance(v, str) else "x" for k, v in variables.items()}
    settings = Settings.from_env(placeholders)
    assert (settings.ca, settings.store, settings.authorizer_target) == (
        "acmpca",
        "dynamodb",
        "path:nodeId",
    )


def _function_statements(template, function):
    (policy,) = template["Resources"][function]["Properties"]["Policies"]
    return policy["Statement"]


def test_the_authorizer_may_read_two_items_and_the_ca_chain_only(template):
    grants = {
        (action, str(s["Resource"]))
        for s in _function_statements(template, "NodeAuthorizerFunction")
        for action in _actions(s)
    }
    assert grants == {
        # The subordinate slots of a rotation (slot B exists only then; shapes below).
        ("acm-pca:GetCertificateAuthorityCertificate", str([{"Ref": "CertificateAuthority"}])),
        (
            "dynamodb:GetItem",
            str(
                [
                    {"Fn::GetAtt": ["NodesTable", "Arn"]},
                    {"Fn::GetAtt": ["CertificatesTable", "Arn"]},
                ]
            ),
        ),
    }
    # What the decision reads: the certificate's ledger row and the node's owner.
    access = (SRC / "nodeside" / "access.py").read_text()
    assert "self.ledger.get(" in access and "self.nodes.owner_of(" in access


def test_a_packaged_chain_spares_the_authorizer_every_pca_call(raw_template, template):
    # Default: the first decision of each environment asks PCA for the chain.
    assert "NODECERT_CA_BUNDLE" not in _variables(template, "NodeAuthorizerFunction")
    packaged = issuing_ca_shape(raw_template, "PrivateCATwoTier", chain_packaged=True)
    variables = _variables(packaged, "NodeAuthorizerFunction")
    # Where deploy/build.sh puts CA_CHAIN (tests/integration/test_template_issuing_ca.py).
    assert variables["NODECERT_CA_BUNDLE"] == "/var/task/nodecert-ca.pem"
    placeholders = {k: v if isinstance(v, str) else "x" for k, v in variables.items()}
    assert Settings.from_env(placeholders).ca_bundle is not None
    actions = {
        a for s in _function_statements(packaged, "NodeAuthorizerFunction") for a in _actions(s)
    }
    assert actions == {"dynamodb:GetItem"}
    # The other functions are as before: the issuer still describes and signs at PCA.
    assert "NODECERT_CA_BUNDLE" not in _variables(packaged, "NodecertFunction")
    parameter = raw_template["Parameters"]["NodeCAChainPackaged"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("No", ["No", "Yes"])


# Hardening (issue 13 item 3).


def test_no_arn_hard_codes_the_partition():
    assert "arn:aws:" not in TEMPLATE.read_text()


def test_every_function_has_a_log_group_with_retention(template, transformed):
    groups = {
        r["Properties"]["LogGroupName"]["Fn::Sub"]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Logs::LogGroup"
    }
    for function in _functions(transformed):
        assert groups[f"/aws/lambda/${{{function}}}"]["RetentionInDays"] == {
            "Ref": "LogRetentionDays"
        }


def test_every_stage_throttles_and_never_traces_data(transformed):
    stages = [r for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert len(stages) == 2
    for stage in stages:
        (settings,) = stage["Properties"]["MethodSettings"]
        assert settings["DataTraceEnabled"] is False  # responses carry private keys
        assert settings["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}
        assert settings["ThrottlingBurstLimit"] == {"Ref": "ThrottlingBurstLimit"}
        assert (settings["ResourcePath"], settings["HttpMethod"]) == ("/*", "*")


def test_the_issuer_has_reserved_concurrency(transformed):
    function = _functions(transformed)["NodecertFunction"]
    assert function["ReservedConcurrentExecutions"] == reserved("IssuerReservedConcurrency")
    sweep = _functions(transformed)["RevocationSweepFunction"]
    assert sweep["ReservedConcurrentExecutions"] == {
        "Fn::If": ["Reserved", 1, {"Ref": "AWS::NoValue"}]
    }


def test_reserved_concurrency_can_be_switched_off_for_a_small_account(transformed):
    from tests.rehearsal.stack import Stack

    for value, expected in (("On", [10, 5, 1]), ("Off", [])):
        stack = Stack(transformed, {"ReservedConcurrency": value}, None)
        resolved = stack.resolve(
            [
                _functions(transformed)[f].get("ReservedConcurrentExecutions")
                for f in ("NodecertFunction", "NodecertAdminFunction", "RevocationSweepFunction")
            ]
        )
        assert [int(v) for v in resolved] == expected, value


def test_the_issuer_runs_from_a_snapstart_snapshot_through_its_alias(transformed):
    function = _functions(transformed)["NodecertFunction"]
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    resources = transformed["Resources"]
    (alias,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Alias"]
    assert alias["Properties"]["FunctionName"] == {"Ref": "NodecertFunction"}
    # Every API integration of the issuer calls the alias (the snapshot), not $LATEST.
    text = json.dumps(resources)
    assert "${NodecertFunctionAliaslive}/invocations" in text
    assert "${NodecertFunction.Arn}/invocations" not in text


def test_the_ledger_keeps_point_in_time_recovery_and_survives_sam_delete(template):
    for logical in ("NodesTable", "CertificatesTable", "OutboxTable"):
        resource = template["Resources"][logical]
        assert resource["Properties"]["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }
        assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    assert template["Resources"]["TruststoreBucket"]["DeletionPolicy"] == "Retain"


# Resource types that hold what a stack cannot recreate: each must say what a delete or a
# replacement does to it (docs/aws.md, "Teardown"), so that a new table cannot forget it.
STATEFUL_TYPES = {
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::KMS::Key",
    "AWS::Cognito::UserPool",
    "AWS::ACMPCA::CertificateAuthority",
    "AWS::Logs::LogGroup",
}
# What each one is given, and why (the template's comments and docs/aws.md say it too).
RETENTION = {
    "NodesTable": "Retain",  # the ledger
    "CertificatesTable": "Retain",
    "OutboxTable": "Retain",  # the audit trail and revocations not yet sent
    "TruststoreBucket": "Retain",
    "IssuingKey": "Retain",  # a KMS issuing key signs what nodes trust
    "UserPool": "Retain",  # users and passwords cannot be exported
    "LimitsTable": "Delete",  # nothing outlives a day
    "CertificateAuthority": "Delete",  # restorable for 30 days; billed while retained
    "CertificateAuthorityB": "Delete",
    "RootCertificateAuthority": "Delete",
    # What the functions logged outlives the stack (evidence), for LogRetentionDays.
    "NodecertFunctionLogs": "Retain",
    "NodecertAdminFunctionLogs": "Retain",
    "NodeAuthorizerFunctionLogs": "Retain",
    "RevocationSweepFunctionLogs": "Retain",
}


def retention_of(template):
    """Each stateful resource's (DeletionPolicy, UpdateReplacePolicy), None where unset."""
    return {
        name: (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy"))
        for name, resource in template["Resources"].items()
        if resource["Type"] in STATEFUL_TYPES
    }


def test_every_stateful_resource_says_what_a_delete_and_a_replacement_do(raw_template, transformed):
    # The transformed template too: nothing SAM generates may hold state without a policy.
    for shape in (raw_template, transformed):
        assert retention_of(shape) == {name: (p, p) for name, p in RETENTION.items()}


def test_the_retention_rule_fails_on_a_table_without_a_policy(raw_template):
    forgetful = copy.deepcopy(raw_template)
    forgetful["Resources"]["AuditCopy"] = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": copy.deepcopy(raw_template["Resources"]["LimitsTable"]["Properties"]),
    }
    del forgetful["Resources"]["UserPool"]["UpdateReplacePolicy"]
    found = retention_of(forgetful)
    assert found["AuditCopy"] == (None, None)
    assert found["UserPool"] == ("Retain", None)
    assert found != {name: (p, p) for name, p in RETENTION.items()}


def test_the_sweep_runs_on_a_schedule_and_may_only_revoke(template, transformed):
    schedules = [
        r["Properties"]
        for r in transformed["Resources"].values()
        if r["Type"] == "AWS::Scheduler::Schedule"
    ]
    (schedule,) = schedules
    assert schedule["ScheduleExpression"].startswith("rate(")
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": ["RevocationSweepFunction", "Arn"]}
    statements = _function_statements(template, "RevocationSweepFunction")
    actions = set().union(*map(_actions, statements))
    assert {a for a in actions if a.startswith("acm-pca:")} == {"acm-pca:RevokeCertificate"}
    assert "NodesTable" not in str(statements)  # a sweep never touches the node directory
    by_sid = {s["Sid"]: s for s in statements}
    assert _actions(by_sid["LedgerRows"]) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert _actions(by_sid["LedgerIndexes"]) == {"dynamodb:Query"}
    # The outbox: its own table's three partitions, by Query (table and byTime), never Scan.
    outbox = by_sid["RevocationOutbox"]
    assert outbox["Resource"] == [
        {"Fn::GetAtt": ["OutboxTable", "Arn"]},
        {"Fn::Sub": "${OutboxTable.Arn}/index/byTime"},
    ]
    assert _actions(outbox) == {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
    }
    assert outbox["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [REVOKE, SWEEP, MOVED]}
    }
    # The upgrade: finds the older layout's items in the limits table, may delete only those.
    find, move = by_sid["OlderOutboxItemsFind"], by_sid["OlderOutboxItemsMove"]
    assert (_actions(find), _actions(move)) == ({"dynamodb:Scan"}, {"dynamodb:DeleteItem"})
    assert find["Resource"] == move["Resource"] == {"Fn::GetAtt": ["LimitsTable", "Arn"]}
    assert move["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [p + "*" for p in OLD_PREFIXES]}
    }
    # An older version's audit entries go to their days' partitions; nothing else is put.
    moved_audit = by_sid["OlderAuditEntriesMove"]
    assert _actions(moved_audit) == {"dynamodb:PutItem"}
    assert moved_audit["Resource"] == {"Fn::GetAtt": ["OutboxTable", "Arn"]}
    assert moved_audit["Condition"] == AUDIT_KEYS
    # What the outbox and the upgrade call is exactly what the sweep may do, plus the
    # audit trail's calls (never made by a sweep: finish_revocations records no audit).
    called = _calls("store/dynamodb/outbox.py", "dynamodb")
    called |= _calls("store/dynamodb/upgrade.py", "dynamodb")
    assert called == actions - {"acm-pca:RevokeCertificate", "kms:GetPublicKey"}
    variables = _variables(template, "RevocationSweepFunction")
    shared = _variables(template, "NodecertFunction")
    for name in ("NODECERT_CA", "NODECERT_ACMPCA_CA_ARN", "NODECERT_DYNAMODB_CERTIFICATES_TABLE"):
        assert variables[name] == shared[name], name


# Issue 18: the node backend trusts only API Gateway, and a deploy works the first time.


def test_the_node_stage_presents_a_client_certificate_to_the_backend(transformed):
    resources = transformed["Resources"]
    stage = resources["NodeApiStage"]["Properties"]
    certificate = {"Ref": "NodeBackendClientCertificate"}
    assert stage["ClientCertificateId"] == {
        "Fn::If": ["NodeBackendClientCertificate", certificate, {"Ref": "AWS::NoValue"}]
    }
    assert resources["NodeBackendClientCertificate"]["Type"] == (
        "AWS::ApiGateway::ClientCertificate"
    )
    # The backend URL is a stage variable, so a new one needs no new deployment; every
    # integration goes there, by VPC link when that is the choice.
    variables = stage["Variables"]["Fn::If"]
    assert variables[0] == "NodeBackendVpcLink"
    without_scheme = {"Fn::Select": [1, {"Fn::Split": ["https://", {"Ref": "NodeBackendUrl"}]}]}
    assert all(v["nodeBackend"] == without_scheme for v in variables[1:])
    for operations in rest_apis(transformed)["NodeApi"]["paths"].values():
        (operation,) = operations.values()
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["connectionType"] == {
            "Fn::If": ["NodeBackendVpcLink", "VPC_LINK", "INTERNET"]
        }
    outputs = transformed["Outputs"]
    assert outputs["NodeBackendClientCertificateId"]["Value"] == certificate


def test_the_node_api_deployment_changes_with_its_body(template):
    body = template["Resources"]["NodeApi"]["Properties"]["Body"]
    deployments = [
        name
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::ApiGateway::Deployment"
    ]
    # Rename the deployment to this when the body changes (else the stage keeps the old one).
    assert deployments == [f"NodeApiDeployment{body_digest(body)}"]
    stage = template["Resources"]["NodeApiStage"]["Properties"]
    assert stage["DeploymentId"] == {"Ref": deployments[0]}


def test_the_backend_recipe_requires_api_gateways_certificate_and_routes_on_the_node():
    recipe = (TEMPLATE.parents[0] / "nginx" / "nodecert-apigateway-backend.conf").read_text()
    assert "ssl_verify_client on;" in recipe
    assert "ssl_client_certificate /etc/nginx/nodecert/apigateway-client.crt;" in recipe
    assert "map $http_x_nodecert_node $nodecert_node_api" in recipe
    assert "proxy_pass http://$nodecert_node_api;" in recipe
    assert "get-client-certificate" in recipe


def test_two_stacks_in_one_account_and_region_name_nothing_alike(transformed):
    first, second = (
        unique_names(transformed, "nodecert"),
        unique_names(transformed, "nodecert-staging"),
    )
    assert ("RevocationSweepFunctionEvery5Minutes", "Name") in first
    clashes = sorted(key for key in first if first[key] == second[key])
    assert clashes == []


def test_the_schedule_name_fits_schedulers_64_characters(transformed):
    from tests.rehearsal.stack import Stack

    schedule = transformed["Resources"]["RevocationSweepFunctionEvery5Minutes"]["Properties"]
    stack = Stack(transformed, {}, clients=None, name="n" * 128)
    assert len(stack.resolve(schedule["Name"])) <= 64


def _model(service):
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def test_parameter_bounds_fit_the_acm_pca_model(template):
    parameters = template["Parameters"]
    subject = _model("acm-pca").shape_for("ASN1Subject").members
    general_name = _model("acm-pca").shape_for("GeneralName").members
    organization_max = subject["Organization"].metadata["max"]
    common_name_max = subject["CommonName"].metadata["max"]
    uri_max = general_name["UniformResourceIdentifier"].metadata["max"]
    ca = template["Resources"]["CertificateAuthority"]["Properties"]["Subject"]
    suffix = ca["CommonName"]["Fn::Sub"].replace("${Organization}", "")
    assert parameters["Organization"]["MaxLength"] + len(suffix) <= common_name_max
    assert parameters["Organization"]["MaxLength"] <= organization_max
    # spiffe://<trust domain>/user/<id>/node/<id>, ids of at most 64 characters.
    longest = re.fullmatch(r"\[a-z0-9._-\]\{1,(\d+)\}", parameters["TrustDomain"]["AllowedPattern"])
    assert longest is not None
    uri = f"spiffe://{'t' * int(longest[1])}/user/{'u' * 64}/node/{'n' * 64}"
    assert len(uri) <= uri_max
    standards = _model("acm-pca").shape_for("KeyStorageSecurityStandard").enum
    assert set(parameters["KeyStorageSecurityStandard"]["AllowedValues"]) == set(standards)
    assert ca != {} and template["Resources"]["CertificateAuthority"]["Properties"][
        "KeyStorageSecurityStandard"
    ] == {"Ref": "KeyStorageSecurityStandard"}


def test_parameter_bounds_fit_the_cognito_s3_and_api_gateway_models(template):
    parameters = template["Parameters"]
    group = _model("cognito-idp").shape_for("GroupNameType").metadata
    assert group["min"] <= parameters["AdminGroup"]["MinLength"]
    assert parameters["AdminGroup"]["MaxLength"] <= group["max"]
    key = _model("s3").shape_for("ObjectKey").metadata
    # S3 object keys: at least the model's minimum, at most 1,024 bytes (S3's documentation).
    assert parameters["NodeTruststoreKey"]["MinLength"] >= key["min"]
    assert parameters["NodeTruststoreKey"]["MaxLength"] <= 1024
    assert parameters["NodeTruststoreVersion"]["MaxLength"] <= 1024
    # API Gateway's model bounds neither limit; 0 would refuse every request.
    settings = _model("apigateway").shape_for("MethodSetting").members
    assert settings["throttlingBurstLimit"].type_name == "integer"
    for name in ("ThrottlingRateLimit", "ThrottlingBurstLimit"):
        assert parameters[name]["MinValue"] >= 1, name
        assert parameters[name]["Default"] >= parameters[name]["MinValue"], name
    assert float(parameters["ThrottlingBurstLimit"]["Default"]).is_integer()


def test_no_endpoint_hard_codes_the_url_suffix():
    text = TEMPLATE.read_text()
    # Service principals keep amazonaws.com in every partition; endpoints do not.
    assert text.count("amazonaws.com") == text.count("apigateway.amazonaws.com")


def test_the_domain_takes_an_ownership_certificate_when_given(template):
    properties = template["Resources"]["NodeDomain"]["Properties"]
    assert properties["OwnershipVerificationCertificateArn"] == {
        "Fn::If": [
            "NodeDomainOwnershipCertificate",
            {"Ref": "NodeDomainOwnershipCertificateArn"},
            {"Ref": "AWS::NoValue"},
        ]
    }


def test_the_issuance_half_deploys_without_any_node_parameter(template, transformed):
    from tests.rehearsal.stack import Stack

    for name in ("NodeDomainName", "NodeDomainCertificateArn", "NodeBackendUrl"):
        assert template["Parameters"][name]["Default"] == "", name
    stack = Stack(transformed, {}, clients=None)
    node_half = {
        logical
        for logical, resource in transformed["Resources"].items()
        if not stack.condition(resource)
    }
    assert {"NodeApi", "NodeApiStage", "NodeDomain", "NodeBackendClientCertificate"} <= node_half
    assert not {"Api", "NodecertFunction", "CertificateAuthority", "TruststoreBucket"} & node_half


# Alarms: each counts what the code logs, or a Lambda metric of a function of the stack.
ALARMED_LOGS = {
    "NodecertFunctionLogs": ("backends/acmpca/calls.py",),
    "RevocationSweepFunctionLogs": ("backends/acmpca/calls.py", "aws/sweep.py"),
    "NodeAuthorizerFunctionLogs": ("aws/authorizer.py", "nodeside/access.py"),
}


def _filter_terms(pattern):
    """The quoted terms of a CloudWatch Logs filter pattern, and whether any one suffices
    (``?"a" ?"b"``) or all must appear (``"a" "b"``)."""
    terms = re.findall(r'(\??)"([^"]+)"', pattern)
    assert terms and pattern == " ".join(f'{q}"{term}"' for q, term in terms), pattern
    either = {q for q, _ in terms}
    assert len(either) == 1, f"{pattern}: mixed ? and plain terms"
    return [term for _, term in terms], either == {"?"}


def matches(pattern, line):
    """CloudWatch Logs' matching of a term pattern against an unstructured log event."""
    terms, any_one = _filter_terms(pattern)
    return (any if any_one else all)(term in line for term in terms)


def _filter(template, name):
    return template["Resources"][name]["Properties"]["FilterPattern"]


def _lambda_lines(caplog):
    # The Python runtime's line: [LEVEL] time request-id message.
    return [f"[{r.levelname}]\t2026-12-07T00:00:00Z\tid\t{r.getMessage()}" for r in caplog.records]


def test_the_throttling_filter_counts_what_pca_calls_log(template, caplog):
    import botocore.exceptions

    from nodecert.backends.acmpca.calls import Pacing, PCAError, call_with_retries
    from nodecert.backends.acmpca.parameters import RetryPolicy
    from nodecert.core.errors import BackendUnavailableError

    def throttled():
        error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        raise botocore.exceptions.ClientError(error, "IssueCertificate")

    pacing = Pacing(RetryPolicy(), lambda: 0.0, lambda _: None, lambda: 0.0)
    with caplog.at_level("WARNING"), pytest.raises(BackendUnavailableError):
        call_with_retries(throttled, pacing, deadline=10.0)
    for name in ("IssuerPCAThrottledFilter", "SweepPCAThrottledFilter"):
        assert [line for line in _lambda_lines(caplog) if matches(_filter(template, name), line)]
    # A refusal that is not throttling is not counted.
    caplog.clear()

    def refused():
        error = {"Error": {"Code": "InvalidStateException", "Message": "CA disabled"}}
        raise botocore.exceptions.ClientError(error, "IssueCertificate")

    with caplog.at_level("WARNING"), pytest.raises(PCAError):
        call_with_retries(refused, pacing, deadline=10.0)
    pattern = _filter(template, "IssuerPCAThrottledFilter")
    assert caplog.records and not any(matches(pattern, line) for line in _lambda_lines(caplog))


def test_the_sweep_filter_counts_a_run_that_leaves_revocations_pending(template, caplog):
    from nodecert.aws.sweep import drain

    class Stuck:
        def finish_revocations(self, *, limit=100, failed=None):
            return 3  # nothing moves

    class Done:
        def finish_revocations(self, *, limit=100, failed=None):
            return 0

    pattern = _filter(template, "SweepPendingFilter")
    with caplog.at_level("INFO"):
        assert drain(Stuck())["pending"] == 3
    assert any(matches(pattern, line) for line in _lambda_lines(caplog))
    caplog.clear()
    with caplog.at_level("INFO"):
        assert drain(Done())["pending"] == 0
    assert caplog.records and not any(matches(pattern, line) for line in _lambda_lines(caplog))


def test_the_authorizer_filter_counts_denials_for_failures_not_for_strangers(template, caplog):
    from nodecert.aws.authorizer import TargetSource, handle

    class Broken:
        def decide(self, pem, node):
            raise RuntimeError("the ledger is on fire")

    # A recorded REST authorizer event, with a certificate and a well-formed target.
    raw = (ROOT / "tests" / "events" / "authorizer_rest_request.json").read_text()
    event = json.loads(raw.replace("NODE_ID", "n1"))
    event["requestContext"].setdefault("identity", {})["clientCert"] = {
        "clientCertPem": "-----BEGIN"
    }
    pattern = _filter(template, "AuthorizerDenyingOnErrorsFilter")
    with caplog.at_level("INFO"):
        handle(event, Broken(), TargetSource())
    assert any(matches(pattern, line) for line in _lambda_lines(caplog))
    caplog.clear()
    with caplog.at_level("INFO"):
        handle({"type": "REQUEST"}, Broken(), TargetSource())  # no certificate: a stranger
    assert caplog.records and not any(matches(pattern, line) for line in _lambda_lines(caplog))


def test_every_metric_filter_counts_a_line_the_code_logs(template):
    filters = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Logs::MetricFilter"
    ]
    assert len(filters) == 4
    for properties in filters:
        group = properties["LogGroupName"]["Ref"]
        source = "".join((SRC / m).read_text() for m in ALARMED_LOGS[group])
        terms, _ = _filter_terms(properties["FilterPattern"])
        for term in terms:
            assert term in source, (group, term)
        (transformation,) = properties["MetricTransformations"]
        assert transformation["MetricNamespace"] == {"Fn::Sub": "nodecert/${AWS::StackName}"}


def test_the_alarms_watch_issuance_pca_the_sweep_and_the_authorizer(template):
    alarms = {
        name: r["Properties"]
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    watched = {
        (a["MetricName"], str(a.get("Dimensions", [{}])[0].get("Value", "")))
        for a in alarms.values()
    }
    assert ("Errors", str({"Ref": "NodecertFunction"})) in watched
    assert ("Errors", str({"Ref": "NodeAuthorizerFunction"})) in watched
    assert ("PCAThrottled", "") in watched
    assert ("SweepPending", "") in watched
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == {
            "Fn::If": ["AlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


def test_the_walkthroughs_password_hint_is_the_pools_policy(template):
    policy = template["Resources"]["UserPool"]["Properties"]["Policies"]["PasswordPolicy"]
    script = (TEMPLATE.parent / "aws" / "walkthrough.sh").read_text()
    hint = re.search(r"ALICE_PASSWORD \(the pool's policy: (\d+)\+ characters", script)
    assert hint is not None and int(hint[1]) == policy["MinimumLength"]
    assert ("symbol" in script) == policy["RequireSymbols"]


def _node_stack(transformed, **parameters):
    from tests.rehearsal.stack import Stack

    stack = Stack(transformed, {"NodeBackendUrl": "https://backend.example", **parameters}, None)
    for logical in transformed["Resources"]:
        stack.physical[logical] = f"physical-{logical}"
    return stack


def test_the_vpc_link_variant_goes_through_the_link_with_no_client_certificate(transformed):
    stack = _node_stack(transformed, NodeBackendAuthentication="VpcLink", NodeVpcLinkId="abc123")
    resources = transformed["Resources"]
    assert not stack.condition(resources["NodeBackendClientCertificate"])
    stage = stack.resolve(
        {
            k: resources["NodeApiStage"]["Properties"][k]
            for k in ("Variables", "ClientCertificateId")
        }
    )
    assert stage == {"Variables": {"nodeBackend": "backend.example", "vpcLinkId": "abc123"}}
    for operations in rest_apis(transformed)["NodeApi"]["paths"].values():
        (operation,) = operations.values()
        integration = stack.resolve(operation["x-amazon-apigateway-integration"])
        assert integration["connectionType"] == "VPC_LINK"
        assert integration["connectionId"] == "${stageVariables.vpcLinkId}"


def test_the_client_certificate_variant_presents_the_stacks_certificate(transformed):
    stack = _node_stack(transformed)
    resources = transformed["Resources"]
    assert stack.condition(resources["NodeBackendClientCertificate"])
    stage = stack.resolve(resources["NodeApiStage"]["Properties"]["ClientCertificateId"])
    assert stage == "physical-NodeBackendClientCertificate"
    for operations in rest_apis(transformed)["NodeApi"]["paths"].values():
        (operation,) = operations.values()
        integration = stack.resolve(operation["x-amazon-apigateway-integration"])
        assert integration["connectionType"] == "INTERNET"
        assert "connectionId" not in integration


def test_rules_refuse_a_half_set_node_half(transformed):
    rules = transformed["Rules"]
    assert rules["VpcLinkNeedsItsId"]["RuleCondition"] == {
        "Fn::Equals": [{"Ref": "NodeBackendAuthentication"}, "VpcLink"]
    }
    needed = {
        a["Assert"]["Fn::Not"][0]["Fn::Equals"][0]["Ref"]
        for a in rules["DomainNeedsItsParts"]["Assertions"]
    }
    assert needed == {"NodeBackendUrl", "NodeDomainName", "NodeDomainCertificateArn"}


def test_both_api_functions_hold_claims_to_the_stacks_app_client(template):
    # The Cognito authorizer checks no audience: the functions check it (verifiers.gateway).
    for function in API_FUNCTIONS:
        variables = _variables(template, function)
        assert variables["NODECERT_OIDC_AUDIENCE"] == {"Ref": "UserPoolClient"}, function
        issuer = variables["NODECERT_OIDC_ISSUER"]["Fn::Sub"]
        assert issuer == "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/${UserPool}"
