"""One parser per setting: the table that turns each variable's text into its field's type.

Each parser takes the variable's name and its text and returns the typed value, or raises
:class:`~nodecert.core.errors.ConfigurationError` naming the variable.
:meth:`nodecert.core.config.Settings.from_env` looks every field up in :data:`PARSERS`
(``tests/unit/test_policy_config.py`` holds the table to the fields of ``Settings``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from pathlib import Path

from nodecert.core.choices import CAKind, LogFormat, LogLevel, SQLiteSync, StoreKind, Switch
from nodecert.core.errors import ConfigurationError
from nodecert.core.keys import KeyType
from nodecert.core.policy import OwnershipMode

__all__ = ["CHOICES", "PARSERS", "Parser", "choice"]

Parser = Callable[[str, str], object]


def _text(_variable: str, raw: str) -> str:
    return raw


def _int(variable: str, raw: str) -> int:
    text = raw.strip()
    # ASCII digits (and a sign) only, and few: int() also takes "²"-like digits and would
    # spend time on thousands of them.
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", text):
        raise ConfigurationError(f"{variable}: {raw[:80]!r} is not a whole number")
    return int(text)


# An ACM PCA certificate authority's ARN: partition, region, account, CA id (a UUID).
_PCA_ARN = re.compile(
    r"arn:aws(?:-[a-z]+){0,2}:acm-pca:[a-z]{2}(?:-[a-z]+)+-[0-9]:[0-9]{12}"
    r":certificate-authority/[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}"
)


def _pca_arns(variable: str, raw: str) -> tuple[str, ...]:
    # Comma-separated, spaces around commas allowed; an empty item (a trailing comma) is
    # as likely a truncated value as a typo, so it is refused too.
    arns = tuple(item.strip() for item in raw.split(","))
    for arn in arns:
        if not _PCA_ARN.fullmatch(arn):
            raise ConfigurationError(
                f"{variable}: {arn[:120]!r} is not an ACM PCA certificate authority ARN"
                " (arn:aws:acm-pca:<region>:<account>:certificate-authority/<id>;"
                " several are separated by commas)"
            )
    if len(set(arns)) != len(arns):
        raise ConfigurationError(f"{variable}: an ARN is listed twice")
    return arns


def _path(_variable: str, raw: str) -> Path:
    return Path(raw)


def choice(kind: type[enum.StrEnum]) -> Parser:
    def parse(variable: str, raw: str) -> object:
        text = str(raw).strip()
        # Log levels are upper case in the logging module; every other choice lower case.
        text = text.upper() if kind is LogLevel else text.lower()
        try:
            return kind(text)
        except ValueError:
            words = ", ".join(str(k) for k in kind)
            raise ConfigurationError(
                f"{variable}: {str(raw)[:80]!r} is not one of {words}"
            ) from None

    return parse


def _enum(kind: type[KeyType] | type[OwnershipMode]) -> Parser:
    def parse(variable: str, raw: str) -> object:
        try:
            return kind(raw)
        except ValueError:
            raise ConfigurationError(f"{variable}: {raw[:80]!r} is not a valid value") from None

    return parse


CHOICES: dict[str, type[enum.StrEnum]] = {
    "ca": CAKind,
    "store": StoreKind,
    "sqlite_synchronous": SQLiteSync,
    "log_level": LogLevel,
    "log_format": LogFormat,
    "metrics": Switch,
}

PARSERS: dict[str, Parser] = {
    **{name: choice(kind) for name, kind in CHOICES.items()},
    "ca_key_type": _enum(KeyType),
    "acmpca_retiring_arns": _pca_arns,
    "acmpca_retired_arns": _pca_arns,
    "ownership": _enum(OwnershipMode),
    **dict.fromkeys(
        (
            "port",
            "workers",
            "database_pool_size",
            "default_validity_days",
            "max_validity_days",
            "max_body_bytes",
            "max_header_bytes",
            "head_timeout_s",
            "body_timeout_s",
            "limit_concurrency",
            "quota_per_minute",
            "quota_burst",
            "max_active_per_node",
            "key_pool_size",
            "renew_grace_s",
            "crl_lifetime_s",
            "revocation_retry_s",
            "metrics_flush_s",
        ),
        _int,
    ),
    **dict.fromkeys(
        (
            "home",
            "database",
            "ca_bundle",
            "ca_pkcs11_module",
            "ca_pkcs11_pin_file",
            "tls_cert",
            "tls_key",
        ),
        _path,
    ),
    **dict.fromkeys(
        (
            "host",
            "organization",
            "trust_domain",
            "ca_passphrase",
            "ca_kms_key_id",
            "ca_pkcs11_token",
            "ca_pkcs11_key_label",
            "ca_pkcs11_pin",
            "acmpca_ca_arn",
            "acmpca_short_lived_ca_arn",
            "acmpca_template_arn",
            "aws_region",
            "database_url",
            "dynamodb_nodes_table",
            "dynamodb_certificates_table",
            "dynamodb_limits_table",
            "dynamodb_outbox_table",
            "oidc_issuer",
            "oidc_audience",
            "oidc_jwks_url",
            "admin_group",
            "user_id_claim",
            "admin_claim",
            "nodes_claim",
            "metrics_namespace",
            "authorize_secret",
            "authorizer_target",
            "renew_audience",
        ),
        _text,
    ),
}
