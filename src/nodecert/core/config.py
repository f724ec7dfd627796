"""Settings: every ``NODECERT_*`` environment variable, parsed once into a frozen value.

The core never reads the environment; ``bootstrap`` calls :meth:`Settings.from_env` with
``os.environ`` and turns the result into objects. The choices are
:mod:`nodecert.core.choices`; the parser of each variable is in
:mod:`nodecert.core.setting_parsers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nodecert.core.choices import CAKind, LogFormat, LogLevel, SQLiteSync, StoreKind, Switch
from nodecert.core.errors import ConfigurationError, InvalidIdentifierError
from nodecert.core.identity import validate_trust_domain
from nodecert.core.keys import KeyType
from nodecert.core.policy import OwnershipMode
from nodecert.core.setting_parsers import CHOICES, PARSERS, choice

__all__ = ["CLIENT_VARIABLES", "Settings", "unknown_variables"]


#: What the CLI's client commands read besides the service settings.
CLIENT_VARIABLES = frozenset({"NODECERT_TOKEN", "NODECERT_SERVER"})


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """The ``NODECERT_*`` names in ``env`` that nodecert does not know, sorted, each with a
    suggestion when one known name is close (``NODECERT_SERVR (did you mean
    NODECERT_SERVER?)``). A typo must not silently fall back to a default.
    """
    import difflib

    known = {f"NODECERT_{name.upper()}" for name in Settings.__dataclass_fields__}
    known |= CLIENT_VARIABLES
    # Compared without the common prefix, which would make every name look close.
    suffixes = sorted(name.removeprefix("NODECERT_") for name in known)
    unknown = []
    for name in sorted(k for k in env if k.startswith("NODECERT_") and k not in known):
        suffix = name.removeprefix("NODECERT_")[:80]
        close = difflib.get_close_matches(suffix, suffixes, n=1, cutoff=0.7)
        shown = f"NODECERT_{suffix}"
        unknown.append(f"{shown} (did you mean NODECERT_{close[0]}?)" if close else shown)
    return unknown


@dataclass(frozen=True, slots=True)
class Settings:
    """All of nodecert's configuration; see ``docs/configuration.md`` for each variable."""

    home: Path = Path(".nodecert")
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    organization: str = "nodecert"
    trust_domain: str = "nodecert.local"
    ca: CAKind = CAKind.LOCAL
    ca_key_type: KeyType = KeyType.EC_P256
    ca_passphrase: str | None = field(default=None, repr=False)
    ca_kms_key_id: str | None = None
    ca_pkcs11_module: Path | None = None
    ca_pkcs11_token: str | None = None
    ca_pkcs11_key_label: str = "nodecert-issuing"
    ca_pkcs11_pin: str | None = field(default=None, repr=False)
    ca_pkcs11_pin_file: Path | None = None
    acmpca_ca_arn: str | None = None
    acmpca_short_lived_ca_arn: str | None = None
    acmpca_template_arn: str = "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate/V1"
    acmpca_retiring_arns: tuple[str, ...] = ()
    acmpca_retired_arns: tuple[str, ...] = ()
    aws_region: str | None = None
    store: StoreKind = StoreKind.SQLITE
    database: Path | None = None
    sqlite_synchronous: SQLiteSync = SQLiteSync.FULL
    database_url: str | None = field(default=None, repr=False)
    database_pool_size: int = 10
    dynamodb_nodes_table: str = "nodecert-nodes"
    dynamodb_certificates_table: str = "nodecert-certificates"
    dynamodb_limits_table: str = "nodecert-limits"
    dynamodb_outbox_table: str = "nodecert-outbox"
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    admin_group: str = "nodecert-admins"
    user_id_claim: str = "sub"
    admin_claim: str | None = None
    ownership: OwnershipMode = OwnershipMode.REGISTRY
    nodes_claim: str = "custom:nodes"
    default_validity_days: int = 7
    max_validity_days: int = 30
    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 32 * 1024
    head_timeout_s: int = 10
    body_timeout_s: int = 30
    limit_concurrency: int = 1000
    quota_per_minute: int = 30
    quota_burst: int = 30
    max_active_per_node: int = 10
    key_pool_size: int = 8
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.TEXT
    metrics: Switch = Switch.ON
    metrics_namespace: str = "nodecert"
    metrics_flush_s: int = 1
    ca_bundle: Path | None = None
    authorize_secret: str | None = field(default=None, repr=False)
    authorizer_target: str = "path:nodeId"
    renew_audience: str | None = None
    renew_grace_s: int = 0
    crl_lifetime_s: int = 3600
    revocation_retry_s: int = 60
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        # Settings made in code (tests, embedding) may name a choice by its string: it is
        # turned into its enum here, so that every Settings holds typed values.
        for name, kind in CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, kind):
                object.__setattr__(self, name, choice(kind)(f"NODECERT_{name.upper()}", value))

    @property
    def database_path(self) -> Path:
        """The SQLite file: ``NODECERT_DATABASE`` or ``$NODECERT_HOME/nodecert.db``."""
        return self.database if self.database is not None else self.home / "nodecert.db"

    @property
    def dev_issuer(self) -> bool:
        """True when no OIDC issuer is configured and the embedded dev issuer is used."""
        return self.oidc_issuer is None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse ``NODECERT_*`` variables (unknown ``NODECERT_`` names are an error).

        Raises:
            ConfigurationError: naming the variable and what is wrong with it.
        """
        unknown = unknown_variables(env)
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(unknown)}")
        values: dict[str, object] = {}
        for name in cls.__dataclass_fields__:
            variable = f"NODECERT_{name.upper()}"
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            values[name] = PARSERS[name](variable, raw)
        settings = cls(**values)  # type: ignore[arg-type]
        settings._check()
        return settings

    def _check(self) -> None:
        _require(
            self.store != "postgres" or bool(self.database_url),
            "NODECERT_DATABASE_URL: required when NODECERT_STORE=postgres",
        )
        _require(
            self.database_url is None or self.store == "postgres",
            "NODECERT_DATABASE_URL: only read when NODECERT_STORE=postgres",
        )
        _require(
            1 <= self.database_pool_size <= 1000,
            "NODECERT_DATABASE_POOL_SIZE: must be between 1 and 1000",
        )
        _require(
            self.ca != "acmpca" or bool(self.acmpca_ca_arn),
            "NODECERT_ACMPCA_CA_ARN: required when NODECERT_CA=acmpca",
        )
        self._check_pca_rotation()
        _require(
            (self.oidc_issuer is None) == (self.oidc_audience is None),
            "NODECERT_OIDC_ISSUER and NODECERT_OIDC_AUDIENCE: set both or neither",
        )
        for name in ("user_id_claim", "admin_claim"):
            value = getattr(self, name)
            _require(
                value is None or (0 < len(value) <= 256 and value == value.strip()),
                f"NODECERT_{name.upper()}: a claim name or dotted path of 1-256 characters,"
                " without surrounding spaces",
            )
        _require(
            bool(re.fullmatch(r"[A-Za-z0-9._#:/-]{1,255}", self.metrics_namespace)),
            "NODECERT_METRICS_NAMESPACE: 1-255 of A-Z a-z 0-9 . _ # : / - (a CloudWatch namespace)",
        )
        _require(1 <= self.port <= 65535, f"NODECERT_PORT: {self.port} is not a TCP port")
        _require(self.workers >= 1, "NODECERT_WORKERS: must be at least 1")
        for name in ("head_timeout_s", "body_timeout_s", "limit_concurrency"):
            _require(getattr(self, name) >= 1, f"NODECERT_{name.upper()}: must be >= 1")
        _require(self.max_body_bytes >= 1024, "NODECERT_MAX_BODY_BYTES: must be >= 1024")
        _require(
            self.max_header_bytes >= 8192,
            "NODECERT_MAX_HEADER_BYTES: must be >= 8192 (a bearer token alone may be 8 KiB)",
        )
        for name in ("quota_per_minute", "quota_burst", "max_active_per_node"):
            _require(getattr(self, name) >= 0, f"NODECERT_{name.upper()}: must be >= 0 (0 = off)")
        _require(self.key_pool_size >= 0, "NODECERT_KEY_POOL_SIZE: must be >= 0")
        _require(
            1 <= self.metrics_flush_s <= 3600,
            "NODECERT_METRICS_FLUSH_S: 1-3600 seconds",
        )
        _require(
            1 <= self.default_validity_days <= self.max_validity_days,
            "NODECERT_DEFAULT_VALIDITY_DAYS: must be between 1 and NODECERT_MAX_VALIDITY_DAYS",
        )
        try:
            validate_trust_domain(self.trust_domain)
        except InvalidIdentifierError as exc:
            raise ConfigurationError(f"NODECERT_TRUST_DOMAIN: {exc.detail}") from exc
        _require(bool(self.organization.strip()), "NODECERT_ORGANIZATION: must not be empty")
        _require(self.renew_grace_s >= 0, "NODECERT_RENEW_GRACE_S: must be >= 0")
        _require(self.crl_lifetime_s >= 60, "NODECERT_CRL_LIFETIME_S: must be >= 60")
        _require(self.revocation_retry_s >= 1, "NODECERT_REVOCATION_RETRY_S: must be >= 1")
        _require(
            self.authorize_secret is None or len(self.authorize_secret) >= 16,
            "NODECERT_AUTHORIZE_SECRET: must be at least 16 characters",
        )
        _require(
            (self.tls_cert is None) == (self.tls_key is None),
            "NODECERT_TLS_CERT and NODECERT_TLS_KEY: set both or neither",
        )
        kind, _, name = self.authorizer_target.partition(":")
        _require(
            (kind == "host" and not name) or (kind == "path" and bool(name)),
            "NODECERT_AUTHORIZER_TARGET: must be 'host' or 'path:<parameter>'",
        )

    def _check_pca_rotation(self) -> None:
        # The ACM PCA issuing CAs of a rotation's overlap (docs/aws.md, "Rotating the
        # issuing CA"): each ARN in one role only, and only read with NODECERT_CA=acmpca.
        retiring, retired = self.acmpca_retiring_arns, self.acmpca_retired_arns
        for name, arns in (("RETIRING", retiring), ("RETIRED", retired)):
            _require(
                not arns or self.ca == "acmpca",
                f"NODECERT_ACMPCA_{name}_ARNS: only read when NODECERT_CA=acmpca",
            )
            in_use = sorted(
                a for a in arns if a in (self.acmpca_ca_arn, self.acmpca_short_lived_ca_arn)
            )
            _require(
                not in_use,
                f"NODECERT_ACMPCA_{name}_ARNS: {(in_use or [''])[0]} is the CA"
                " that issues now (NODECERT_ACMPCA_CA_ARN or _SHORT_LIVED_CA_ARN), it cannot"
                " also be leaving",
            )
        both = sorted(set(retiring) & set(retired))
        _require(
            not both,
            f"NODECERT_ACMPCA_RETIRING_ARNS and NODECERT_ACMPCA_RETIRED_ARNS:"
            f" {(both or [''])[0]} is in both; an emergency moves an ARN from the first to"
            " the second",
        )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(message)
