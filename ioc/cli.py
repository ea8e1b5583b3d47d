"""The `ioc` command line: parse, build settings once, run one command, map errors to one line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from foundation import __version__
from foundation.errors import CatalogError, IocError
from foundation.settings import Settings, load_settings

__all__ = ["main"]

log = logging.getLogger("ioc")

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

# Each module has `register(commands)` adding its sub-commands; `run` is set per parser.
COMMAND_MODULES = (
    "ioc.commands.runtime",
    "ioc.commands.broker",
    "ioc.commands.catalog",
    "ioc.commands.publish",
    "ioc.commands.worker",
    "ioc.commands.writer",
    "ioc.commands.notifier",
    "ioc.commands.db",
    "ioc.commands.keys",
    "ioc.commands.ingest",
    "ioc.commands.simulate",
    "ioc.commands.replay",
    "ioc.commands.gateway",
    "ioc.commands.tokens",
    "ioc.commands.alerts",
    "ioc.commands.kpi",
    "ioc.commands.contract",
    "ioc.commands.report",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioc",
        description="ioc-stream: real-time monitoring for a provincial operations center",
    )
    parser.add_argument("--version", action="version", version=f"ioc-stream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ioc` console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        # A command may map its flags onto settings: set_defaults(overrides=fn(args) -> dict).
        overrides = args.overrides(args) if hasattr(args, "overrides") else {}
        settings = load_settings(**overrides)
        _configure_logging(settings)
        command = args.run
        if not asyncio.iscoroutinefunction(command):  # e.g. `ioc worker`: Faust owns its loop
            code: int = command(args, settings)
            return code
        result: int = asyncio.run(command(args, settings))
        return result
    except CatalogError as exc:
        print(f"ioc: error {_one_line(exc)}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except IocError as exc:
        print(f"ioc: error {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an unmapped library error: still one line
        log.debug("unexpected error", exc_info=True)
        print(
            f"ioc: error [{_library_code(exc)}] {type(exc).__name__}: {_one_line(exc)}"
            " (IOC_LOG_LEVEL=debug shows the traceback)",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: BaseException) -> str:
    """The message on one line (libpq's messages carry a second, indented line)."""
    return " ".join(str(exc).split())


def _library_code(exc: BaseException) -> str:
    """The reason code of an error a library raised past our wrappers."""
    module = type(exc).__module__
    if module.startswith(("aiokafka", "kafka")):
        return "broker_unreachable" if "Connection" in type(exc).__name__ else "broker_error"
    if module.startswith("psycopg"):
        return "database_unreachable" if "Operational" in type(exc).__name__ else "database_error"
    return "internal_error"


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.log_level != "debug":
        # Client libraries log every failed connection attempt; our errors say it once.
        for noisy in ("aiokafka", "kafka"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
        # The pool logs every failed attempt to connect; the command's error says it once.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        # The PDF library's font subsetter logs a line per table of every font it embeds.
        logging.getLogger("fontTools").setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
