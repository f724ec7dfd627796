"""The shipped systemd units (deploy/systemd): valid, runnable by our CLI, shown in the docs."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from nodecert.cli.commands import build_parser
from tests.processes import NODECERT, cli, free_port, nodecert_env, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/usr/local/bin/nodecert"
SERVICES = ("nodecert-renew.service", "nodecert-renew-watch.service")


def _exec_start(name: str) -> list[str]:
    lines = (UNITS / name).read_text().splitlines()
    (line,) = [line for line in lines if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


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
    docs = (ROOT / "docs" / "node-side.md").read_text()
    for unit in sorted(UNITS.iterdir()):
        assert unit.read_text() in docs, f"docs/node-side.md does not show {unit.name} as shipped"


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
