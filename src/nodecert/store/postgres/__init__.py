"""The PostgreSQL store: ``store`` (``PostgresStore``) and ``schema`` (creating or upgrading
the tables once, under an advisory lock)."""
