"""The ``memkit`` command line.

Each module here holds one group of commands and a ``register(subparsers)``
function; ``main`` wires them into one argparse parser. The database is the
first argument of every command that takes one. Commands that print rows take
``--json``, ``--nl``, ``--csv`` or ``--table [--fmt FORMAT]`` (``add_output_flags``
and ``emit_rows``); the others take ``--json`` (``add_json_flag`` and ``emit``).
Exit codes: 0 success, 1 a check failed, 2 bad input or a missing optional
dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import errno
import json
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from ..errors import MemkitError

__all__ = [
    "add_json_flag", "add_output_flags", "build_parser", "emit", "emit_rows", "example",
    "main",
]

# The command modules, in the order they appear in --help.
COMMAND_MODULES = (
    "core", "seed", "memory", "session", "search", "workload", "admin", "archive", "bench",
    "reliability",
)

# How ``memkit --help`` groups the commands; a command in no group is listed last.
COMMAND_GROUPS = {
    "Databases": ("init", "migrate", "seed", "validate", "stats", "backup", "restore",
                  "copy", "archive", "doctor"),
    "Records": ("memory", "session"),
    "Documents": ("index", "search", "watch"),
    "Workloads and reports": ("simulate", "report", "demo"),
    "Benchmarks and reliability": ("bench", "stress", "soak", "crash", "capacity"),
}

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps example blocks as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(("Example", "Commands")):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def example(*commands: str) -> dict[str, Any]:
    """``add_parser`` keywords that end a command's ``--help`` with example lines."""
    title = "Example" if len(commands) == 1 else "Examples"
    lines = "\n".join(f"  {command}" for command in commands)
    return {"epilog": f"{title}:\n{lines}", "formatter_class": _HelpFormatter}


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="memkit", usage="memkit [-h] [--version] COMMAND ...",
        description="abathur-memkit: agent memory on SQLite.", formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"memkit {__version__}")
    # prog: the subcommands' usage lines start "memkit NAME", not the custom usage.
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       help=argparse.SUPPRESS, prog="memkit")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    parser.epilog = _commands_help(subparsers) + _MAIN_EPILOG
    return parser


_MAIN_EPILOG = """
Output: commands that print rows take --json, --nl (one JSON object a line), --csv
or --table [--fmt github|grid|...]; the others take --json.
Exit codes: 0 success, 1 a check failed, 2 bad input or a missing optional dependency.
Run `memkit COMMAND --help` for a command's options and an example, e.g.:
  memkit memory list agents.db user:alice --csv"""


def _commands_help(subparsers: Any) -> str:
    # argparse keeps each command's help only in this (private) list.
    helps = {action.dest: action.help or "" for action in subparsers._choices_actions}
    grouped = {name for names in COMMAND_GROUPS.values() for name in names}
    groups = {**COMMAND_GROUPS, "More": tuple(n for n in helps if n not in grouped)}
    width = max(map(len, helps)) + 2
    lines = ["Commands:"]
    for title, names in groups.items():
        present = [n for n in names if n in helps]
        if present:
            lines.append(f"  {title}:")
            lines += [f"    {n:<{width}}{helps[n]}" for n in present]
    return "\n".join(lines) + "\n"


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """--json, --nl, --csv and --table [--fmt] for a command that prints rows."""
    from tabulate import tabulate_formats

    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="JSON, indented")
    formats.add_argument("--nl", action="store_true",
                         help="newline-delimited JSON: one row a line")
    formats.add_argument("--csv", action="store_true",
                         help="CSV with a header row (nested values as JSON)")
    formats.add_argument("--table", action="store_true",
                         help="a table of the rows, cells not shortened")
    parser.add_argument("--fmt", choices=tabulate_formats, metavar="FORMAT",
                        help="table format for --table: simple (default), github, grid, "
                             "psql, rst, tsv, ... (implies --table)")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (``10_000`` and ``10,000`` accepted)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def raise_missing(path: str) -> None:
    """Refuse a command on a path that holds no database, saying how to make one."""
    from ..errors import DatabaseFileError

    raise DatabaseFileError(f"no database at {path} (create one with: memkit init {path})")


def refuse_dsn(path: str, command: str, instead: str) -> None:
    """Refuse a PostgreSQL DSN given to a command that works on SQLite files only."""
    from ..database import is_dsn
    from ..errors import InvalidInputError

    if is_dsn(path):
        raise InvalidInputError(
            f"memkit {command} works on SQLite files, not on a PostgreSQL database: {instead}")


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)


def emit_rows(args: argparse.Namespace, rows: Sequence[Mapping[str, Any]],
              columns: Sequence[str], *, document: Any = None, text: str | None = None,
              footer: str = "") -> None:
    """Print ``rows`` in the format the flags of ``add_output_flags`` chose.

    ``--json`` prints ``document`` (default: the rows) and ``--nl``/``--csv``
    every field of each row; ``--table`` and the default text show ``columns``.
    The default is ``text`` if given, else a table fitted to the terminal's
    width, then ``footer``.
    """
    if args.json:
        print(json.dumps(list(rows) if document is None else document, indent=2, default=str))
    elif args.nl:
        for row in rows:
            print(json.dumps(row, default=str))
    elif args.csv:
        _write_csv(rows)
    elif args.table or args.fmt:
        print(_table(rows, columns, args.fmt or "simple", width=None))
    else:
        width = shutil.get_terminal_size((120, 24)).columns
        body = text if text is not None else _table(rows, columns, "simple", width)
        print("\n".join(part for part in (body, footer) if part))


def _write_csv(rows: Sequence[Mapping[str, Any]]) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.writer(sys.stdout)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_csv_cell(row.get(field)) for field in fields])


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool | dict | list | tuple):
        return json.dumps(value, default=str)
    return value


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str,
           width: int | None) -> str:
    from tabulate import tabulate

    cells = [[_table_cell(row.get(column)) for column in columns] for row in rows]
    if width is not None:
        cells = _fit(cells, columns, width)
    numeric = ["right" if cells and all(isinstance(r[i], int | float) or r[i] == "" for r in cells)
               else "left" for i in range(len(columns))]
    return str(tabulate(cells, headers=list(columns), tablefmt=fmt, disable_numparse=True,
                        colalign=numeric))


def _table_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), default=str)
    return " ".join(text.split())  # a newline would break the row


def _fit(cells: list[list[Any]], headers: Sequence[str], width: int) -> list[list[Any]]:
    """Shorten the widest text columns (with an ellipsis) until a row fits ``width``.

    Long free text (values, namespaces) gives way before short fields such as
    timestamps: columns up to ``_SHORT`` wide are shortened only as a last resort.
    """
    # tabulate's simple format: two spaces between columns, a column at least
    # two wider than its header.
    gap = pad = 2
    widths = [max([len(h) + pad, *(len(str(row[i])) for row in cells)])
              for i, h in enumerate(headers)]
    text = [all(isinstance(row[i], str) for row in cells) for i in range(len(headers))]
    excess = sum(widths) + gap * (len(headers) - 1) - width
    for protect in (True, False):
        floors = [widths[i] if protect and widths[i] <= _SHORT else max(len(h) + pad, 6)
                  for i, h in enumerate(headers)]
        excess = _shrink(widths, floors, text, excess)
    return [[_shorten(cell, widths[i]) if text[i] else cell for i, cell in enumerate(row)]
            for row in cells]


_SHORT = 30


def _shrink(widths: list[int], floors: list[int], text: list[bool], excess: int) -> int:
    """Narrow the widest shrinkable column step by step; return what still does not fit."""
    while excess > 0:
        shrinkable = [i for i in range(len(widths)) if text[i] and widths[i] > floors[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        others = max([floors[widest], *(widths[i] for i in shrinkable if i != widest)])
        cut = min(excess, widths[widest] - others) or 1
        widths[widest] -= cut
        excess -= cut
    return excess


def _shorten(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + "…"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_db_option_to_argument(sys.argv[1:] if argv is None else argv))
    if getattr(args, "fmt", None) and (args.json or args.nl or args.csv):
        parser.error("--fmt applies to --table only")
    handler: Handler = args.handler
    try:
        code = asyncio.run(handler(args))
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except ImportError as exc:
        missing = _missing_text(exc)
        if missing is None:
            raise  # a broken import inside memkit: a bug, worth its traceback
        return _fail(args, missing, "MissingDependencyError", 2)
    except MemkitError as exc:
        if isinstance(exc.__cause__, ImportError):  # e.g. sqlite-vss not installed
            return _fail(args, str(exc), type(exc).__name__, 2)
        return _fail(args, str(exc), type(exc).__name__, 2 if isinstance(exc, ValueError) else 1)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``memkit stats db | head``): stop quietly, as
        # cat does. stdout goes to devnull so the exit-time flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        code = 2 if exc.errno in _BAD_PATH_ERRNOS else 1
        return _fail(args, _os_error_text(exc), type(exc).__name__, code)
    except _driver_errors() as exc:
        return _fail(args, f"SQLite: {exc}", type(exc).__name__, 1)


# Commands that took the database as ``--db`` before it became their first
# argument; the option still works (hidden, with a warning) so scripts keep running.
_DB_OPTION_COMMANDS = ("index", "search", "watch")


def _db_option_to_argument(argv: Sequence[str]) -> list[str]:
    """``index FOLDER --db DB`` -> ``index DB FOLDER`` (deprecated spelling)."""
    argv = list(argv)
    if not argv or argv[0] not in _DB_OPTION_COMMANDS:
        return argv
    options = argv[: argv.index("--")] if "--" in argv else argv
    for i, token in enumerate(options):
        if token == "--db" and i + 1 < len(options):
            path, rest = options[i + 1], argv[:i] + argv[i + 2:]
        elif token.startswith("--db="):
            path, rest = token[len("--db="):], argv[:i] + argv[i + 1:]
        else:
            continue
        print(f"memkit: --db is deprecated and will be removed: the database is the first "
              f"argument (memkit {argv[0]} DB ...)", file=sys.stderr)
        return [rest[0], path, *rest[1:]]
    return argv


# The extra that provides each optional module memkit imports.
_EXTRAS = {"ollama": "ollama", "httpx": "ollama", "sqlite_vss": "vss", "pandas": "notebooks",
           "matplotlib": "notebooks", "nbformat": "notebooks", "nbclient": "notebooks",
           "nbconvert": "notebooks", "papermill": "notebooks", "ipykernel": "notebooks",
           "jinja2": "notebooks"}


def _missing_text(exc: ImportError) -> str | None:
    """What to install for a missing module; None when no package is missing."""
    if isinstance(exc, MemkitError):  # says what to install already
        return str(exc)
    module = (exc.name or "").split(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or not module or module == "abathur_memkit":
        return None
    extra = _EXTRAS.get(module)
    install = f"pip install 'abathur-memkit[{extra}]'" if extra else f"pip install {module}"
    return f"this needs {module}, which is not installed: {install}"


# A path the user gave is wrong (exit 2), unlike a full disk or an I/O error (exit 1).
_BAD_PATH_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
                    errno.EROFS, errno.EEXIST, errno.EINVAL, errno.ENAMETOOLONG}


def _os_error_text(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _driver_errors() -> tuple[type[Exception], ...]:
    from ..engines.sqlite.driver import select_driver

    return (sqlite3.Error, select_driver().module.Error)


def _fail(args: argparse.Namespace, message: str, kind: str, code: int) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": message, "type": kind}))
    else:
        print(f"memkit: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
