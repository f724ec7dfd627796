"""The shipped systemd units (deploy/systemd): valid, runnable by our CLI, shown in the docs."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from nodecert.cli.commands import build_parser
from nodecert.server.lifeline import GRACE_S
from tests.processes import NODECERT, cli, free_port, nodecert_env, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/usr/local/bin/nodecert"
SERVICES = ("nodecert-renew.service", "nodecert-renew-watch.service")
SHOWN_IN = {"nodecert-serve.service": "reliability.md"}


def _setting(name: str, key: str) -> str:
    lines = (UNITS / name).read_text().splitlines()
    (line,) = [line for line in lines if line.startswith(f"{key}=")]
    return line.removeprefix(f"{key}=")


def _exec_start(name: str) -> list[str]:
    return shlex.split(_setting(name, "ExecStart"))


def _verify(directory: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd; `make deps`)")
    units = sorted(str(p) for p in directory.iterdir() if p.suffix in (".service", ".timer"))
    return subprocess.run(
        [analyze, "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    # The units name the binary where `pip install` puts it for root; the check runs them
    # with this checkout's binary instead (systemd-analyze insists that it exists).
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, NODECERT))
    return tmp_path


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    done = _verify(_copy(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # Warnings ("…, ignoring") count as failures.


def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    unit = directory / "nodecert-renew.service"
    unit.write_text(unit.read_text().replace("Type=oneshot", "Type=one-shot"))
    assert "Failed to parse service type" in _verify(directory).stderr


@pytest.mark.parametrize("name", SERVICES)
def test_exec_start_parses_with_the_cli(name: str) -> None:
    argv = _exec_start(name)
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])
    assert args.handler.__name__ == "_renew"
    assert args.deploy_hook == "nginx -s reload"
    assert args.watch is (name == "nodecert-renew-watch.service")
    assert not args.force  # The timer's unit renews only when due.


def test_the_timer_drives_the_oneshot() -> None:
    timer = (UNITS / "nodecert-renew.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer
    assert "Unit=" not in timer  # Same name: it starts nodecert-renew.service.
    assert (UNITS / "nodecert-renew.service").exists()


def test_the_docs_show_each_unit_as_shipped() -> None:
    for unit in sorted(UNITS.iterdir()):
        page = SHOWN_IN.get(unit.name, "node-side.md")
        docs = (ROOT / "docs" / page).read_text()
        assert unit.read_text() in docs, f"docs/{page} does not show {unit.name} as shipped"


def test_the_oneshot_command_runs_as_written(tmp_path: Path) -> None:
    # The command line of the unit, with its paths moved into tmp_path: a fresh
    # certificate is not due, so it exits 0 without calling the service or the hook.
    home, port = tmp_path / "home", free_port()
    env = nodecert_env(home, port)
    cli(env, "init")
    cli(env, "nodes", "add", "n1", "--owner", "alice")
    env["NODECERT_TOKEN"] = cli(env, "dev-token", "alice")
    env["NODECERT_SERVER"] = f"http://127.0.0.1:{port}"
    server = start_server(env, tmp_path / "serve.log")
    try:
        cli(env, "request", "n1", "--key-type", "ec-p256", "--out", str(tmp_path))
    finally:
        stop_server(server)
    argv = _exec_start("nodecert-renew.service")
    argv[0] = NODECERT
    argv = [
        a.replace("/etc/nodecert/node.crt", str(tmp_path / "n1.crt")).replace(
            "/etc/nodecert/node.key", str(tmp_path / "n1.key")
        )
        for a in argv
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"not due: {tmp_path / 'n1.crt'}")


def test_the_serve_unit_restarts_reloads_and_stops_as_the_docs_say() -> None:
    argv = _exec_start("nodecert-serve.service")
    assert argv[0] == INSTALLED
    assert build_parser().parse_args(argv[1:]).handler.__name__ == "_serve"
    assert _setting("nodecert-serve.service", "Restart") == "on-failure"
    # systemd's default gives up after 5 starts in 10 s: a lasting fault would need a human.
    assert _setting("nodecert-serve.service", "StartLimitIntervalSec") == "0"
    # SIGTERM to the master only, which stops its workers gracefully; SIGKILL for all
    # only after TimeoutStopSec, which outlasts the workers' own grace.
    assert _setting("nodecert-serve.service", "KillMode") == "mixed"
    assert int(_setting("nodecert-serve.service", "TimeoutStopSec")) > GRACE_S
    assert _setting("nodecert-serve.service", "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_the_serve_unit_runs_reloads_and_stops_as_written(tmp_path: Path) -> None:
    # What systemd does with the unit, done by hand: ExecStart with the unit's environment
    # (its home moved into tmp_path), ExecReload with $MAINPID, then KillMode=mixed's stop
    # (SIGTERM to the main process alone): the workers are replaced, then all end.
    home, port = tmp_path / "home", free_port()
    (environment,) = shlex.split(_setting("nodecert-serve.service", "Environment"))
    assert environment == "NODECERT_HOME=/var/lib/nodecert"
    env = nodecert_env(home, port, workers="2")
    cli(env, "init")
    argv = _exec_start("nodecert-serve.service")
    argv[0] = NODECERT
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        main = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        assert _wait_for(lambda: _answers(port)), log.read_text()
        reload = shlex.split(_setting("nodecert-serve.service", "ExecReload"))
        subprocess.run(
            [a.replace("$MAINPID", str(main.pid)) for a in reload], check=True, timeout=20
        )
        assert _wait_for(lambda: log.read_text().count("Waiting for child process") >= 2), (
            log.read_text()
        )
        assert _answers(port)
        os.kill(main.pid, signal.SIGTERM)
        assert main.wait(timeout=60) == 0
        assert _wait_for(lambda: not _answers(port))
    finally:
        stop_server(main, signal.SIGKILL)


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).close()
        return True
    except OSError:
        return False


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()
