"""Plumbing shared by the adapters and entry points, below them and above the core.

Files nodecert owns (``files``), the request's time budget (``budget``), the flag for code
that must not wait on an event loop (``blocking``), the boto3 client factory and error
helpers (``awsclients``), log lines (``logs``) and Prometheus metrics (``metrics``). The use
cases, the client and the node side never import it: they need only the core.
"""
