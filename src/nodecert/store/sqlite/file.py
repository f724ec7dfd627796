"""One SQLite file shared by threads and processes: connections, the writer lock, errors."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import weakref
from contextlib import suppress
from pathlib import Path
from types import TracebackType

from nodecert.core.errors import StoreUnavailableError
from nodecert.support.blocking import WouldBlockError, must_not_wait
from nodecert.support.budget import deadline
from nodecert.support.files import create_private

__all__ = ["WAL_SIZE_LIMIT", "SQLiteFile"]

_LOCK_POLL_S = 0.0002
# The write-ahead log is checkpointed into the database once it holds this many pages
# (SQLite's default is 1,000: 4 MiB of 4 KiB pages), and cut back to WAL_SIZE_LIMIT bytes
# when a checkpoint has emptied it (by default it keeps its largest size for ever). 240
# frames of 4 KiB (with their 24-byte headers) fill 0.94 MiB: a routine cycle stays under
# the limit, so the file is reused in place, never cut and grown again on every cycle; only
# a log that grew past it (a large transaction, a long reader) is cut back. So each WAL
# stays near 1 MiB, plus at most one transaction's pages (docs/reliability.md).
_WAL_CHECKPOINT_PAGES = 240
WAL_SIZE_LIMIT = 1024 * 1024
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_BUSY_SLACK_MS = 100
# How long a write on an event loop asks again for the file lock of another process (or
# this process's mutex) before it gives up (WouldBlockError): a few uncontended writes of a
# rate bucket. Giving up costs more: the whole request runs again in the thread pool.
_NOW_RETRY_S = 0.0005
_NOW_POLL_S = 0.00002


class SQLiteFile:
    """A SQLite database in WAL mode, with one connection per thread.

    Args:
        path: The database file; its directory is created (mode 0700) when missing.
        synchronous: SQLite's ``synchronous`` pragma: ``FULL`` (each commit durable before
            it returns), ``NORMAL`` (WAL: durable across a crash of the process, not of
            the machine) or ``OFF``.
        busy_timeout_s: How long a write waits for other writers before the file is
            reported unavailable: for this process's writers, other nodecert processes
            and SQLite's own lock together, and never past the caller's time budget
            (``support.budget``; the group committer sets one from a row's arrival).
    """

    def __init__(self, path: Path, *, synchronous: str, busy_timeout_s: float) -> None:
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError(f"synchronous: {synchronous!r} is not FULL, NORMAL or OFF")
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._write_mutex = threading.Lock()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
        # database file's mode, so the rows never sit in a file others can read.
        # A path SQLite cannot open (a directory, no permission) is left for SQLite to
        # report, as StoreUnavailableError, when the first transaction opens it.
        with suppress(OSError):
            create_private(path)
            for suffix in ("-wal", "-shm"):
                companion = path.with_name(path.name + suffix)
                if companion.exists():
                    create_private(companion)
        self._lock_file = os.open(
            path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600
        )
        weakref.finalize(self, os.close, self._lock_file)
        self._local = threading.local()

    def transaction(self, *, write: bool = False) -> _Transaction:
        """This thread's connection inside a transaction, committed on success.

        Used as ``with file.transaction(write=True) as db:``. On the way out of the block,
        these errors (from the block, the commit or the locks) become:

        Raises:
            sqlite3.IntegrityError: a constraint failed (the caller knows what it means).
            StoreUnavailableError: any other SQLite error, an ``OSError`` of its lock
                file, or no write lock in time.
            WouldBlockError: on an event loop (``support.blocking``), a write found a lock
                taken; the transaction was rolled back.
        """
        return _Transaction(self, write)

    def _translated(self, exc: BaseException, *, write: bool) -> Exception | None:
        # What a transaction raises instead of ``exc`` (see transaction()), or None: as it is.
        if isinstance(exc, sqlite3.IntegrityError):
            return None
        if isinstance(exc, sqlite3.Error):
            if write and must_not_wait() and exc.sqlite_errorcode & 0xFF in _BUSY:
                # SQLite's own lock, held by a process that is not nodecert: waiting for
                # it here would stall every request of this event loop.
                return WouldBlockError()
            return StoreUnavailableError(
                f"store: SQLite error on {self.path.name}: {exc}", retry_after=1
            )
        if isinstance(exc, OSError):
            # The writers' lock file (flock: ENOLCK, EIO…): the file is unavailable, as
            # for any SQLite error.
            return StoreUnavailableError(
                f"store: cannot lock {self.path.name}: {exc.strerror or type(exc).__name__}",
                retry_after=1,
            )
        return None

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _wait_at_most(self, db: sqlite3.Connection, limit: float | None) -> None:
        # SQLite's busy handler is the last wait of a write (a lock held by a process that
        # is not nodecert: the sqlite3 shell, a backup). It gets what is left of the
        # write's time, so that the waits do not add up to several busy timeouts.
        # Within a tenth of a second of the whole timeout (an uncontended write), the
        # connection's default stands: no PRAGMA on the fast path.
        wanted = int(self._busy_timeout_s * 1000)
        if limit is not None:
            left = int((limit - time.monotonic()) * 1000)
            if left < wanted - _BUSY_SLACK_MS:
                wanted = max(0, left)
        if getattr(self._local, "busy_ms", None) != wanted:
            db.execute(f"PRAGMA busy_timeout = {wanted}")
            self._local.busy_ms = wanted

    def _lock_for_writing(self) -> float:
        # SQLite lets one writer in at a time and makes the others wait in its busy
        # handler, which sleeps in steps of 1 to 100 ms: under load that turns a
        # sub-millisecond commit into tens of milliseconds. Writers of this process queue
        # on a mutex, and writers of other nodecert processes on a file lock beside the
        # database, so SQLite itself almost never sees two writers at once.
        # Takes both (released by _unlock) and returns the time (monotonic) by which the
        # write must have SQLite's own lock. Plain calls, not a context manager: every
        # request writes on this path.
        if must_not_wait():
            self._lock_now()
            return 0.0  # Long past: SQLite's busy handler must not wait either.
        limit = time.monotonic() + self._busy_timeout_s
        budget = deadline()
        if budget is not None:
            limit = min(limit, budget)
        if not self._write_mutex.acquire(timeout=max(0.0, limit - time.monotonic())):
            raise StoreUnavailableError("store: timed out waiting to write", retry_after=1)
        try:
            while True:
                try:
                    fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return limit
                except BlockingIOError:
                    if time.monotonic() > limit:
                        raise StoreUnavailableError(
                            "store: timed out waiting to write", retry_after=1
                        ) from None
                    time.sleep(_LOCK_POLL_S)
        except BaseException:
            self._write_mutex.release()
            raise

    def _lock_now(self) -> None:
        # On an event loop: take both locks at once or not at all (WouldBlockError, and
        # the caller retries in a thread). Nothing has been written at that point.
        # This process's other writer (a thread-pool request) holds the mutex for one short
        # write too: wait for it that long, the GIL released, rather than hand the request
        # to the pool as well, where it would hold the mutex in turn (a cascade).
        if not self._write_mutex.acquire(timeout=_NOW_RETRY_S):
            raise WouldBlockError
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                self._flock_soon()
            except BaseException:
                self._write_mutex.release()
                raise
        except BaseException:
            self._write_mutex.release()
            raise

    def _flock_soon(self) -> None:
        # Another worker's write holds the file lock for a few tens of microseconds (a rate
        # bucket has no fsync): asking again for that long costs less than running the
        # whole request again in the thread pool, which a WouldBlockError does. Beyond
        # that, the lock is held by something slower (a ledger commit, a backup).
        give_up = time.perf_counter() + _NOW_RETRY_S
        while True:
            time.sleep(_NOW_POLL_S)  # The GIL released: the holder may be a thread here.
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.perf_counter() > give_up:
                    raise WouldBlockError from None

    def _unlock(self) -> None:
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        finally:
            self._write_mutex.release()

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
            self._local.busy_ms = int(self._busy_timeout_s * 1000)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            db.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            # Every thread keeps its connection, so the page cache is per thread: 1 MiB
            # each (SQLite's default is 2 MiB) keeps a busy thread pool's memory bounded.
            db.execute("PRAGMA cache_size = -1024")
            db.isolation_level = "DEFERRED"
            self._local.db = db
        return db


class _Transaction:
    # SQLiteFile.transaction(): a class rather than a generator-based context manager,
    # which costs several times as much, on every store call of every request.
    __slots__ = ("_db", "_file", "_write")

    def __init__(self, file: SQLiteFile, write: bool) -> None:
        self._file = file
        self._write = write

    def __enter__(self) -> sqlite3.Connection:
        file = self._file
        try:
            limit = file._lock_for_writing() if self._write else None
            try:
                db = file._connection()
                file._wait_at_most(db, limit)
            except BaseException:
                if self._write:
                    file._unlock()
                raise
        except Exception as exc:
            translated = file._translated(exc, write=self._write)
            if translated is None:
                raise
            raise translated from exc
        # The connection's own context manager (commit, or roll back) is left to __exit__:
        # entering it does nothing.
        self._db = db
        return db

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        file = self._file
        try:
            try:
                self._db.__exit__(kind, exc, tb)  # Commits, or rolls back.
            finally:
                if self._write:
                    file._unlock()
        except Exception as error:
            translated = file._translated(error, write=self._write)
            if translated is None:
                raise
            raise translated from error
        if exc is not None:
            translated = file._translated(exc, write=self._write)
            if translated is not None:
                raise translated from exc
