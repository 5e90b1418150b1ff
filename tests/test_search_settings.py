"""The search subsystem: services built on a store and one SearchSettings, no facade."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from abathur_memkit import Database, InvalidInputError, MemkitError
from abathur_memkit.engines.interface import Connection, Store
from abathur_memkit.search import SearchService, SearchSettings
from abathur_memkit.search.documents import DocumentIndexService, EmbedSummary

T = TypeVar("T")
SEARCH = Path(__file__).parent.parent / "abathur_memkit" / "search"


class PlainStore:
    """A ``Store`` and nothing else: no search settings, no other services."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.dialect = db.dialect

    async def read(self, fn: Callable[[Connection], T], *, snapshot: bool = False) -> T:
        return await self._db.read(fn, snapshot=snapshot)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        return await self._db.write(fn)


async def test_the_database_hands_one_settings_and_embedder_to_both_services(
    db_target: str | Path,
) -> None:
    async with Database(db_target, embedder="hashing") as db:
        settings = db.search_settings
        assert db.documents.settings is settings and db.search.settings is settings
        assert db.search.documents is db.documents
        assert db.embedder is settings.embedder is db.search.settings.embedder
        assert db.has_embedder and settings.vectors_enabled
        assert settings.vector_backend == {"sqlite": "vec", "postgresql": "pgvector"}[db.dialect]


async def test_services_work_on_a_plain_store_with_their_settings(
    db_target: str | Path,
) -> None:
    async with Database(db_target, embedder="hashing") as db:
        store = PlainStore(db)
        assert isinstance(store, Store) and not hasattr(store, "search_settings")
        settings = SearchSettings("hashing", db.vector_backend, db.extensions)
        docs = DocumentIndexService(store, settings)
        search = SearchService(store, settings, docs)
        await docs.index_document("a.md", "A", "# A\n\nquantum gravity waves\n")
        assert (await docs.embed_pending()).synced == ["a.md"]
        hits = await search.hybrid("quantum gravity", k=1, source="documents")
        assert [h.file_path for h in hits] == ["a.md"]
        assert settings.embedder is not db.embedder  # its own, made from its own spec


async def test_reembed_goes_through_the_document_index_it_was_given(
    db_target: str | Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Database(db_target, embedder="hashing") as db:
        docs = DocumentIndexService(db, embed_group=60)
        calls: list[dict[str, Any]] = []

        async def spy(**kwargs: Any) -> EmbedSummary:
            calls.append(kwargs)
            return EmbedSummary(embedded_chunks=7)

        monkeypatch.setattr(docs, "embed_pending", spy)
        counts = await SearchService(db, documents=docs).reembed(progress=False)
        assert calls == [{"progress": False, "retry_failed": True}]
        assert counts["chunks"] == 7


@pytest.mark.parametrize("service", [DocumentIndexService, SearchService])
async def test_a_store_without_settings_needs_them_passed(
    memdb: Database, service: Callable[[Store], object]
) -> None:
    with pytest.raises(InvalidInputError, match="needs settings"):
        service(PlainStore(memdb))


def test_no_embedder_is_refused_where_the_settings_are() -> None:
    settings = SearchSettings()
    assert not settings.has_embedder and not settings.vectors_enabled
    with pytest.raises(MemkitError, match="no embedder configured"):
        settings.embedder  # noqa: B018


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports (relative ones resolved), TYPE_CHECKING blocks included."""
    found: set[str] = set()
    package = "abathur_memkit.search"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted(SEARCH.glob("*.py")), ids=lambda p: p.name)
def test_search_modules_never_import_the_facade(path: Path) -> None:
    assert "abathur_memkit.database" not in _imports(path)


@pytest.mark.parametrize("name", ["documents.py", "vectors.py", "settings.py", "watch.py"])
def test_only_search_itself_imports_the_search_service(name: str) -> None:
    assert "abathur_memkit.search.service" not in _imports(SEARCH / name)


def test_the_facade_builds_its_search_settings_without_numpy(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['numpy'] = None\n"
        "from abathur_memkit import Database\n"
        "db = Database('a.db', vector_backend='vss')\n"
        "print(db.search_settings.vector_backend, db.has_embedder)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert out.split() == ["vss", "False"]


async def test_use_embedder_chooses_the_embedder_of_an_open_database(tmp_path: Path) -> None:
    async with Database(tmp_path / "a.db") as db:
        assert not db.has_embedder and "vec" not in db.extensions
        before = db.search
        await db.use_embedder("hashing")
        assert db.has_embedder and db.embedder.name.startswith("hashing")
        assert db.search is not before and "vec" in db.extensions
        await db.documents.index_document("a.md", "A", "# A\n\na note on checkpoints\n", "plan")
        await db.documents.embed_pending(progress=False)
        assert (await db.search.semantic("checkpoints", 1))[0].title == "A"


def test_search_from_the_cli_opens_the_database_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from abathur_memkit.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\na note on checkpoints\n", "utf-8")
    path = str(tmp_path / "a.db")
    assert main(["index", path, str(docs), "--embedder", "hashing", "--no-progress"]) == 0
    opened: list[object] = []
    init = Database.__init__

    def counting(self: Database, *args: Any, **kwargs: Any) -> None:
        opened.append(args[0] if args else kwargs.get("path"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(Database, "__init__", counting)
    assert main(["search", path, "checkpoints", "--mode", "semantic", "--json"]) == 0
    assert opened == [path]  # the stored index's model is read on the same Database
