"""The ``nodecert`` command line: ``main(argv) -> int``, testable in-process.

Every failure prints one line on stderr (``nodecert: error: ...``) and exits non-zero:
1 for a refused or failed operation (a service that is down, a TLS failure, a file that
cannot be written, a closed pipe included), 2 for bad usage. The commands live in
``local`` (the server's own home), ``remote`` (the API, through :mod:`nodecert.client`)
and ``renewing``; the files they write go through ``output``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from nodecert import __version__
from nodecert.cli.auditing import add_audit_command
from nodecert.cli.ca import add_ca_commands
from nodecert.cli.common import CLIError, UsageError
from nodecert.cli.completion import add_completion_command
from nodecert.cli.local import add_local_commands
from nodecert.cli.login import add_login_command
from nodecert.cli.remote import add_remote_commands
from nodecert.cli.renewing import add_renew_command
from nodecert.client import http_status_of
from nodecert.core.context import bind_source
from nodecert.core.errors import NodecertError

__all__ = ["CLIError", "build_parser", "main"]


EXIT_STATUSES = """\
exit status:
  0    done (for renew: renewed, or not due yet)
  1    failed or refused: one line on stderr says why (bad input, a file that cannot be
       read or written, the service unreachable or refusing, a failing --deploy-hook)
  2    bad usage (unknown option, missing argument, options that do not go together)
  130  interrupted (Ctrl-C)"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    bind_source("cli")
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        args.handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # `nodecert certs --json | head -1`: the reader left. Point stdout at /dev/null so
        # the interpreter's final flush cannot fail again with a traceback.
        _silence_stdout()
        return _fail("output closed early (broken pipe)")
    except NodecertError as exc:
        return _fail(_line(exc))
    except UsageError as exc:
        _fail(str(exc))
        return 2
    except CLIError as exc:
        return _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        return _fail(_missing_extra(exc))
    except Exception as exc:  # The last resort: one line, never a traceback.
        # A failure nobody translated (an SDK's own error, say). Its type and message
        # still say what went wrong; no key or token is ever put into one.
        text = " ".join(str(exc).split())[:300]
        return _fail(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command (also used to check the shipped units)."""
    parser = argparse.ArgumentParser(
        prog="nodecert",
        description="Per-node mutual-TLS certificates on demand.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nodecert {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")
    add_local_commands(sub)
    add_ca_commands(sub)
    add_remote_commands(sub)
    add_renew_command(sub)
    add_audit_command(sub)
    add_login_command(sub)
    add_completion_command(sub, build_parser)
    from nodecert.aws.truststore import register as register_aws

    register_aws(sub)  # nodecert aws truststore
    return parser


def _line(error: NodecertError) -> str:
    detail = " ".join(str(error.detail).split())
    status = http_status_of(error)
    return f"{detail} ({error.code}, HTTP {status})" if status else detail


# Which optional install set (pyproject's extras) brings a module a command needs. A node
# installs the base package only; `nodecert serve` and the cloud stores need more.
_EXTRAS = {
    "fastapi": "server",
    "starlette": "server",
    "pydantic": "server",
    "uvicorn": "server",
    "httptools": "server",
    "uvloop": "server",
    "boto3": "aws",
    "botocore": "aws",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
}


def _missing_extra(error: ModuleNotFoundError) -> str:
    module = (error.name or "").split(".")[0]
    extra = _EXTRAS.get(module)
    if extra is None:
        return f"missing Python module {module or error}: reinstall nodecert"
    return (
        f"this command needs the '{extra}' install set (module {module} is missing):"
        f" pip install 'nodecert[{extra}]'"
    )


def _fail(message: str) -> int:
    try:
        print(f"nodecert: error: {message}", file=sys.stderr)
        sys.stderr.flush()
    except OSError:
        pass  # Nowhere left to say it; the exit status still does.
    return 1


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
