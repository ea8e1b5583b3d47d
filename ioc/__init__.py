"""ioc-stream composition root: the `ioc` CLI, the embedded runtime and the supervisor.

Nothing imports this package: it imports the components and wires them together.
"""

from foundation import __version__

__all__ = ["__version__"]
