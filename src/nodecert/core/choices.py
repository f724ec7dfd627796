"""The settings with a fixed set of answers, as ``StrEnum``s (``NODECERT_CA``, ...).

``bootstrap`` keys its registries of CA backends and stores by them;
:mod:`nodecert.core.config` types the fields of ``Settings`` with them.
"""

from __future__ import annotations

import enum

__all__ = ["CAKind", "LogFormat", "LogLevel", "SQLiteSync", "StoreKind", "Switch"]


class CAKind(enum.StrEnum):
    """``NODECERT_CA``: which certificate authority signs."""

    LOCAL = "local"
    ACMPCA = "acmpca"


class StoreKind(enum.StrEnum):
    """``NODECERT_STORE``: where the ledger and the node directory live."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"
    DYNAMODB = "dynamodb"


class SQLiteSync(enum.StrEnum):
    """``NODECERT_SQLITE_SYNCHRONOUS``: SQLite's ``synchronous`` pragma for the ledger."""

    FULL = "full"
    NORMAL = "normal"


class LogLevel(enum.StrEnum):
    """``NODECERT_LOG_LEVEL`` (the names the logging module knows)."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class LogFormat(enum.StrEnum):
    """``NODECERT_LOG_FORMAT``: key=value text, or one JSON object per line."""

    TEXT = "text"
    JSON = "json"


class Switch(enum.StrEnum):
    """An on/off setting (``NODECERT_METRICS``)."""

    ON = "on"
    OFF = "off"
