"""The Lambda execution environment's life: init phase, SnapStart snapshot and restore.

Lambda runs a handler module's top level once per execution environment, in the *init
phase*, before the first event; with SnapStart (Python 3.12 and later) it runs it once per
published version, snapshots the memory, and starts later environments from the snapshot.
Whatever is done here is therefore done once, not on a user's request: the service is
wired (imports, botocore clients, the store) and the CA's description, which every
issuance needs, is fetched (:func:`prepare`).

A snapshot is copied into every environment restored from it, so it must hold nothing that
has to be unique or fresh (https://docs.aws.amazon.com/lambda/latest/dg/snapstart-uniqueness.html):

- pooled private keys: the pool is closed (its filler stopped, its keys dropped) before
  the snapshot and emptied again after restore, so no two environments can hand out one
  key;
- open HTTPS connections: closed before the snapshot and after restore; the clients open
  new ones on their next call;
- the ``random`` module's state (the jitter of retries and polls): reseeded after restore
  so that restored environments do not retry in lockstep. Keys, serials and tokens never
  come from ``random`` (``cryptography`` and ``os.urandom`` draw from the kernel).

The hooks are registered through ``snapshot_restore_py``, which the Lambda Python runtimes
include; elsewhere it is absent and nothing is registered.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from nodecert.core.errors import NodecertError

if TYPE_CHECKING:
    from nodecert.bootstrap import Service

__all__ = ["after_restore", "before_snapshot", "init_phase", "prepare", "register_snapshot_hooks"]

log = logging.getLogger("nodecert")


def init_phase(wire: Callable[[], Service | None]) -> Service | None:
    """Wire the service now (``wire``), warm the CA and register the SnapStart hooks.

    A failure is logged and left to the first invocation, which wires again and answers
    with the error, instead of failing the whole init (and the snapshot) here.
    """
    try:
        service = wire()
    except Exception as exc:
        log.error("init: the service could not be wired (%s): %s", type(exc).__name__, exc)
        return None
    if service is not None:
        prepare(service)
        register_snapshot_hooks(service)
    return service


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
    from nodecert.awsclients import close_connections

    service.key_pool.close()
    close_connections()


def after_restore(service: Service) -> None:
    """SnapStart, after a restore: drop anything a copy shares, reseed ``random``."""
    from nodecert.awsclients import close_connections

    dropped = service.key_pool.drain()
    if dropped:
        log.warning("restore: dropped %d pooled key(s) copied from the snapshot", dropped)
    close_connections()
    random.seed()  # From os.urandom: each restored environment its own sequence.


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
