"""Where analysis reads from: databases opened read-only, and notebook inputs.

Analysis functions that read a database take a *source*: a path, a
PostgreSQL DSN (``postgresql://…``), or a file-backed or PostgreSQL
:class:`~abathur_memkit.Database` (its database is opened again, read-only,
with the same driver; on PostgreSQL in one read-only snapshot). Reading
through a separate connection works the same in a script and in a Jupyter
cell (whose event loop is already running), never blocks the Database's own
connections, and in WAL mode sees every committed write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..engines.sqlite.driver import select_driver
from ..errors import DatabaseFileError, InvalidInputError

if TYPE_CHECKING:
    from ..database import Database

__all__ = [
    "DATA_ENV",
    "NotebookInputs",
    "Source",
    "connect_readonly",
    "find_database",
    "notebook_inputs",
    "source_dialect",
]

#: A database file or PostgreSQL DSN, or a Database that is not in memory.
Source = Union["Database", str, "os.PathLike[str]"]

#: Environment variable naming the notebooks' input directory.
DATA_ENV = "MEMKIT_DATA"

#: The database file of an input directory: what ``memkit demo`` writes, or the
#: shipped sample's name (``*.db`` is git-ignored in this repository).
DATABASE_NAMES = ("agents.db", "agents.sqlite3")


def find_database(directory: Path) -> Path | None:
    """The input directory's database file, or None."""
    return next((directory / n for n in DATABASE_NAMES if (directory / n).is_file()), None)


def _dsn(source: Source) -> str | None:
    """The PostgreSQL DSN ``source`` names, or None (a SQLite source)."""
    from ..database import Database, is_dsn

    if isinstance(source, Database):
        return source.path if source.dialect == "postgresql" else None
    return source if is_dsn(source) else None


def source_dialect(source: Source) -> str:
    """The SQL dialect of ``source``: "sqlite" or "postgresql"."""
    return "sqlite" if _dsn(source) is None else "postgresql"


def _locate(source: Source) -> tuple[Path, str | None]:
    """The file behind ``source`` and the driver name to open it with."""
    from ..database import Database

    if isinstance(source, Database):
        if source.in_memory:
            raise InvalidInputError(
                "this analysis reads the database file, and an in-memory Database has none: "
                "copy it to a file first (await db.backup('copy.db'))"
            )
        return Path(source.path), source.driver.name
    if isinstance(source, str | os.PathLike):
        return Path(os.fspath(source)), None
    if source is None:
        raise InvalidInputError(
            "no database to read: set the notebook's db parameter to a memkit database file")
    raise InvalidInputError(
        f"Invalid source: expected a database path or a Database, got {type(source).__name__}"
    )


@contextmanager
def connect_readonly(source: Source) -> Iterator[Any]:
    """A read-only DB-API connection to ``source``'s database, closed on exit.

    On PostgreSQL it is an ``engines.interface.Connection`` (SQLite's ``?``
    placeholders, rows by name and position) in one read-only snapshot.
    """
    dsn = _dsn(source)
    if dsn is not None:
        with _connect_postgresql(dsn) as conn:
            yield conn
        return
    path, driver_name = _locate(source)
    if not path.is_file():
        raise DatabaseFileError(f"no database at {path}")
    driver = select_driver(driver_name)
    conn = driver.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def _connect_postgresql(dsn: str) -> Iterator[Any]:
    import psycopg

    from ..engines.postgresql.connection import PgConnection, configure, row_factory

    try:
        raw = psycopg.connect(dsn, autocommit=True, row_factory=row_factory)
    except psycopg.Error as exc:
        from ..transfer import describe_target

        raise DatabaseFileError(f"cannot connect to {describe_target(dsn)}: {exc}") from exc
    try:
        configure(raw)
        raw.execute("SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'")
        raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield PgConnection(raw)
    finally:
        raw.close()


@dataclass(frozen=True)
class NotebookInputs:
    """What a notebook analyses: a database (file or DSN) and benchmark JSON files.

    ``database`` is None when only benchmark files were given (the
    performance notebook needs nothing else).
    """

    directory: Path
    database: Path | str | None
    benchmarks: list[Path] = field(default_factory=list)
    origin: str = "parameter"

    def describe(self) -> str:
        bench = f"{len(self.benchmarks)} benchmark file(s)"
        if isinstance(self.database, str):
            from ..transfer import describe_target

            database = describe_target(self.database)
        else:
            database = self.database.name if self.database is not None else "no database"
        return f"{self.directory} ({self.origin}): {database}, {bench}"


def _bench_files(path: Path) -> list[Path]:
    """The ``*.json`` files of a benchmark directory, or the one file given."""
    if path.is_file():
        return [path.resolve()]
    if path.is_dir():
        return [p.resolve() for p in sorted(path.glob("*.json"))]
    raise InvalidInputError(f"Invalid bench: {path} does not exist (a directory of JSON files)")


def _database(path: Path, origin: str) -> Path:
    """The database file ``path`` names: the file itself, or a data directory's database."""
    if path.is_file():
        return path.resolve()
    if not path.is_dir():
        raise InvalidInputError(f"Invalid {origin}: {path} does not exist")
    database = find_database(path)
    if database is None:
        raise InvalidInputError(
            f"Invalid {origin}: {path} is a directory holding no {' or '.join(DATABASE_NAMES)} "
            "(pass the database file itself)")
    return database.resolve()


def _inputs(path: Path, origin: str, bench: Path | None = None) -> NotebookInputs:
    database = _database(path, origin)
    if bench is None:  # a data directory's bench/, as memkit demo writes it
        bench = database.parent / "bench"
        benchmarks = _bench_files(bench) if bench.is_dir() else []
    else:
        benchmarks = _bench_files(bench)
    return NotebookInputs(database.parent, database, benchmarks, origin)


def _sample_dirs() -> list[Path]:
    repo = Path(__file__).resolve().parent.parent.parent / "notebooks" / "data"
    packaged = Path(__file__).resolve().parent.parent / "notebooks" / "data"
    return [Path("data"), Path("notebooks") / "data", packaged, repo]


def _given(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None or os.fspath(value) == "" else Path(os.fspath(value))


def notebook_inputs(
    db: str | os.PathLike[str] | None = None,
    bench: str | os.PathLike[str] | None = None,
) -> NotebookInputs:
    """Resolve what a notebook reads: its ``db`` and ``bench`` parameters.

    ``db`` is a memkit database file of any name, a directory holding
    ``agents.db`` (or ``agents.sqlite3``) as ``memkit demo`` writes it, or a
    PostgreSQL DSN (``postgresql://…``).
    ``bench`` is a directory of benchmark JSON files (or one file); by default
    the ``bench/`` directory beside the database. With only ``bench`` given
    there is no database (``database`` is None). With neither, in order:
    ``$MEMKIT_DATA``; the output of ``memkit demo`` (``./memkit-demo`` or
    ``../memkit-demo``); else the sample shipped in ``notebooks/data/``.
    """
    from ..database import is_dsn

    if is_dsn(db):
        benchmarks = [] if _given(bench) is None else _bench_files(Path(os.fspath(bench or "")))
        return NotebookInputs(Path.cwd(), db, benchmarks, "db")
    db_path, bench_path = _given(db), _given(bench)
    if db_path is not None:
        return _inputs(db_path, "db", bench_path)
    if bench_path is not None:
        directory = bench_path if bench_path.is_dir() else bench_path.parent
        return NotebookInputs(directory.resolve(), None, _bench_files(bench_path), "bench")
    env = os.environ.get(DATA_ENV)
    if env:
        return _inputs(Path(env), f"${DATA_ENV}")
    for demo in (Path("memkit-demo"), Path("..") / "memkit-demo"):
        if find_database(demo) is not None:
            return _inputs(demo, "memkit demo output")
    for sample in _sample_dirs():
        if find_database(sample) is not None:
            return _inputs(sample, "sample data")
    raise InvalidInputError(
        "no notebook inputs found: set the db parameter to a memkit database file "
        "(memkit report --db PATH), run `memkit demo`, or set $MEMKIT_DATA"
    )
