"""Scheduled Lambda: send the CA the revocations it has not taken yet.

Every revocation marks the ledger first and queues the CA's revocation in the same
transaction (``RevocationOutbox``, in the limits table on DynamoDB); the request that
revoked tries the CA at once. When ACM PCA was throttled or down, the queue is what is left.
This handler, run on a schedule (an EventBridge rule every few minutes), drains it:
handler ``nodecert.aws.revocations.lambda_handler``, with the same environment and IAM role
as the API function.
"""

from __future__ import annotations

import functools
import logging

from nodecert.bootstrap import Service, build_service, settings_from_environment

__all__ = ["lambda_handler"]

log = logging.getLogger("nodecert.revocation")
# A Lambda invocation is short-lived: a batch this size fits well inside its timeout even
# when every revocation waits for ACM PCA, and the next run takes the rest.
_BATCH = 100


@functools.cache
def _service() -> Service:
    settings = settings_from_environment()
    logging.getLogger("nodecert").setLevel(settings.log_level)
    return build_service(settings)


def lambda_handler(event: object, context: object) -> dict[str, int]:
    """Drain up to 100 queued CA revocations; return ``{"pending": <how many are left>}``.

    Raises:
        StoreUnavailableError: the queue cannot be read now (the invocation fails and the
            schedule runs it again).
    """
    pending = _service().authority.finish_revocations(limit=_BATCH)
    if pending:
        log.warning("revocation: %d CA revocation(s) still queued", pending)
    return {"pending": pending}
