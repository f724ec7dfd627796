"""Check a client certificate on the node: the public face of :mod:`nodecert.nodeside`.

``from nodecert.verify import NodeAccessMiddleware`` loads the core and the node side only.
"""

from nodecert.nodeside.verify import *  # noqa: F403
from nodecert.nodeside.verify import __all__ as __all__
