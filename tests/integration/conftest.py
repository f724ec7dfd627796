"""Integration fixtures: a moto server on loopback (real HTTP, real botocore serialization)
and a throwaway PostgreSQL cluster (real server, its own port and data directory)."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.processes import free_port

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def aws_env() -> Iterator[None]:
    """Dummy credentials and no profile, so nothing can ever reach a real account.

    Module-scoped (clients read credentials when they are made), so that the opt-in real
    AWS smoke test in its own module sees the real environment again.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        yield


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_client(aws_env: None, moto_endpoint: str) -> Callable[[str], Any]:
    """Make a boto3 client for ``service`` that talks to the moto server."""
    from nodecert.support.awsclients import make_client

    def make(service: Any) -> Any:
        return make_client(service, region=REGION, max_attempts=1, endpoint_url=moto_endpoint)

    return make


@pytest.fixture
def unique() -> str:
    """A short unique suffix, so tests sharing the moto server never share a table."""
    return uuid.uuid4().hex[:10]


# PostgreSQL


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster: password authentication over TCP on loopback."""

    port: int
    user: str
    password: str

    def dsn(self, database: str, *, schema: str | None = None) -> str:
        """A postgresql:// URL for ``database`` with the password in it, as in production;
        with ``schema``, the session's ``search_path`` is that schema alone."""
        url = (
            f"postgresql://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}"
            f"/{database}"
        )
        return url if schema is None else f"{url}?options={quote(f'-csearch_path={schema}')}"

    def create_database(self, *options: str) -> str:
        """A new, empty database (``CREATE DATABASE`` with ``options``); its name."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as db:
            db.execute(" ".join(["CREATE DATABASE", name, *options]))
        return name

    def create_schema(self) -> str:
        """A new, empty schema in the shared test database; a URL that uses only it.

        A schema takes a millisecond where a database takes a fifth of a second.
        """
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.dsn(SHARED_DATABASE), autocommit=True) as db:
            db.execute(f"CREATE SCHEMA {name}")
        return self.dsn(SHARED_DATABASE, schema=name)


SHARED_DATABASE = "nodecert"


def _postgres_bindir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl and shutil.which("initdb") else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster in a temporary directory on a free port, for the whole session.

    PostgreSQL refuses to run as root, so as root the binaries run as the ``postgres``
    user that the Debian package creates. The Debian package's own cluster (port 5432,
    /var/lib/postgresql) is neither used nor touched.
    """
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found:"
            " apt-get install postgresql (or run make deps as root)"
        )
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="nodecert-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root needs runuser (util-linux) to start PostgreSQL")
        try:
            shutil.chown(base, user="postgres", group="postgres")
        except LookupError:
            shutil.rmtree(base)
            pytest.skip("running as root needs the postgres user: apt-get install postgresql")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(port=free_port(), user="nodecert", password=secrets.token_urlsafe(16))
    data, log = base / "data", base / "server.log"
    password_file = base / "password"
    password_file.write_text(server.password)
    if as_user:
        shutil.chown(password_file, user="postgres")

    def run(*argv: str) -> None:
        done = subprocess.run([*as_user, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed:\n{done.stdout}{done.stderr}{server_log}")

    options = (
        f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories={base}"
        # A throwaway cluster: durability is not what these tests are about.
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        run(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            server.user,
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            import psycopg

            with psycopg.connect(server.dsn("postgres"), autocommit=True) as db:
                db.execute(f"CREATE DATABASE {SHARED_DATABASE}")
            yield server
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty schema of the session's cluster (tests share no rows)."""
    return postgres_server.create_schema()
