"""Issuance throughput of the local CA by where its issuing key lives (issue 19).

The same in-process ``LocalCA.issue`` (EC P-256 issuing key, EC P-256 leaf public keys made
beforehand), signed by a key in a file and by a key in a SoftHSM2 token (PKCS#11), one
thread, interleaved rounds; certificates per second, best round of each. SoftHSM2 is a
software token: a hardware HSM's figure depends on the device, and this one shows the cost
of the seam (to-be-signed bytes built, signed through PKCS#11, assembled with pyasn1).

    .venv/bin/python benchmarks/signers.py [--issues 400]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if not __package__:  # Run as a script: import ``benchmarks`` from the repository root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from nodecert.backends.local.ca import LocalCA
from nodecert.core.identity import Identity
from nodecert.core.keys import KeyType, generate_private_key
from nodecert.core.values import SigningRequest

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
PIN = "bench-pin-1234"


def available() -> bool:
    """Whether SoftHSM2 is installed."""
    return MODULE.exists() and shutil.which("softhsm2-util") is not None


def measure(*, issues: int = 400, rounds: int = 3) -> dict[str, float]:
    """Certificates per second with the issuing key in a file and in SoftHSM2.

    Sets ``SOFTHSM2_CONF`` for this process: run it in a process of its own.
    """
    from nodecert.backends.signers.pkcs11 import PKCS11Signer

    with tempfile.TemporaryDirectory(prefix="nodecert-signers-") as tmp:
        base = Path(tmp)
        (base / "tokens").mkdir()
        conf = base / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run(
            [
                *("softhsm2-util", "--init-token", "--free", "--label", "bench"),
                *("--pin", PIN, "--so-pin", "bench-so-5678"),
            ],
            check=True,
            capture_output=True,
        )
        signer = PKCS11Signer(MODULE, "bench", "issuing", PIN, create=KeyType.EC_P256)
        cas = {
            "file": LocalCA.open_or_create(
                base / "file", organization="bench", trust_domain="bench.local"
            ),
            "SoftHSM2": LocalCA.open_or_create(
                base / "hsm", organization="bench", trust_domain="bench.local", signer=signer
            ),
        }
        keys = [generate_private_key(KeyType.EC_P256).public_key() for _ in range(64)]
        now = datetime.now(UTC)
        requests = [
            SigningRequest(
                csr=None,
                identity=Identity("alice", "n1"),
                not_before=now,
                not_after=now + timedelta(days=7),
                request_id=str(i),
                public_key=keys[i % len(keys)],
            )
            for i in range(issues)
        ]
        best = dict.fromkeys(cas, 0.0)
        for _ in range(rounds):
            for name, ca in cas.items():
                start = time.perf_counter()
                for request in requests:
                    ca.issue(request)
                best[name] = max(best[name], issues / (time.perf_counter() - start))
        signer.close()
        return best


def main(argv: list[str] | None = None) -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=400)
    args = parser.parse_args(argv)
    if not available():
        print("SoftHSM2 is not installed (make deps)", file=sys.stderr)
        return 1
    for name, rate in measure(issues=args.issues).items():
        print(f"{name}: {rate:,.0f} certificates/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
