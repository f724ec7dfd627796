"""The core: identity schema, keys and CSRs, policies, errors, settings, ports and values.

Pure: it imports nothing of nodecert outside this package, and no framework, SDK or
``os.environ``. Everything else depends on it.
"""
