"""The store registry: one function per ``NODECERT_STORE`` choice, giving every store port."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodecert.core.choices import StoreKind
from nodecert.core.config import Settings
from nodecert.core.errors import ConfigurationError
from nodecert.core.ports import (
    AuditTrail,
    Ledger,
    NodeDirectory,
    RateLimiter,
    ReplayGuard,
    RevocationOutbox,
)

if TYPE_CHECKING:
    from nodecert.store.dynamodb.store import DynamoDBStore

__all__ = ["STORES", "Stores", "open_stores"]


@dataclass(frozen=True, slots=True)
class Stores:
    """What one store setting gives: every store port, and what closes them.

    SQLite and PostgreSQL are one object in every role; DynamoDB keeps single-use tokens
    and rate buckets in a limits table, and the revocation outbox and the audit trail in
    an outbox table, through objects of their own over the same client.

    Attributes:
        ledger: The certificate ledger.
        nodes: The node directory.
        replay: Single-use token ids (proof-of-possession renewal, idempotency keys).
        limiter: Token buckets (the issuance rate).
        outbox: The queue of CA revocations.
        audit: The audit trail of administrative actions.
        closers: What ``Service.close`` must call: only a PostgreSQL pool holds server
            connections and threads of its own (SQLite's connections belong to the
            threads that opened them, DynamoDB's client to boto3).
    """

    ledger: Ledger
    nodes: NodeDirectory
    replay: ReplayGuard
    limiter: RateLimiter
    outbox: RevocationOutbox
    audit: AuditTrail
    closers: tuple[Callable[[], None], ...] = ()


def open_stores(settings: Settings) -> Stores:
    """Every store port, from ``settings.store``.

    Raises:
        ConfigurationError: the store is unknown or its settings are incomplete.
        StoreUnavailableError: the database cannot be opened or reached.
    """
    return STORES[settings.store](settings)


def _sqlite_stores(settings: Settings) -> Stores:
    # Imported when chosen, like each store: a Lambda function (DynamoDB) never loads
    # sqlite3 and the SQL modules (its cold start).
    from nodecert.store.sqlite.store import SQLiteStore

    store = SQLiteStore(settings.database_path, synchronous=settings.sqlite_synchronous)
    return Stores(store, store, store, store, store, store)


def _postgres_stores(settings: Settings) -> Stores:
    if not settings.database_url:
        raise ConfigurationError("NODECERT_DATABASE_URL: required when NODECERT_STORE=postgres")
    # Imported here: psycopg is an extra (nodecert[postgres]), like boto3 for DynamoDB.
    try:
        from nodecert.store.postgres.store import PostgresStore
    except ImportError as exc:
        raise ConfigurationError(
            "NODECERT_STORE=postgres: psycopg is not installed (pip install 'nodecert[postgres]')"
        ) from exc
    pg = PostgresStore(settings.database_url, max_size=settings.database_pool_size)
    return Stores(pg, pg, pg, pg, pg, pg, closers=(pg.close,))


def _dynamodb_stores(settings: Settings) -> Stores:
    from nodecert.store.dynamodb.limits import DynamoDBLimits
    from nodecert.store.dynamodb.outbox import DynamoDBOutbox
    from nodecert.store.dynamodb.store import DynamoDBStore
    from nodecert.support.awsclients import make_client

    client = make_client("dynamodb", region=settings.aws_region)
    dynamodb: DynamoDBStore = DynamoDBStore(
        client,
        nodes_table=settings.dynamodb_nodes_table,
        certificates_table=settings.dynamodb_certificates_table,
    )
    limits = DynamoDBLimits(client, table=settings.dynamodb_limits_table)
    outbox = DynamoDBOutbox(
        client,
        certificates_table=settings.dynamodb_certificates_table,
        outbox_table=settings.dynamodb_outbox_table,
        limits_table=settings.dynamodb_limits_table,
    )
    return Stores(dynamodb, dynamodb, limits, limits, outbox, outbox)


# The registry bootstrap looks a store choice up in (smallstep's cas/apiv1/registry.go): a
# new store is one function and one entry here, and a missing entry fails typing.
STORES: dict[StoreKind, Callable[[Settings], Stores]] = {
    StoreKind.SQLITE: _sqlite_stores,
    StoreKind.POSTGRES: _postgres_stores,
    StoreKind.DYNAMODB: _dynamodb_stores,
}
