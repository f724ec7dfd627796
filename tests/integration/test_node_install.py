"""A node's install, as docs/node-side.md gives it: the node lock and the package, nothing else.

``deploy/install.sh`` makes a fresh virtualenv with ``requirements/node.txt``
(cryptography and PyJWT, with hashes) and a wheel of nodecert built from this checkout; the
test then runs ``request``, ``inspect``, ``renew`` and
``import nodecert.verify`` against a real ``nodecert serve``. Nothing of the service set may
be needed there, and ``nodecert serve`` must say which install it lacks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import cli, free_port, nodecert_env, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.fixture(scope="module")
def node_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install(tmp_path_factory.mktemp("node-install"), {})


def _install(where: Path, extra: dict[str, str]) -> Path:
    # deploy/install.sh as the README and docs/node-side.md give it, the two places moved.
    venv, link = where / "opt" / "nodecert", where / "usr" / "local" / "bin" / "nodecert"
    env = {**os.environ, "PREFIX": str(venv), "LINK": str(link), "PYTHON": sys.executable}
    done = _run("sh", ROOT / "deploy" / "install.sh", env={**env, **extra})
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        pytest.skip(f"no package index reachable for the node install: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr
    assert link.resolve() == (venv / "bin" / "nodecert").resolve()
    assert f"in {venv}" in done.stdout
    return venv


def test_the_node_install_holds_only_the_node_set(node_venv: Path) -> None:
    listed = _run(node_venv / "bin" / "python", "-m", "pip", "list", "--format=freeze")
    names = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert names - {"pip", "setuptools"} == {
        "cffi",
        "cryptography",
        "nodecert",
        "pycparser",
        "pyjwt",
    }


def test_a_node_requests_inspects_renews_and_verifies(node_venv: Path, tmp_path: Path) -> None:
    port = free_port()
    env = nodecert_env(tmp_path / "home", port)
    server = start_server(env, tmp_path / "serve.log")
    try:
        cli(env, "nodes", "add", "n1", "--owner", "alice")
        node_env = {
            **env,
            "NODECERT_SERVER": f"http://127.0.0.1:{port}",
            "NODECERT_TOKEN": cli(env, "dev-token", "alice"),
        }
        del node_env["NODECERT_HOME"]
        node = node_venv / "bin" / "nodecert"
        out = tmp_path / "node"
        out.mkdir()
        requested = _run(node, "request", "n1", "--key-type", "ec-p256", "--out", out, env=node_env)
        assert requested.returncode == 0, requested.stderr
        inspected = _run(node, "inspect", out / "n1.crt", env=node_env)
        assert "user=alice node=n1" in inspected.stdout, inspected.stderr
        first = (out / "n1.crt").read_bytes()
        renewed = _run(
            node, "renew", "--cert", out / "n1.crt", "--key", out / "n1.key", "--force",
            env={k: v for k, v in node_env.items() if k != "NODECERT_TOKEN"},
        )  # fmt: skip
        assert renewed.returncode == 0, renewed.stderr
        assert (out / "n1.crt").read_bytes() != first
    finally:
        stop_server(server)
    checked = _run(
        node_venv / "bin" / "python",
        "-c",
        "import sys, nodecert.verify, nodecert.client;"
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'boto3', 'pydantic') if m in sys.modules))",
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "[]"


def test_serve_without_the_server_set_names_the_install(node_venv: Path, tmp_path: Path) -> None:
    env = nodecert_env(tmp_path / "home", free_port())
    done = _run(node_venv / "bin" / "nodecert", "serve", env=env)
    assert done.returncode == 1
    assert re.fullmatch(
        r"nodecert: error: this command needs the 'server' install set \(module \w+ is"
        r" missing\): pip install 'nodecert\[server\]'\n",
        done.stderr,
    ), done.stderr


def test_the_service_install_serves(tmp_path: Path) -> None:
    venv = _install(tmp_path / "service-install", {"SET": "service"})
    listed = _run(venv / "bin" / "python", "-m", "pip", "list", "--format=freeze")
    names = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert {"fastapi", "uvicorn", "cryptography", "pyjwt"} <= names
    assert not names & {"moto", "boto3", "pytest", "mypy", "hypothesis"}
    env = nodecert_env(tmp_path / "home", free_port())
    server = start_server(env, tmp_path / "serve.log", command=str(venv / "bin" / "nodecert"))
    stop_server(server)


def test_install_refuses_an_unknown_set(tmp_path: Path) -> None:
    done = _run("sh", ROOT / "deploy" / "install.sh", env={**os.environ, "SET": "dev"})
    assert done.returncode == 2
    assert "SET must be node or service, not 'dev'" in done.stderr
