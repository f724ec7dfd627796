"""The public Python client over nodecert's HTTP API (the CLI's only network code).

::

    from nodecert.client import Client

    client = Client("https://certs.example.com", token=token, timeout=10)
    issued = client.issue("n1", key_type="ec-p256")
    for row in client.certificates(node_id="n1", status="active"):
        print(row.serial, row.not_after)

Errors are the project's own, rebuilt from the service's problem documents with the core's
wire-error table (:data:`nodecert.core.problems.WIRE_ERRORS`, docs/errors.md) and carrying
the same fields as on the service; no answer at all is :class:`ServiceUnreachableError`
(a :class:`~nodecert.core.errors.BackendUnavailableError`)::

    NodecertError
    ├── ... every class of the wire-error table, by the problem's code
    ├── BackendUnavailableError
    │   └── ServiceUnreachableError   refused, unresolvable, timed out, TLS failed
    ├── UnexpectedReplyError          a 2xx reply this client cannot read
    └── RenewalClientError            renewal files or deploy hook (nodecert.client.renewal.agent)
        └── KeyMismatchError          the key is not the certificate's

Only the standard library is used for HTTP (:class:`UrllibTransport`); tests point the
client at :class:`nodecert.testing.MockTransport` instead.
"""

from nodecert.client._client import Client
from nodecert.client._errors import ServiceUnreachableError, http_status_of
from nodecert.client._login import LoginResult, login
from nodecert.client._models import (
    CAIssuer,
    CertificateInfo,
    IssuedCertificate,
    NodeChange,
    NodeInfo,
    UnexpectedReplyError,
)
from nodecert.client._transport import Request, Response, Transport, UrllibTransport

__all__ = [
    "CAIssuer",
    "CertificateInfo",
    "Client",
    "IssuedCertificate",
    "LoginResult",
    "NodeChange",
    "NodeInfo",
    "Request",
    "Response",
    "ServiceUnreachableError",
    "Transport",
    "UnexpectedReplyError",
    "UrllibTransport",
    "http_status_of",
    "login",
]
