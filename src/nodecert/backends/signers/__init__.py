"""Issuing keys that never sit in a file: ``external`` (the seam: build and sign with a
stand-in key, put the real signature in its place), ``kms`` (AWS KMS) and ``pkcs11`` (an
HSM)."""
