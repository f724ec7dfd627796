"""The node side: the access decision and :mod:`nodecert.verify`.

It imports only the core, so a node that installs ``nodecert`` can check client certificates
without FastAPI, boto3 or the issuing stack.
"""
