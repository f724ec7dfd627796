"""The deploy hook of a renewal: a shell command that tells the consumer, as certbot's does."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

from cryptography import x509

from nodecert.client.renewal._target import RenewalClientError

if TYPE_CHECKING:
    from nodecert.client.renewal._target import RenewalTarget

__all__ = ["run_deploy_hook"]

_HOOK_TIMEOUT_S = 300.0


def run_deploy_hook(command: str, target: RenewalTarget, certificate: x509.Certificate) -> None:
    """Run ``command`` with ``/bin/sh`` after a renewal, as certbot runs its deploy hooks.

    The hook sees ``RENEWED_CERT``, ``RENEWED_KEY`` (the files just written) and
    ``RENEWED_SERIAL`` (hex) in its environment; its output goes where ours goes.

    Raises:
        RenewalClientError: the command could not start, exited non-zero or ran for
            more than five minutes.
    """
    env = {
        **os.environ,
        "RENEWED_CERT": str(target.cert),
        "RENEWED_KEY": str(target.key),
        "RENEWED_SERIAL": format(certificate.serial_number, "x"),
    }
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command], env=env, timeout=_HOOK_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise RenewalClientError(
            f"--deploy-hook: still running after {_HOOK_TIMEOUT_S:.0f} s; stopped"
        ) from None
    except OSError as exc:
        raise RenewalClientError(f"--deploy-hook: cannot run /bin/sh: {exc.strerror}") from None
    if done.returncode != 0:
        raise RenewalClientError(f"--deploy-hook: exited with status {done.returncode}")
