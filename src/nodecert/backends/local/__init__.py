"""The local CA: ``ca`` (``LocalCA``), ``home`` (the files of a CA home), ``hierarchy``
(root and intermediates), ``issuer`` (an issuing CA as CRL signer), ``profile`` (the leaf
extensions), ``rotation`` (``nodecert ca rotate``: the new intermediate, made or installed),
``rotation_files`` (a rotation's files: retired entries, the stage, crash completion,
pruning), ``root_crl`` (the root revoking intermediates retired at once) and ``revocations``
(the CA as administration needs it)."""
