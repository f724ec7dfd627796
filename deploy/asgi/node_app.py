"""A node's own ASGI app that serves only callers whose certificate nodecert allows.

The decision is asked of a nodecert service, which may run on another host: the node
needs the ``nodecert`` package, the service's URL and its NODECERT_AUTHORIZE_SECRET, and
no access to the ledger. Every request is checked (no cache): a revocation, a node
transfer or a deletion denies at the very next request.

Environment:
    NODECERT_SERVER              the nodecert service, e.g. https://nodecert.internal:8443
                                 (its TLS certificate is checked against the system's
                                 trust store, or SSL_CERT_FILE)
    NODECERT_AUTHORIZE_SECRET    the service's shared secret
    NODE_ID                      this node's id
    NODE_TRUSTED_PROXY           optional: the address of the nginx in front, whose
                                 X-Client-Cert header is then believed

Directly under uvicorn's own mutual TLS (nodecert's protocol class gives the application
the client certificate, which uvicorn by itself does not), with the files that
``nodecert nodes certificate n1 --dns n1.nodes.example --out /etc/nodecert/`` writes:

    uvicorn node_app:app --http nodecert.server.tls:TLSHttpToolsProtocol \\
        --ssl-certfile /etc/nodecert/n1-server.crt --ssl-keyfile /etc/nodecert/n1-server.key \\
        --ssl-ca-certs /etc/nodecert/ca.crt --ssl-cert-reqs 2 --host 0.0.0.0 --port 8443

Behind nginx (deploy/nginx/nodecert-asgi-proxy.conf verifies the certificate and passes
it on), with NODE_TRUSTED_PROXY=127.0.0.1:

    uvicorn node_app:app --host 127.0.0.1 --port 9000 --no-proxy-headers

(``--no-proxy-headers``: the peer address that decides whether X-Client-Cert is believed
must be the socket's, never one rewritten from X-Forwarded-For.)
"""

import json
import os

from nodecert.verify import NodeAccessMiddleware, RemoteDecider


async def node_api(scope, receive, send):
    """The node's own application (replace with yours): says who called."""
    identity = scope["nodecert.decision"].identity
    body = json.dumps({"user": identity.user_id, "node": identity.node_id}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


decider = RemoteDecider(
    os.environ["NODECERT_SERVER"],
    secret=os.environ["NODECERT_AUTHORIZE_SECRET"],
    timeout_s=2.0,
)
proxy = os.environ.get("NODE_TRUSTED_PROXY")
app = NodeAccessMiddleware(
    node_api,
    decider=decider,
    node_id=os.environ["NODE_ID"],
    trusted_proxies={proxy} if proxy else (),
)
