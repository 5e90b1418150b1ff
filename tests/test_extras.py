"""A feature whose pip extra is missing says which extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from abathur_memkit import Database, MemkitError
from abathur_memkit.errors import MissingExtraError
from abathur_memkit.extras import missing_modules, require_extra


def test_default_embedder_without_onnxruntime_names_the_embed_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(MissingExtraError) as info:
        Database(tmp_path / "a.db", embedder="default")
    assert isinstance(info.value, MemkitError) and isinstance(info.value, ImportError)
    assert "[embed] extra (missing: onnxruntime)" in str(info.value)
    assert "pip install 'abathur-memkit[embed]'" in str(info.value)
    assert not (tmp_path / "a.db").exists()  # nothing created


def test_hashing_embedder_needs_no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert Database(tmp_path / "a.db", embedder="hashing").embedder.name.startswith("hashing")


def test_unknown_embedder_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(MemkitError, match="unknown embedder 'nope'"):
        Database(tmp_path / "a.db", embedder="nope")


def test_require_extra_lists_only_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    assert missing_modules("embed") == ["tokenizers"]
    require_extra("search", "x")  # numpy is here: no error
    with pytest.raises(MissingExtraError, match=r"^feature needs the \[embed\] extra"):
        require_extra("embed", "feature")


def test_core_without_numpy(tmp_path: Path) -> None:
    # A process where numpy cannot be imported, as after `pip install abathur-memkit`.
    code = (
        "import sys, asyncio\n"
        "sys.modules['numpy'] = None\n"
        "from abathur_memkit import Database, MemkitError\n"
        "async def main():\n"
        "    async with Database('a.db') as db:\n"
        "        await db.memory.add_memory('user:a:p', 'k', 1, 'semantic', 'me')\n"
        "        assert (await db.memory.get_memory('user:a:p', 'k'))['value'] == 1\n"
        "        try:\n"
        "            db.search\n"
        "        except MemkitError as exc:\n"
        "            print(type(exc).__name__, exc)\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert out.startswith("MissingExtraError abathur_memkit.search needs the [search] extra")
