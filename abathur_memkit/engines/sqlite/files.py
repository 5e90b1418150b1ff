"""Database files: what a file is, opening it read-only, and copying it atomically.

Nothing here writes to a database it inspects: files are opened with SQLite's
``mode=ro``. Copies (backups, restores) are made in a hidden directory beside
the destination, checked, synced and renamed over it, so a copy killed
half-way leaves nothing at the destination.
"""

from __future__ import annotations

import glob
import gzip
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ...errors import DatabaseFileError, InvalidInputError
from . import schema
from .driver import Driver, select_driver

__all__ = [
    "check_copy",
    "check_destination",
    "connect_existing",
    "connect_read_only",
    "describe",
    "gzip_file",
    "inspect",
    "journal_mode",
    "read_only_location",
    "remove_empty_log",
    "require_current",
    "restore",
    "write_atomically",
]

_TEMP_SUFFIX = ".memkit-tmp"


def read_only_location(path: str) -> bool:
    """Whether nothing can be written beside ``path`` (a read-only mount, say)."""
    parent = os.path.dirname(os.path.abspath(path))
    return not os.access(parent, os.W_OK) or (
        os.path.exists(path) and not os.access(path, os.W_OK))


def _wal_without_log(path: str) -> bool:
    """A WAL-mode file with no ``-wal`` beside it: the main file holds every page."""
    return not os.path.exists(f"{path}-wal") and journal_mode(path) == "wal"


def has_side_files(path: str) -> bool:
    """Whether a ``-wal`` or ``-shm`` lies beside ``path``."""
    return os.path.exists(f"{path}-wal") or os.path.exists(f"{path}-shm")


def remove_empty_log(driver: Driver, path: str) -> None:
    """Remove the empty ``-wal`` and the ``-shm`` read-only connections left beside ``path``.

    SQLite deletes them when the last connection closes, but only if that
    connection may write; read-only ones leave them behind. So one writable
    connection reads the header and closes: SQLite deletes the files only when
    no other connection has the database open, and an empty ``-wal`` holds no
    page to copy, so the database file is not touched. Any failure (a file
    this user may not write, say) leaves things as they are.
    """
    try:
        if os.path.getsize(f"{path}-wal") != 0:
            return
        conn = connect_existing(driver, path)
    except (OSError, driver.module.Error):
        return
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except driver.module.Error:
        pass
    finally:
        conn.close()


def journal_mode(path: str) -> str:
    """The journal mode the file's header records: ``wal`` or ``delete``."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return "unknown"
    return "wal" if len(header) == 20 and header[18] == 2 else "delete"


def connect_existing(driver: Driver, path: str) -> sqlite3.Connection:
    """A ``mode=rw`` connection to ``path``: a missing file is an error, never created."""
    return driver.connect(f"{Path(path).absolute().as_uri()}?mode=rw", uri=True)


def connect_read_only(driver: Driver, path: str, *, probe: bool = False) -> sqlite3.Connection:
    """A ``mode=ro`` connection to ``path``.

    Reading a WAL-mode file needs its ``-shm``, which SQLite creates when it can.
    Where it cannot (a read-only location) and no ``-wal`` exists, no writer can
    be using the file, so it is opened ``immutable``. A ``probe`` (a quick look
    at the schema) is immutable whenever no ``-wal`` exists, so looking at
    another application's WAL file leaves no ``-wal``/``-shm`` behind.
    """
    uri = f"{Path(path).absolute().as_uri()}?mode=ro"
    if _wal_without_log(path) and (probe or read_only_location(path)):
        uri += "&immutable=1"
    return driver.connect(uri, uri=True)


def inspect(
    path: str | os.PathLike[str], driver: Driver | None = None
) -> tuple[str, int, list[str]]:
    """``schema.classify`` of the file at ``path``, read-only; raises for a non-SQLite file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise DatabaseFileError(f"{path} is a directory, not a memkit database")
    if not os.path.exists(path):
        raise DatabaseFileError(f"no database at {path} (create one with: memkit init {path})")
    driver = driver or select_driver()
    try:
        conn = connect_read_only(driver, path, probe=True)
    except driver.module.Error as exc:
        raise DatabaseFileError(f"cannot open {path}: {exc}") from exc
    try:
        return schema.classify(conn)
    except (driver.module.DatabaseError, UnicodeDecodeError) as exc:
        journal = Path(f"{path}-journal")
        if journal.exists() and journal.stat().st_size > 0:
            raise DatabaseFileError(
                f"{path} has a hot journal ({journal.name}): a write to it was interrupted "
                "(a killed copy?), and reading it would mean rolling that back") from exc
        raise DatabaseFileError(f"{path} is not a usable SQLite database: {exc}") from exc
    finally:
        conn.close()


def describe(path: str, kind: str, version: int, tables: list[str]) -> str | None:
    """One line saying why ``path`` is not an up-to-date memkit database (None if it is)."""
    shown = ", ".join(tables[:8]) + (", ..." if len(tables) > 8 else "")
    latest = schema.schema_version()
    return {
        "current": None,
        "empty": f"{path} is an empty SQLite database, not a memkit database (never "
                 f"initialised); create one with: memkit init {path}",
        "foreign": f"{path} is a SQLite database but not a memkit database (tables: {shown}); "
                   "create one with: memkit init NEW_FILE",
        "legacy": f"{path} is a pre-memory Abathur database (tables: {shown}); "
                  f"upgrade it with: memkit migrate {path}",
        "outdated": f"{path} is a memkit database at schema version {version}, this memkit "
                    f"uses {latest}; upgrade it with: memkit migrate {path}",
        "newer": f"{path} is a memkit database at schema version {version}, newer than this "
                 f"memkit ({latest}); upgrade abathur-memkit to use it",
    }[kind]


def require_current(path: str, driver: Driver | None = None) -> None:
    """Raise ``DatabaseFileError`` unless ``path`` is an up-to-date memkit database."""
    problem = describe(path, *inspect(path, driver))
    if problem is not None:
        raise DatabaseFileError(problem)


# -- atomic copies ---------------------------------------------------------------


def _work_dir(target: Path) -> Path:
    # Hidden, beside the destination (same filesystem: the rename is atomic) and
    # named after it and this process: a copy killed with SIGKILL leaves nothing
    # anybody mistakes for the database, and the next copy to it removes it.
    return target.with_name(f".{target.name}.{os.getpid()}{_TEMP_SUFFIX}")


def _remove_stale(target: Path) -> None:
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*{_TEMP_SUFFIX}"):
        pid = stale.name[len(target.name) + 2:-len(_TEMP_SUFFIX)]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(target: Path, fill: Callable[[Path], Path]) -> None:
    """``fill(work_dir)`` makes the file; it is synced and renamed to ``target``.

    ``work_dir`` is a new directory beside ``target``, removed afterwards.
    """
    work = _work_dir(target)
    try:
        _remove_stale(target)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        made = fill(work)
        _fsync(made)
        os.replace(made, target)
        _fsync(target.parent)  # the rename itself survives a power cut
    except OSError as exc:
        raise DatabaseFileError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)


def gzip_file(source: Path) -> Path:
    """``source`` compressed to ``source.gz`` (beside it); returns the new path."""
    dest = Path(f"{source}.gz")
    with open(source, "rb") as src, gzip.open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dest


def check_copy(driver: Driver, path: Path, what: str) -> None:
    """A copy must pass ``quick_check`` and be a memkit database before it lands."""
    conn = driver.connect(str(path))
    try:
        check = str(conn.execute("PRAGMA quick_check").fetchone()[0])
        kind, version, tables = schema.classify(conn)
    except (driver.module.DatabaseError, UnicodeDecodeError) as exc:
        raise DatabaseFileError(f"{what} is not a usable SQLite database: {exc}") from exc
    finally:
        conn.close()
    if check != "ok":
        raise DatabaseFileError(f"{what} fails quick_check: {check}")
    if kind not in ("current", "outdated"):
        raise DatabaseFileError(describe(what, kind, version, tables) or what)


# -- restore ---------------------------------------------------------------------


def check_destination(target: Path, overwrite: bool, driver: Driver, what: str) -> None:
    """Refuse a destination that is missing its directory, exists (unless
    ``overwrite``), is in use, or has a stray ``-wal`` that would be applied
    to the new file."""
    if not target.parent.is_dir():
        raise InvalidInputError(f"{what} directory does not exist: {target.parent}")
    if target.is_dir():
        raise InvalidInputError(f"{what} destination is a directory: {target}")
    if target.exists():
        if not overwrite:
            raise InvalidInputError(f"{what} destination exists: {target} (pass --overwrite, "
                                    "or overwrite=True, to replace it)")
        _claim(target, driver)
        return
    for sidecar in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        if sidecar.exists():
            raise InvalidInputError(f"{sidecar} exists without {target.name} (a database's "
                                    "leftovers); remove it first")


def _claim(dest: Path, driver: Driver) -> None:
    """Make sure no connection uses ``dest``, and fold away its ``-wal``/``-shm``.

    Leaving WAL mode needs every other connection closed, so it fails at once
    (busy_timeout 0) on a live database; on an idle one it checkpoints any
    ``-wal`` into the file about to be replaced, so no stale WAL is ever applied
    to the restored copy.
    """
    conn = driver.connect(str(dest))
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA journal_mode = DELETE").fetchone()
    except driver.module.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise DatabaseFileError(
                f"{dest} is in use by another process (a live database); stop it first") from exc
        raise DatabaseFileError(f"cannot replace {dest}: {exc}") from exc
    except driver.module.DatabaseError:
        pass  # not a SQLite file: nothing can be using it as a database
    finally:
        conn.close()


def restore(backup: str | os.PathLike[str], dest: str | os.PathLike[str], *,
            overwrite: bool = False, driver: Driver | None = None) -> Path:
    """Copy ``backup`` (a memkit database file, plain or ``.gz``) to ``dest`` atomically.

    The copy must pass ``quick_check`` and be a memkit database before it is
    renamed into place. ``dest`` is never a live database: an existing file
    needs ``overwrite=True`` and no other connection may have it open.
    """
    driver = driver or select_driver()
    source, target = Path(os.fspath(backup)), Path(os.fspath(dest))
    if not source.is_file():
        raise InvalidInputError(f"no backup at {source}")
    if target.exists() and os.path.samefile(source, target):
        raise InvalidInputError(f"Restore destination is the backup itself: {target}")
    check_destination(target, overwrite, driver, "Restore")

    def fill(work: Path) -> Path:
        temp = work / "restore.db"
        if source.suffix == ".gz":
            try:
                with gzip.open(source, "rb") as src, open(temp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (OSError, EOFError) as exc:
                raise DatabaseFileError(f"{source} is not a readable gzip file: {exc}") from exc
        else:
            _copy_database(driver, source, temp)
        check_copy(driver, temp, str(source))
        return temp

    write_atomically(target, fill)
    return target


def _copy_database(driver: Driver, source: Path, temp: Path) -> None:
    """SQLite's backup API from a read-only connection (a ``-wal`` is included)."""
    try:
        src = connect_read_only(driver, str(source))
    except driver.module.Error as exc:
        raise DatabaseFileError(f"cannot open {source}: {exc}") from exc
    try:
        dst = driver.connect(str(temp))
        try:
            src.backup(dst)
        finally:
            dst.close()
    except (driver.module.DatabaseError, UnicodeDecodeError) as exc:
        raise DatabaseFileError(f"{source} is not a usable SQLite database: {exc}") from exc
    finally:
        src.close()

