"""cfssl, the baseline: install it, make an EC P-256 CA, serve its HTTP API on loopback.

The baseline is Debian's ``golang-cfssl`` (``cfssl`` 1.2.0, built with Go 1.19); its
``serve`` signs with the CA key in process, like nodecert's local CA. The signing profile
mirrors nodecert's client profile: 7 days, digital signature (+ key encipherment, which
cfssl adds only where the key type allows it), client auth.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from benchmarks.services import Service, SetupError, free_port, http_request, wait_until

__all__ = ["CFSSL", "ensure_cfssl"]

APT_PACKAGE = "golang-cfssl"

CA_CSR = {
    "CN": "nodecert bench CA",
    "key": {"algo": "ecdsa", "size": 256},
    "names": [{"O": "nodecert-bench"}],
    "ca": {"expiry": "720h"},
}

SIGNING_CONFIG = {
    "signing": {
        "default": {
            "expiry": "168h",
            "usages": ["digital signature", "key encipherment", "client auth"],
        },
        "profiles": {
            "client": {
                "expiry": "168h",
                "usages": ["digital signature", "key encipherment", "client auth"],
            }
        },
    }
}


def ensure_cfssl(*, install: bool = True) -> str:
    """Return the path of ``cfssl``, installing the Debian package when it is missing.

    Raises:
        SetupError: if it is missing and cannot be installed.
    """
    found = shutil.which("cfssl")
    if found:
        return found
    if not install:
        raise SetupError("cfssl: not installed (apt-get install -y golang-cfssl)")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SetupError(f"cfssl: not installed; run as root: apt-get install -y {APT_PACKAGE}")
    print(f"cfssl: installing {APT_PACKAGE} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", APT_PACKAGE]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # The package lists may never have been fetched on a fresh machine.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    found = shutil.which("cfssl")
    if proc.returncode != 0 or not found:
        raise SetupError(f"cfssl: apt-get install {APT_PACKAGE} failed:\n{proc.stderr[-2000:]}")
    return found


class CFSSL:
    """``cfssl serve`` with a fresh EC P-256 CA in ``workdir``, on a free loopback port.

    Args:
        workdir: an empty directory for the CA files, config and log.
        binary: the ``cfssl`` executable.
    """

    def __init__(self, workdir: Path, *, binary: str = "cfssl") -> None:
        self.workdir = workdir
        self.binary = binary
        self.port = 0
        self.service: Service | None = None

    def version(self) -> str:
        """``cfssl version``, on one line."""
        out = subprocess.run([self.binary, "version"], capture_output=True, text=True, check=False)
        return ", ".join(line.strip() for line in out.stdout.splitlines() if line.strip())

    def make_ca(self) -> tuple[Path, Path]:
        """Create the CA with ``cfssl gencert -initca``; return (certificate, key) paths.

        Raises:
            SetupError: if cfssl fails.
        """
        csr = self.workdir / "ca-csr.json"
        csr.write_text(json.dumps(CA_CSR))
        proc = subprocess.run(
            [self.binary, "gencert", "-initca", str(csr)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SetupError(f"cfssl gencert -initca failed: {proc.stderr.strip()[-2000:]}")
        out = json.loads(proc.stdout)
        cert, key = self.workdir / "ca.pem", self.workdir / "ca-key.pem"
        cert.write_text(out["cert"])
        key.touch(mode=0o600)
        key.write_text(out["key"])
        return cert, key

    def start(self, *, timeout: float = 20.0) -> CFSSL:
        """Make the CA, start ``cfssl serve`` and wait until it signs.

        Raises:
            SetupError: if it does not start or does not answer in time.
        """
        cert, key = self.make_ca()
        config = self.workdir / "config.json"
        config.write_text(json.dumps(SIGNING_CONFIG))
        self.port = free_port()
        argv = [self.binary, "serve", "-address", "127.0.0.1", "-port", str(self.port)]
        argv += ["-ca", str(cert), "-ca-key", str(key), "-config", str(config)]
        # Level 2 (warnings): per-request logging at the default level would cost the baseline.
        argv += ["-loglevel", "2"]
        self.service = Service("cfssl serve", argv, log=self.workdir / "cfssl.log").start()
        try:
            wait_until(
                lambda: self.service is not None and self.service.check_running() and self._ready(),
                timeout=timeout,
                what="cfssl serve",
            )
        except SetupError as exc:
            log = self.service.tail() if self.service is not None else ""
            self.stop()
            raise SetupError(f"{exc}\n{log}") from exc
        return self

    def _ready(self) -> bool:
        answer = http_request(self.port, "POST", "/api/v1/cfssl/info", b"{}")
        return answer is not None and answer[0] == 200 and b'"success":true' in answer[1]

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.service is not None:
            self.service.stop()
            self.service = None

    @staticmethod
    def newcert_body(common_name: str, node: str, algo: str, size: int) -> bytes:
        """A ``/api/v1/cfssl/newcert`` request: server-side key and certificate."""
        request = {
            "CN": common_name,
            "names": [{"O": "nodecert-bench", "OU": node}],
            "key": {"algo": algo, "size": size},
        }
        return json.dumps({"request": request, "profile": "client"}).encode()

    @staticmethod
    def sign_body(csr_pem: str) -> bytes:
        """A ``/api/v1/cfssl/sign`` request: sign the client's CSR."""
        return json.dumps({"certificate_request": csr_pem, "profile": "client"}).encode()
