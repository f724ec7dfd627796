"""ValidityPolicy, OwnershipPolicy (with an in-memory node directory) and Settings.from_env."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nodecert.core.config import Settings
from nodecert.core.errors import (
    AuthorizationError,
    ConfigurationError,
    InvalidRequestError,
)
from nodecert.core.keys import KeyType
from nodecert.core.policy import OwnershipMode, OwnershipPolicy, ValidityPolicy
from nodecert.core.values import Principal
from nodecert.testing import MemoryStore

AT = datetime(2025, 1, 1, tzinfo=UTC)

# ValidityPolicy


def test_validity_default_is_seven_days():
    assert ValidityPolicy().lifetime(None) == timedelta(days=7)


@pytest.mark.parametrize("days", [1, 7, 29, 30])
def test_validity_in_range_is_honoured(days):
    assert ValidityPolicy(default_days=7, max_days=30).lifetime(days) == timedelta(days=days)


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        pytest.param(31, "31 is outside 1..30", id="over-the-cap"),
        pytest.param(10**9, "outside 1..30", id="huge"),
        pytest.param(0, "0 is outside 1..30", id="zero"),
        pytest.param(-1, "-1 is outside 1..30", id="negative"),
        pytest.param(True, "whole number", id="bool-true"),
        pytest.param(False, "whole number", id="bool-false"),
        pytest.param(7.0, "whole number", id="float"),
        pytest.param(7.5, "whole number", id="fraction"),
        pytest.param("7", "whole number", id="string"),
        pytest.param([7], "whole number", id="list"),
    ],
)
def test_validity_out_of_range_or_wrong_type_is_refused(requested, message):
    with pytest.raises(InvalidRequestError) as caught:
        ValidityPolicy(default_days=7, max_days=30).lifetime(requested)
    assert caught.value.detail.startswith("validityDays: ")
    assert message in caught.value.detail


@pytest.mark.parametrize(("default", "maximum"), [(0, 30), (-1, 30), (31, 30), (8, 7)], ids=str)
def test_validity_policy_with_inconsistent_limits_is_a_configuration_error(default, maximum):
    with pytest.raises(ConfigurationError, match="validity"):
        ValidityPolicy(default_days=default, max_days=maximum)


def test_validity_policy_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ValidityPolicy().max_days = 365  # type: ignore[misc]


# OwnershipPolicy


def directory(owners: dict[str, str] | None = None) -> MemoryStore:
    """The shipped fake store holding ``owners`` (node id to owner), its call count at 0."""
    nodes = MemoryStore()
    for node_id, owner in (owners or {}).items():
        nodes.put_node(node_id, owner, at=AT)
    nodes.calls = 0
    return nodes


ALICE = Principal(user_id="alice")
BOB = Principal(user_id="bob")


def registry(owners: dict[str, str]) -> OwnershipPolicy:
    return OwnershipPolicy(OwnershipMode.REGISTRY, directory(owners))


def test_registry_allows_the_owner():
    registry({"n1": "alice"}).check(ALICE, "n1")


@pytest.mark.parametrize(
    ("principal", "node_id"),
    [
        pytest.param(BOB, "n1", id="someone-elses-node"),
        pytest.param(ALICE, "n2", id="unknown-node"),
        pytest.param(Principal(user_id="ALICE"), "n1", id="owner-match-is-case-sensitive"),
        pytest.param(Principal(user_id="admin", is_admin=True), "n1", id="admin-is-not-owner"),
    ],
)
def test_registry_refuses_everyone_else_with_one_message(principal, node_id):
    with pytest.raises(AuthorizationError) as caught:
        registry({"n1": "alice"}).check(principal, node_id)
    # Unknown and foreign nodes read the same, so node ids cannot be probed.
    assert caught.value.detail == f"nodeId: {node_id!r} is not one of your nodes"


def test_registry_follows_a_transfer():
    nodes = directory({"n1": "alice"})
    policy = OwnershipPolicy(OwnershipMode.REGISTRY, nodes)
    nodes.put_node("n1", "bob", at=AT)
    policy.check(BOB, "n1")
    with pytest.raises(AuthorizationError):
        policy.check(ALICE, "n1")


def claims_policy(claim: str = "custom:nodes") -> OwnershipPolicy:
    return OwnershipPolicy(OwnershipMode.CLAIMS, directory(), claim=claim)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(["n1", "n2"], id="json-list"),
        pytest.param("n1,n2", id="rest-api-comma-joined"),
        pytest.param("n2, n1", id="comma-and-space"),
        pytest.param("[n1 n2]", id="http-api-bracketed"),
        pytest.param("[n1]", id="http-api-single"),
        pytest.param("n1", id="single-string"),
        pytest.param("n1 n2", id="space-separated"),
    ],
)
def test_claims_mode_allows_nodes_named_in_the_claim(value):
    principal = Principal(user_id="alice", claims={"custom:nodes": value})
    claims_policy().check(principal, "n1")


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({}, id="missing"),
        pytest.param({"custom:nodes": None}, id="null"),
        pytest.param({"custom:nodes": ""}, id="empty-string"),
        pytest.param({"custom:nodes": "[]"}, id="http-api-empty"),
        pytest.param({"custom:nodes": []}, id="empty-list"),
        pytest.param({"custom:nodes": ["n10", "xn1"]}, id="no-prefix-or-substring-match"),
        pytest.param({"custom:nodes": "n10,xn1"}, id="no-substring-match-in-string"),
        pytest.param({"custom:nodes": 1}, id="wrong-type"),
        pytest.param({"custom:nodes": {"n1": True}}, id="object"),
        pytest.param({"nodes": ["n1"]}, id="other-claim-name"),
    ],
)
def test_claims_mode_refuses_nodes_not_named_in_the_claim(claims):
    with pytest.raises(AuthorizationError, match="not one of your nodes"):
        claims_policy().check(Principal(user_id="alice", claims=claims), "n1")


def test_claims_mode_reads_the_configured_claim():
    principal = Principal(user_id="alice", claims={"nodes": ["n1"], "custom:nodes": ["n2"]})
    claims_policy("nodes").check(principal, "n1")
    with pytest.raises(AuthorizationError):
        claims_policy("nodes").check(principal, "n2")


def test_claims_mode_does_not_consult_the_registry():
    nodes = directory({"n1": "alice"})
    policy = OwnershipPolicy(OwnershipMode.CLAIMS, nodes)
    with pytest.raises(AuthorizationError):
        policy.check(ALICE, "n1")
    assert nodes.calls == 0  # No directory lookup at all.


def test_open_mode_allows_any_authenticated_user_any_node():
    nodes = directory()
    policy = OwnershipPolicy(OwnershipMode.OPEN, nodes)
    policy.check(ALICE, "anything")
    policy.check(BOB, "n1")
    assert nodes.calls == 0  # No directory lookup at all.


def test_ownership_modes_are_the_documented_values():
    assert [m.value for m in OwnershipMode] == ["registry", "claims", "open"]


# Settings.from_env


def test_settings_defaults():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.home == Path(".nodecert")
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.ca == "local"
    assert settings.store == "sqlite"
    assert settings.ca_key_type is KeyType.EC_P256
    assert settings.ownership is OwnershipMode.REGISTRY
    assert settings.default_validity_days == 7
    assert settings.max_validity_days == 30
    assert settings.dev_issuer
    assert settings.database_path == Path(".nodecert/nodecert.db")


def test_settings_ignore_other_variables_and_empty_values():
    env = {"PATH": "/bin", "HOME": "/root", "NODECERT_PORT": "", "NODECERT_TOKEN": "t"}
    assert Settings.from_env(env) == Settings()


FULL_ENV = {
    "NODECERT_HOME": "/var/lib/nodecert",
    "NODECERT_HOST": "0.0.0.0",
    "NODECERT_PORT": "8443",
    "NODECERT_WORKERS": "4",
    "NODECERT_ORGANIZATION": "Acme",
    "NODECERT_TRUST_DOMAIN": "acme.example",
    "NODECERT_CA": "acmpca",
    "NODECERT_CA_KEY_TYPE": "rsa-3072",
    "NODECERT_CA_PASSPHRASE": "correct horse battery staple",
    "NODECERT_ACMPCA_CA_ARN": "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/x",
    "NODECERT_ACMPCA_SHORT_LIVED_CA_ARN": "arn:aws:acm-pca:eu-west-1:111:certificate-authority/y",
    "NODECERT_ACMPCA_RETIRING_ARNS": (
        "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/"
        "0b5e4f8c-1c2d-4e5f-8a9b-0c1d2e3f4a5b, "
        "arn:aws-us-gov:acm-pca:us-gov-west-1:111122223333:certificate-authority/"
        "1b5e4f8c-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    ),
    "NODECERT_ACMPCA_RETIRED_ARNS": (
        "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/"
        "2b5e4f8c-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    ),
    "NODECERT_ACMPCA_TEMPLATE_ARN": "arn:aws:acm-pca:::template/EndEntityCertificate/V1",
    "NODECERT_AWS_REGION": "eu-west-1",
    "NODECERT_STORE": "postgres",
    "NODECERT_DATABASE": "/data/ledger.db",
    "NODECERT_SQLITE_SYNCHRONOUS": "normal",
    "NODECERT_DATABASE_URL": "postgresql://nodecert:db-s3cret-pw@db.acme.example/nodecert",
    "NODECERT_DATABASE_POOL_SIZE": "25",
    "NODECERT_DYNAMODB_NODES_TABLE": "nodes",
    "NODECERT_DYNAMODB_CERTIFICATES_TABLE": "certs",
    "NODECERT_DYNAMODB_LIMITS_TABLE": "limits",
    "NODECERT_DYNAMODB_OUTBOX_TABLE": "outbox",
    "NODECERT_OIDC_ISSUER": "https://idp.example",
    "NODECERT_OIDC_AUDIENCE": "client-1",
    "NODECERT_OIDC_JWKS_URL": "https://idp.example/jwks.json",
    "NODECERT_ADMIN_GROUP": "ops",
    "NODECERT_USER_ID_CLAIM": "oid",
    "NODECERT_ADMIN_CLAIM": "realm_access.roles",
    "NODECERT_OWNERSHIP": "claims",
    "NODECERT_NODES_CLAIM": "nodes",
    "NODECERT_DEFAULT_VALIDITY_DAYS": "1",
    "NODECERT_MAX_VALIDITY_DAYS": "90",
    "NODECERT_MAX_BODY_BYTES": "2048",
    "NODECERT_MAX_HEADER_BYTES": "16384",
    "NODECERT_HEAD_TIMEOUT_S": "5",
    "NODECERT_BODY_TIMEOUT_S": "20",
    "NODECERT_LIMIT_CONCURRENCY": "500",
    "NODECERT_QUOTA_PER_MINUTE": "120",
    "NODECERT_QUOTA_BURST": "20",
    "NODECERT_MAX_ACTIVE_PER_NODE": "3",
    "NODECERT_KEY_POOL_SIZE": "8",
    "NODECERT_LOG_LEVEL": "DEBUG",
    "NODECERT_LOG_FORMAT": "json",
    "NODECERT_METRICS": "off",
    "NODECERT_METRICS_NAMESPACE": "nodecert/prod",
    "NODECERT_METRICS_FLUSH_S": "30",
    "NODECERT_CA_BUNDLE": "/etc/nodecert/ca.pem",
    "NODECERT_AUTHORIZE_SECRET": "a-long-shared-secret-for-nginx",
    "NODECERT_AUTHORIZER_TARGET": "host",
    "NODECERT_RENEW_AUDIENCE": "https://nodecert.acme.example",
    "NODECERT_RENEW_GRACE_S": "600",
    "NODECERT_CRL_LIFETIME_S": "7200",
    "NODECERT_REVOCATION_RETRY_S": "5",
    "NODECERT_TLS_CERT": "/etc/nodecert/tls/server.crt",
    "NODECERT_CA_KMS_KEY_ID": "alias/nodecert-issuing",
    "NODECERT_CA_PKCS11_MODULE": "/usr/lib/softhsm/libsofthsm2.so",
    "NODECERT_CA_PKCS11_TOKEN": "nodecert",
    "NODECERT_CA_PKCS11_KEY_LABEL": "issuing-2026",
    "NODECERT_CA_PKCS11_PIN": "4321-pin-never-shown",
    "NODECERT_CA_PKCS11_PIN_FILE": "/run/secrets/hsm-pin",
    "NODECERT_TLS_KEY": "/etc/nodecert/tls/server.key",
}


def test_every_setting_is_read_and_converted():
    # A new Settings field without a test line here fails this check.
    assert {f"NODECERT_{f.upper()}" for f in Settings.__dataclass_fields__} == set(FULL_ENV)
    settings = Settings.from_env(FULL_ENV)
    assert settings.home == Path("/var/lib/nodecert")
    assert settings.host == "0.0.0.0"
    assert (settings.log_format, settings.metrics) == ("json", "off")
    assert settings.port == 8443
    assert (settings.quota_per_minute, settings.quota_burst) == (120, 20)
    assert settings.max_active_per_node == 3
    assert settings.sqlite_synchronous == "normal"
    assert settings.workers == 4
    assert (settings.user_id_claim, settings.admin_claim) == ("oid", "realm_access.roles")
    assert settings.organization == "Acme"
    assert settings.trust_domain == "acme.example"
    assert settings.ca == "acmpca"
    assert settings.ca_key_type is KeyType.RSA_3072
    assert settings.ca_passphrase == "correct horse battery staple"
    assert settings.acmpca_ca_arn == FULL_ENV["NODECERT_ACMPCA_CA_ARN"]
    assert settings.acmpca_short_lived_ca_arn == FULL_ENV["NODECERT_ACMPCA_SHORT_LIVED_CA_ARN"]
    assert settings.acmpca_template_arn == FULL_ENV["NODECERT_ACMPCA_TEMPLATE_ARN"]
    assert settings.acmpca_retiring_arns == tuple(
        arn.strip() for arn in FULL_ENV["NODECERT_ACMPCA_RETIRING_ARNS"].split(",")
    )
    assert settings.acmpca_retired_arns == (FULL_ENV["NODECERT_ACMPCA_RETIRED_ARNS"],)
    assert settings.aws_region == "eu-west-1"
    assert settings.store == "postgres"
    assert settings.database_url == FULL_ENV["NODECERT_DATABASE_URL"]
    assert settings.database_pool_size == 25
    assert "db-s3cret-pw" not in repr(settings)
    assert settings.database == Path("/data/ledger.db")
    assert settings.database_path == Path("/data/ledger.db")
    assert settings.dynamodb_nodes_table == "nodes"
    assert settings.dynamodb_certificates_table == "certs"
    assert settings.dynamodb_limits_table == "limits"
    assert settings.dynamodb_outbox_table == "outbox"
    assert settings.oidc_issuer == "https://idp.example"
    assert settings.oidc_audience == "client-1"
    assert settings.oidc_jwks_url == "https://idp.example/jwks.json"
    assert not settings.dev_issuer
    assert settings.admin_group == "ops"
    assert settings.ownership is OwnershipMode.CLAIMS
    assert settings.nodes_claim == "nodes"
    assert settings.default_validity_days == 1
    assert settings.max_validity_days == 90
    assert settings.max_body_bytes == 2048
    assert (settings.head_timeout_s, settings.body_timeout_s) == (5, 20)
    assert settings.limit_concurrency == 500
    assert settings.metrics_flush_s == 30
    assert settings.key_pool_size == 8
    assert settings.log_level == "DEBUG"
    assert settings.ca_bundle == Path("/etc/nodecert/ca.pem")
    assert settings.authorize_secret == "a-long-shared-secret-for-nginx"
    assert "a-long-shared-secret" not in repr(settings)
    assert settings.authorizer_target == "host"
    assert settings.renew_audience == "https://nodecert.acme.example"
    assert settings.renew_grace_s == 600
    assert settings.crl_lifetime_s == 7200
    assert settings.revocation_retry_s == 5
    assert settings.tls_cert == Path("/etc/nodecert/tls/server.crt")
    assert settings.ca_kms_key_id == "alias/nodecert-issuing"
    assert settings.ca_pkcs11_module == Path("/usr/lib/softhsm/libsofthsm2.so")
    assert (settings.ca_pkcs11_token, settings.ca_pkcs11_key_label) == ("nodecert", "issuing-2026")
    assert settings.ca_pkcs11_pin_file == Path("/run/secrets/hsm-pin")
    assert "4321-pin" not in repr(settings)
    assert settings.tls_key == Path("/etc/nodecert/tls/server.key")
    for name in Settings.__dataclass_fields__:
        value = getattr(settings, name)
        assert not isinstance(value, str) or value == FULL_ENV[f"NODECERT_{name.upper()}"]


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("names", "shown"),
    [
        (["NODECERT_PROT"], "NODECERT_PROT (did you mean NODECERT_PORT?)"),
        (["NODECERT_ZZZ", "NODECERT_AAA"], "NODECERT_AAA, NODECERT_ZZZ"),
        (["NODECERT_SERVR"], "NODECERT_SERVR (did you mean NODECERT_SERVER?)"),
    ],
)
def test_unknown_nodecert_variables_are_refused_by_name(names, shown):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(dict.fromkeys(names, "1"))
    assert caught.value.detail == f"unknown setting(s): {shown}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"NODECERT_PORT": "http"}, "NODECERT_PORT: 'http' is not", id="port-not-int"),
        pytest.param({"NODECERT_PORT": "80.5"}, "NODECERT_PORT", id="port-float"),
        pytest.param({"NODECERT_PORT": "0"}, "NODECERT_PORT: 0 is not a TCP port", id="port-0"),
        pytest.param({"NODECERT_PORT": "65536"}, "65536 is not a TCP port", id="port-too-big"),
        pytest.param({"NODECERT_PORT": "-1"}, "is not a TCP port", id="port-negative"),
        pytest.param({"NODECERT_WORKERS": "0"}, "NODECERT_WORKERS", id="workers-0"),
        pytest.param({"NODECERT_WORKERS": "many"}, "NODECERT_WORKERS", id="workers-not-int"),
        pytest.param({"NODECERT_MAX_BODY_BYTES": "1023"}, "NODECERT_MAX_BODY_BYTES", id="body"),
        pytest.param({"NODECERT_KEY_POOL_SIZE": "-1"}, "NODECERT_KEY_POOL_SIZE", id="pool"),
        pytest.param({"NODECERT_CA_KEY_TYPE": "rsa-1024"}, "NODECERT_CA_KEY_TYPE", id="key-type"),
        pytest.param({"NODECERT_OWNERSHIP": "anyone"}, "NODECERT_OWNERSHIP", id="ownership"),
        pytest.param(
            {"NODECERT_CA": "vault"},
            "NODECERT_CA: 'vault' is not one of local, acmpca",
            id="ca-unknown",
        ),
        pytest.param(
            {"NODECERT_STORE": "redis"}, "NODECERT_STORE: 'redis' is not one of", id="store-unknown"
        ),
        pytest.param(
            {"NODECERT_STORE": "postgres"},
            "NODECERT_DATABASE_URL: required when NODECERT_STORE=postgres",
            id="postgres-without-url",
        ),
        pytest.param(
            {"NODECERT_DATABASE_URL": "postgresql://db.example/nodecert"},
            "NODECERT_DATABASE_URL: only read when NODECERT_STORE=postgres",
            id="url-without-postgres",
        ),
        pytest.param({"NODECERT_CA": "acmpca"}, "NODECERT_ACMPCA_CA_ARN", id="acmpca-no-arn"),
        pytest.param(
            {"NODECERT_OIDC_ISSUER": "https://idp.example"},
            "NODECERT_OIDC_AUDIENCE",
            id="issuer-without-audience",
        ),
        pytest.param(
            {"NODECERT_OIDC_AUDIENCE": "client-1"},
            "NODECERT_OIDC_ISSUER",
            id="audience-without-issuer",
        ),
        pytest.param(
            {"NODECERT_DEFAULT_VALIDITY_DAYS": "31"},
            "NODECERT_DEFAULT_VALIDITY_DAYS",
            id="default-over-max",
        ),
        pytest.param(
            {"NODECERT_DEFAULT_VALIDITY_DAYS": "0"},
            "NODECERT_DEFAULT_VALIDITY_DAYS",
            id="default-0",
        ),
        pytest.param(
            {"NODECERT_TRUST_DOMAIN": "Example.COM"}, "NODECERT_TRUST_DOMAIN", id="td-upper"
        ),
        pytest.param({"NODECERT_TRUST_DOMAIN": "a/b"}, "NODECERT_TRUST_DOMAIN", id="td-with-slash"),
        pytest.param({"NODECERT_TRUST_DOMAIN": ".."}, "NODECERT_TRUST_DOMAIN", id="td-dots"),
        pytest.param(
            {"NODECERT_TRUST_DOMAIN": "x" * 256}, "NODECERT_TRUST_DOMAIN", id="td-too-long"
        ),
        pytest.param({"NODECERT_ORGANIZATION": "   "}, "NODECERT_ORGANIZATION", id="org-blank"),
        pytest.param(
            {"NODECERT_LOG_LEVEL": "chatty"},
            "NODECERT_LOG_LEVEL: 'chatty' is not one of DEBUG",
            id="log",
        ),
        pytest.param(
            {"NODECERT_DATABASE_POOL_SIZE": "0"}, "NODECERT_DATABASE_POOL_SIZE", id="pool-0"
        ),
        pytest.param(
            {"NODECERT_DATABASE_POOL_SIZE": "many"}, "NODECERT_DATABASE_POOL_SIZE", id="pool-text"
        ),
    ],
)
def test_invalid_settings_are_refused_naming_the_variable(env, message):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert message in caught.value.detail


@pytest.mark.parametrize("raw", ["warning", "Warning", " WARNING "])
def test_log_levels_are_read_in_any_case(raw):
    assert Settings.from_env({"NODECERT_LOG_LEVEL": raw}).log_level == "WARNING"


def test_bad_value_is_shown_truncated():
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"NODECERT_PORT": "9" * 50 + "x" * 500})
    assert len(caught.value.detail) < 200


def test_acmpca_with_an_arn_is_accepted():
    arn = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/x"
    settings = Settings.from_env({"NODECERT_CA": "acmpca", "NODECERT_ACMPCA_CA_ARN": arn})
    assert settings.ca == "acmpca"
    assert settings.acmpca_ca_arn == arn


def test_repr_does_not_show_the_ca_passphrase():
    secret = "s3cret-passphrase-do-not-log"
    settings = Settings.from_env({"NODECERT_CA_PASSPHRASE": secret})
    assert settings.ca_passphrase == secret
    assert secret not in repr(settings)
    assert secret not in str(settings)
    assert "ca_passphrase" not in repr(settings)


def test_postgres_with_a_url_is_accepted_and_the_url_is_not_shown():
    url = "postgresql://nodecert:db-s3cret-pw@db.example:5432/nodecert?sslmode=verify-full"
    settings = Settings.from_env({"NODECERT_STORE": "postgres", "NODECERT_DATABASE_URL": url})
    assert (settings.store, settings.database_url) == ("postgres", url)
    assert "db-s3cret-pw" not in repr(settings)
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"NODECERT_DATABASE_URL": url})  # The store is still sqlite.
    assert "db-s3cret-pw" not in caught.value.detail


def test_configuration_error_does_not_echo_the_passphrase():
    secret = "s3cret-passphrase-do-not-log"
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"NODECERT_CA_PASSPHRASE": secret, "NODECERT_PORT": "0"})
    assert secret not in caught.value.detail


@pytest.mark.parametrize(
    ("mode", "allowed"),
    [(OwnershipMode.REGISTRY, False), (OwnershipMode.CLAIMS, True), (OwnershipMode.OPEN, True)],
)
def test_a_renewal_needs_no_claims_but_still_the_directory(mode, allowed):
    # Bob holds a certificate for n1 but the directory says n1 is alice's now.
    policy = OwnershipPolicy(mode, directory({"n1": "alice"}))
    bob = Principal(user_id="bob")
    if allowed:
        policy.check(bob, "n1", renewal=True)
    else:
        with pytest.raises(AuthorizationError):
            policy.check(bob, "n1", renewal=True)


@pytest.mark.parametrize("name", ["HEAD_TIMEOUT_S", "BODY_TIMEOUT_S", "LIMIT_CONCURRENCY"])
def test_slow_client_limits_must_be_positive(name):
    with pytest.raises(ConfigurationError, match=f"NODECERT_{name}"):
        Settings.from_env({f"NODECERT_{name}": "0"})


@pytest.mark.parametrize("value", ["0", "3601", "-1", "1.5", "soon"])
def test_the_metrics_flush_interval_is_1_to_3600_seconds(value: str) -> None:
    with pytest.raises(ConfigurationError, match="NODECERT_METRICS_FLUSH_S"):
        Settings.from_env({"NODECERT_METRICS_FLUSH_S": value})


def test_the_revocation_retry_interval_must_be_positive():
    with pytest.raises(ConfigurationError, match="NODECERT_REVOCATION_RETRY_S: must be >= 1"):
        Settings.from_env({"NODECERT_REVOCATION_RETRY_S": "0"})


@pytest.mark.parametrize(
    ("name", "value"), [("NODECERT_LOG_FORMAT", "yaml"), ("NODECERT_METRICS", "yes")]
)
def test_log_format_and_metrics_take_their_words_only(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_every_setting_has_exactly_one_parser() -> None:
    from nodecert.core import setting_parsers

    assert set(setting_parsers.PARSERS) == set(Settings.__dataclass_fields__)


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("ca", "ACMPCA", "acmpca"),
        ("store", " postgres ", "postgres"),
        ("log_level", "debug", "DEBUG"),
        ("metrics", "OFF", "off"),
    ],
)
def test_choices_are_typed_whether_read_or_given(name: str, raw: str, expected: str) -> None:
    from nodecert.core import setting_parsers

    parsed = setting_parsers.PARSERS[name](f"NODECERT_{name.upper()}", raw)
    assert isinstance(parsed, setting_parsers.CHOICES[name])
    assert parsed == expected
    # Settings made in code turn the string into the enum too.
    extra = {"acmpca_ca_arn": "arn:aws:acm-pca:eu-west-1:1:certificate-authority/x"}
    extra |= {"database_url": "postgresql://db/n"} if expected == "postgres" else {}
    made = Settings(**{name: expected}, **extra)  # type: ignore[arg-type]
    assert isinstance(getattr(made, name), setting_parsers.CHOICES[name])


@pytest.mark.parametrize("raw", ["²", "1" * 40, "8e3", "0x10", ""])
def test_numbers_are_ascii_digits_only(raw: str) -> None:
    if not raw:
        assert Settings.from_env({"NODECERT_PORT": raw}).port == 8080
        return
    with pytest.raises(ConfigurationError, match=r"NODECERT_PORT: .* is not a whole number"):
        Settings.from_env({"NODECERT_PORT": raw})


_CA_PREFIX = "arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/"
_CA_A = _CA_PREFIX + "0b5e4f8c-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
_CA_B = _CA_PREFIX + "9b5e4f8c-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
_PCA = {"NODECERT_CA": "acmpca", "NODECERT_ACMPCA_CA_ARN": _CA_A}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        pytest.param("not-an-arn", "'not-an-arn' is not an ACM PCA", id="word"),
        pytest.param(_CA_B + ",", "'' is not an ACM PCA", id="trailing-comma"),
        pytest.param(_CA_B.replace("acm-pca", "kms"), "is not an ACM PCA", id="kms-arn"),
        pytest.param(_CA_B[:-1], "is not an ACM PCA", id="short-id"),
        pytest.param(_CA_B.replace("111122223333", "1111"), "is not an ACM PCA", id="account"),
        pytest.param(_CA_B + "/x", "is not an ACM PCA", id="suffix"),
        pytest.param(f"{_CA_B}, {_CA_B}", "an ARN is listed twice", id="twice"),
    ],
)
@pytest.mark.parametrize("role", ["RETIRING", "RETIRED"])
def test_pca_leaving_arns_refuse_what_is_no_ca_arn(role: str, raw: str, shown: str) -> None:
    variable = f"NODECERT_ACMPCA_{role}_ARNS"
    with pytest.raises(ConfigurationError, match=variable + ": .*" + re.escape(shown)):
        Settings.from_env({**_PCA, variable: raw})


@pytest.mark.parametrize(
    ("env", "shown"),
    [
        pytest.param(
            {"NODECERT_ACMPCA_RETIRING_ARNS": _CA_B},
            "NODECERT_ACMPCA_RETIRING_ARNS: only read when NODECERT_CA=acmpca",
            id="local-ca",
        ),
        pytest.param(
            {**_PCA, "NODECERT_ACMPCA_RETIRED_ARNS": _CA_A},
            f"NODECERT_ACMPCA_RETIRED_ARNS: {_CA_A} is the CA that issues now",
            id="retiring-the-current-ca",
        ),
        pytest.param(
            {
                **_PCA,
                "NODECERT_ACMPCA_RETIRING_ARNS": _CA_B,
                "NODECERT_ACMPCA_RETIRED_ARNS": _CA_B,
            },
            f"RETIRED_ARNS: {_CA_B} is in both",
            id="in-both-lists",
        ),
    ],
)
def test_pca_leaving_arns_are_checked_against_the_rest(env: dict[str, str], shown: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(shown)):
        Settings.from_env(env)


def test_pca_leaving_arns_default_to_none_and_read_in_order() -> None:
    assert Settings.from_env(_PCA).acmpca_retiring_arns == ()
    settings = Settings.from_env({**_PCA, "NODECERT_ACMPCA_RETIRING_ARNS": f" {_CA_B} "})
    assert settings.acmpca_retiring_arns == (_CA_B,)
    assert settings.acmpca_retired_arns == ()
