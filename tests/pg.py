"""A real PostgreSQL 16 + pgvector for the tests: pgserver's, started once per session.

pgserver (a PyPI wheel) bundles the server binaries and runs the server on a
unix socket in its data folder; as root it runs it as the system user
``pgserver``, which it creates. Tests that use these fixtures skip, saying
why, when the extras are missing or the server cannot start.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The DSN of the session's server (its ``postgres`` database)."""
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver
        import psycopg  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the PostgreSQL tests need `pip install -e .[dev]` (pgserver, psycopg): {exc}")
    # Not under tmp_path_factory: any pytest run started meanwhile without --basetemp
    # makes /tmp/pytest-of-<user> private again (mode 0700), and a server that
    # pgserver runs as another user (as root it does) crashes at its next checkpoint.
    folder = Path(tempfile.mkdtemp(prefix="memkit-tests-pg-"))
    data = folder / "data"
    try:
        server = pgserver.get_server(data, cleanup_mode="delete")
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"pgserver could not start PostgreSQL in {data}: {exc}")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


def _admin(server: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql)


def database_uri(server: str, name: str) -> str:
    """The server's ``postgresql://`` URI with another database name."""
    parts = urllib.parse.urlsplit(server)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def _fresh(server: str, template: str = "template1") -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield database_uri(server, name)
    _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A new, empty database on the session's server, dropped after the test."""
    yield from _fresh(pg_server)


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> str:
    """A database migrated to the current schema, cloned by ``pg_memkit_dsn``."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    from abathur_memkit.engines.postgresql import schema

    name = f"tests_template_{uuid.uuid4().hex[:8]}"  # not the plugin's memkit_template_ names
    _admin(pg_server, f'CREATE DATABASE "{name}"')
    with psycopg.connect(make_conninfo(pg_server, dbname=name), autocommit=True) as conn:
        schema.migrate(conn)
    return name


@pytest.fixture
def pg_memkit_dsn(pg_server: str, pg_template: str) -> Iterator[str]:
    """A new database at the current memkit schema (a copy of ``pg_template``)."""
    yield from _fresh(pg_server, pg_template)

