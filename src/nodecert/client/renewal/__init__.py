"""The renewal agent in one place: what ``nodecert renew`` (and ``--watch``) does on a node.

``agent`` is the public module: when a certificate is due, renewing a key and certificate
pair on disk, and watching forever. Behind it: ``_target`` (which files, which hook),
``_pair`` (the pair replaced together, an interrupted renewal completed), ``_hook`` (the
deploy hook), ``_rotation`` (renew now when the issuing CA retires) and ``_revocation``
(the daily check of the CRL). The server side of renewal is
:mod:`nodecert.issuing.renewal` (the proof-of-possession token) and
:mod:`nodecert.issuing.renewal_once` (a certificate renews once).
"""
