"""Which SQLite driver memkit uses, and the extensions it can load.

CPython's ``sqlite3`` is often built without ``enable_load_extension`` (pyenv
builds, macOS system Python, this project's CI). Vector search needs
extensions, so when the standard module cannot load them we fall back to
``sqlean`` (sqlean-py), a wheel that ships its own SQLite with loading enabled.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
from dataclasses import dataclass
from functools import cache
from types import ModuleType

from ...errors import ExtensionError, InvalidInputError
from ..interface import Connection

__all__ = ["EXTENSIONS", "Driver", "load_extension", "select_driver"]

#: Extensions memkit knows how to load, by short name.
EXTENSIONS = ("vec", "vss")


@dataclass(frozen=True)
class Driver:
    """A DB-API module that speaks SQLite, with what it can do."""

    name: str
    module: ModuleType
    can_load_extensions: bool

    @property
    def sqlite_version(self) -> str:
        return str(self.module.sqlite_version)

    def connect(self, database: str, *, uri: bool = False) -> sqlite3.Connection:
        # isolation_level=None: memkit issues BEGIN IMMEDIATE / COMMIT itself.
        conn = self.module.connect(
            database, isolation_level=None, check_same_thread=False, uri=uri
        )
        return conn  # type: ignore[no-any-return]


@cache  # a property of this Python build; asked once per process
def _stdlib_can_load() -> bool:
    conn = sqlite3.connect(":memory:")
    try:
        return hasattr(conn, "enable_load_extension")
    finally:
        conn.close()


def select_driver(name: str | None = None) -> Driver:
    """Pick the driver: ``"sqlite3"``, ``"sqlean"`` or ``"auto"`` (the default).

    ``auto`` takes the standard module when it can load extensions, else sqlean.
    The environment variable ``MEMKIT_SQLITE_DRIVER`` sets the default.
    """
    choice = (name or os.environ.get("MEMKIT_SQLITE_DRIVER") or "auto").lower()
    if choice not in ("auto", "sqlite3", "sqlean"):
        raise InvalidInputError(
            f"Invalid SQLite driver: {choice!r} (choose 'auto', 'sqlite3' or 'sqlean')"
        )
    if choice == "sqlite3" or (choice == "auto" and _stdlib_can_load()):
        return Driver("sqlite3", sqlite3, _stdlib_can_load())
    try:
        sqlean = importlib.import_module("sqlean")
    except ImportError as exc:
        if choice == "sqlean":
            raise ExtensionError("sqlean-py is not installed: pip install sqlean-py") from exc
        return Driver("sqlite3", sqlite3, False)
    _bind_none_quickly(sqlean)
    return Driver("sqlean", sqlean, True)


def _bind_none_quickly(module: ModuleType) -> None:
    """Bind ``None`` parameters through a registered adapter.

    sqlean's binding asks a ``None`` without an adapter for ``__adapt__`` and
    ``__conform__`` with ``hasattr``, which builds and drops an AttributeError
    each time: 2.2 µs per ``None`` (an audit row binds three), against 0.1 µs
    for an adapter found in the registry. The adapter returns ``None``, bound
    as NULL as before.
    """
    none = type(None)
    if (none, module.PrepareProtocol) not in module.adapters:
        module.register_adapter(none, _same)


def _same(value: None) -> None:
    return value


def load_extension(conn: Connection, name: str) -> str:
    """Load extension ``name`` ("vec" or "vss") into ``conn``; return its version.

    Extensions are loaded only from the installed Python packages, never from
    a path a caller supplies.
    """
    if name not in EXTENSIONS:
        raise InvalidInputError(f"Unknown extension: {name!r} (known: {', '.join(EXTENSIONS)})")
    if not hasattr(conn, "enable_load_extension"):
        raise ExtensionError(
            f"cannot load {name}: this SQLite driver was built without extension loading"
        )
    try:
        conn.enable_load_extension(True)
        try:
            if name == "vec":
                import sqlite_vec

                sqlite_vec.load(conn)
                return str(conn.execute("SELECT vec_version()").fetchone()[0])
            import sqlite_vss

            sqlite_vss.load(conn)
            return str(conn.execute("SELECT vss_version()").fetchone()[0])
        finally:
            conn.enable_load_extension(False)
    except ImportError as exc:
        package = "sqlite-vec" if name == "vec" else "sqlite-vss"
        raise ExtensionError(f"cannot load {name}: pip install {package}") from exc
    except Exception as exc:  # the driver's own OperationalError: missing .so, libs
        raise ExtensionError(f"cannot load {name}: {exc}") from exc
