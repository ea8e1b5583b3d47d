"""Sub-commands of `ioc`, one module per concern; each exposes `register(commands)`."""
