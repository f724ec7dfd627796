"""The SQLite ReplayGuard: shared across connections, expiring, and the v1 → v2 upgrade."""

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from nodecert.core.errors import ConflictError
from nodecert.store.sqlite.store import SCHEMA_VERSION, SQLiteStore


def test_a_key_is_used_once_across_stores_and_threads(tmp_path):
    path = tmp_path / "nodecert.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    later = datetime.now(UTC) + timedelta(minutes=5)
    first.use_once("k1", expires_at=later)
    with pytest.raises(ConflictError):
        second.use_once("k1", expires_at=later)
    errors = []

    def worker():
        try:
            second.use_once("k2", expires_at=later)
        except ConflictError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 7


def test_expired_keys_are_purged(tmp_path):
    path = tmp_path / "nodecert.db"
    store = SQLiteStore(path)
    now = datetime.now(UTC)
    store.use_once("k", expires_at=now + timedelta(seconds=1), now=now)
    store.use_once("old", expires_at=now + timedelta(seconds=1), now=now)
    # Before it expires, the key is taken.
    with pytest.raises(ConflictError):
        store.use_once("k", expires_at=now + timedelta(hours=1), now=now)
    # Once expired, it is purged and may be used again, until its new expiry.
    store.use_once("k", expires_at=now + timedelta(hours=1), now=now + timedelta(seconds=2))
    with pytest.raises(ConflictError):
        store.use_once("k", expires_at=now + timedelta(hours=1), now=now + timedelta(seconds=3))
    store.close()
    db = sqlite3.connect(path)
    try:
        keys = [row[0] for row in db.execute("SELECT key FROM used_tokens")]
    finally:
        db.close()
    assert keys == ["k"]  # "old" went with the purge, not only the key used again.


def test_a_version_1_file_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE nodes (node_id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
        " created_at TEXT NOT NULL); PRAGMA user_version = 1;"
    )
    db.close()
    store = SQLiteStore(path)
    store.use_once("k", expires_at=datetime.now(UTC) + timedelta(minutes=1))
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
