"""SQLiteStore on a real file under tmp_path: what only SQLite has (the behaviour every
store shares is in test_store_contract.py): schema, files, durability, group commit, forks."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodecert.core.errors import ConflictError, StoreUnavailableError
from nodecert.core.values import (
    AuditEntry,
    AuditQuery,
    CertificateStatus,
    Commit,
    RevocationReason,
)
from nodecert.store.sqlite.store import SCHEMA_VERSION, SQLiteStore
from tests.fakes import race
from tests.records import T0, certificate


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "nodecert.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(db_path)
    yield opened
    opened.close()


def raw(path: Path, query: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


# Schema


def test_new_database_is_wal_with_the_schema_version(store, db_path):
    assert db_path.exists()
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {row[0] for row in raw(db_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"nodes", "certificates"} <= tables


_VERSION_3_CERTIFICATES = """
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY, user_id TEXT NOT NULL, node_id TEXT NOT NULL,
    key_type TEXT NOT NULL, not_before TEXT NOT NULL, not_after TEXT NOT NULL,
    fingerprint_sha256 TEXT NOT NULL, request_id TEXT NOT NULL, created_at TEXT NOT NULL,
    status TEXT NOT NULL, revoked_at TEXT, revocation_reason TEXT, profile TEXT NOT NULL,
    renewed_from TEXT
);
"""


def test_a_version_3_database_is_upgraded_in_place_and_keeps_its_rows(db_path):
    db_path.parent.mkdir(parents=True)
    old = certificate("0a1b")
    connection = sqlite3.connect(db_path)
    connection.executescript(_VERSION_3_CERTIFICATES)
    connection.execute(
        "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, NULL)",
        (
            old.serial,
            old.user_id,
            old.node_id,
            old.key_type,
            old.not_before.isoformat(),
            old.not_after.isoformat(),
            old.fingerprint_sha256,
            old.request_id,
            old.created_at.isoformat(),
            "active",
            "client",
        ),
    )
    connection.execute("PRAGMA user_version = 3")
    connection.commit()
    connection.close()
    store = SQLiteStore(db_path)
    try:
        assert store.get("0a1b") == old  # issuer None: recorded before it was kept.
        newer = dataclasses.replace(certificate("0c0d"), issuer="arn:ca")
        store.record(newer).wait()
        assert store.get("0c0d") == newer
    finally:
        store.close()
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    SQLiteStore(db_path).close()  # Opening an upgraded file again changes nothing.


def test_parent_directory_is_created_private(tmp_path):
    path = tmp_path / "deep" / "er" / "nodecert.db"
    SQLiteStore(path).close()
    assert path.exists()
    assert (path.parent.stat().st_mode & 0o077) == 0


def test_database_from_a_newer_nodecert_is_refused(db_path):
    db_path.parent.mkdir(parents=True)
    connection = sqlite3.connect(db_path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(StoreUnavailableError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SQLiteStore(db_path)
    # The newer database is left as it was.
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]


def test_a_directory_as_database_path_is_store_unavailable(tmp_path):
    with pytest.raises(StoreUnavailableError, match="store: SQLite error") as caught:
        SQLiteStore(tmp_path)
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    assert caught.value.retry_after == 1


def test_a_file_that_is_not_sqlite_is_store_unavailable(db_path):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database, just a text file " * 100)
    with pytest.raises(StoreUnavailableError):
        SQLiteStore(db_path)


# Ledger (what every store does: test_store_contract.py)


def test_a_duplicate_serial_is_refused_by_the_primary_key_and_no_row_is_added(store, db_path):
    store.record(certificate("cafe")).wait()
    with pytest.raises(ConflictError, match="cafe") as caught:
        store.record(certificate("cafe", user="mallory")).wait()
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert raw(db_path, "SELECT COUNT(*) FROM certificates") == [(1,)]


def test_data_survives_closing_and_reopening(db_path):
    first = SQLiteStore(db_path)
    first.put_node("n1", "alice", at=T0)
    first.record(certificate("0123")).wait()
    first.mark_revoked("0123", reason=RevocationReason.CESSATION_OF_OPERATION, at=T0)
    first.close()

    second = SQLiteStore(db_path)
    try:
        assert second.owner_of("n1") == "alice"
        row = second.get("0123")
        assert row is not None
        assert row.status is CertificateStatus.REVOKED
        assert row.revocation_reason is RevocationReason.CESSATION_OF_OPERATION
    finally:
        second.close()
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_close_then_use_opens_a_fresh_connection(store):
    store.close()
    store.close()  # Closing twice is harmless.
    store.put_node("n1", "alice", at=T0)
    assert store.owner_of("n1") == "alice"


def test_two_stores_on_one_file_see_each_others_writes(db_path):
    # Several workers (processes) share one file; two instances stand in for them.
    a, b = SQLiteStore(db_path), SQLiteStore(db_path)
    try:
        a.record(certificate("01")).wait()
        assert b.get("01") is not None
        with pytest.raises(ConflictError):
            b.record(certificate("01")).wait()
    finally:
        a.close()
        b.close()


# Concurrency

THREADS = 8
PER_THREAD = 50


def test_concurrent_writers_all_land(store, db_path):
    def write(worker: int) -> int:
        try:
            for i in range(PER_THREAD):
                store.record(
                    certificate(
                        f"{worker:02x}{i:04x}",
                        user=f"user-{worker}",
                        node=f"node-{i % 5}",
                        minutes=i,
                    )
                ).wait()
            return len(store.find(user_id=f"user-{worker}"))
        finally:
            store.close()  # This worker thread's own connection.

    seen = race(THREADS, write)

    assert seen == [PER_THREAD] * THREADS
    assert raw(db_path, "SELECT COUNT(*) FROM certificates") == [(THREADS * PER_THREAD,)]
    assert raw(db_path, "SELECT COUNT(DISTINCT serial) FROM certificates") == [
        (THREADS * PER_THREAD,)
    ]
    assert len(store.find()) == THREADS * PER_THREAD
    assert raw(db_path, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize(("mode", "pragma"), [("full", 2), ("normal", 1)])
def test_the_ledger_durability_mode_is_applied(tmp_path, mode, pragma):
    store = SQLiteStore(tmp_path / "ledger.db", synchronous=mode)
    with store._db.transaction() as db:
        assert db.execute("PRAGMA synchronous").fetchone()[0] == pragma
    # Rate buckets never wait for the disk, whatever the ledger does, in a file of their own.
    with store._rates.transaction() as db:
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 0
        assert db.execute("PRAGMA database_list").fetchone()[2].endswith("ledger-rates.db")
    store.close()


def test_an_unknown_durability_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "ledger.db", synchronous="off")


def _outcome(commit: Commit) -> Exception | None:
    try:
        commit.wait(10)
    except Exception as exc:
        return exc
    return None


def test_queued_rows_commit_together_and_conflicts_stay_per_row(store, db_path):
    store.record(certificate("00aa")).wait()
    commits = [store.record(certificate(f"{i:04x}", minutes=i)) for i in range(1, 60)]
    clash = store.record(certificate("00aa", user="mallory"))
    twice = [store.record(certificate("beef")) for _ in range(2)]
    for commit in commits:
        assert _outcome(commit) is None
    with pytest.raises(ConflictError, match="00aa") as caught:
        clash.wait(10)
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert sorted(_outcome(c) is None for c in twice) == [False, True]
    assert raw(db_path, "SELECT COUNT(*) FROM certificates") == [(61,)]
    assert store.get("00aa").user_id == "alice"  # The original row is unchanged.


def _record_in_child(store: SQLiteStore, serial: str) -> None:
    store.record(certificate(serial)).wait()


def test_a_store_used_before_a_fork_commits_in_the_child(store, db_path):
    import multiprocessing

    store.record(certificate("0001")).wait()  # The parent's committer thread is running.
    child = multiprocessing.get_context("fork").Process(
        target=_record_in_child, args=(store, "0002")
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert store.get("0002") is not None


_VERSION_4_CERTIFICATES = _VERSION_3_CERTIFICATES.replace(
    "renewed_from TEXT\n", "renewed_from TEXT, issuer TEXT\n"
)


def test_a_version_4_database_gets_successors_the_outbox_and_the_audit_trail(db_path):
    db_path.parent.mkdir(parents=True)
    old = dataclasses.replace(certificate("0a1b"), issuer="arn:ca")
    connection = sqlite3.connect(db_path)
    connection.executescript(_VERSION_4_CERTIFICATES)
    connection.execute(
        "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, NULL, ?)",
        (
            old.serial,
            old.user_id,
            old.node_id,
            old.key_type,
            old.not_before.isoformat(),
            old.not_after.isoformat(),
            old.fingerprint_sha256,
            old.request_id,
            old.created_at.isoformat(),
            "active",
            "client",
            "arn:ca",
        ),
    )
    connection.execute("PRAGMA user_version = 4")
    connection.commit()
    connection.close()
    store = SQLiteStore(db_path)
    try:
        assert store.get("0a1b") == old  # No DNS names, no successor: as it was.
        successor = certificate("0c0d", minutes=1, renewed_from="0a1b", dns_names=("n1.example",))
        store.record_successor(successor)
        assert store.get("0c0d") == successor
        assert store.get("0a1b").superseded_by == "0c0d"
        revoked = store.revoke_and_queue(["0a1b"], reason=RevocationReason.KEY_COMPROMISE, at=T0)
        assert [row.serial for row in revoked] == ["0a1b"]
        assert [p.issuer for p in store.pending_revocations(limit=5)] == ["arn:ca"]
    finally:
        store.close()
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 7
    SQLiteStore(db_path).close()  # Opening an upgraded file again changes nothing.


def test_a_version_6_file_gets_the_user_subject_column_and_keeps_its_rows(db_path):
    first = SQLiteStore(db_path)
    old = certificate("0a1b")
    first.record(old).wait()
    first.close()
    # What version 6 had: every column but user_subject and ip_addresses.
    connection = sqlite3.connect(db_path)
    connection.execute("ALTER TABLE certificates DROP COLUMN user_subject")
    connection.execute("ALTER TABLE certificates DROP COLUMN ip_addresses")
    connection.execute("PRAGMA user_version = 6")
    connection.commit()
    connection.close()
    store = SQLiteStore(db_path)
    try:
        assert store.get("0a1b") == old  # user_subject None: recorded before it was kept.
        newer = dataclasses.replace(
            certificate("0c0d"), user_subject="auth0|5f7c", ip_addresses=("10.0.0.7",)
        )
        store.record(newer).wait()
        assert store.get("0c0d") == newer
    finally:
        store.close()
    assert raw(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_version_5_audit_log_gains_who_and_where_in_place(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    connection = sqlite3.connect(db_path)
    connection.executescript(
        """
        DROP TABLE audit_log;
        CREATE TABLE audit_log (id TEXT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
            action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
        INSERT INTO audit_log VALUES
            ('1', '2026-01-01T00:00:00+00:00', 'cli:root', 'node.add', 'n1', 'owner=alice');
        PRAGMA user_version = 5;
        """
    )
    connection.close()
    store = SQLiteStore(db_path)
    try:
        store.append_audit(
            AuditEntry(at=T0, actor="ops", action="node.remove", target="n1", node_id="n1")
        )
        old, new = sorted(store.audit_entries(limit=10), key=lambda e: e.action)
        assert (old.action, old.user_id, old.node_id, old.source) == ("node.add", "", "", "")
        assert (new.action, new.node_id) == ("node.remove", "n1")
        assert [e.action for e in store.audit_entries(query=AuditQuery(node_id="n1"))] == [
            "node.remove"
        ]
    finally:
        store.close()
    check = sqlite3.connect(db_path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    check.close()
