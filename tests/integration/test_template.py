"""deploy/template.yaml: cfn-lint is clean, and it agrees with the code that uses it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

from nodecert.backends.acmpca import NODE_TEMPLATE_ARN, api_passthrough_template
from nodecert.config import Settings
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


def test_tables_match_the_store(template):
    expected = table_definitions(nodes_table="n", certificates_table="c")
    for logical, definition in zip(("NodesTable", "CertificatesTable"), expected, strict=True):
        properties = template["Resources"][logical]["Properties"]
        for key in ("BillingMode", "KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes"):
            assert properties[key] == definition[key], (logical, key)


def test_lambda_environment_is_valid_settings(template):
    variables = template["Resources"]["NodecertFunction"]["Properties"]["Environment"]["Variables"]
    placeholders = {k: v if isinstance(v, str) else "x" for k, v in variables.items()}
    placeholders["NODECERT_OIDC_ISSUER"] = "https://cognito-idp.eu-west-1.amazonaws.com/pool"
    settings = Settings.from_env(placeholders)
    assert (settings.ca, settings.store) == ("acmpca", "dynamodb")


def _statements(template):
    (policy,) = template["Resources"]["NodecertFunction"]["Properties"]["Policies"]
    return policy["Statement"]


def test_iam_allows_only_the_calls_the_adapters_make(template):
    allowed = set()
    for statement in _statements(template):
        actions = statement["Action"]
        allowed.update([actions] if isinstance(actions, str) else actions)
    called = set()
    for module, service in (("backends/acmpca.py", "acm-pca"), ("store/dynamodb.py", "dynamodb")):
        source = (SRC / module).read_text()
        for name in re.findall(r"client\.([a-z_]+)\(", source):
            if name in {"get_waiter", "create_table"}:
                continue  # create_tables is for tests; the stack creates the tables.
            called.add(f"{service}:{''.join(p.title() for p in name.split('_'))}")
    assert called == allowed


def test_issuance_is_limited_to_the_passthrough_templates(template):
    issue = next(s for s in _statements(template) if s["Action"] == "acm-pca:IssueCertificate")
    allowed = issue["Condition"]["StringEquals"]["acm-pca:TemplateArn"]
    arns = {a["Fn::Sub"].replace("${AWS::Partition}", "aws") for a in allowed}
    assert arns == {
        api_passthrough_template(Settings().acmpca_template_arn),
        NODE_TEMPLATE_ARN,
    }
