"""``nodecert serve``: sockets, workers, request limits and TLS around the HTTP service."""
