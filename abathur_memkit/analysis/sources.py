"""Where analysis reads from: database files opened read-only, and notebook inputs.

Analysis functions that read a database take a *source*: a path, or a
file-backed :class:`~abathur_memkit.Database` (its file is opened again,
read-only, with the same driver). Reading through a separate connection
works the same in a script and in a Jupyter cell (whose event loop is already
running), never blocks the Database's own connections, and in WAL mode sees
every committed write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..driver import select_driver
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
]

#: A database file, or a file-backed Database.
Source = Union["Database", str, "os.PathLike[str]"]

#: Environment variable naming the notebooks' input directory.
DATA_ENV = "MEMKIT_DATA"

#: The database file of an input directory: what ``memkit demo`` writes, or the
#: shipped sample's name (``*.db`` is git-ignored in this repository).
DATABASE_NAMES = ("agents.db", "agents.sqlite3")


def find_database(directory: Path) -> Path | None:
    """The input directory's database file, or None."""
    return next((directory / n for n in DATABASE_NAMES if (directory / n).is_file()), None)


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
    raise InvalidInputError(
        f"Invalid source: expected a database path or a Database, got {type(source).__name__}"
    )


@contextmanager
def connect_readonly(source: Source) -> Iterator[Any]:
    """A read-only DB-API connection to ``source``'s file, closed on exit."""
    path, driver_name = _locate(source)
    if not path.is_file():
        raise DatabaseFileError(f"no database at {path}")
    driver = select_driver(driver_name)
    conn = driver.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class NotebookInputs:
    """What a notebook analyses: a database and benchmark JSON files."""

    directory: Path
    database: Path
    benchmarks: list[Path] = field(default_factory=list)
    origin: str = "parameter"

    def describe(self) -> str:
        bench = f"{len(self.benchmarks)} benchmark file(s)"
        return f"{self.directory} ({self.origin}): {self.database.name}, {bench}"


def _inputs(directory: Path, origin: str) -> NotebookInputs:
    database = find_database(directory)
    if database is None:
        raise InvalidInputError(
            f"Invalid data directory: {directory} holds no {' or '.join(DATABASE_NAMES)}")
    bench_dir = directory / "bench"
    benchmarks = sorted(bench_dir.glob("*.json")) if bench_dir.is_dir() else []
    return NotebookInputs(directory.resolve(), database.resolve(),
                          [p.resolve() for p in benchmarks], origin)


def _sample_dirs() -> list[Path]:
    repo = Path(__file__).resolve().parent.parent.parent / "notebooks" / "data"
    packaged = Path(__file__).resolve().parent.parent / "notebooks" / "data"
    return [Path("data"), Path("notebooks") / "data", packaged, repo]


def notebook_inputs(data_dir: str | os.PathLike[str] | None = None) -> NotebookInputs:
    """Resolve a notebook's input directory.

    In order: ``data_dir`` when given; ``$MEMKIT_DATA``; the output of
    ``memkit demo`` (``./memkit-demo`` or ``../memkit-demo``, when it holds a
    database); else the sample shipped in ``notebooks/data/``. The directory
    holds ``agents.db`` (or ``agents.sqlite3``) and ``bench/*.json``.
    """
    if data_dir is not None and os.fspath(data_dir) != "":
        chosen = Path(os.fspath(data_dir))
        if not chosen.is_dir():
            raise InvalidInputError(f"Invalid data directory: {chosen} does not exist")
        return _inputs(chosen, "parameter")
    env = os.environ.get(DATA_ENV)
    if env:
        chosen = Path(env)
        if not chosen.is_dir():
            raise InvalidInputError(f"Invalid ${DATA_ENV}: {chosen} does not exist")
        return _inputs(chosen, f"${DATA_ENV}")
    for demo in (Path("memkit-demo"), Path("..") / "memkit-demo"):
        if find_database(demo) is not None:
            return _inputs(demo, "memkit demo output")
    for sample in _sample_dirs():
        if find_database(sample) is not None:
            return _inputs(sample, "sample data")
    raise InvalidInputError(
        "no notebook inputs found: run `memkit demo`, or set $MEMKIT_DATA to a directory "
        "holding agents.db and bench/*.json"
    )
