"""SQL shared by the SQLite and PostgreSQL stores, written once for both dialects.

``ledger``: the dialect, the schema, the certificate columns and rows, the statements;
``outbox``: the revocation outbox and the audit log.
"""
