"""Tiny runs of ``memkit bench scope`` and ``memkit bench peers`` (real sizes: not here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abathur_memkit.bench import peers
from abathur_memkit.bench.peers import PeerSizes, missing_peers, run_peers
from abathur_memkit.bench.scope import ScopeSizes, run_scope
from abathur_memkit.cli import main


async def test_scope_bench_compares_each_query_with_the_old_one(tmp_path: Path) -> None:
    sizes = ScopeSizes(memories=600, users=5, rounds=3, legacy_rounds=2, write_rounds=40,
                       batch=200)
    result = await run_scope(tmp_path / "scope.db", sizes)
    names = [name for name, _, _ in result.rows]
    assert "search_memories('user')" in names and "list_namespaces('user:u1')" in names
    assert all(new.extra["baseline"] == old.name for _, new, old in result.rows)
    with_heads, without = result.write
    assert with_heads.extra["baseline"] == without.name == "add_memory_without_heads"
    assert "single write (add_memory + audit)" in result.table()


def test_bench_scope_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scope.json"
    code = main(["bench", "scope", "--quick", "--db", str(tmp_path / "s.db"),
                 "--json-out", str(out)])
    assert code in (0, 1)  # 1 only if a p50 target is missed on this machine
    document = json.loads(out.read_text())
    assert any(b["name"] == "search_memories('') old" for b in document["benchmarks"])
    assert "speed-up" in capsys.readouterr().out


def test_bench_peers_without_the_extra_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(peers, "missing_peers", lambda: ["langgraph.store.sqlite"])
    assert main(["bench", "peers", "--quick"]) == 2
    assert "pip install 'abathur-memkit[peers]'" in capsys.readouterr().err


async def test_rounds_run_each_operation_block_times_in_a_row() -> None:
    calls: list[str] = []

    def op(name: str) -> peers.Op:
        async def call() -> None:
            calls.append(name)
        return call

    results = await peers._rounds({"a": op("a"), "b": op("b")}, rounds=5, warmup=1, block=2)
    assert "".join(calls) == "ab" + "aabb" + "aabb" + "ab"  # warm-up, then 2, 2, 1 in a row
    assert {name: len(r.samples_ns) for name, r in results.items()} == {"a": 5, "b": 5}


@pytest.mark.skipif(bool(missing_peers()), reason="the [peers] extra (LangGraph, ADK) is not "
                    "installed; it is kept out of [all] for its size")
async def test_peers_bench_runs_every_system(tmp_path: Path) -> None:
    sizes = PeerSizes(memories=40, users=4, sessions=3, events_per_session=3, rounds=3,
                      warmup=1)
    result = await run_peers(tmp_path, sizes)
    assert set(result.table_rows) == {"get_memory", "put_memory", "search_user_prefix",
                                      "get_session", "append_event"}
    assert set(result.table_rows["get_memory"]) == {"sqlite3", "aiosqlite", "langgraph",
                                                    "memkit"}
    assert set(result.table_rows["append_event"]) == {"sqlite3", "aiosqlite", "adk", "memkit"}
    assert "peer vs memkit" in result.table()
