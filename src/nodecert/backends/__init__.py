"""CA backends behind the ``CABackend`` port: the local CA (key in a file) and ACM Private CA."""
