"""The local CA: ``ca`` (``LocalCA``), ``home`` (the files of a CA home), ``hierarchy``
(root and intermediates), ``issuer`` (an issuing CA as CRL signer), ``profile`` (the leaf
extensions), ``rotation`` (``nodecert ca rotate``) and ``revocations`` (the CA as
administration needs it)."""
