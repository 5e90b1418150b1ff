"""The ``memkit`` command line.

Each module here holds one group of commands and a ``register(subparsers)``
function; ``main`` wires them into one argparse parser. Every command takes
``--json`` and exits 0 on success, 1 when a check fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..errors import MemkitError

__all__ = ["build_parser", "emit", "main"]

# The command modules, in the order they appear in --help.
COMMAND_MODULES = (
    "core", "seed", "memory", "session", "search", "workload", "admin", "archive", "bench",
    "reliability",
)

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="memkit", description="abathur-memkit: agent memory on SQLite."
    )
    parser.add_argument("--version", action="version", version=f"memkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (``10_000`` and ``10,000`` accepted)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return asyncio.run(handler(args))
    except MemkitError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": str(exc), "type": type(exc).__name__}))
        else:
            print(f"memkit: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
