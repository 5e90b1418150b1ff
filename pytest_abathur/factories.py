"""Fixture factories, context managers for custom setups, and the seed data.

Fixture factories return fixtures, like ``pytest_postgresql.factories``; assign
them to a name in a conftest.py or test module::

    from pytest_abathur import factories

    big_template = factories.memkit_template(seed=["initial", "tests/seeds/big.json"])
    big_db = factories.memkit_db(template="big_template")      # async, per test
    big_sync_db = factories.memkit_sync_db(template="big_template", seed={"memories": []})

With ``memkit_engine=postgresql`` (or ``memkit_dsn``) a template is a database on
the server and each test's database a clone of it (see ``postgres.py``).

Context managers, for databases outside fixtures::

    async def test_custom(tmp_path):
        async with factories.database(tmp_path / "a.db", seed="initial") as db:
            ...

    def test_sync(tmp_path):
        with factories.sync_database(tmp_path / "a.db", seed=["initial", "seeds.json"]) as db:
            ...

A seed is ``"initial"`` (the three ``app:abathur:...`` memories of seed 004 §3.1),
a path to a JSON seed file, a dict in that format, or a list of these. A seed
file is ``{"memories": [...], "sessions": [...]}`` (or just the memories list);
a memory is ``{"namespace", "key", "value", "memory_type", "created_by",
"metadata"?, "task_id"?}``, a session ``{"session_id", "app_name", "user_id",
"project_id"?, "initial_state"?}``. Everything goes through the services, so
seeded rows get their audit rows and validation like any other write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest

from .guard import QueryGuard, install_trace
from .postgres import (
    DB_CONFIG,
    DbConfig,
    PgTemplate,
    clone_pg_template,
    create_database,
    database_dsn,
    drop_database,
)
from .sync import SyncDatabase

__all__ = [
    "Seed",
    "apply_seed",
    "build_pg_template",
    "build_template",
    "clone_template",
    "database",
    "embedder",
    "load_seed",
    "memkit_db",
    "memkit_sync_db",
    "memkit_template",
    "sync_database",
]

T = TypeVar("T")

# The async fixtures need pytest-asyncio (pytest itself then reports them as
# unsupported); importing this plugin, and the sync fixtures, never need it.
try:
    import pytest_asyncio

    _async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    _async_fixture = pytest.fixture

# The memkit databases a test opened (latency counts VM steps on the last one),
# and the guard the memkit_query_guard marker started.
DBS = pytest.StashKey[list[Any]]()
MARKER_GUARD = pytest.StashKey[QueryGuard]()

Seed = str | os.PathLike[str] | Mapping[str, Any] | Sequence[Any]

_MEMORY_KEYS = {"namespace", "key", "value", "memory_type", "created_by", "metadata", "task_id"}
_SESSION_KEYS = {"session_id", "app_name", "user_id", "project_id", "initial_state"}


def load_seed(seed: Seed, base: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Normalise a seed to ``{"memories": [...], "sessions": [...]}``, checked."""
    if isinstance(seed, str) and seed == "initial":
        from abathur_memkit.seed import INITIAL_MEMORIES

        return {"memories": [dict(m) for m in INITIAL_MEMORIES], "sessions": []}
    if isinstance(seed, str | os.PathLike):
        path = Path(seed)
        if base is not None and not path.is_absolute():
            path = base / path
        try:
            data: Any = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"memkit seed file not found: {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"memkit seed file {path} is not valid JSON: {exc}") from None
        return _normalise(data, str(path))
    if isinstance(seed, Mapping):
        return _normalise(seed, "seed")
    if isinstance(seed, Sequence):
        merged: dict[str, list[dict[str, Any]]] = {"memories": [], "sessions": []}
        for part in seed:
            loaded = load_seed(part, base)
            merged["memories"] += loaded["memories"]
            merged["sessions"] += loaded["sessions"]
        return merged
    raise TypeError(f"not a memkit seed: {seed!r}")


def _normalise(data: Any, where: str) -> dict[str, list[dict[str, Any]]]:
    if isinstance(data, list):
        data = {"memories": data}
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: a seed is an object or a list of memories")
    unknown = set(data) - {"memories", "sessions"}
    if unknown:
        raise ValueError(f"{where}: unknown seed section(s) {sorted(unknown)}")
    out: dict[str, list[dict[str, Any]]] = {"memories": [], "sessions": []}
    for section, allowed, required in (
        ("memories", _MEMORY_KEYS, {"namespace", "key", "value", "memory_type", "created_by"}),
        ("sessions", _SESSION_KEYS, {"session_id", "app_name", "user_id"}),
    ):
        for i, item in enumerate(data.get(section, [])):
            if not isinstance(item, Mapping):
                raise ValueError(f"{where}: {section}[{i}] is not an object")
            extra, missing = set(item) - allowed, required - set(item)
            if extra or missing:
                raise ValueError(
                    f"{where}: {section}[{i}] "
                    + (f"has unknown keys {sorted(extra)} " if extra else "")
                    + (f"lacks {sorted(missing)}" if missing else "")
                )
            out[section].append(dict(item))
    return out


async def apply_seed(db: Any, seed: Seed, base: Path | None = None) -> None:
    """Write a seed through ``db.sessions`` and ``db.memory`` (sessions first)."""
    data = load_seed(seed, base)
    if data["sessions"]:
        sessions = _service(db, "sessions")
        for session in data["sessions"]:
            await sessions.create_session(**session)
    if data["memories"]:
        memory = _service(db, "memory")
        for item in data["memories"]:
            await memory.add_memory(**item)


def _service(db: Any, name: str) -> Any:
    try:  # the services are properties that import their module on first use
        return getattr(db, name)
    except (AttributeError, ImportError) as exc:
        raise RuntimeError(f"seeding needs abathur_memkit's db.{name} service: {exc}") from exc


def _run_in_thread(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a fresh loop in a worker thread.

    Safe to call whether or not an event loop is running in this thread.
    """

    def run() -> T:
        async def main() -> T:
            return await factory()

        return asyncio.run(main())

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="memkit-template") as pool:
        return pool.submit(run).result()


def build_template(
    path: Path,
    *,
    seed: Seed | None = None,
    base: Path | None = None,
    source: str | os.PathLike[str] | None = None,
) -> Path:
    """Create an initialized (optionally seeded) database file to clone tests from.

    With ``source``, start from a copy of that database (read through SQLite's
    backup API, so its WAL is included and the file itself is never written).
    The WAL is checkpointed into the main file and removed, so one file copy
    makes a complete, independent database.
    """
    from abathur_memkit import Database

    if source is not None:
        _copy_database(Path(source), path)

    async def build() -> str:
        async with Database(path) as db:
            if seed is not None:
                await apply_seed(db, seed, base)
            await db.checkpoint("TRUNCATE")
            return db.driver.name

    _run_in_thread(build)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists() and suffix == "-wal" and side.stat().st_size:
            raise RuntimeError(f"template {path} still has an uncheckpointed WAL")
        side.unlink(missing_ok=True)
    return path


def _copy_database(source: Path, dest: Path) -> None:
    if not source.is_file():
        raise FileNotFoundError(f"memkit template source not found: {source}")
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()


def clone_template(template: Path, dest: Path) -> Path:
    """Copy the template file to ``dest`` (a new, independent database)."""
    if dest.exists():
        raise FileExistsError(f"{dest} exists; memkit will not overwrite a database")
    shutil.copyfile(template, dest)
    return dest


def build_pg_template(
    server: str, *, seed: Seed | None = None, base: Path | None = None
) -> PgTemplate:
    """Create a database on ``server``, migrate it (and seed it) to clone tests from.

    Every connection to it is closed when this returns, as ``CREATE DATABASE
    ... TEMPLATE`` requires.
    """
    from abathur_memkit import Database

    template = PgTemplate(server, create_database(server, "memkit_template"))

    async def build() -> None:
        async with Database(template.dsn) as db:
            if seed is not None:
                await apply_seed(db, seed, base)

    try:
        _run_in_thread(build)
    except BaseException:
        drop_database(server, template.name)
        raise
    return template


def _session_template(
    request: pytest.FixtureRequest,
    seed: Seed | None = None,
    source: str | os.PathLike[str] | None = None,
) -> Path | PgTemplate:
    """The template a template fixture builds, on the configured engine.

    On PostgreSQL it is dropped when the fixture's scope ends.
    """
    base = request.config.rootpath
    if request.config.stash.get(DB_CONFIG, DbConfig()).engine == "postgresql":
        if source is not None:
            raise pytest.UsageError(
                f"{request.fixturename}: source= is a SQLite file; it cannot seed a "
                "PostgreSQL template (run this suite with memkit_engine=sqlite)"
            )
        server: str = request.getfixturevalue("memkit_pg_server")
        template = build_pg_template(server, seed=seed, base=base)
        request.addfinalizer(lambda: drop_database(server, template.name))
        return template
    factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    return build_template(
        factory.mktemp(f"memkit-{request.fixturename}") / "template.db",
        seed=seed,
        base=base,
        source=None if source is None else base / source,
    )


def fresh_database(
    request: pytest.FixtureRequest, template: Path | PgTemplate, dest: Path
) -> Path | str:
    """One test's database: a copy of the template file at ``dest``, or on
    PostgreSQL a clone of the template database (its DSN), dropped after the test."""
    if isinstance(template, PgTemplate):
        name = clone_pg_template(template)
        request.addfinalizer(lambda: drop_database(template.server, name))
        return database_dsn(template.server, name)
    return clone_template(template, dest)


def embedder(kind: str = "hashing", **kwargs: Any) -> Any:
    """An embedder by name (``abathur_memkit.embeddings.get_embedder``).

    ``"hashing"`` (the default) is deterministic and offline.
    """
    from abathur_memkit.embeddings import HashingEmbedder, get_embedder

    if kind == "hashing":
        return HashingEmbedder(**kwargs)
    if kwargs:
        raise TypeError("keyword arguments are supported for the hashing embedder only")
    return get_embedder(kind)


def _database_kwargs(embedder_value: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    if embedder_value is None:
        return kwargs
    import inspect

    from abathur_memkit import Database

    if "embedder" not in inspect.signature(Database).parameters:
        raise TypeError("this abathur_memkit.Database takes no embedder")
    # A name ("hashing", "default", ...) or an Embedder: Database resolves both,
    # and loads the vector extension its search needs.
    return {**kwargs, "embedder": embedder_value}


class database:
    """``async with database(path, seed=..., embedder=...) as db``: an initialized Database.

    ``path`` defaults to ``":memory:"``; other keyword arguments go to ``Database``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        seed: Seed | None = None,
        embedder: Any = None,
        **kwargs: Any,
    ) -> None:
        self.path = path
        self.seed = seed
        self.kwargs = _database_kwargs(embedder, kwargs)
        self.db: Any = None

    async def __aenter__(self) -> Any:
        from abathur_memkit import Database

        db = Database(self.path, **self.kwargs)
        await db.initialize()
        try:
            if self.seed is not None:
                await apply_seed(db, self.seed)
        except BaseException:
            await db.close()
            raise
        self.db = db
        return db

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None


def sync_database(
    path: str | os.PathLike[str] = ":memory:",
    *,
    seed: Seed | None = None,
    embedder: Any = None,
    **kwargs: Any,
) -> SyncDatabase:
    """A ``SyncDatabase`` (use it in ``with``, or call ``close()``)."""
    facade = SyncDatabase.open(path, **_database_kwargs(embedder, kwargs))
    if seed is not None:
        try:
            facade.run(apply_seed(facade.db, seed))
        except BaseException:
            facade.close()
            raise
    return facade


# -- fixture internals shared with the plugin's own fixtures ---------------------------


def _wants_guard(request: pytest.FixtureRequest) -> bool:
    return "memkit_query_guard" in request.fixturenames or bool(
        request.node.get_closest_marker("memkit_query_guard")
    )


async def _trace_for_guard(request: pytest.FixtureRequest, db: Any) -> None:
    """Install the guard's trace on ``db`` when the test asks for the guard."""
    if not _wants_guard(request):
        return
    if db.dialect != "sqlite":
        pytest.skip(
            "memkit_query_guard reads SQLite's trace of every statement, which PostgreSQL "
            "has not; on PostgreSQL check plans with memkit_plan.assert_no_full_scan"
        )
    await install_trace(db)


def _allowed_scans(node: pytest.Item | Any) -> dict[str, str]:
    allowed: dict[str, str] = {}
    for marker in node.iter_markers("memkit_allow_scan"):
        for table in marker.args:
            allowed.setdefault(str(table), str(marker.kwargs.get("reason", "")))
    return allowed


def _start_marker_guard(request: pytest.FixtureRequest, db: Any) -> None:
    if request.node.get_closest_marker("memkit_query_guard"):
        guard = QueryGuard(db, allow=_allowed_scans(request.node))
        guard.start()
        request.node.stash[MARKER_GUARD] = guard


def _stop_marker_guard(node: pytest.Item) -> None:
    guard = node.stash.get(MARKER_GUARD, None)
    if guard is not None:
        del node.stash[MARKER_GUARD]
        guard.stop()


def _marker_seeds(node: Any) -> list[Any]:
    """The ``memkit_seed`` markers' seeds, outermost (module) first.

    ``"initial"`` is dropped: the seeded template has those memories already.
    """
    seeds: list[Any] = []
    for marker in reversed(list(node.iter_markers("memkit_seed"))):
        seeds += [s for s in marker.args if s != "initial"]
    return seeds


# -- fixture factories --------------------------------------------------------------------


def memkit_template(
    seed: Seed | None = None,
    *,
    source: str | os.PathLike[str] | None = None,
    scope: Any = "session",
) -> Any:
    """A fixture returning the path of a template database, built once per ``scope``
    (on PostgreSQL a ``PgTemplate``: a template database, dropped when the scope ends).

    ``seed`` is applied to it (relative paths from the rootdir); ``source`` is a
    SQLite database file to start from (copied, then migrated; the file is not touched).
    Use the fixture's name as ``template=`` of :func:`memkit_db` / :func:`memkit_sync_db`.
    """

    @pytest.fixture(scope=scope)
    def template_fixture(request: pytest.FixtureRequest) -> Path | PgTemplate:
        if seed is not None:
            load_seed(seed, request.config.rootpath)  # fail on a bad seed before building
        return _session_template(request, seed, source)

    return template_fixture


def _fresh_copy(request: pytest.FixtureRequest, template: str) -> Path | str:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return fresh_database(
        request, request.getfixturevalue(template), tmp_path / f"{request.fixturename}.db"
    )


def memkit_db(template: str = "memkit_template", seed: Seed | None = None) -> Any:
    """An async fixture: a fresh ``Database`` copied from the ``template`` fixture's
    file for each test (on PostgreSQL a database cloned from the template database,
    dropped after the test), plus ``seed`` (relative paths from the rootdir), closed
    at teardown.

    ``template`` names a fixture returning a database path (``memkit_template``,
    ``memkit_seeded_template``, or one from :func:`memkit_template`).
    """

    @_async_fixture
    async def db_fixture(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
        from abathur_memkit import Database

        db = Database(_fresh_copy(request, template))
        await db.initialize()
        try:
            await _trace_for_guard(request, db)
            request.node.stash.setdefault(DBS, []).append(db)
            if seed is not None:
                await apply_seed(db, seed, request.config.rootpath)
            yield db
        finally:
            await db.close()

    return db_fixture


def memkit_sync_db(template: str = "memkit_template", seed: Seed | None = None) -> Any:
    """:func:`memkit_db` for sync tests: a :class:`SyncDatabase` (no pytest-asyncio needed)."""

    @pytest.fixture
    def sync_db_fixture(request: pytest.FixtureRequest) -> Iterator[SyncDatabase]:
        facade = SyncDatabase.open(_fresh_copy(request, template))
        try:
            request.node.stash.setdefault(DBS, []).append(facade.db)
            if seed is not None:
                facade.run(apply_seed(facade.db, seed, request.config.rootpath))
            yield facade
        finally:
            facade.close()

    return sync_db_fixture
