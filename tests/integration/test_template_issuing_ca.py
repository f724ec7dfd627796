"""deploy/template.yaml's IssuingCA: one Private CA, a two-tier Private CA, or a KMS key.

Each shape is checked on the SAM-translated template as CloudFormation would resolve it
(tests/rehearsal/stack.py, with every resource given a placeholder id): what is made, what
each function's environment parses to, and what its role may do. Property values and
enums are held to botocore's service models and to the code that reads them.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from nodecert.backends.signers import kms
from nodecert.core.config import Settings
from tests.rehearsal.stack import Stack
from tests.rehearsal.template import (
    ISSUING_CAS,
    TEMPLATE,
    issuing_ca_shape,
    load,
    sam_translate,
)

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "nodecert"
FUNCTIONS = (
    "NodecertFunction",
    "NodecertAdminFunction",
    "RevocationSweepFunction",
    "NodeAuthorizerFunction",
)
PCA_RESOURCES = {
    "CertificateAuthority",
    "CertificateAuthorityCertificate",
    "CertificateAuthorityActivation",
}
ROOT_RESOURCES = {
    "RootCertificateAuthority",
    "RootCertificateAuthorityCertificate",
    "RootCertificateAuthorityActivation",
}
# Where deploy/build.sh puts CA_CHAIN, and the template's NODECERT_CA_BUNDLE.
PACKAGED_CHAIN = "/var/task/nodecert-ca.pem"


class _Resolved(Stack):
    """A stack whose resources all exist, with placeholder ids and attributes."""

    def _get_att(self, name: str, attribute: str) -> str:
        return f"{name}.{attribute}"


@pytest.fixture(scope="module")
def raw():
    return load()


@pytest.fixture(scope="module")
def translated(raw):
    return sam_translate(raw)


def resolved(translated, issuing_ca):
    stack = _Resolved(translated, {"IssuingCA": issuing_ca}, clients=None)
    for logical in translated["Resources"]:
        stack.physical[logical] = f"physical-{logical}"
    # An activation's Ref is its CA's ARN (the resource's primary identifier).
    stack.physical["CertificateAuthorityActivation"] = "physical-CertificateAuthority"
    stack.physical["RootCertificateAuthorityActivation"] = "physical-RootCertificateAuthority"
    return stack


def made(stack):
    return {
        logical
        for logical, resource in stack.resources.items()
        if resource["Type"].startswith(("AWS::ACMPCA::", "AWS::KMS::"))
        and stack.condition(resource)
    }


def environment(stack, function):
    resource = stack.resources[function]
    return {
        k: str(v)
        for k, v in stack.resolve(resource["Properties"]["Environment"])
        .get("Variables", {})
        .items()
    }


def grants(stack, function):
    """(action, resource) pairs of ``function``'s role, as deployed."""
    role = stack.resources[f"{function}Role"]["Properties"]
    pairs = set()
    for policy in stack.resolve(role.get("Policies", [])):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            resources = statement["Resource"]
            for action in [actions] if isinstance(actions, str) else actions:
                for resource in resources if isinstance(resources, list) else [resources]:
                    pairs.add((action, str(resource)))
    return pairs


def test_the_default_is_the_single_private_ca(raw):
    assert raw["Parameters"]["IssuingCA"]["Default"] == "PrivateCA"
    assert set(raw["Parameters"]["IssuingCA"]["AllowedValues"]) == set(ISSUING_CAS)


@pytest.mark.parametrize(
    ("issuing_ca", "expected"),
    [
        ("PrivateCA", PCA_RESOURCES),
        ("PrivateCATwoTier", PCA_RESOURCES | ROOT_RESOURCES),
        ("KMS", {"IssuingKey"}),
    ],
)
def test_each_shape_makes_its_ca_and_nothing_of_the_others(translated, issuing_ca, expected):
    assert made(resolved(translated, issuing_ca)) == expected


@pytest.mark.parametrize("issuing_ca", ISSUING_CAS)
def test_every_function_environment_is_valid_settings_naming_the_issuing_ca(translated, issuing_ca):
    stack = resolved(translated, issuing_ca)
    for function in FUNCTIONS:
        variables = environment(stack, function)
        settings = Settings.from_env(variables)
        if issuing_ca == "KMS":
            assert settings.ca == "local", function
            assert settings.acmpca_ca_arn is None, function
            assert str(settings.ca_bundle) == PACKAGED_CHAIN, function
            # The authorizer checks certificates against the chain; it never signs.
            expected_key = None if function == "NodeAuthorizerFunction" else "IssuingKey.Arn"
            assert settings.ca_kms_key_id == expected_key, function
        else:
            # The issuing CA: the root itself, or the subordinate; never the idle root.
            assert settings.ca == "acmpca", function
            assert settings.acmpca_ca_arn == "physical-CertificateAuthority", function
            assert settings.ca_kms_key_id is None and settings.ca_bundle is None, function


@pytest.mark.parametrize("issuing_ca", ["PrivateCA", "PrivateCATwoTier"])
def test_with_a_private_ca_the_roles_use_the_issuing_ca_only(translated, issuing_ca):
    stack = resolved(translated, issuing_ca)
    for function in FUNCTIONS:
        pairs = grants(stack, function)
        pca = {resource for action, resource in pairs if action.startswith("acm-pca:")}
        assert pca == {"physical-CertificateAuthority"}, function
        assert not [a for a, _ in pairs if a.startswith("kms:")], function
    issuer = {a for a, _ in grants(stack, "NodecertFunction")}
    assert "acm-pca:IssueCertificate" in issuer


def test_with_kms_only_the_issuer_signs_and_only_with_the_stacks_key(translated):
    stack = resolved(translated, "KMS")
    key = "IssuingKey.Arn"
    # What the KMS signer calls (backends/signers/kms.py): the issuer may do exactly that.
    called = {
        "kms:" + "".join(p.title() for p in name.split("_"))
        for name in re.findall(
            r"client\.([a-z_]+)\(", (SRC / "backends" / "signers" / "kms.py").read_text()
        )
    }
    assert called == {"kms:Sign", "kms:GetPublicKey"}
    expected = {
        "NodecertFunction": {(a, key) for a in called},
        # They build the CA (its public key is read at start) but never sign.
        "NodecertAdminFunction": {("kms:GetPublicKey", key)},
        "RevocationSweepFunction": {("kms:GetPublicKey", key)},
        "NodeAuthorizerFunction": set(),
    }
    for function, kms_grants in expected.items():
        pairs = grants(stack, function)
        assert {p for p in pairs if p[0].startswith("kms:")} == kms_grants, function
        assert not [a for a, _ in pairs if a.startswith("acm-pca:")], function


def _model(service):
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def test_the_two_tier_hierarchy_is_an_idle_general_purpose_root_and_a_short_lived_subordinate(
    raw,
):
    document = issuing_ca_shape(raw, "PrivateCATwoTier")
    resources = document["Resources"]
    root = resources["RootCertificateAuthority"]["Properties"]
    issuing = resources["CertificateAuthority"]["Properties"]
    model = _model("acm-pca")
    assert (root["Type"], root["UsageMode"]) == ("ROOT", "GENERAL_PURPOSE")
    assert (issuing["Type"], issuing["UsageMode"]) == ("SUBORDINATE", "SHORT_LIVED_CERTIFICATE")
    for properties in (root, issuing):
        assert properties["Type"] in model.shape_for("CertificateAuthorityType").enum
        assert properties["UsageMode"] in model.shape_for("CertificateAuthorityUsageMode").enum
        assert properties["KeyAlgorithm"] in model.shape_for("KeyAlgorithm").enum
        assert properties["SigningAlgorithm"] in model.shape_for("SigningAlgorithm").enum
        common_name = properties["Subject"]["CommonName"]["Fn::Sub"]
        longest = common_name.replace(
            "${Organization}", "o" * raw["Parameters"]["Organization"]["MaxLength"]
        )
        assert len(longest) <= model.shape_for("ASN1Subject").members["CommonName"].metadata["max"]
    # The root signs itself, then the subordinate (path length 0: end entities only),
    # once it is ACTIVE (the activation's Ref is the root's ARN).
    root_certificate = resources["RootCertificateAuthorityCertificate"]["Properties"]
    assert root_certificate["CertificateAuthorityArn"] == {"Ref": "RootCertificateAuthority"}
    assert root_certificate["TemplateArn"]["Fn::Sub"].endswith("/RootCACertificate/V1")
    issuing_certificate = resources["CertificateAuthorityCertificate"]["Properties"]
    assert issuing_certificate["CertificateAuthorityArn"] == {
        "Ref": "RootCertificateAuthorityActivation"
    }
    assert issuing_certificate["CertificateSigningRequest"] == {
        "Fn::GetAtt": ["CertificateAuthority", "CertificateSigningRequest"]
    }
    assert issuing_certificate["TemplateArn"]["Fn::Sub"].endswith(
        "/SubordinateCACertificate_PathLen0/V1"
    )
    validity = model.shape_for("Validity").members["Type"].enum
    assert root_certificate["Validity"]["Type"] in validity
    assert issuing_certificate["Validity"]["Type"] == root_certificate["Validity"]["Type"]
    assert issuing_certificate["Validity"]["Value"] < root_certificate["Validity"]["Value"]
    # The subordinate is activated with its chain, the root's certificate.
    activation = resources["CertificateAuthorityActivation"]["Properties"]
    assert activation["Certificate"] == {
        "Fn::GetAtt": ["CertificateAuthorityCertificate", "Certificate"]
    }
    assert activation["CertificateChain"] == {
        "Fn::GetAtt": ["RootCertificateAuthorityCertificate", "Certificate"]
    }
    imported = model.operation_model("ImportCertificateAuthorityCertificate").input_shape
    assert {"Certificate", "CertificateChain"} <= set(imported.members)
    # Nothing but the subordinate's certificate and activation ever uses the root.
    users = ROOT_RESOURCES | {"CertificateAuthorityCertificate", "CertificateAuthorityActivation"}
    for logical, resource in resources.items():
        if logical not in users:
            assert "RootCertificateAuthority" not in str(resource), logical
    assert document["Outputs"]["RootCertificateAuthorityArn"]["Value"] == {
        "Ref": "RootCertificateAuthority"
    }


def test_the_single_private_ca_is_unchanged_a_short_lived_root(raw):
    resources = issuing_ca_shape(raw, "PrivateCA")["Resources"]
    ca = resources["CertificateAuthority"]["Properties"]
    assert (ca["Type"], ca["UsageMode"]) == ("ROOT", "SHORT_LIVED_CERTIFICATE")
    certificate = resources["CertificateAuthorityCertificate"]["Properties"]
    assert certificate["CertificateAuthorityArn"] == {"Ref": "CertificateAuthority"}
    assert certificate["TemplateArn"]["Fn::Sub"].endswith("/RootCACertificate/V1")
    assert "CertificateChain" not in resources["CertificateAuthorityActivation"]["Properties"]


def test_the_kms_key_is_one_the_kms_signer_takes(raw):
    document = issuing_ca_shape(raw, "KMS")
    key = document["Resources"]["IssuingKey"]
    properties = key["Properties"]
    model = _model("kms")
    assert (properties["KeySpec"], properties["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert properties["KeySpec"] in model.shape_for("KeySpec").enum
    assert properties["KeyUsage"] in model.shape_for("KeyUsageType").enum
    assert properties["KeySpec"] in kms._KEY_SPECS
    # Asymmetric keys cannot rotate their material; a replaced key orphans the chain.
    assert "EnableKeyRotation" not in properties
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    assert document["Outputs"]["IssuingKeyArn"]["Value"] == {"Fn::GetAtt": ["IssuingKey", "Arn"]}
    assert not [r for r in document["Resources"].values() if "ACMPCA" in r["Type"]]


def _build(tmp_path, chain_text):
    chain = tmp_path / "chain.pem"
    chain.write_text(chain_text)
    out = tmp_path / "lambda"
    # pip is not what is tested: `true -m pip ...` succeeds without installing anything.
    result = subprocess.run(
        ["sh", str(ROOT / "deploy" / "build.sh")],
        env={**os.environ, "PYTHON": "true", "LAMBDA_OUT": str(out), "CA_CHAIN": str(chain)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, out / Path(PACKAGED_CHAIN).name


def test_build_packages_the_chain_where_the_template_looks(tmp_path):
    import trustme

    root = trustme.CA()
    issuing = root.create_child_ca()
    chain = issuing.cert_pem.bytes().decode() + root.cert_pem.bytes().decode()
    result, packaged = _build(tmp_path, chain)
    assert result.returncode == 0, result.stderr
    assert packaged.read_text() == chain
    assert PACKAGED_CHAIN in TEMPLATE.read_text()


def test_build_refuses_a_chain_with_a_key_or_of_no_or_three_certificates(tmp_path):
    import trustme

    root = trustme.CA()
    issuing = root.create_child_ca()
    three = issuing.create_child_ca().cert_pem.bytes() + issuing.cert_pem.bytes()
    for text, why in [
        ("", "not 0"),
        ((three + root.cert_pem.bytes()).decode(), "not 3"),
        (root.cert_pem.bytes().decode() + root.private_key_pem.bytes().decode(), "private key"),
    ]:
        result, packaged = _build(tmp_path, text)
        assert result.returncode != 0 and why in result.stderr, result.stderr
        assert not packaged.exists()


def test_build_packages_a_pca_root_that_is_its_own_issuer(tmp_path):
    # IssuingCA PrivateCA: the truststore is the CA's own certificate, one PEM.
    import trustme

    root = trustme.CA().cert_pem.bytes().decode()
    result, packaged = _build(tmp_path, root)
    assert result.returncode == 0, result.stderr
    assert packaged.read_text() == root
