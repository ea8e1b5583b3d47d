"""ioc-stream composition root: settings, the `ioc` CLI and the embedded runtime."""

__version__ = "0.1.0"
