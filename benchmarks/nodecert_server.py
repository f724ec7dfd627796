"""nodecert under test: ``nodecert serve`` in a temporary home, with users, nodes and tokens.

The contract this relies on (the embedded default shape of ``DESIGN.md``):

- ``nodecert serve`` reads ``NODECERT_HOME``, ``NODECERT_HOST``, ``NODECERT_PORT``,
  ``NODECERT_WORKERS`` and ``NODECERT_KEY_POOL_SIZE`` and answers ``GET /healthz``;
- ``nodecert nodes add NODE --owner USER`` registers a node (same home);
- ``nodecert dev-token USER`` prints a token of the built-in dev issuer (same home) on its
  last line of output;
- ``POST /generate-cert`` answers 201.

Anything else the bench needs (a quota off switch, say) is passed through as extra
``NODECERT_*`` settings (``run.py --nodecert-env NAME=VALUE``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from benchmarks.services import Service, SetupError, free_port, http_request, wait_until

__all__ = ["Credential", "Nodecert", "find_nodecert"]


@dataclass(frozen=True)
class Credential:
    """One bench user with one registered node and a bearer token for it."""

    user: str
    node: str
    token: str


def find_nodecert() -> str:
    """The ``nodecert`` console script of this environment.

    Raises:
        SetupError: if the package or its script is not installed.
    """
    try:
        cli = importlib.util.find_spec("nodecert.cli.commands")
    except ImportError:
        cli = None
    if cli is None:
        raise SetupError("nodecert: nodecert.cli.commands is not importable (not built yet?)")
    beside = Path(sys.executable).parent / "nodecert"
    found = str(beside) if beside.exists() else shutil.which("nodecert")
    if not found:
        raise SetupError("nodecert: no `nodecert` console script (pip install -e '.[server]')")
    return found


class Nodecert:
    """``nodecert serve`` on a free loopback port, with ``users`` users provisioned.

    Args:
        home: an empty directory, used as ``NODECERT_HOME``.
        workers: ``NODECERT_WORKERS``.
        key_pool_size: ``NODECERT_KEY_POOL_SIZE``; None leaves the service default.
        users: how many (user, node, token) credentials to provision.
        extra_env: more ``NODECERT_*`` settings, passed as they are.
        executable: the ``nodecert`` command to run (default: :func:`find_nodecert`).
    """

    def __init__(
        self,
        home: Path,
        *,
        workers: int = 2,
        key_pool_size: int | None = None,
        users: int = 1,
        extra_env: dict[str, str] | None = None,
        executable: str | None = None,
    ) -> None:
        self.home = home
        self.workers = workers
        self.key_pool_size = key_pool_size
        self.users = users
        self.extra_env = dict(extra_env or {})
        self.executable = executable or ""
        self.port = 0
        self.credentials: list[Credential] = []
        self.service: Service | None = None

    @staticmethod
    def version() -> str:
        """The installed distribution's version, or "not installed"."""
        try:
            return metadata.version("nodecert")
        except metadata.PackageNotFoundError:
            return "not installed"

    def env(self) -> dict[str, str]:
        """The environment of every nodecert command: ours, without the caller's settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODECERT_")}
        env.update(
            NODECERT_HOME=str(self.home),
            NODECERT_HOST="127.0.0.1",
            NODECERT_PORT=str(self.port),
            NODECERT_WORKERS=str(self.workers),
            # Per-request INFO logs would be measured as service cost.
            NODECERT_LOG_LEVEL="WARNING",
            # A benchmark issues thousands of certificates for a few nodes: the per-node cap
            # is off, and the rate limit is so high that it never refuses, but it still runs
            # (its bucket write is part of the measured cost of every request).
            NODECERT_MAX_ACTIVE_PER_NODE="0",
            NODECERT_QUOTA_PER_MINUTE="100000000",
            NODECERT_QUOTA_BURST="100000000",
        )
        if self.key_pool_size is not None:
            env["NODECERT_KEY_POOL_SIZE"] = str(self.key_pool_size)
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``nodecert ARGS`` in the bench home; return its stdout.

        Raises:
            SetupError: with its stderr if it fails.
        """
        argv = [self.executable, *args]
        try:
            proc = subprocess.run(
                argv, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SetupError(f"`nodecert {' '.join(args)}`: {exc}") from exc
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip()[-1500:]
            raise SetupError(f"`nodecert {' '.join(args)}` exited {proc.returncode}: {err}")
        return proc.stdout

    def provision(self) -> None:
        """Register one node per user and get each user a dev token.

        Raises:
            SetupError: if a CLI command fails or prints no token.
        """
        self.credentials = []
        for i in range(1, self.users + 1):
            user, node = f"bench-user-{i}", f"bench-node-{i}"
            self.cli("nodes", "add", node, "--owner", user)
            lines = [line.strip() for line in self.cli("dev-token", user).splitlines()]
            token = next((line for line in reversed(lines) if line), "")
            if token.count(".") != 2:
                raise SetupError(f"`nodecert dev-token {user}` printed no JWT: {token[:80]!r}")
            self.credentials.append(Credential(user, node, token))

    def start(self, *, timeout: float = 60.0) -> Nodecert:
        """Provision, start ``nodecert serve`` and wait for ``/healthz``.

        Provisioning runs before the server starts (so the server loads the dev issuer's
        keys that ``dev-token`` made); if that fails, it is tried once more after.

        Raises:
            SetupError: if nodecert is missing, does not start, or provisioning fails.
        """
        self.executable = self.executable or find_nodecert()
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        early: SetupError | None = None
        try:
            self.provision()
        except SetupError as exc:
            early = exc
        argv = [self.executable, "serve"]
        self.service = Service("nodecert serve", argv, log=self.home / "serve.log", env=self.env())
        self.service.start()
        try:
            wait_until(
                lambda: self.service is not None and self.service.check_running() and self._ready(),
                timeout=timeout,
                what="nodecert serve (GET /healthz)",
            )
        except SetupError as exc:
            log = self.service.tail() if self.service is not None else ""
            self.stop()
            raise SetupError(f"{exc}\n{log}") from exc
        if early is not None:
            try:
                self.provision()
            except SetupError as exc:
                raise SetupError(f"{early}\n(and again after the server started: {exc})") from exc
        return self

    def _ready(self) -> bool:
        answer = http_request(self.port, "GET", "/healthz")
        return answer is not None and answer[0] == 200

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.service is not None:
            self.service.stop()
            self.service = None

    def tail(self) -> str:
        """The end of the server's log, for error messages."""
        return self.service.tail() if self.service is not None else ""

    @staticmethod
    def generate_body(
        node: str, *, key_type: str | None = None, csr_pem: str | None = None
    ) -> bytes:
        """A ``POST /generate-cert`` body: server keygen (``key_type``) or a client CSR."""
        body: dict[str, str] = {"nodeId": node}
        if key_type is not None:
            body["keyType"] = key_type
        if csr_pem is not None:
            body["csr"] = csr_pem
        return json.dumps(body).encode()
