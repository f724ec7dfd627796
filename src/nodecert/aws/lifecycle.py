"""The Lambda execution environment's life: init phase, SnapStart snapshot and restore.

Lambda runs a handler module's top level once per execution environment, in the *init
phase*, before the first event; with SnapStart (Python 3.12 and later) it runs it once per
published version, snapshots the memory, and starts later environments from the snapshot.
Whatever is done here is therefore done once, not on a user's request: the service is
wired (imports, botocore clients, the store) and the CA's description, which every
issuance needs, is fetched (:func:`prepare`).

The wiring makes tens of thousands of objects that live as long as the environment
(botocore's service models, endpoint rules and partitions), and their number alone keeps
triggering Python's cyclic garbage collector, which traverses them again and again and
finds nothing to free: 30-70 ms of a cold start, measured. So the collector is paused while
the init phase wires (and, from the handler module, while it imports nodecert's modules),
and what exists at its end is frozen (``gc.freeze``: moved to a permanent generation that
later collections skip, so no invocation pays a full collection over the models either);
then it runs again as before. Cyclic garbage left by the imports and the wiring stays,
once, bounded by what one init phase makes.

A snapshot is copied into every environment restored from it, so it must hold nothing that
has to be unique or fresh (https://docs.aws.amazon.com/lambda/latest/dg/snapstart-uniqueness.html):

- pooled private keys: the pool is closed (its filler stopped, its keys dropped) before
  the snapshot and emptied again after restore, so no two environments can hand out one
  key;
- open HTTPS connections: closed before the snapshot and after restore; the clients open
  new ones on their next call;
- OpenSSL's random generators. ``cryptography`` (51) makes private keys, ECDSA nonces and
  RSA blinding from the generator of the OpenSSL it bundles: a userspace DRBG, seeded from
  the kernel once and then only now and then, not the kernel itself. Two environments
  restored with the same DRBG state would make the same "random" private key. So the init
  phase makes no key and signs nothing (``tests/integration/test_snapstart_uniqueness.py``
  spies on every key-generation and signing entry point while the handler modules are
  imported and wired, and sees under ``strace`` that the generator is not even seeded),
  and :func:`reseed_openssl` reseeds it after restore, and the one of the OpenSSL behind
  Python's ``ssl``, which the init phase does draw from (botocore's ``SSLContext``: its
  session-ticket keys; the HTTPS call that describes the CA: TLS randoms, ephemeral keys);
- the ``random`` module's state (the jitter of retries and polls): reseeded after restore
  so that restored environments do not retry in lockstep. Keys, serials and tokens never
  come from ``random``.

``os.urandom`` (and so ``uuid4``, ``secrets``) reads the kernel's generator at each call;
what the kernel of a restored microVM gives is Lambda's to guarantee (see the page above).

The hooks are registered through ``snapshot_restore_py``, which the Lambda Python runtimes
include; elsewhere it is absent and nothing is registered.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from nodecert.core.errors import NodecertError

if TYPE_CHECKING:
    from nodecert.bootstrap import Service

__all__ = [
    "after_restore",
    "before_snapshot",
    "init_phase",
    "prepare",
    "register_snapshot_hooks",
    "reseed_openssl",
]

log = logging.getLogger("nodecert")


def init_phase(
    wire: Callable[[], Service | None], *, collecting: bool | None = None
) -> Service | None:
    """Wire the service now (``wire``), warm the CA and register the SnapStart hooks.

    A failure is logged and left to the first invocation, which wires again and answers
    with the error, instead of failing the whole init (and the snapshot) here.

    The cyclic garbage collector is paused meanwhile, and what the init phase made is
    frozen at its end (see the module docstring); a collector that was off stays off.

    Args:
        wire: Builds the service.
        collecting: Whether the collector was on before the init phase began, for a
            caller that paused it earlier (the handler module, before its imports);
            default: whether it is on now.
    """
    if collecting is None:
        collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            service = wire()
        except Exception as exc:
            log.error("init: the service could not be wired (%s): %s", type(exc).__name__, exc)
            return None
        if service is not None:
            prepare(service)
            register_snapshot_hooks(service)
        return service
    finally:
        if collecting:
            gc.freeze()
            gc.enable()


def prepare(service: Service) -> None:
    """Do now what the first request would otherwise pay for: describe the CA(s).

    A CA that cannot be described now is logged, not raised: the request that needs it
    reports it (503) with the cause, as without this warm-up.
    """
    check = getattr(service.authority.ca, "check", None)
    if not callable(check):
        return
    try:
        check()
    except NodecertError as exc:
        log.warning("init: the CA could not be described yet: %s", exc.detail)


def before_snapshot(service: Service) -> None:
    """SnapStart, before the snapshot: no pooled keys, no open connections in it.

    The key pool is closed, not only emptied: its filler thread could otherwise put a key
    in after the drain and before the snapshot. Restored environments generate keys
    inline, which is what a Lambda function should do anyway (the pool's thread does not
    run while the environment is frozen between invocations).
    """
    from nodecert.support.awsclients import close_connections

    service.key_pool.close()
    close_connections()


def after_restore(service: Service) -> None:
    """SnapStart, after a restore: drop anything a copy shares, reseed OpenSSL and ``random``.

    The generators are reseeded first, before anything else can draw from them.
    """
    from nodecert.support.awsclients import close_connections

    reseed_openssl()
    random.seed()  # From os.urandom: each restored environment its own sequence.
    dropped = service.key_pool.drain()
    if dropped:
        log.warning("restore: dropped %d pooled key(s) copied from the snapshot", dropped)
    close_connections()


# Well above the 256 bits of security of OpenSSL's default DRBG (CTR-DRBG, AES-256).
_SEED_BYTES = 48


def reseed_openssl() -> bool:
    """Reseed the random generators of ``cryptography``'s OpenSSL and of Python's ``ssl``.

    pyca/cryptography has no public reseed API. Its OpenSSL bindings
    (``cryptography.hazmat.bindings.openssl.binding.Binding``, a documented but unsupported
    module) still expose ``RAND_add``, and so does Python's ``ssl``. On OpenSSL 3 and later,
    ``RAND_add`` with a positive randomness immediately reseeds the <primary> DRBG, and the
    per-thread <public> and <private> DRBGs (the latter makes private keys) detect this on
    their next generate call and reseed from it (EVP_RAND(7), "Manual Reseeding":
    https://docs.openssl.org/3.0/man7/EVP_RAND/). The seed is fresh from ``os.urandom``.

    Returns:
        Whether ``cryptography``'s generator was reseeded (False, logged, when a version
        of ``cryptography`` without ``RAND_add`` is installed; nothing has drawn from it
        in the init phase then, so its state was not in the snapshot's past anyway).
    """
    ssl.RAND_add(os.urandom(_SEED_BYTES), float(_SEED_BYTES))
    try:
        from cryptography.hazmat.bindings.openssl.binding import Binding

        rand_add = Binding().lib.RAND_add
    except (ImportError, AttributeError) as exc:
        log.warning("restore: cryptography's OpenSSL cannot be reseeded (%s)", exc)
        return False
    rand_add(os.urandom(_SEED_BYTES), _SEED_BYTES, float(_SEED_BYTES))
    return True


def register_snapshot_hooks(service: Service) -> bool:
    """Register :func:`before_snapshot` and :func:`after_restore` with the Lambda runtime.

    Returns:
        Whether they were registered (False outside Lambda's Python runtimes).
    """
    try:
        import snapshot_restore_py
    except ImportError:
        return False
    snapshot_restore_py.register_before_snapshot(before_snapshot, service)
    snapshot_restore_py.register_after_restore(after_restore, service)
    return True
