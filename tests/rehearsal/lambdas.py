"""Lambda execution environments for the rehearsal: one warm subprocess per function.

Each runs the handler from the code package deploy/build.sh makes (tests/rehearsal/package.py)
on the standard library alone, as Lambda runs it from ``LAMBDA_TASK_ROOT``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from tests.rehearsal.package import lambda_package
from tests.rehearsal.stack import REGION

CONTAINER = Path(__file__).with_name("container.py")


class Container:
    """One warm Lambda execution environment (tests/rehearsal/container.py)."""

    def __init__(
        self,
        handler: str,
        environment: dict[str, str],
        timeout: float,
        endpoint: str,
        *,
        package: Path | None = None,
        reaches_pca: bool = True,
    ):
        self.tmp = Path(tempfile.mkdtemp(prefix="lambda-tmp-"))
        package = package or lambda_package()
        env = {
            # What the Lambda runtime sets, pointed at moto; nothing of the test process.
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_LAMBDA_FUNCTION_NAME": handler,
            "PYTHONDONTWRITEBYTECODE": "1",
            # The function's code (Lambda: LAMBDA_TASK_ROOT on the path): the package only.
            "PYTHONPATH": str(package),
            "LAMBDA_TASK_ROOT": str(package),
        }
        if not reaches_pca:
            # A role without any acm-pca action: every PCA call is refused (here, nowhere to
            # connect), so a function that calls PCA anyway fails the rehearsal.
            env["AWS_ENDPOINT_URL_ACM_PCA"] = "http://127.0.0.1:9"
        for name, value in environment.items():
            # Each container has a /tmp of its own, as on Lambda; /var/task is the package.
            if value.startswith("/tmp/"):
                value = str(self.tmp) + value[4:]
            elif value.startswith("/var/task/"):
                value = str(package) + value[len("/var/task") :]
            env[name] = value
        self.log = self.tmp / "log.txt"
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            # -S: no site-packages (nothing of the test virtualenv); -P: not this directory.
            [sys.executable, "-S", "-P", str(CONTAINER), handler, str(timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=env,
            text=True,
        )
        self.lock = threading.Lock()
        self.timeout = timeout

    def invoke(self, event: dict[str, Any]) -> tuple[Any, str | None]:
        """The handler's result, or None and the error type when it raised."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.process.stdin.write(json.dumps(event) + "\n")
            self.process.stdin.flush()
            # The function's own timeout, plus a cold start on a busy machine.
            # poll, not select: a long test session may hold descriptors above 1024.
            poller = select.poll()
            poller.register(self.process.stdout, select.POLLIN)
            if not poller.poll((self.timeout + 60) * 1000):
                self.process.kill()
                return None, "Task timed out"
            line = self.process.stdout.readline()
        if not line:
            return None, "Runtime.ExitError"
        reply = json.loads(line)
        if "error" in reply:
            return None, f"{reply['error']}: {reply['message']}"
        return reply["result"], None

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
