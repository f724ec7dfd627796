"""CA backends behind the ``CABackend`` port, one subpackage per technology.

``local``: the local CA (a two-tier hierarchy in the home, rotation, CRL signing);
``signers``: where the local CA's issuing key signs when it is not a file (AWS KMS, a
PKCS#11 token), behind one seam; ``acmpca``: AWS Private CA.
"""
