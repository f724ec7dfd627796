"""The PostgreSQL schema: the dialect, the tables, and creating or upgrading them once.

Every nodecert server runs :func:`create_schema` when it starts; an advisory lock makes one
of them create (or upgrade) the tables while the others wait, then see them.
"""

from __future__ import annotations

from typing import Any

import psycopg

from nodecert.core.errors import StoreUnavailableError
from nodecert.store.sql.ledger import Dialect, add_late_audit_columns, add_late_columns, schema

__all__ = ["POSTGRES", "SCHEMA_VERSION", "create_schema"]

# Version 2 added certificates.dns_names and superseded_by, revocation_outbox and
# audit_log, version 3 audit_log.user_id, node_id and source, version 4
# certificates.user_subject (the provider's subject of the user) and ip_addresses; an older
# database is brought up in place when a server starts.
SCHEMA_VERSION = 4
# Any constant works: it only has to be the same in every nodecert server.
_SCHEMA_LOCK = 0x6E6F6465636572  # "nodecer"
# Ids compare as bytes (COLLATE "C"), as in SQLite and Python: the database's own locale
# would order "N2" before "n1" differently and break the keyset cursor of query().
POSTGRES = Dialect(
    mark=lambda name: f"%({name})s",
    time_type="TIMESTAMPTZ",
    id_type='TEXT COLLATE "C"',
    to_time=lambda at: at,
    from_time=lambda at: at,
)
_SCHEMA = (
    schema(POSTGRES)
    + """
-- Unlogged, like SQLite's rates file written without fsync: a bucket write never waits
-- for the WAL, and after a crash the buckets start full again, which only costs a burst.
CREATE UNLOGGED TABLE IF NOT EXISTS rate_buckets (
    key         TEXT COLLATE "C" PRIMARY KEY,
    tokens      DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
"""
)
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS nodecert_schema (
    one      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    version  INTEGER NOT NULL
)
"""


def create_schema(db: psycopg.Connection[Any]) -> None:
    """Create the tables, or bring an older schema up to :data:`SCHEMA_VERSION`.

    Raises:
        StoreUnavailableError: the database has a newer schema than this nodecert knows.
        psycopg.Error: the database failed (the caller translates it).
    """
    with db.transaction():
        # Held until the transaction ends: one server creates, the others see.
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        db.execute(_VERSION_TABLE)
        row = db.execute("SELECT version FROM nodecert_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreUnavailableError(
                f"store: the database has schema version {version}; this nodecert"
                f" knows {SCHEMA_VERSION} (upgrade nodecert)"
            )
        db.execute(_SCHEMA)
        columns = db.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'certificates'"
        ).fetchall()
        for statement in add_late_columns({str(row[0]) for row in columns}):
            db.execute(statement)
        audit = db.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'audit_log'"
        ).fetchall()
        for statement in add_late_audit_columns({str(row[0]) for row in audit}):
            db.execute(statement)
        db.execute(
            "INSERT INTO nodecert_schema (one, version) VALUES (TRUE, %s)"
            " ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            (SCHEMA_VERSION,),
        )
