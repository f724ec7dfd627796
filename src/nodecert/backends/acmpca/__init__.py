"""The AWS Private CA backend: ``backend`` (``ACMPCABackend``), ``calls`` (retries under a
deadline), ``polling`` (when to ask for a certificate), ``parameters`` (request parameters,
the error table, chain order: pure) and ``intermediate`` (a local intermediate signed by
ACM PCA)."""
