"""The fixtures' PostgreSQL side: which engine, which server, and one database per test.

As pytest-postgresql does, a template database is migrated once per session
and each test gets a new database cloned from it (``CREATE DATABASE ...
TEMPLATE``, a file-level copy: no DDL per test), dropped after the test.
The server is the ``memkit_dsn`` option's, or one the plugin starts with
``pgserver`` (a wheel bundling PostgreSQL and pgvector).

Imports nothing heavy at load: psycopg and pgserver load when a PostgreSQL
fixture runs.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "DB_CONFIG",
    "ENGINES",
    "DbConfig",
    "PgTemplate",
    "clone_pg_template",
    "create_database",
    "database_dsn",
    "drop_database",
    "start_server",
]

ENGINES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class DbConfig:
    """Where the memkit fixtures put their databases (ini + CLI options)."""

    #: ``"sqlite"`` (files in ``tmp_path``) or ``"postgresql"``.
    engine: str = "sqlite"
    #: The PostgreSQL server to create databases on (a ``postgresql://`` URI);
    #: None on PostgreSQL: the plugin starts one with pgserver.
    dsn: str | None = None

    @classmethod
    def from_options(cls, engine: str, dsn: str) -> DbConfig:
        """Check the option values; a DSN alone means PostgreSQL."""
        engine = engine or ("postgresql" if dsn else "sqlite")
        if engine not in ENGINES:
            raise pytest.UsageError(
                f"memkit_engine must be one of {', '.join(ENGINES)}, got {engine!r}"
            )
        if dsn and not dsn.startswith(("postgresql://", "postgres://")):
            raise pytest.UsageError(
                f"memkit_dsn must be a postgresql:// (or postgres://) URI of a server, got {dsn!r}"
            )
        return cls(engine=engine, dsn=dsn or None)


DB_CONFIG = pytest.StashKey[DbConfig]()


@dataclass(frozen=True)
class PgTemplate:
    """A migrated (and maybe seeded) database on ``server`` that tests are cloned from."""

    server: str
    name: str

    @property
    def dsn(self) -> str:
        return database_dsn(self.server, self.name)


def database_dsn(server: str, name: str) -> str:
    """The server's URI naming database ``name`` (host, user, options kept)."""
    parts = urllib.parse.urlsplit(server)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{urllib.parse.quote(name)}"))


def _admin(server: str, sql: str) -> None:
    # CREATE / DROP DATABASE cannot run inside a transaction: autocommit.
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql)


def create_database(server: str, prefix: str, template: str | None = None) -> str:
    """Create a new database (a copy of ``template``, if given) and return its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    _admin(server, f'CREATE DATABASE "{name}"{copy}')
    return name


def clone_pg_template(template: PgTemplate) -> str:
    """A new database cloned from ``template``; returns its name."""
    return create_database(template.server, "memkit_test", template.name)


def drop_database(server: str, name: str) -> None:
    """Drop ``name``, closing whatever connections a test left open."""
    _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_server() -> Iterator[str]:
    """Start a throwaway server with pgserver and yield its URI; skip, saying why, if it cannot."""
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError as exc:
        pytest.skip(
            "memkit_engine=postgresql without memkit_dsn starts a server with pgserver, "
            f"which is not installed (pip install pgserver), or give --memkit-dsn: {exc}"
        )
    # Not under tmp_path_factory: a pytest run started meanwhile without --basetemp
    # makes /tmp/pytest-of-<user> private again (mode 0700), and a server that
    # pgserver runs as another user (as root it does) crashes at its next checkpoint.
    folder = Path(tempfile.mkdtemp(prefix="memkit-pg-"))
    try:
        try:
            server = get_server(folder / "data", cleanup_mode="delete")
        except Exception as exc:  # any failure to start is a reason to skip
            pytest.skip(f"pgserver could not start PostgreSQL in {folder}: {exc}")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
