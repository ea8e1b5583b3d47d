"""Test configuration: the service fixtures live in a plugin module."""

pytest_plugins = [
    "tests.plugins.services",
    "tests.plugins.worker",
    "tests.plugins.storage",
    "tests.plugins.notify",
    "tests.plugins.alerts",
    "tests.plugins.gateway",
    "tests.plugins.history",
]
