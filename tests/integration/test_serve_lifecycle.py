"""``nodecert serve``'s processes: kill -9 of the master or a worker, SIGHUP, SIGTERM.

A real ``nodecert serve`` with two workers each time. Every wait is bounded; nothing
asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from nodecert.server.draining import DrainingHttpToolsProtocol
from nodecert.store.sqlite.store import SQLiteStore
from tests.processes import cli, free_port, nodecert_env, start_server, stop_server

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc to find the workers (Linux)"
)


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    # A zombie has ended; whether something reaps it is up to the machine's init.
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _workers(master: int) -> set[int]:
    """The live worker processes of ``master`` (multiprocessing's tracker left out)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[1] != master or stat[0] in ("Z", "X"):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def home_env(tmp_path: Path) -> dict[str, str]:
    env = nodecert_env(tmp_path / "home", free_port(), workers="2")
    cli(env, "init")
    return env


def test_kill_9_of_the_master_ends_its_workers_and_a_restart_binds_the_port(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    port = int(home_env["NODECERT_PORT"])
    server = start_server(home_env, tmp_path / "serve.log")
    try:
        assert _wait_for(lambda: len(_workers(server.pid)) == 2), "two workers never showed"
        workers = _workers(server.pid)
        os.kill(server.pid, signal.SIGKILL)  # The master alone, not its process group.
        server.wait(timeout=20)
        assert _wait_for(lambda: not any(_alive(pid) for pid in workers)), (
            f"workers {sorted(pid for pid in workers if _alive(pid))} outlived their master"
        )
        restarted = start_server(home_env, tmp_path / "serve.log")
        try:
            assert _healthy(port)
        finally:
            stop_server(restarted)
    finally:
        stop_server(server, signal.SIGKILL)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_kill_9_of_a_worker_is_replaced_and_serving_goes_on(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    port = int(home_env["NODECERT_PORT"])
    server = start_server(home_env, tmp_path / "serve.log")
    try:
        assert _wait_for(lambda: len(_workers(server.pid)) == 2), "two workers never showed"
        victim = min(_workers(server.pid))
        os.kill(victim, signal.SIGKILL)
        assert _wait_for(
            lambda: len(_workers(server.pid)) == 2 and victim not in _workers(server.pid)
        ), "the killed worker was not replaced"
        # Every connection is answered, whichever worker's socket the kernel picks.
        assert all(_wait_for(lambda: _healthy(port), 30) for _ in range(20))
        assert server.poll() is None
    finally:
        stop_server(server)


def test_sighup_replaces_every_worker_while_requests_keep_being_answered(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    port = int(home_env["NODECERT_PORT"])
    server = start_server(home_env, tmp_path / "serve.log")
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def client() -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/ca", timeout=30) as r:
                    r.read()
                answered += 1
            except OSError as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=client)
    try:
        assert _wait_for(lambda: len(_workers(server.pid)) == 2), "two workers never showed"
        before = _workers(server.pid)
        thread.start()
        os.kill(server.pid, signal.SIGHUP)
        assert _wait_for(
            lambda: len(_workers(server.pid)) == 2 and not before & _workers(server.pid), 120
        ), "SIGHUP did not replace the workers"
        seen = answered
        assert _wait_for(lambda: answered > seen + 5, 30)  # And the new ones answer.
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=60)
        stop_server(server)
    assert failures == []
    assert server.returncode == 0


def test_sigterm_lets_a_request_in_flight_finish_then_exits(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    port = int(home_env["NODECERT_PORT"])
    home = Path(home_env["NODECERT_HOME"])
    cli(home_env, "nodes", "add", "n1", "--owner", "alice")
    token = cli(home_env, "dev-token", "alice")
    log = tmp_path / "serve.log"
    server = start_server(home_env, log)
    body = json.dumps({"nodeId": "n1", "keyType": "ec-p256"}).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            conn.sendall(
                b"POST /generate-cert HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10]
            )
            # Both workers serving (a worker still starting would die of the SIGTERM
            # before it could log its shutdown).
            assert _wait_for(lambda: log.read_text().count("Application startup complete") == 2)
            os.kill(server.pid, signal.SIGTERM)
            # Both workers have begun their graceful shutdown before the body ends.
            assert _wait_for(lambda: log.read_text().count("Shutting down") == 2), log.read_text()
            conn.sendall(body[10:])
            response = http.client.HTTPResponse(conn)
            response.begin()
            answer = json.loads(response.read())
        assert response.status == 201, answer
        assert server.wait(timeout=60) == 0
    finally:
        stop_server(server, signal.SIGKILL)
    store = SQLiteStore(home / "nodecert.db")
    try:
        assert store.get(answer["serialNumber"]) is not None
    finally:
        store.close()


_ORPHAN = """
import ctypes, os, signal, sys, time
from nodecert.server import lifeline

ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come back here.
if sys.argv[1] == "prctl-off":
    lifeline.parent_death_signal = lambda sig: False
read, write = os.pipe()
middle = os.fork()
if middle == 0:
    worker = os.fork()
    if worker == 0:
        if sys.argv[1] == "hung":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        lifeline.bind_to_parent(os.getppid(), grace_s=0.5, poll_s=0.05)
        os.write(write, b"x")
        time.sleep(60)
        os._exit(0)
    os.read(read, 1)
    os._exit(0)  # The "master" dies, and the worker is re-parented to this process.
os.waitpid(middle, 0)
pid, status = os.waitpid(-1, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [
        ("prctl", -signal.SIGTERM),  # The kernel's signal.
        ("prctl-off", -signal.SIGTERM),  # The watching thread's signal.
        ("hung", 70),  # SIGTERM ignored: the watching thread ends it after the grace.
    ],
)
def test_a_worker_ends_when_its_master_dies(mode: str, outcome: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ORPHAN, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == outcome


def test_sigttin_and_sigttou_leave_one_worker_per_socket(
    home_env: dict[str, str], tmp_path: Path
) -> None:
    # uvicorn would start a worker with no socket of its own (or stop one, leaving its
    # socket's queue to nobody): the number of workers is fixed by NODECERT_WORKERS.
    log = tmp_path / "serve.log"
    server = start_server(home_env, log)
    try:
        assert _wait_for(lambda: len(_workers(server.pid)) == 2)
        before = _workers(server.pid)
        for sig in (signal.SIGTTIN, signal.SIGTTOU):
            os.kill(server.pid, sig)
        assert _wait_for(lambda: log.read_text().count("the number of workers is") == 2)
        assert _workers(server.pid) == before
        assert _healthy(int(home_env["NODECERT_PORT"]))
    finally:
        stop_server(server)


_STARTUP_FAILURE = """
import sys
import uvicorn
from nodecert.core.errors import ConfigurationError
from nodecert.server import serve
from nodecert.server.supervisor import SpreadingSupervisor

# divmod() without arguments raises TypeError: uvicorn's "the factory failed" (exit 3).
config = uvicorn.Config("builtins:divmod", factory=True, workers=2, log_level="critical")
sockets = serve.worker_sockets("127.0.0.1", 0, 2)
try:
    serve._supervise(SpreadingSupervisor(config, sockets))
except ConfigurationError as exc:
    print(exc.detail)
    sys.exit(1)
print("stopped cleanly")
"""


def test_a_worker_that_cannot_start_makes_the_master_exit_non_zero() -> None:
    # A clean exit would look like a stop to systemd (Restart=on-failure): nobody would
    # restart the service once the fault is gone.
    done = subprocess.run(
        [sys.executable, "-c", _STARTUP_FAILURE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "a worker failed to start" in done.stdout


_CRASHING_WORKERS = """
import os, signal, sys, threading
import uvicorn
from nodecert.server import serve
from nodecert.server.supervisor import SpreadingSupervisor

# os.abort() as the application factory: every worker dies (SIGABRT) as it starts, the way
# one does while the database server is down.
config = uvicorn.Config("os:abort", factory=True, workers=2, log_level="critical")
supervisor = SpreadingSupervisor(config, serve.worker_sockets("127.0.0.1", 0, 2))
spawned = 0
spawn = supervisor._spawn

def counting(index):
    global spawned
    spawned += 1
    return spawn(index)

supervisor._spawn = counting
threading.Timer(float(sys.argv[1]), os.kill, (os.getpid(), signal.SIGTERM)).start()
supervisor.run()
print(spawned)
"""


def test_workers_that_die_as_they_start_are_replaced_ever_more_slowly() -> None:
    # In 12 s: back-off 1, 2, 4, 8 s allows the 2 first workers and at most 4 replacements
    # each; replaced as fast as they die, there were two dozen.
    done = subprocess.run(
        [sys.executable, "-c", _CRASHING_WORKERS, "12"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 2 < int(done.stdout) <= 10, done.stdout


_DYING_APP = """
import os

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"answered"})

def make():
    if os.environ.get("NODECERT_TEST_DIE"):
        os.abort()  # As a worker does whose database server is down.
    return app
"""

_ONE_SLOT_DYING = """
import os, signal, sys, threading
import uvicorn
from nodecert.server import serve
from nodecert.server.supervisor import SpreadingSupervisor

config = uvicorn.Config("dying_app:make", factory=True, workers=2, log_level="critical")
sockets = serve.worker_sockets("127.0.0.1", 0, 2)
port = sockets[0].getsockname()[1]
supervisor = SpreadingSupervisor(
    config, sockets, rebind=lambda: serve.bind("127.0.0.1", port, reuse_port=True)
)
spawn = supervisor._spawn

def marking(index):
    # The worker of slot 1 dies as it starts, every time; slot 0's serves.
    os.environ["NODECERT_TEST_DIE"] = "1" if index == 1 else ""
    return spawn(index)

supervisor._spawn = marking
print(port, flush=True)
threading.Timer(float(sys.argv[1]), os.kill, (os.getpid(), signal.SIGTERM)).start()
supervisor.run()
"""


def _get(port: int) -> str:
    """One GET on a new connection: "answered", "reset" (refused or reset at once), or
    "no answer" (nothing within 5 s)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            answer = sock.recv(4096)
    except TimeoutError:
        return "no answer"
    except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
        return "reset"
    return "answered" if answer.startswith(b"HTTP/1.1 200") else "reset"


def test_a_slot_whose_workers_die_as_they_start_leaves_no_connection_waiting(
    tmp_path: Path,
) -> None:
    # Its replacement comes after a back-off (1, 2, 4... s): meanwhile its socket, which
    # nobody reads, is closed, so the kernel sends every new connection to the worker that
    # serves. Before, about half of them waited, unanswered, for as long as the back-off.
    (tmp_path / "dying_app.py").write_text(_DYING_APP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    master = subprocess.Popen(
        [sys.executable, "-c", _ONE_SLOT_DYING, "14"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert master.stdout is not None
        port = int(master.stdout.readline())
        deadline = time.monotonic() + 60
        while _get(port) != "answered":  # Slot 0's worker serves.
            assert time.monotonic() < deadline, "no worker ever served"
            time.sleep(0.2)
        time.sleep(1.5)  # Slot 1's first worker has died by now.
        outcomes: list[str] = []
        for _ in range(2):
            threads = [
                threading.Thread(target=lambda: outcomes.append(_get(port))) for _ in range(16)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            time.sleep(1.0)
        assert "no answer" not in outcomes, outcomes
        # Reset ones met the slot's socket while a replacement was starting (and dying):
        # a client sees that at once and tries again, where it waited before.
        assert "answered" in outcomes, outcomes
    finally:
        master.send_signal(signal.SIGTERM)
        master.communicate(timeout=60)


async def _plain_app(scope: dict[str, object], receive: object, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"answered"})


@pytest.mark.parametrize("before", [b"", b"GET /x HTTP/1.1\r\n"], ids=["nothing", "half-head"])
def test_a_connection_accepted_just_before_a_shutdown_gets_its_answer(before: bytes) -> None:
    # uvicorn's graceful shutdown (SIGTERM, or SIGHUP's retiring worker) calls shutdown()
    # on each connection; one accepted an instant earlier, whose request has not arrived
    # (or not whole), was closed unanswered. Here the protocol runs on a real socket pair
    # and shutdown() is called as uvicorn calls it.
    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        config = uvicorn.Config(_plain_app, log_level="critical")
        config.load()
        state = ServerState()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        protocol = DrainingHttpToolsProtocol(config, state, {}, _loop=loop)
        await loop.connect_accepted_socket(lambda: protocol, ours)
        await loop.sock_sendall(theirs, before)
        await asyncio.sleep(0)
        protocol.shutdown()  # Before the rest of the request has arrived.
        if not before:
            await loop.sock_sendall(theirs, b"GET /x HTTP/1.1\r\n")
        await loop.sock_sendall(theirs, b"Host: a\r\n\r\n")
        answer = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(theirs, 4096), 30):
            answer += chunk
        theirs.close()
        return answer

    answer = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"connection: close" in answer.lower()
    assert b"answered" in answer


def test_serve_gives_its_supervisor_a_way_to_bind_a_slot_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test above drives SpreadingSupervisor with a rebind of its own: this one holds
    # `nodecert serve` to passing one, bound to the same port, or a worker in back-off
    # would keep its connections waiting again.
    from nodecert.core.config import Settings
    from nodecert.server import serve

    captured: list[Any] = []
    monkeypatch.setattr(serve, "_supervise", captured.append)
    port = free_port()
    settings = Settings.from_env(
        {
            "NODECERT_HOME": str(tmp_path / "home"),
            "NODECERT_PORT": str(port),
            "NODECERT_WORKERS": "2",
            "NODECERT_METRICS": "off",
        }
    )
    serve.run(settings)
    (supervisor,) = captured
    try:
        assert supervisor._rebind is not None
        again = supervisor._rebind()
        try:
            assert again.getsockname()[1] == port
        finally:
            again.close()
    finally:
        for sock in supervisor.sockets:
            sock.close()
