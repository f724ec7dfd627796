"""The CLI never leaves a half-written node, and every failure is one line (issue 11 item 4-5)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodecert import __version__
from nodecert.cli.commands import main
from nodecert.client._files import OutputFile, write_together
from tests.files import unwritable
from tests.processes import NODECERT, cli, free_port, nodecert_env, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    home = tmp_path_factory.mktemp("safety") / "home"
    port = free_port()
    env = nodecert_env(home, port, quota_per_minute="0", max_active_per_node="0")
    process = start_server(env, home.parent / "serve.log")
    try:
        cli(env, "nodes", "add", "s-n1", "--owner", "sam")
        cli(env, "nodes", "add", "s-n2", "--owner", "sam")
        env["NODECERT_TOKEN"] = cli(env, "dev-token", "sam")
        env["NODECERT_SERVER"] = f"http://127.0.0.1:{port}"
        yield f"http://127.0.0.1:{port}", env
    finally:
        stop_server(process)


@pytest.fixture
def env(server: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith("NODECERT_"):
            monkeypatch.delenv(key)
    for key, value in server[1].items():
        if key.startswith("NODECERT_"):
            monkeypatch.setenv(key, value)
    return server[1]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _count(capsys: pytest.CaptureFixture[str]) -> int:
    code, out, _ = _run(capsys, "certs")
    assert code == 0
    return len(out.splitlines())


def test_request_reports_every_file_and_refuses_to_overwrite(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "request", "s-n1", "--key-type", "ec-p256", "--out", str(tmp_path)
    )
    assert code == 0, err
    assert f"wrote {tmp_path / 's-n1.crt'}\n" in out
    assert f"wrote {tmp_path / 's-n1.key'} (mode 0600)\n" in out
    assert f"wrote {tmp_path / 'ca.crt'}\n" in out
    first = (tmp_path / "s-n1.key").read_bytes()
    issued = _count(capsys)

    code, _, err = _run(capsys, "request", "s-n1", "--out", str(tmp_path))
    assert code == 1 and err.count("\n") == 1
    assert str(tmp_path / "s-n1.crt") in err and str(tmp_path / "s-n1.key") in err
    assert "ca.crt" not in err  # The same chain: no conflict.
    assert "--force" in err
    assert _count(capsys) == issued  # Refused before the service was asked.
    assert (tmp_path / "s-n1.key").read_bytes() == first

    # Another node in the same directory shares ca.crt without --force.
    assert _run(capsys, "request", "s-n2", "--key-type", "ec-p256", "--out", str(tmp_path))[0] == 0
    code, _, err = _run(
        capsys, "request", "s-n1", "--key-type", "ec-p256", "--out", str(tmp_path), "--force"
    )
    assert code == 0, err
    assert (tmp_path / "s-n1.key").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca.crt",
        "s-n1.crt",
        "s-n1.key",
        "s-n2.crt",
        "s-n2.key",
    ]


def test_a_different_ca_file_is_a_conflict(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ca.crt").write_text("another CA\n")
    code, _, err = _run(capsys, "request", "s-n1", "--out", str(tmp_path))
    assert code == 1 and f"would overwrite {tmp_path / 'ca.crt'}" in err


def test_an_unwritable_directory_is_refused_before_issuing(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issued = _count(capsys)
    with unwritable(tmp_path):
        code, _, err = _run(capsys, "request", "s-n1", "--out", str(tmp_path))
    assert code == 1 and err.count("\n") == 1 and "cannot write in" in err
    assert _count(capsys) == issued
    assert list(tmp_path.iterdir()) == []


def test_nodes_certificate_refuses_too(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "s-n1-server.key").write_text("precious")
    code, _, err = _run(
        capsys, "nodes", "certificate", "s-n1", "--dns", "a.example", "--out", str(tmp_path)
    )
    assert code == 1 and "s-n1-server.key" in err and "(home " in err
    assert (tmp_path / "s-n1-server.key").read_text() == "precious"
    assert not (tmp_path / "s-n1-server.crt").exists()
    code, _, err = _run(
        capsys,
        "nodes",
        "certificate",
        "s-n1",
        "--dns",
        "a.example",
        "--out",
        str(tmp_path),
        "--force",
    )
    assert code == 0, err
    assert "PRIVATE KEY" in (tmp_path / "s-n1-server.key").read_text()
    assert "nodecert: home " in err


def test_files_are_written_together_or_not_at_all(tmp_path: Path) -> None:
    files = [
        OutputFile(tmp_path / "a.key", b"KEY", 0o600),
        OutputFile(tmp_path / "missing" / "a.crt", b"CERT"),
    ]
    with pytest.raises(FileNotFoundError) as failed:
        write_together(files)
    assert failed.value.filename == str(tmp_path / "missing" / "a.crt")
    assert list(tmp_path.iterdir()) == []  # No key, and no temporary holding one.
    write_together(files[:1])
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600


def test_a_closed_pipe_is_silent_as_unix_tools_are(server: tuple[str, dict[str, str]]) -> None:
    # `nodecert certs --json | head -1`, made deterministic: the reader is gone before
    # the CLI has started, so its first write meets a closed pipe.
    child = subprocess.Popen(
        [NODECERT, "certs", "--json"],
        env=server[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    with child.stderr:
        err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141  # 128 + SIGPIPE, as `yes | head -1` leaves it.
    assert err == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["request", "s-n1", "--server", "https://127.0.0.1:{port}"],  # TLS to a plain server
        ["request", "s-n1", "--server", "http://127.0.0.1:{free}"],  # nothing listening
        ["certs", "--cacert", "/nonexistent/ca.pem", "--server", "https://127.0.0.1:{port}"],
    ],
)
def test_transport_failures_are_one_line(
    env: dict[str, str], tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    port = env["NODECERT_SERVER"].rsplit(":", 1)[1]
    argv = [a.format(port=port, free=free_port()) for a in argv]
    code, _, err = _run(capsys, *argv, *(["--out", str(tmp_path)] if argv[0] == "request" else []))
    assert code == 1 and err.count("\n") == 1 and err.startswith("nodecert: error: ")
    assert "cannot reach" in err or "CA file" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"nodecert {__version__}\n"


def test_admin_commands_never_create_a_home(tmp_path: Path) -> None:
    env = nodecert_env(tmp_path / "nowhere")
    del env["NODECERT_HOME"]
    for argv in (["nodes", "list"], ["nodes", "add", "n1", "--owner", "a"], ["dev-token", "a"]):
        done = subprocess.run(
            [NODECERT, *argv], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert done.returncode == 1, argv
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert f"no nodecert home at {tmp_path / '.nodecert'}" in done.stderr
        assert "nodecert init" in done.stderr
        assert list(tmp_path.iterdir()) == []
    done = subprocess.run(
        [NODECERT, "init"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert f"home {tmp_path / '.nodecert'} created" in done.stderr
    assert (tmp_path / ".nodecert" / "ca" / "ca.key").exists()
    done = subprocess.run(
        [NODECERT, "nodes", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stderr == f"nodecert: home {tmp_path / '.nodecert'}\n"


def test_a_token_from_another_home_gets_a_hint(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = nodecert_env(tmp_path / "other")
    cli(other, "init")
    token = cli(other, "dev-token", "sam")
    code, _, err = _run(capsys, "certs", "--token", token)
    assert code == 1 and "HTTP 401" in err and "another NODECERT_HOME" in err
    assert token not in err


def test_renew_watch_logs_its_schedule_to_stderr(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    env = server[1]
    cli(env, "request", "s-n2", "--key-type", "ec-p256", "--out", str(tmp_path), "--force")
    cert, key = tmp_path / "s-n2.crt", tmp_path / "s-n2.key"
    argv = [NODECERT, "renew", "--watch", "--cert", str(cert), "--key", str(key)]
    child = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    try:
        with child.stderr:
            line = child.stderr.readline()
    finally:
        child.terminate()
        child.wait(timeout=30)
    assert " nodecert: INFO: renew: " in line and f"{cert} (serial " in line, line
    assert "renews at 20" in line and "PRIVATE KEY" not in line
