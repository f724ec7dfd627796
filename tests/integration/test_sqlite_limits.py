"""SQLite's bounds: the write-ahead log stays small, and a locked ledger is one busy timeout.

Real files under tmp_path; the locks are held by other processes (``sqlite3`` holding
SQLite's write lock, as a shell or a backup would; a second nodecert holding the writers'
file lock).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodecert.core.errors import StoreUnavailableError
from nodecert.store.sqlite import file as sqlite_file
from nodecert.store.sqlite.file import WAL_SIZE_LIMIT
from nodecert.store.sqlite.store import SQLiteStore
from nodecert.support.blocking import WouldBlockError, never_wait
from nodecert.support.budget import time_budget
from tests.processes import cli, free_port, nodecert_env, start_server, stop_server
from tests.records import certificate

_HOLD = """
import fcntl, os, sqlite3, sys
path, how = sys.argv[1], sys.argv[2]
if how == "sqlite":
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
else:
    fd = os.open(path + ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def _held(path: Path, how: str) -> Iterator[None]:
    """Another process holds the ledger's write lock (``sqlite`` or the file ``flock``)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.communicate(timeout=20)  # Reaps it and closes the pipes.


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_the_write_ahead_log_stays_near_its_limit(tmp_path: Path, synchronous: str) -> None:
    store = SQLiteStore(tmp_path / "nodecert.db", synchronous=synchronous)
    wal = tmp_path / "nodecert.db-wal"
    peak = 0
    try:
        # ~2 MiB of rows: SQLite's defaults would have left a 4 MiB log behind.
        for index in range(6000):
            store.record(certificate(format(index + 1, "x"))).wait()
            if index % 20 == 0:
                peak = max(peak, wal.stat().st_size)
        peak = max(peak, wal.stat().st_size)
    finally:
        store.close()
    # One transaction's pages (a few KiB here) may pass the limit until the next checkpoint.
    assert peak <= WAL_SIZE_LIMIT + 64 * 1024, peak


@pytest.mark.parametrize("how", ["sqlite", "flock"])
def test_rows_queued_behind_a_locked_ledger_fail_within_one_busy_timeout(
    tmp_path: Path, how: str
) -> None:
    busy_s = 4.0
    store = SQLiteStore(tmp_path / "nodecert.db", busy_timeout_s=busy_s)
    outcomes: list[tuple[float, BaseException | None]] = []

    def write(serial: str) -> None:
        started = time.monotonic()
        try:
            store.record(certificate(serial)).wait()
        except StoreUnavailableError as exc:
            outcomes.append((time.monotonic() - started, exc))
        else:
            outcomes.append((time.monotonic() - started, None))

    try:
        with _held(store.path, how):
            first = threading.Thread(target=write, args=("01",))
            first.start()
            time.sleep(0.2)  # Not a timing assertion: the others queue behind the first.
            rest = [threading.Thread(target=write, args=(f"0{n}",)) for n in range(2, 6)]
            for thread in rest:
                thread.start()
            for thread in [first, *rest]:
                thread.join(timeout=60)
        assert len(outcomes) == 5
        assert all(isinstance(error, StoreUnavailableError) for _, error in outcomes)
        # Before, the rows that queued behind the first batch waited its timeout and then
        # one of their own: at least 2 x busy_s - 0.2 s. Now one busy timeout, plus slack
        # for a loaded machine.
        slowest = max(waited for waited, _ in outcomes)
        assert slowest < busy_s + 2.0, outcomes
        store.record(certificate("06")).wait()  # Free again: the writes go through.
    finally:
        store.close()


@pytest.mark.parametrize("how", ["sqlite", "flock"])
def test_a_write_never_waits_past_the_callers_budget(tmp_path: Path, how: str) -> None:
    # A busy timeout of a minute, a budget already spent: the write is refused at once.
    store = SQLiteStore(tmp_path / "nodecert.db", busy_timeout_s=60.0)
    failed = threading.Event()

    def write() -> None:
        with time_budget(0), pytest.raises(StoreUnavailableError):
            store.put_node("n1", "alice", at=certificate("01").not_before)
        failed.set()

    try:
        with _held(store.path, how):
            thread = threading.Thread(target=write, daemon=True)
            thread.start()
            assert failed.wait(30), "the write waited for the busy timeout, not the budget"
        # A read after that write still gets the whole busy timeout (nothing left at 0).
        assert store.owner_of("n1") is None
    finally:
        store.close()


def test_on_an_event_loop_a_lock_held_by_another_process_is_never_waited_for(
    tmp_path: Path,
) -> None:
    # SQLite's own lock, held by a process that is not nodecert: the event loop must not
    # sit in SQLite's busy handler (a minute here); the caller retries in a thread.
    store = SQLiteStore(tmp_path / "nodecert.db", busy_timeout_s=60.0)
    refused = threading.Event()

    def write() -> None:
        with never_wait(), pytest.raises(WouldBlockError):
            store.put_node("n1", "alice", at=certificate("01").not_before)
        refused.set()

    try:
        with _held(store.path, "sqlite"):
            thread = threading.Thread(target=write, daemon=True)
            thread.start()
            assert refused.wait(30), "the write waited on the event loop"
        store.put_node("n1", "alice", at=certificate("01").not_before)  # Free: it goes in.
        assert store.owner_of("n1") == "alice"
    finally:
        store.close()


# What flock says when the lock is held (Python raises BlockingIOError for these): waited
# for, or WouldBlockError on the event loop, as the tests above show.
_HELD = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY, errno.EINPROGRESS}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(code=st.sampled_from(sorted(set(errno.errorcode) - _HELD)), loop=st.booleans())
def test_any_oserror_of_the_writers_lock_is_store_unavailable(
    tmp_path: Path, code: int, loop: bool
) -> None:
    store = SQLiteStore(tmp_path / f"{code}-{loop}.db")

    def flock(fd: int, operation: int) -> None:
        if operation != fcntl.LOCK_UN:
            raise OSError(code, os.strerror(code))

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sqlite_file.fcntl, "flock", flock)
            with pytest.raises(StoreUnavailableError), never_wait() if loop else nullcontext():
                store.put_node("n1", "alice", at=certificate("01").not_before)
        store.put_node("n1", "alice", at=certificate("01").not_before)
    finally:
        store.close()


@pytest.mark.parametrize("how", ["sqlite", "flock"])
def test_a_store_opens_while_another_process_holds_the_write_lock(tmp_path: Path, how: str) -> None:
    # A worker opens the store as it starts (nodecert serve, a replaced worker, a SIGHUP).
    # When its schema is current, opening it writes nothing, so a lock held elsewhere (a
    # backup, the sqlite3 shell) cannot stop the worker from starting: it used to wait one
    # busy timeout for the lock and die, again and again, while the connections the kernel
    # gave its socket waited unanswered.
    path = tmp_path / "nodecert.db"
    SQLiteStore(path).close()  # Creates the schema.
    with _held(path, how):
        # Opening it used to wait this long for the lock, then fail.
        store = SQLiteStore(path, busy_timeout_s=2.0)
        try:
            assert store.owner_of("n1") is None
            with pytest.raises(StoreUnavailableError), time_budget(0.2):
                store.put_node("n1", "alice", at=certificate("01").not_before)
        finally:
            store.close()


@pytest.mark.parametrize("how", ["sqlite", "flock"])
def test_a_store_whose_schema_is_older_still_waits_for_the_lock_to_upgrade_it(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "nodecert.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 6")
    with _held(path, how), pytest.raises(StoreUnavailableError):
        SQLiteStore(path, busy_timeout_s=0.2)
    SQLiteStore(path).close()  # Unlocked: upgraded.
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] > 6


def _home_with_a_node(tmp_path: Path, *, log_level: str) -> tuple[Path, int, dict[str, str], str]:
    """A home for two workers with alice's node n1: (home, port, environment, her token)."""
    home, port = tmp_path / "home", free_port()
    env = nodecert_env(home, port, workers="2", log_level=log_level)
    cli(env, "init")
    cli(env, "nodes", "add", "n1", "--owner", "alice")
    return home, port, env, cli(env, "dev-token", "alice")


@pytest.mark.parametrize("how", ["sqlite", "flock"])
def test_nodecert_serve_started_while_its_ledger_is_locked_answers_every_connection(
    tmp_path: Path, how: str
) -> None:
    # Both workers start while the lock is held elsewhere. Each listens on a socket of its
    # own (SO_REUSEPORT) and the kernel spreads connections over both: a worker that could
    # not start left about half of them waiting, unanswered, until the lock was released.
    home, port, env, token = _home_with_a_node(tmp_path, log_level="WARNING")
    with _held(home / "nodecert.db", how):
        server = start_server(env, tmp_path / "serve.log")
        try:
            # Twelve connections (each from a new port): the chance that all of them land on
            # one socket (either) is 1 in 2,048. Each waits as long as a worker may take to start.
            for _ in range(12):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=60):
                    pass
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/generate-cert",
                data=json.dumps({"nodeId": "n1", "keyType": "ec-p256"}).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )

            def refused() -> tuple[int, str]:
                with pytest.raises(urllib.error.HTTPError) as error:
                    urllib.request.urlopen(request, timeout=60)
                error.value.close()
                return error.value.code, error.value.headers["Retry-After"]

            # Each waits one busy timeout (5 s): together, they wait one.
            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(lambda _: refused(), range(2)))
            assert [code for code, _ in answers] == [503, 503]
            assert all(int(retry) > 0 for _, retry in answers)
            log = (tmp_path / "serve.log").read_text(errors="replace")
            assert "Traceback" not in log, log[-6000:]
        finally:
            stop_server(server)


@pytest.mark.parametrize("how", ["sqlite", "flock"])
def test_nodecert_serve_with_its_ledger_locked_answers_503s_within_one_busy_timeout(
    tmp_path: Path, how: str
) -> None:
    home, port, env, token = _home_with_a_node(tmp_path, log_level="INFO")
    log_file = tmp_path / "serve.log"
    server = start_server(env, log_file)

    def issue(key_type: str) -> tuple[int, str | None, float]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/generate-cert",
            data=json.dumps({"nodeId": "n1", "keyType": key_type}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                status, retry = reply.status, reply.headers["Retry-After"]
        except urllib.error.HTTPError as error:
            status, retry = error.code, error.headers["Retry-After"]
        except (TimeoutError, urllib.error.URLError) as error:
            # No answer at all: kept as status 0 so that the assertion below shows every
            # answer and the server's log (this failed once in 8 full runs, under load).
            status, retry = 0, type(error).__name__
        return status, retry, time.monotonic() - started

    try:
        # /healthz answered from one worker; the other may still be starting. Its start is
        # not what the bound below measures (a worker that starts while the ledger is
        # locked: the test above).
        give_up = time.monotonic() + 60
        while log_file.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < give_up, log_file.read_text()[-6000:]
            time.sleep(0.1)
        assert issue("ec-p256")[0] == 201
        with _held(home / "nodecert.db", how), ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(issue, ["ec-p256", "rsa-2048"] * 3))
        log = log_file.read_text(errors="replace")
        assert [status for status, _, _ in answers] == [503] * 6, (answers, log[-6000:])
        assert all(retry is not None and int(retry) > 0 for _, retry, _ in answers)
        # The ledger's busy timeout is 5 s; before, requests that queued behind the first
        # waited two of them (10 s, measured). The margin is for a loaded machine (an RSA
        # key is made before the row is queued).
        assert max(waited for _, _, waited in answers) < 9.0, answers
        assert issue("ec-p256")[0] == 201  # Unlocked: issuing again, no restart.
    finally:
        stop_server(server)


@pytest.mark.parametrize("holder", ["a thread of this process", "another open file (process)"])
def test_on_an_event_loop_a_short_hold_is_waited_out_not_handed_to_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, holder: str
) -> None:
    # A write on the event loop that meets a lock held for one short write (a thread-pool
    # request of this worker, or the other worker) waits for it, the GIL released, instead
    # of raising WouldBlockError: that hand-off to the pool used to cascade, the pool's
    # writer holding the mutex in turn. The wait is bounded by _NOW_RETRY_S (made long here
    # so that the test does not depend on timing: the release comes after 50 ms).
    monkeypatch.setattr(sqlite_file, "_NOW_RETRY_S", 30.0)
    store = SQLiteStore(tmp_path / "nodecert.db")
    db = store._db
    try:
        if holder.startswith("a thread"):
            assert db._write_mutex.acquire()
            release = db._write_mutex.release
        else:
            other = os.open(f"{db.path}.lock", os.O_RDWR)
            fcntl.flock(other, fcntl.LOCK_EX)

            def release() -> None:
                fcntl.flock(other, fcntl.LOCK_UN)
                os.close(other)

        timer = threading.Timer(0.05, release)
        timer.start()
        with never_wait():
            store.put_node("n1", "alice", at=certificate("01").not_before)
        timer.join()
        assert store.owner_of("n1") == "alice"
    finally:
        store.close()


def test_on_an_event_loop_a_long_hold_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past _NOW_RETRY_S the write gives up, before any side effect.
    monkeypatch.setattr(sqlite_file, "_NOW_RETRY_S", 0.01)
    store = SQLiteStore(tmp_path / "nodecert.db")
    db = store._db
    try:
        assert db._write_mutex.acquire()
        try:
            with never_wait(), pytest.raises(WouldBlockError):
                store.put_node("n1", "alice", at=certificate("01").not_before)
        finally:
            db._write_mutex.release()
        assert store.owner_of("n1") is None
    finally:
        store.close()


def test_on_an_event_loop_a_refused_write_leaves_no_lock_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file lock held elsewhere past _NOW_RETRY_S: the write gives up, and lets go of
    # this process's mutex as it does, so the next write (on the loop or off it) goes in.
    monkeypatch.setattr(sqlite_file, "_NOW_RETRY_S", 0.01)
    store = SQLiteStore(tmp_path / "nodecert.db", busy_timeout_s=5.0)
    db = store._db
    try:
        with _held(store.path, "flock"), never_wait(), pytest.raises(WouldBlockError):
            store.put_node("n1", "alice", at=certificate("01").not_before)
        assert db._write_mutex.acquire(blocking=False), "the refused write kept the mutex"
        db._write_mutex.release()
        with never_wait():
            store.put_node("n1", "alice", at=certificate("01").not_before)
        store.put_node("n2", "bob", at=certificate("01").not_before)
        assert (store.owner_of("n1"), store.owner_of("n2")) == ("alice", "bob")
    finally:
        store.close()
