"""Files: corrupt or foreign database files, document sync path safety, embeddings.

A damaged or foreign file given as the database must give a ``MemkitError``
(``DatabaseFileError``) or a failed ``integrity_check`` — never a driver
traceback — through the API and the CLI, and must not be "repaired" by
memkit writing over it. Document sync must stay inside its root, skip what it
cannot read with a reason, and never delete or change a source file.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reliability_support import PROFILE, TRIED

from abathur_memkit import Database, DatabaseFileError, InvalidInputError, MemkitError, MemoryItem
from abathur_memkit.cli import main
from abathur_memkit.embeddings import check_vectors

# -- corrupt and foreign database files -----------------------------------------------


@pytest.fixture(scope="module")
def sound_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpointed database of a few MB to damage in copies."""
    import asyncio

    path = tmp_path_factory.mktemp("sound") / "sound.db"

    async def build() -> None:
        async with Database(path) as db:
            await db.sessions.create_session("s1", "app", "alice")
            for i in range(20):
                await db.sessions.append_event("s1", {"i": i}, {"i": i})
            await db.memory.add_memories(
                [MemoryItem(f"user:u{i % 7}", f"k{i}", "x" * 300) for i in range(3000)], "sys")
            await db.checkpoint()

    asyncio.run(build())
    return path


def _damage(kind: str, data: bytearray, rng: random.Random) -> bytes:
    page = 4096
    pages = len(data) // page
    if kind == "zero_header":
        data[:100] = bytes(100)
    elif kind == "bad_magic":
        data[:16] = b"SQLite format 2\x00"
    elif kind == "truncated_half":
        del data[len(data) // 2:]
    elif kind == "truncated_odd":
        del data[len(data) - 1234:]
    elif kind == "page1_garbage":
        data[100:page] = rng.randbytes(page - 100)
    elif kind == "random_pages":
        for p in rng.sample(range(2, pages), 5):
            data[p * page:(p + 1) * page] = rng.randbytes(page)
    elif kind == "last_pages_ff":
        data[-3 * page:] = b"\xff" * 3 * page
    elif kind == "bit_flips":
        for _ in range(200):
            i = rng.randrange(100, len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "page_size_field":
        data[16:18] = b"\x00\x07"  # not a power of two
    return bytes(data)


DAMAGE = ["zero_header", "bad_magic", "truncated_half", "truncated_odd", "page1_garbage",
          "random_pages", "last_pages_ff", "bit_flips", "page_size_field"]
FOREIGN: dict[str, Callable[[], bytes]] = {
    "text": lambda: b"just some notes\n" * 300,
    "json": lambda: b'{"sessions": []}',
    "png": lambda: b"\x89PNG\r\n\x1a\n" + bytes(5000),
    "zip": lambda: b"PK\x03\x04" + os.urandom(3000),
    "random": lambda: random.Random(1).randbytes(8192),
    "sqlite_header_only": lambda: b"SQLite format 3\x00" + bytes(84),
}


async def _use(path: Path) -> str:
    """Open and use the file the way an application would; what happened."""
    try:
        async with Database(path) as db:
            await db.memory.get_memory("user:u1", "k1")
            await db.memory.search_memories("user", limit=100)
            await db.sessions.get_session("s1")
            integrity = await db.integrity_check()
            report = await db.validate()
            if integrity != ["ok"] or not report["ok"]:
                return "reported"
            await db.memory.add_memory("user:u1", "new", 1, "semantic", "sys")
            return "usable"
    except MemkitError as exc:
        assert isinstance(exc, DatabaseFileError), repr(exc)
        assert str(path) in str(exc)
        return "refused"


@pytest.mark.parametrize("kind", DAMAGE)
async def test_a_damaged_database_is_a_clear_error(sound_db: Path, tmp_path: Path,
                                                   kind: str) -> None:
    rng = random.Random(kind)
    for trial in range(3):
        TRIED["damaged file"] += 1
        path = tmp_path / f"{kind}-{trial}.db"
        path.write_bytes(_damage(kind, bytearray(sound_db.read_bytes()), rng))
        outcome = await _use(path)  # any driver exception other than MemkitError fails here
        assert outcome in ("refused", "reported", "usable")
        if kind in ("zero_header", "bad_magic", "truncated_half", "page_size_field"):
            assert outcome == "refused", kind


@pytest.mark.parametrize("kind", list(FOREIGN))
async def test_a_foreign_file_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    TRIED["foreign file"] += 1
    path = tmp_path / f"{kind}.db"
    content = FOREIGN[kind]()
    path.write_bytes(content)
    outcome = await _use(path)
    if kind == "sqlite_header_only":
        assert outcome in ("refused", "usable")  # SQLite may treat it as an empty database
    else:
        assert outcome == "refused"
        assert path.read_bytes() == content  # not "repaired", not truncated
        assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


async def test_a_directory_or_a_device_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    for target in (tmp_path / "dir.db", Path("/dev/null")):
        TRIED["foreign file"] += 1
        with pytest.raises(DatabaseFileError):
            async with Database(target) as db:
                await db.memory.add_memory("user:a", "k", 1, "semantic", "s")


@pytest.mark.parametrize("kind", ["zero_header", "random_pages", "last_pages_ff", "text",
                                  "truncated_half"])
def test_the_cli_says_so_in_one_line(sound_db: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str], kind: str) -> None:
    path = tmp_path / f"{kind}.db"
    if kind in FOREIGN:
        path.write_bytes(FOREIGN[kind]())
    else:
        path.write_bytes(_damage(kind, bytearray(sound_db.read_bytes()), random.Random(kind)))
    for argv in (["validate", str(path)], ["validate", str(path), "--json"],
                 ["memory", "get", str(path), "user:u1", "k1"],
                 ["memory", "list", str(path), "user"], ["stats", str(path)],
                 ["session", "show", str(path), "s1"]):
        try:
            code = main(argv)
        except SystemExit as exc:  # a command missing from this build: argparse usage
            code = int(exc.code or 0)
            if code == 2 and "invalid choice" in capsys.readouterr().err:
                continue
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        assert code in (0, 1, 2), (argv, code, err)
        if code == 2:
            assert err.startswith("memkit: error:") or '"ok": false' in out, (argv, err)
        if kind in ("zero_header", "text", "truncated_half"):
            assert code == 2, (argv, out, err)


# -- backups ---------------------------------------------------------------------------


async def test_backup_to_a_bad_destination_is_a_clear_error(sound_db: Path,
                                                            tmp_path: Path) -> None:
    copy = tmp_path / "work.db"
    shutil.copyfile(sound_db, copy)
    async with Database(copy) as db:
        (tmp_path / "a_dir").mkdir()
        for dest in (tmp_path / "missing" / "b.db", tmp_path / "a_dir", copy):
            with pytest.raises(InvalidInputError):
                await db.backup(dest)
        target = await db.backup(tmp_path / "b.db")
    async with Database(target) as restored:
        assert (await restored.validate())["ok"]
        assert (await restored.memory.get_memory("user:u1", "k1")) is not None


# -- document sync: inside the root, reasons for what is skipped, sources untouched ----------


def _sync_available() -> bool:
    try:
        from abathur_memkit.search.documents import DocumentIndexService
    except ImportError:
        return False
    return hasattr(DocumentIndexService, "sync_directory")


needs_sync = pytest.mark.skipif(
    not _sync_available(),
    reason="db.documents.sync_directory is not in this build yet (reliability tests wait for it)")


def _tree(root: Path, outside: Path) -> dict[str, bytes]:
    """Markdown files, plus every kind of trouble, under ``root``; returns what is inside."""
    files = {
        "good.md": b"# Good\n\nPlain text.\n",
        "sub/nested.md": "# Nested\n\nÜnïcödé and emoji 🙂\n".encode(),
        "sub/deeper/x.md": b"# Deep\n\ntext\n",
        "latin1.md": "# Caf\xe9\n".encode("latin-1"),
        "binary.md": b"\x00\x01\x02\xff\xfe",
        "weird name %_'\".md": b"# Odd\n\nname\n",
        "CON.md": b"# con\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (outside / "secret.md").write_bytes(b"# Secret\n\nnot yours\n")
    (outside / "dir").mkdir(exist_ok=True)
    (outside / "dir" / "also-secret.md").write_bytes(b"# Also secret\n")
    (root / "link-out.md").symlink_to(outside / "secret.md")
    (root / "linked-dir").symlink_to(outside / "dir", target_is_directory=True)
    (root / "dangling.md").symlink_to(root / "nowhere.md")
    (root / "loop.md").symlink_to(root / "loop.md")
    (root / "inside-link.md").symlink_to(root / "good.md")
    (root / "a-directory.md").mkdir()
    os.mkfifo(root / "fifo.md")
    return files


def _snapshot(*roots: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_file():
                out[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[str(p)] = ("other", "")
    return out


@needs_sync
async def test_sync_stays_inside_its_root_and_never_touches_sources(db: Database,
                                                                    tmp_path: Path) -> None:
    root, outside = tmp_path / "docs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    _tree(root, outside)
    before = _snapshot(root, outside)
    summary = await db.documents.sync_directory(root, embed=False)
    TRIED["sync path"] += len(before)
    skipped = dict(summary.skipped)
    indexed = {d["file_path"] for d in await db.documents.list_all_documents()}
    # Nothing from outside the root is indexed, through a file link or a directory link.
    assert not any("secret" in p.lower() for p in indexed), indexed
    assert "outside the root" in skipped["link-out.md"]
    # (pathlib's ** does not descend into linked directories; if it ever does, their
    # files must be skipped as outside the root.)
    assert all("outside the root" in v for k, v in skipped.items()
               if k.startswith("linked-dir/"))
    # Unreadable and non-UTF-8 files are skipped with a reason.
    assert "not UTF-8" in skipped["latin1.md"] and "not UTF-8" in skipped["binary.md"]
    assert "dangling.md" in skipped and "loop.md" in skipped
    assert "not a regular file" in skipped["fifo.md"]
    assert all(reason for reason in skipped.values())
    # The odd but fine files are in.
    assert {str(root / "good.md"), str(root / "weird name %_'\".md"),
            str(root / "sub/nested.md")} <= indexed
    assert all(p.startswith(str(root) + os.sep) for p in indexed)
    # Nothing changed on disk, then or after a file goes away and sync runs again.
    assert _snapshot(root, outside) == before
    (root / "sub" / "deeper" / "x.md").unlink()
    after_delete = _snapshot(root, outside)
    again = await db.documents.sync_directory(root, embed=False)
    assert "sub/deeper/x.md" in again.removed
    assert _snapshot(root, outside) == after_delete


@needs_sync
@pytest.mark.parametrize("pattern", ["../*.md", "../../**/*.md", "/etc/*.md", "~/*.md",
                                     "sub/../../*.md", "..\\*.md", "C:/x/*.md", "", "   "])
async def test_sync_refuses_patterns_that_leave_the_root(db: Database, tmp_path: Path,
                                                         pattern: str) -> None:
    TRIED["sync pattern"] += 1
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n")
    (tmp_path / "outside.md").write_text("# Outside\n")
    with pytest.raises(InvalidInputError, match="Invalid pattern"):
        await db.documents.sync_directory(root, pattern, embed=False)
    assert await db.documents.list_all_documents() == []


@needs_sync
@pytest.mark.parametrize("root", [None, 5, "", "  ", "/nonexistent/dir", "/etc/hostname"])
async def test_sync_refuses_bad_roots(db: Database, root: Any, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # "" would mean the current directory
    with pytest.raises(InvalidInputError, match="Invalid root"):
        await db.documents.sync_directory(root, embed=False)


@needs_sync
async def test_sync_of_the_root_itself_as_a_link(db: Database, tmp_path: Path) -> None:
    """A root that is a symlink is resolved once; its files count as inside."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.md").write_text("# A\n")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    summary = await db.documents.sync_directory(link, embed=False)
    assert summary.added == ["a.md"] and summary.skipped == []


# -- embeddings of the wrong dimension or dtype -----------------------------------------------

WRONG_DTYPES = [np.float16, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_,
                np.complex64]


@PROFILE
@given(arr=st.one_of(
    hnp.arrays(st.sampled_from(WRONG_DTYPES), hnp.array_shapes(min_dims=1, max_dims=2,
                                                               max_side=8)),
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=8)).filter(
        lambda a: a.shape[-1] != 8 or a.ndim == 3),
    hnp.arrays(np.float32, st.sampled_from([(8,), (2, 8)]),
               elements=st.sampled_from([np.nan, np.inf, -np.inf, 1.0])).filter(
        lambda a: not np.isfinite(a).all()),
    st.one_of(st.lists(st.floats(), max_size=8), st.none(), st.text(max_size=5),
              st.just(np.float32(1.0)), st.just(np.zeros((), np.float32)),
              st.just(np.zeros(8, np.float32).tolist())),
), dims=st.just(8))
def test_wrong_vectors_are_refused(arr: Any, dims: int) -> None:
    TRIED["bad vector"] += 1
    with pytest.raises(InvalidInputError) as info:
        check_vectors(arr, dims, what="embedding")
    message = str(info.value)
    assert any(w in message for w in ("dtype", "shape", "NaN", "numpy array")), message


@pytest.mark.parametrize("dims", [0, -1, 1.5, True, "8", None])
def test_wrong_dimension_arguments_are_refused(dims: Any) -> None:
    with pytest.raises(InvalidInputError, match="dimensions"):
        check_vectors(np.zeros(8, np.float32), dims)


async def test_update_embedding_refuses_wrong_vectors(tmp_path: Path) -> None:
    from dbdump import dump

    async with Database(tmp_path / "e.db", embedder="hashing") as db:
        documents = db.documents
        if not hasattr(documents, "update_embedding"):
            pytest.skip("db.documents.update_embedding is not in this build yet")
        doc_id = await documents.index_document(str(tmp_path / "a.md"), "A", "# A\n\ntext")
        dims = db.embedder.dimensions
        before = await dump(db)
        for bad in (np.zeros(dims + 1, np.float32), np.zeros(dims, np.float64),
                    np.zeros((2, dims), np.float32), np.full(dims, np.nan, np.float32),
                    [0.0] * dims, np.zeros(dims // 2, np.float32)):
            TRIED["bad vector"] += 1
            with pytest.raises(InvalidInputError):
                await documents.update_embedding(doc_id, bad, db.embedder.name)
        assert await dump(db) == before
        await documents.update_embedding(doc_id, np.ones(dims, np.float32), db.embedder.name)
