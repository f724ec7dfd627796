"""The SQLite store: ``store`` (``SQLiteStore``), ``file`` (one file shared by threads and
processes) and ``groupcommit`` (many callers' rows in one transaction)."""
