"""Sub-commands of `ioc`, one module per concern; each exposes `register(commands)`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["flags_to_settings"]


def flags_to_settings(**setting_of_flag: str) -> Callable[[argparse.Namespace], dict[str, object]]:
    """`overrides` for set_defaults: each given flag (argparse dest) sets the named setting."""

    def overrides(args: argparse.Namespace) -> dict[str, object]:
        return {
            setting: getattr(args, flag)
            for flag, setting in setting_of_flag.items()
            if getattr(args, flag, None) is not None
        }

    return overrides
