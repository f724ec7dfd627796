"""A node's own ASGI app that serves only callers whose certificate nodecert allows.

The decision is asked of a nodecert service, which may run on another host: the node
needs the ``nodecert`` package, the service's URL and its NODECERT_AUTHORIZE_SECRET, and
no access to the ledger. Every request is checked (no cache): a revocation, a node
transfer or a deletion denies at the very next request.

Environment (either secret may instead be in a file, of mode 0600, named by ``<name>_FILE``):
    NODECERT_SERVER              the nodecert service, e.g. https://nodecert.internal:8443
                                 (its TLS certificate is checked against the system's
                                 trust store, or SSL_CERT_FILE)
    NODECERT_AUTHORIZE_SECRET    the service's shared secret (or ..._FILE)
    NODE_ID                      this node's id
    NODE_TRUSTED_PROXY           behind nginx: "unix" (uvicorn --uds, nginx connects to
                                 the socket) or the proxy's address; an address needs
                                 NODE_PROXY_SECRET too, since any process on the host
                                 can connect from a loopback address
    NODE_PROXY_SECRET            behind nginx: the secret nginx sends in
                                 X-Nodecert-Proxy-Secret (or ..._FILE); X-Client-Cert is
                                 then believed only with it

A setting that is missing or wrong stops the app at start with one line saying which.

Directly under uvicorn's own mutual TLS (nodecert's protocol class gives the application
the client certificate, which uvicorn by itself does not), with the files that
``nodecert nodes certificate n1 --dns n1.nodes.example --out /etc/nodecert/`` writes:

    uvicorn node_app:app --http nodecert.server.tls:TLSHttpToolsProtocol \\
        --ssl-certfile /etc/nodecert/n1-server.crt --ssl-keyfile /etc/nodecert/n1-server.key \\
        --ssl-ca-certs /etc/nodecert/ca.crt --ssl-cert-reqs 2 --host 0.0.0.0 --port 8443

Behind nginx (deploy/nginx/nodecert-asgi-proxy.conf verifies the certificate and passes
it on over the Unix socket, with the secret), with NODE_TRUSTED_PROXY=unix and
NODE_PROXY_SECRET_FILE=/etc/nodecert/n1-proxy.secret, as the user that owns
/run/nodecert-n1 (the recipe's commands make both):

    uvicorn node_app:app --uds /run/nodecert-n1/app.sock --no-proxy-headers

(The socket's directory, 0750 with nginx's group, decides who may connect: uvicorn makes
the socket itself 0666. The secret proves nginx to the app even to a process that can
connect anyway. ``--no-proxy-headers``: the peer that decides whether X-Client-Cert is
believed must be the socket's, never one rewritten from X-Forwarded-For.)
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


def setting(name, *, required=True, secret=False):
    """``name`` from the environment (or, for a secret, from the file ``<name>_FILE``)."""
    path = os.environ.get(name + "_FILE", "") if secret else ""
    if path:
        try:
            with open(path, encoding="ascii") as file:
                value = file.read().strip()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or "not ASCII text"
            raise SystemExit(f"node_app: {name}_FILE: cannot read {path}: {reason}") from None
    else:
        value = os.environ.get(name, "").strip()
    if not value and required:
        also = f" (or {name}_FILE)" if secret else ""
        raise SystemExit(f"node_app: {name}{also} is not set; see deploy/asgi/node_app.py")
    return value or None


def build():
    """The app, from the environment; SystemExit with one line when it cannot be built."""
    proxy = setting("NODE_TRUSTED_PROXY", required=False)
    proxy_secret = setting("NODE_PROXY_SECRET", required=False, secret=True)
    if proxy not in (None, "unix") and proxy_secret is None:
        raise SystemExit(
            f"node_app: NODE_TRUSTED_PROXY={proxy} admits every process that can connect"
            " from that address; set NODE_PROXY_SECRET (or _FILE) too, or use uvicorn --uds"
            " with NODE_TRUSTED_PROXY=unix"
        )
    try:
        decider = RemoteDecider(
            setting("NODECERT_SERVER"),
            secret=setting("NODECERT_AUTHORIZE_SECRET", secret=True),
            timeout_s=2.0,
        )
        return NodeAccessMiddleware(
            node_api,
            decider=decider,
            node_id=setting("NODE_ID"),
            trusted_proxies={proxy} if proxy else (),
            proxy_secret=proxy_secret,
        )
    except ValueError as exc:
        # The library's messages name the setting's problem, never a secret.
        raise SystemExit(f"node_app: {exc}") from None


app = build()
