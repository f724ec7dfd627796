"""What every command shares: the one-line error, the client options, the home, input files,
logging."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from nodecert.client import Client
from nodecert.client._files import read_small
from nodecert.core.values import Principal

if TYPE_CHECKING:
    from nodecert.core.config import Settings

__all__ = [
    "DEFAULT_SERVER",
    "CLIError",
    "UsageError",
    "add_client_options",
    "cli_actor",
    "cli_admin",
    "client_from",
    "duration",
    "local_settings",
    "read_input",
    "setup_logging",
    "warnings_to_stderr",
]

DEFAULT_SERVER = "http://127.0.0.1:8080"


class CLIError(Exception):
    """A failure to report as one line (exit status 1)."""


class UsageError(CLIError):
    """Options that do not go together (exit status 2, like argparse's own errors)."""


def add_client_options(parser: argparse.ArgumentParser, *, token: bool = True) -> None:
    """``--server``, ``--cacert``, ``--timeout`` (and ``--token``): for API commands."""
    parser.add_argument(
        "--server",
        default=os.environ.get("NODECERT_SERVER", DEFAULT_SERVER),
        help=f"service URL (default $NODECERT_SERVER or {DEFAULT_SERVER})",
    )
    if token:
        parser.add_argument("--token", help="bearer token (default $NODECERT_TOKEN)")
    parser.add_argument("--cacert", type=Path, help="CA bundle to trust for an https server")
    parser.add_argument(
        "--timeout", type=_seconds, default=30.0, metavar="SECONDS", help="default 30"
    )


def client_from(args: argparse.Namespace, *, token: bool = True) -> Client:
    """The :class:`Client` the options describe.

    Raises:
        CLIError: no token (when one is needed), or a ``--server`` that is not http(s).
    """
    bearer = None
    if token:
        bearer = (args.token or os.environ.get("NODECERT_TOKEN") or "").strip()
        if not bearer:
            raise CLIError("a token is required: --token or $NODECERT_TOKEN")
    _check_server(str(args.server))
    return Client(args.server, token=bearer, timeout=args.timeout, cafile=args.cacert)


def _check_server(server: str) -> None:
    """Raise :class:`CLIError` unless ``server`` is a plain http(s) URL (before any call)."""
    if not server.startswith(("http://", "https://")):
        raise CLIError(f"--server: {server[:100]!r} must start with http:// or https://")
    netloc = server.split("://", 1)[1].split("/", 1)[0]
    if "@" in netloc:
        # Never echo it: what precedes the @ may be a password.
        raise CLIError("--server: a user name or password in the URL is not supported")
    if not server.isprintable() or any(c.isspace() for c in server) or not server.isascii():
        raise CLIError(f"--server: {server[:100]!r} is not a URL (spaces or control characters)")
    try:
        parts = urlsplit(server)
        parts.port  # noqa: B018  (Parsing the port is what checks it.)
    except ValueError as exc:
        what = "port" if "port" in str(exc).lower() else "not a URL"
        raise CLIError(f"--server: {server[:100]!r}: {what} ({exc})") from None
    if not parts.hostname:
        raise CLIError(f"--server: {server[:100]!r} is not a URL (no host)")


def local_settings() -> Settings:
    """The settings of a command that works on the local home, which must exist.

    Admin and dev commands never create a home: run in the wrong directory, they would
    make a second CA and dev issuer that the server knows nothing about.

    Raises:
        CLIError: the home does not exist, naming it and how to create it.
    """
    from nodecert.bootstrap import settings_from_environment

    settings = settings_from_environment()
    home = settings.home.absolute()
    if not settings.home.is_dir():
        raise CLIError(
            f"no nodecert home at {home}: create it with `nodecert init` (or run"
            " `nodecert serve` there), or point NODECERT_HOME at the server's home"
        )
    missing = [path for path in _home_files(settings) if not path.exists()]
    if missing:
        # An existing directory that is not a home (a typo, $HOME): building the service
        # there would create a CA and a dev issuer in it and tighten it to 0700.
        raise CLIError(
            f"{home} is not a nodecert home (no {missing[0].name}): create one with"
            " `nodecert init`, or point NODECERT_HOME at the server's home"
        )
    return settings


def read_input(path: Path, what: str) -> bytes:
    """The bytes of ``path``, an input file the option (or argument) ``what`` named.

    Raises:
        CLIError: one line naming ``what`` and the file: unreadable, or too large.
    """
    try:
        return read_small(path)
    except OSError as exc:
        raise CLIError(f"{what}: {path}: {exc.strerror or exc}") from None


def _home_files(settings: Settings) -> list[Path]:
    """The files ``nodecert init`` leaves in a home, for the settings in force."""
    files = []
    if settings.ca == "local":
        files.append(settings.home / "ca" / "ca.crt")
    if settings.store == "sqlite":
        files.append(settings.database_path)
    return files


def cli_actor() -> str:
    """Who ran a command on the server's machine, for the audit trail: ``cli:<os user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid-{os.getuid()}"
    return f"cli:{user}"


def cli_admin() -> Principal:
    """The principal of an admin command run on the server's machine.

    ``claims["actor"]`` says who ran it (:func:`cli_actor`), for the audit trail.
    """
    return Principal(user_id="nodecert-cli", is_admin=True, claims={"actor": cli_actor()})


def setup_logging() -> None:
    """Log ``nodecert`` messages at INFO and above to stderr, with UTC timestamps."""
    logger = logging.getLogger("nodecert")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_formatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@contextlib.contextmanager
def warnings_to_stderr(name: str) -> Iterator[None]:
    """While the block runs, log ``name``'s warnings and errors to stderr (UTC timestamps)."""
    logger = logging.getLogger(name)
    handler = _StderrHandler()
    handler.setFormatter(_formatter())
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _formatter() -> logging.Formatter:
    formatter = logging.Formatter(
        "%(asctime)s nodecert: %(levelname)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ"
    )
    formatter.converter = time.gmtime
    return formatter


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (``main()`` may run many times in a process)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """Parse ``2d``, ``36h``, ``1d12h``, ``90m`` or ``45s`` (an argparse ``type``)."""
    value = text.strip()
    parts = _DURATION.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a duration like 2d, 36h, 1d12h, 90m or 45s"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: must be longer than zero")
    return timedelta(seconds=seconds)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds (0-3600]")
    return value
