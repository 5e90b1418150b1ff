"""Document sync against a real, messy folder: names that are not UTF-8, folders that
vanish mid-walk, files rewritten into something that cannot be indexed, big files.

Sync skips what it cannot read, says why, syncs the rest, and keeps nothing it
skipped in the index.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from reliability_support import TRIED

from abathur_memkit import Database, InvalidInputError, MemkitError
from abathur_memkit.cli import main
from abathur_memkit.search import documents as documents_module
from abathur_memkit.search.documents import SyncSummary
from abathur_memkit.search.watch import watch_directory


@pytest.fixture
async def hdb(db_target: str | Path) -> AsyncIterator[Database]:
    async with Database(db_target, embedder="hashing") as database:
        yield database


def _odd_name(folder: Path, raw: bytes) -> Path:
    """A path whose last part is ``raw``: bytes that are not UTF-8 in a name."""
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), raw)))


async def _indexed(db: Database) -> set[str]:
    return {d["file_path"] for d in await db.documents.list_all_documents()}


async def _assert_consistent(db: Database) -> None:
    """One chunk row per counted chunk, one vector per chunk, nothing orphaned."""
    rows = await db.fetchone(
        "SELECT (SELECT coalesce(sum(chunk_count), 0) FROM document_index) AS counted, "
        "(SELECT count(*) FROM document_chunks) AS chunks")
    assert rows is not None and rows["counted"] == rows["chunks"]
    await db.search.purge()
    status = await db.search.status()
    assert status["indexes"]["chunks"]["vectors"] == rows["chunks"]


# -- names that are not UTF-8 -----------------------------------------------------------------


async def test_names_that_are_not_utf8_are_skipped_and_the_rest_synced(
        hdb: Database, tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "good.md").write_text("# Good\n\nplain text\n")
    _odd_name(root, b"caf\xe9.md").write_text("# Cafe\n\nlatin-1 name\n")
    odd_dir = _odd_name(root, b"dir\xff")
    odd_dir.mkdir()
    (odd_dir / "inside.md").write_text("# Inside\n\nunder an odd folder\n")
    summary = await hdb.documents.sync_directory(root, progress=False)
    TRIED["sync path"] += 3
    skipped = dict(summary.skipped)
    assert skipped == {"caf\\xe9.md": "file name is not UTF-8 (it cannot be stored as text)",
                       "dir\\xff/inside.md": "file name is not UTF-8 (it cannot be stored as text)"}
    assert summary.added == ["good.md"] and summary.ok
    assert await _indexed(hdb) == {str(root / "good.md")}
    # The summary prints and serialises: the odd bytes are shown as escapes.
    assert "skipped  caf\\xe9.md" in str(summary)
    assert json.loads(json.dumps(summary.to_dict()))["skipped"][0]["path"] == "caf\\xe9.md"


def test_cli_index_reports_names_that_are_not_utf8(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "good.md").write_text("# Good\n\nplain text\n")
    _odd_name(root, b"bad\x80.md").write_text("# Bad\n")
    assert main(["index", str(tmp_path / "cli.db"), str(root), "--no-embed",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == ["good.md"]
    assert report["skipped"] == [{"path": "bad\\x80.md",
                                  "reason": "file name is not UTF-8 (it cannot be stored as text)"}]


async def test_a_root_whose_name_is_not_utf8_is_refused(hdb: Database, tmp_path: Path) -> None:
    root = _odd_name(tmp_path, b"root\xff")
    root.mkdir()
    (root / "a.md").write_text("# A\n")
    with pytest.raises(InvalidInputError, match="Invalid root: not encodable as UTF-8"):
        await hdb.documents.sync_directory(root)
    assert await _indexed(hdb) == set()


# -- folders and files that vanish during a sync ----------------------------------------------


async def test_a_folder_removed_mid_walk_is_reported_not_raised(
        hdb: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "docs"
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        (root / name / f"{name}.md").write_text(f"# {name}\n\nfile {name}\n")
    first = await hdb.documents.sync_directory(root, progress=False)
    assert first.added == ["a/a.md", "b/b.md", "c/c.md"]
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        # The folder goes away between being seen in its parent and being listed.
        if isinstance(path, str) and path == str(root / "b"):
            shutil.rmtree(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = await hdb.documents.sync_directory(root, progress=False)
    assert dict(summary.skipped) == {"b/": "cannot list folder: No such file or directory"}
    assert summary.removed == ["b/b.md"] and summary.unchanged == 2
    assert await _indexed(hdb) == {str(root / "a" / "a.md"), str(root / "c" / "c.md")}


async def test_a_file_removed_between_hash_and_read_is_skipped(
        hdb: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "stays.md").write_text("# Stays\n")
    (root / "goes.md").write_text("# Goes\n")
    real_read = documents_module._read

    def read(f: Any) -> Any:
        if f.relative == "goes.md":
            os.unlink(f.path)
        return real_read(f)

    monkeypatch.setattr(documents_module, "_read", read)
    summary = await hdb.documents.sync_directory(root, progress=False)
    assert summary.added == ["stays.md"]
    assert dict(summary.skipped) == {"goes.md": "unreadable: No such file or directory"}


async def test_sync_under_churn_never_raises(hdb: Database, tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for n in range(10):
        (root / f"keep{n}.md").write_text(f"# Keep {n}\n\nstays put\n")
    done = threading.Event()

    def churn() -> None:
        n = 0
        while not done.is_set():
            folder = root / f"churn{n % 4}"
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            else:
                for depth in range(3):
                    sub = folder.joinpath(*[f"d{i}" for i in range(depth)])
                    sub.mkdir(parents=True, exist_ok=True)
                    (sub / f"f{depth}.md").write_text(f"# Churn {n}\n\nlevel {depth}\n")
            n += 1

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    summaries: list[SyncSummary] = []
    try:
        for _ in range(60):
            summary = await hdb.documents.sync_directory(root, progress=False, embed=False)
            assert all(reason for _, reason in summary.skipped)
            summaries.append(summary)
    finally:
        done.set()
        worker.join(10)
    TRIED["sync churn"] += len(summaries)
    # Once the folder is quiet, one more sync makes the index match the disk exactly.
    final = await hdb.documents.sync_directory(root, progress=False)
    on_disk = {str(p) for p in root.rglob("*.md")}
    assert await _indexed(hdb) == on_disk and final.skipped == []
    await _assert_consistent(hdb)


# -- indexed files that can no longer be indexed -----------------------------------------------


@pytest.mark.parametrize("change", ["latin-1", "binary", "too big"])
async def test_a_file_that_becomes_unindexable_leaves_the_index(
        hdb: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "other.md").write_text("# Other\n\nnothing special\n")
    target = root / "target.md"
    target.write_text("# Target\n\nzanzibar quokka\n")
    first = await hdb.documents.sync_directory(root, progress=False)
    assert first.added == ["other.md", "target.md"]
    assert [h.file_path for h in await hdb.search.keyword("zanzibar")] == [str(target)]
    if change == "latin-1":
        target.write_bytes("# Target\n\nzanzibar quokka caf\xe9\n".encode("latin-1"))
        reason = "not UTF-8 text (invalid byte at offset 29)"
    elif change == "binary":
        target.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        reason = "not UTF-8 text (invalid byte at offset 0)"
    else:
        monkeypatch.setattr(documents_module, "MAX_FILE_BYTES", 64)
        target.write_text("# Target\n\nzanzibar quokka " + "words " * 20)
        reason = "larger than 64 bytes"
    summary = await hdb.documents.sync_directory(root, progress=False)
    assert dict(summary.skipped) == {"target.md": reason}
    assert summary.removed == ["target.md"] and summary.unchanged == 1
    assert await hdb.documents.get_document(str(target)) is None
    for mode in ("keyword", "semantic", "hybrid"):
        hits = await hdb.search.search("zanzibar quokka", 5, mode=mode)
        assert str(target) not in {h.file_path for h in hits}, mode
    await _assert_consistent(hdb)
    assert target.exists()  # the index never touches source files


# -- memory ----------------------------------------------------------------------------------


async def test_a_noop_resync_reads_files_in_pieces(hdb: Database, tmp_path: Path) -> None:
    """Unchanged files are hashed in 1 MB reads: a no-op sync's memory does not grow
    with the folder (before, every file was read whole and kept until the end)."""
    root = tmp_path / "docs"
    root.mkdir()
    size = 3 * 1024 * 1024
    for n in range(4):
        line = f"paragraph {n} of plain words to fill the file\n"
        (root / f"big{n}.md").write_text(f"# Big {n}\n\n" + line * (size // len(line)))
    first = await hdb.documents.sync_directory(root, progress=False, embed=False)
    assert len(first.added) == 4
    total = sum(p.stat().st_size for p in root.iterdir())
    tracemalloc.start()
    try:
        again = await hdb.documents.sync_directory(root, progress=False, embed=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert again.unchanged == 4 and again.added == again.changed == []
    assert peak < total / 4, f"peak {peak} bytes for {total} bytes of files"


# -- watch -------------------------------------------------------------------------------------


async def test_watch_keeps_running_after_a_failed_sync(
        hdb: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n")
    real_sync = hdb.documents.sync_directory
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> SyncSummary:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MemkitError("the folder went away")
        return await real_sync(*args, **kwargs)

    monkeypatch.setattr(hdb.documents, "sync_directory", flaky)
    summaries: asyncio.Queue[SyncSummary] = asyncio.Queue()
    errors: list[MemkitError] = []
    stop = asyncio.Event()
    task = asyncio.create_task(watch_directory(
        hdb, root, debounce=0.2, on_sync=summaries.put_nowait, on_error=errors.append,
        stop=stop))
    try:
        while not errors:  # the first sync fails ...
            assert not task.done(), task
            await asyncio.sleep(0.05)
        assert str(errors[0]) == "the folder went away"
        # ... and the watch goes on: the next change is synced, odd names and all.
        _odd_name(root, b"odd\xfe.md").write_text("# Odd\n")
        (root / "b.md").write_text("# B\n")
        summary = await asyncio.wait_for(summaries.get(), 30)
        while "b.md" not in summary.added:
            summary = await asyncio.wait_for(summaries.get(), 30)
        assert dict(summary.skipped) == {
            "odd\\xfe.md": "file name is not UTF-8 (it cannot be stored as text)"}
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert await _indexed(hdb) == {str(root / "a.md"), str(root / "b.md")}


@pytest.mark.parametrize("kwargs", [{"pattern": "../*.md"}, {"pattern": "\udcff*.md"},
                                    {"document_type": "memo"}, {"root": "/nonexistent"}])
async def test_watch_refuses_bad_arguments_at_once(hdb: Database, tmp_path: Path,
                                                   kwargs: dict[str, Any]) -> None:
    """Only a sync that fails while watching is reported and survived; bad arguments raise."""
    args: dict[str, Any] = {"root": tmp_path, **kwargs}
    with pytest.raises(InvalidInputError):
        await asyncio.wait_for(watch_directory(hdb, **args, on_error=print), 10)
