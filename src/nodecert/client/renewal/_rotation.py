"""Following a CA rotation from a renewal agent: is my issuing CA retiring?

After ``nodecert ca rotate`` the service lists the previous issuing CA as ``retiring`` (or
``retired`` after an emergency rotation) in ``GET /v1/ca/issuers``. An agent whose
certificate that CA issued renews now instead of at its usual time, so that a rotation
completes within one watch interval (or one timer run) with nobody on the nodes.
"""

from __future__ import annotations

import logging

from cryptography import x509

from nodecert.client._client import Client
from nodecert.core.errors import NodecertError

__all__ = ["issuer_retiring"]

log = logging.getLogger("nodecert.renew")

_LEAVING = frozenset({"retiring", "retired"})


def issuer_retiring(client: Client, certificate: x509.Certificate) -> bool:
    """Whether the service says the CA that issued ``certificate`` is retiring or retired.

    Never raises: a service that cannot say (older than the route, down, answering
    something unreadable) leaves the schedule as it is, so this answers False.
    """
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        return False
    if aki.value.key_identifier is None:
        return False
    wanted = aki.value.key_identifier.hex()
    try:
        issuers = client.ca_issuers()
    except NodecertError as exc:
        log.debug("renew: cannot ask which CAs retire: %s", exc.detail)
        return False
    leaving = any(i.key_id == wanted and i.status in _LEAVING for i in issuers)
    if leaving:
        log.info("renew: the CA that issued this certificate is retiring: renewing now")
    return leaving
