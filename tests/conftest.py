"""Test configuration: the service fixtures live in a plugin module.

Hypothesis draws the same examples on every run (`derandomize`), so `make test` is
repeatable and CI never fails on a draw it had not made before; a new draw that finds a
problem becomes an explicit `@example`. `HYPOTHESIS_PROFILE=explore` draws new examples.
"""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

pytest_plugins = [
    "tests.plugins.services",
    "tests.plugins.worker",
    "tests.plugins.storage",
    "tests.plugins.notify",
    "tests.plugins.alerts",
    "tests.plugins.gateway",
    "tests.plugins.history",
]
