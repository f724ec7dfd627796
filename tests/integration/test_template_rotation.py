"""deploy/template.yaml's subordinate slots: rotating PrivateCATwoTier's issuing CA.

Two slots, A (``CertificateAuthority``, the stack's first subordinate) and B
(``CertificateAuthorityB``), under the one idle root. ``IssuingSubordinate`` says which
issues; ``OtherSubordinate`` whether the other exists and what it is to relying parties:
``Staged`` (made, so that the truststore holds it before it issues), ``Retiring`` (its
certificates trusted until they expire, ``NODECERT_ACMPCA_RETIRING_ARNS``) or ``Retired``
(refused at once, ``NODECERT_ACMPCA_RETIRED_ARNS``). Each step is checked on the
SAM-translated template as CloudFormation would resolve it, and every function's
environment must parse as Settings.
"""

from __future__ import annotations

import pytest

from nodecert.core.config import Settings
from tests.integration.test_template_issuing_ca import FUNCTIONS, environment, grants, made
from tests.rehearsal.stack import Stack
from tests.rehearsal.template import issuing_ca_shape, load, sam_translate

PREFIX = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/"
ARNS = {
    "CertificateAuthority": PREFIX + "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
    "CertificateAuthorityB": PREFIX + "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb",
    "RootCertificateAuthority": PREFIX + "cccccccc-cccc-cccc-cccc-cccccccccccc",
}
A, B = ARNS["CertificateAuthority"], ARNS["CertificateAuthorityB"]
SLOT_A = {
    "CertificateAuthority",
    "CertificateAuthorityCertificate",
    "CertificateAuthorityActivation",
}
SLOT_B = {
    "CertificateAuthorityB",
    "CertificateAuthorityBCertificate",
    "CertificateAuthorityBActivation",
}
ROOT = {
    "RootCertificateAuthority",
    "RootCertificateAuthorityCertificate",
    "RootCertificateAuthorityActivation",
}


class _Resolved(Stack):
    def _get_att(self, name: str, attribute: str) -> str:
        return f"{name}.{attribute}"


@pytest.fixture(scope="module")
def raw():
    return load()


@pytest.fixture(scope="module")
def translated(raw):
    return sam_translate(raw)


def deployed(translated, issuing, other, issuing_ca="PrivateCATwoTier", **more):
    parameters = {
        "IssuingCA": issuing_ca,
        "IssuingSubordinate": issuing,
        "OtherSubordinate": other,
        **more,
    }
    stack = _Resolved(translated, parameters, clients=None)
    for logical in translated["Resources"]:
        stack.physical[logical] = f"physical-{logical}"
    for logical, arn in ARNS.items():
        # A CA's Ref and its activation's Ref are the CA's ARN.
        stack.physical[logical] = stack.physical[f"{logical}Activation"] = arn
    return stack


# The steps of a planned rotation from A to B, then an emergency one back to A.
STEPS = [
    ("A", "None", SLOT_A, A, (), ()),
    ("A", "Staged", SLOT_A | SLOT_B, A, (), ()),
    ("B", "Retiring", SLOT_A | SLOT_B, B, (A,), ()),
    ("B", "None", SLOT_B, B, (), ()),
    ("B", "Staged", SLOT_A | SLOT_B, B, (), ()),
    ("A", "Retired", SLOT_A | SLOT_B, A, (), (B,)),
]


@pytest.mark.parametrize(("issuing", "other", "cas", "ca_arn", "retiring", "retired"), STEPS)
def test_each_step_makes_its_slots_and_names_them_to_every_function(
    translated, issuing, other, cas, ca_arn, retiring, retired
):
    stack = deployed(translated, issuing, other)
    assert made(stack) == cas | ROOT
    for function in FUNCTIONS:
        settings = Settings.from_env(environment(stack, function))
        assert settings.acmpca_ca_arn == ca_arn, function
        assert settings.acmpca_retiring_arns == retiring, function
        assert settings.acmpca_retired_arns == retired, function


@pytest.mark.parametrize("other", ["None", "Staged", "Retiring", "Retired"])
def test_the_authorizer_reads_the_cas_from_pca_while_a_subordinate_is_retired(translated, other):
    # The packaged chain (NodeCAChainPackaged=Yes) is the truststore, both subordinates in
    # it: while one is Retired, only the CAs read by ARN tell its certificates apart.
    stack = deployed(translated, "B", other, NodeCAChainPackaged="Yes")
    env = environment(stack, "NodeAuthorizerFunction")
    assert ("NODECERT_CA_BUNDLE" in env) == (other != "Retired"), env
    Settings.from_env(env)


@pytest.mark.parametrize(("issuing", "other"), [("B", "Retiring"), ("A", "Staged"), ("B", "None")])
def test_only_the_issuing_slot_may_issue_and_every_slot_may_be_read_and_revoked(
    translated, issuing, other
):
    stack = deployed(translated, issuing, other)
    issuing_arn = B if issuing == "B" else A
    present = {A if "CertificateAuthority" in made(stack) else None}
    present |= {B if "CertificateAuthorityB" in made(stack) else None}
    present.discard(None)
    issuer = grants(stack, "NodecertFunction")
    assert {r for a, r in issuer if a == "acm-pca:IssueCertificate"} == {issuing_arn}
    for function in FUNCTIONS:
        pairs = grants(stack, function)
        pca = {r for a, r in pairs if a.startswith("acm-pca:")}
        # Revocation goes to the issuer the ledger recorded; the chains of both are read.
        assert pca == present, function
        assert ARNS["RootCertificateAuthority"] not in pca, function


def test_the_slots_differ_by_name_so_no_truststore_lookup_confuses_them(raw):
    import botocore.session

    document = issuing_ca_shape(raw, "PrivateCATwoTier", other_subordinate="Staged")
    a = document["Resources"]["CertificateAuthority"]["Properties"]
    b = document["Resources"]["CertificateAuthorityB"]["Properties"]
    assert a["Subject"] != b["Subject"]
    for key in ("Type", "UsageMode", "KeyAlgorithm", "SigningAlgorithm"):
        assert a[key] == b[key], key
    subject = botocore.session.get_session().get_service_model("acm-pca").shape_for("ASN1Subject")
    assert set(b["Subject"]) <= set(subject.members)
    certificate = document["Resources"]["CertificateAuthorityBCertificate"]["Properties"]
    assert certificate["CertificateAuthorityArn"] == {"Ref": "RootCertificateAuthorityActivation"}
    assert certificate["TemplateArn"]["Fn::Sub"].endswith("/SubordinateCACertificate_PathLen0/V1")
    assert document["Outputs"]["OtherSubordinateArn"]["Value"] == {"Ref": "CertificateAuthorityB"}


@pytest.mark.parametrize("issuing_ca", ["PrivateCA", "KMS"])
@pytest.mark.parametrize(("issuing", "other"), [("B", "None"), ("A", "Staged")])
def test_slots_without_two_tiers_are_refused_before_anything_is_made(
    raw, translated, issuing_ca, issuing, other
):
    rule = raw["Rules"]["SubordinateSlotsNeedTwoTiers"]
    stack = deployed(translated, issuing, other, issuing_ca=issuing_ca)
    assert stack.resolve(rule["RuleCondition"])
    assert not all(stack.resolve(a["Assert"]) for a in rule["Assertions"])
    # The default slots pass, and with two tiers the rule does not apply.
    fine = deployed(translated, "A", "None", issuing_ca=issuing_ca)
    assert all(fine.resolve(a["Assert"]) for a in rule["Assertions"])
    assert not deployed(translated, issuing, other).resolve(rule["RuleCondition"])
