"""The issuing use cases: issue, administer (nodes, revocation sweeps), renew, quotas, CRL.

They talk to the outside world only through the ports in :mod:`nodecert.core.ports`.
"""
