"""The AWS Private CA backend: ``backend`` (``ACMPCABackend``: issue and revoke),
``authorities`` (the issuing, retiring and retired CAs, their chains and signing algorithms,
asked once), ``calls`` (retries under a deadline), ``polling`` (when to ask for a
certificate), ``parameters`` (request parameters, the error table, chain order: pure),
``rotation`` (the CAs of a rotation's overlap: pure) and ``intermediate`` (a local
intermediate signed by ACM PCA)."""
