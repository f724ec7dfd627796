"""The Lambda code package, as deploy/build.sh makes it, for the rehearsal's functions.

Every function of the rehearsal runs from this directory and nothing else: the lock's
wheels (``requirements/lambda.txt``, hashes checked, boto3 bundled) and a copy of
``src/nodecert``, on the interpreter's standard library (``python -S``: no site-packages,
so nothing of the test virtualenv). The one difference from the deployed package is the
wheels' Python version: this machine's instead of the runtime's 3.12 (cffi's extension is
built per version), so it is built into a directory of its own, never over
``build/lambda``. A rehearsal with ``NodeCAChainPackaged=Yes`` builds one more, with the
truststore as ``CA_CHAIN`` (:func:`build`), for the functions of its second deploy.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BUILD = Path(__file__).resolve().parents[2] / "deploy" / "build.sh"


@functools.cache
def lambda_package() -> Path:
    """Build the package once per test session; the directory it is in."""
    out = Path(tempfile.mkdtemp(prefix="rehearsal-lambda-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    return build(out / "lambda")


def build(out: Path, command: str | None = None, *, cwd: Path | None = None) -> Path:
    """Run deploy/build.sh into ``out`` for this interpreter; ``command`` is a shell line
    that runs it (``CA_CHAIN=nodecert-ca.pem deploy/build.sh``, as docs/aws.md writes it),
    run in ``cwd`` with the repository's ``deploy/build.sh`` on hand."""
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "LAMBDA_OUT": str(out),
        "LAMBDA_PYTHON": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    if command is None:
        argv: list[str] = ["sh", str(BUILD)]
    else:
        # The documented line names deploy/build.sh from the repository's root.
        argv = ["sh", "-c", command.replace("deploy/build.sh", f"sh {BUILD}", 1)]
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"deploy/build.sh failed: {done.stdout}{done.stderr}")
    return out
