"""Tiny runs of ``memkit bench postgres`` on the tests' server (real sizes: not here)."""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from abathur_memkit import database
from abathur_memkit.bench import Result
from abathur_memkit.bench.postgres import (
    NOT_PORTED,
    PostgresSizes,
    adk_url,
    knn_bench,
    missing_peer_modules,
    run_postgres,
    server_pids,
)
from abathur_memkit.cli import main
from abathur_memkit.errors import InvalidInputError

pytest.importorskip("psycopg", reason="the PostgreSQL benchmark needs the [postgres] extra")

TINY = PostgresSizes(memories=30, users=3, sessions=2, events_per_session=2, rounds=3,
                     warmup=1, writes=16, writers=8, commits=3)
MEMKIT_OPS = {"get_memory", "add_memory (+ audit)", "add_memory (+ audit), 1 writer",
              "add_memory (+ audit), 8 writers", "create_session", "append_event",
              "get_session"}
PEERS_MISSING = "the [peers-postgres] extra (LangGraph's Postgres store, ADK) is not installed"


def _databases(server: str) -> set[str]:
    import psycopg

    with psycopg.connect(server) as conn:
        rows = conn.execute("SELECT datname FROM pg_database").fetchall()
    return {row[0] for row in rows}


def _measured(result: Any, system: str) -> set[str]:
    return {op for s, op, _ in result.rows if s == system}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="pinning the client and the server apart needs Linux and two CPUs")
async def test_raw_rows_commit_baselines_pinning_and_skips(
    pg_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from abathur_memkit.bench import postgres

    monkeypatch.setattr(postgres, "missing_peer_modules",
                        lambda: {"langgraph": ["langgraph.store.postgres"], "adk": ["asyncpg"]})

    async def broken_knn(_dsn: str, _say: Any) -> Any:
        raise LookupError("no KNN benchmark here")

    import psycopg

    with psycopg.connect(pg_server) as conn:
        pids = server_pids(conn.info.backend_pid)
    assert len(pids) > 1 and Path(f"/proc/{pids[0]}/comm").read_text().startswith("postgres")
    affinity = os.sched_getaffinity(pids[0]), os.sched_getaffinity(0)
    before = _databases(pg_server)

    result = await run_postgres(pg_server, TINY, knn=broken_knn)

    assert _measured(result, "raw") == {
        "get_latest", "write transaction (+ audit)", "write transaction (+ audit), 1 writer",
        "write transaction (+ audit), 8 writers"}
    assert all(r.p50_ms > 0 for s, _, r in result.rows if s == "raw")
    assert result.copy_rate > 0
    assert {when: len(r.samples_ns) for when, r in result.commits.items()} == {"start": 3,
                                                                               "end": 3}
    assert {when: (len(near.samples_ns), len(idle.samples_ns))
            for when, (near, idle) in result.round_trips.items()} == {"start": (3, 3),
                                                                      "end": (3, 3)}
    text = result.table()
    assert "durable commit baseline (start)" in text and "durable commit baseline (end)" in text
    assert "round trip of SELECT 1 (start)" in text and "after 8 ms idle" in text
    assert "each operation 20 times in a row" in text
    # memkit's rows are either measured or skipped as not ported, never half of each.
    skipped = {op: reason for s, op, reason in result.skipped if s == "memkit"}
    assert set(skipped) | _measured(result, "memkit") == MEMKIT_OPS
    assert all(reason.startswith(NOT_PORTED) for reason in skipped.values())
    # A missing peer or a failing hook is a skipped row with its reason, no figure.
    extra = "pip install 'abathur-memkit[peers-postgres]'"
    assert {(s, reason) for s, _, reason in result.skipped if s not in ("memkit", "raw")} == {
        ("langgraph", f"langgraph.store.postgres missing: {extra}"),
        ("adk", f"asyncpg missing: {extra}"),
        ("pgvector", "LookupError: no KNN benchmark here")}
    assert not _measured(result, "langgraph") | _measured(result, "adk")
    # Pinned apart while it ran; as before afterwards, and its databases dropped.
    assert "the postmaster and its" in result.pinning
    assert (os.sched_getaffinity(pids[0]), os.sched_getaffinity(0)) == affinity
    assert _databases(pg_server) == before


async def test_memkit_rows_are_measured_once_the_services_run(
    pg_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # memkit on a SQLite file stands in for the ported services: every memkit
    # row and its targets must then get a figure. The KNN hook's rows join in.
    real = database.Database
    monkeypatch.setattr(database, "Database", lambda _dsn: real(tmp_path / "memkit.db"))
    seen: list[str] = []

    async def knn(dsn: str, _say: Any) -> tuple[list[Result], list[Any]]:
        seen.append(dsn)
        return [Result.from_samples("hnsw p50", [1_000, 2_000])], [
            ("KNN p50 / raw HNSW", "<= 1.2", "1.00x", True)]

    result = await run_postgres(pg_server, TINY, pin=False, knn=knn)
    assert _measured(result, "memkit") == MEMKIT_OPS
    targets = {name: met for name, _, _, met in result.targets}
    assert targets["get_memory / raw psycopg get_latest, p50"] is not None
    assert targets["memory writes with audit, 8 writers"] is not None
    assert seen and seen[0].startswith("postgresql://")
    assert ("pgvector", "hnsw p50") in {(s, op) for s, op, _ in result.rows}
    assert targets["KNN p50 / raw HNSW"] is True


async def test_a_user_who_cannot_create_databases_gets_a_clear_error(pg_server: str) -> None:
    import psycopg

    from abathur_memkit.errors import MemkitError

    role = "bench_no_createdb"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB")
    parts = urllib.parse.urlsplit(pg_server)
    dsn = urllib.parse.urlunsplit(parts._replace(netloc=f"{role}@"))
    before = _databases(pg_server)
    with pytest.raises(MemkitError, match="needs a user allowed to CREATE DATABASE"):
        await run_postgres(dsn, TINY, pin=False)
    assert _databases(pg_server) == before


async def test_the_knn_hook_runs_run_pgvector_and_judges_its_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, ...]] = []

    def run_pgvector(dsn: str, n: int, dims: int, *, progress: Any) -> Any:
        calls.append((dsn, n, dims))
        return SimpleNamespace(n=n, dims=dims, k=10, ef_search=100, memkit_p50_ms=3.9,
                               raw_p50_ms=3.4, memkit_recall=0.962, raw_recall=0.966)

    monkeypatch.setitem(sys.modules, "abathur_memkit.bench.pgvector",
                        SimpleNamespace(run_pgvector=run_pgvector))
    results, targets = await knn_bench(2_000, 64)("postgresql:///knn", lambda _m: None)
    assert calls == [("postgresql:///knn", 2_000, 64)] and results == []
    assert targets == [
        ("KNN p50 / raw pgvector HNSW, 2,000 x 64", "<= 1.2", "1.15x (3.90 / 3.40 ms)", True),
        ("KNN recall@10, ef_search 100", ">= 0.95", "0.962 (raw 0.966)", True)]


def test_adk_gets_an_async_driver_url() -> None:
    assert adk_url("postgresql://u:p@/db?host=/tmp/x") == "postgresql+asyncpg://u:p@/db?host=/tmp/x"


def test_bench_postgres_cli_writes_json(
    pg_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pg.json"
    code = main(["bench", "postgres", "--quick", "--no-pin", "--dsn", pg_server,
                 "--json-out", str(out)])
    assert code in (0, 1)  # 1 only if a target is missed on this machine
    document = json.loads(out.read_text())
    names = {b["name"] for b in document["benchmarks"]}
    assert {"raw: get_latest", "durable commit baseline (start)",
            "durable commit baseline (end)"} <= names
    assert set(document["commit_baseline"]) == {"start", "end"}
    assert set(document["round_trip"]["end"]) == {"back_to_back_p50_ms", "after_idle_p50_ms",
                                                  "idle_ms"}
    assert document["block"] == 5  # --quick's
    assert len(document["targets"]) == 5
    assert "get_memory / raw psycopg get_latest, p50" in capsys.readouterr().out


def test_sizes_refuse_a_block_below_one() -> None:
    with pytest.raises(InvalidInputError, match="block must be an int >= 1"):
        PostgresSizes(block=0)


def test_bench_postgres_refuses_a_dsn_that_is_not_a_uri(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "postgres", "--quick", "--dsn", "host=/tmp dbname=x"]) != 0
    assert "must be a postgresql:// URI" in capsys.readouterr().err


@pytest.mark.skipif(bool(missing_peer_modules()), reason=PEERS_MISSING)
async def test_peers_rows_are_measured(pg_server: str) -> None:
    result = await run_postgres(pg_server, TINY, pin=False)
    assert _measured(result, "langgraph") == {"aget", "aput", "asearch (prefix, limit 10)"}
    assert _measured(result, "adk") == {"create_session", "append_event", "get_session"}
    targets = {name: measured for name, _, measured, _ in result.targets}
    assert targets["ADK get_session / memkit's, p50"] != "not measured" or any(
        s == "memkit" for s, _, _ in result.skipped)


async def test_writers_only_measures_raw_and_memkit_writes_alone(pg_server: str) -> None:
    before = _databases(pg_server)
    result = await run_postgres(pg_server, TINY, pin=False, writers_only=True)
    writes = {"write transaction (+ audit), 1 writer", "write transaction (+ audit), 8 writers"}
    assert _measured(result, "raw") == writes
    assert _measured(result, "memkit") == {"add_memory (+ audit), 1 writer",
                                           "add_memory (+ audit), 8 writers"}
    assert not result.skipped  # no peer is run, so none is reported skipped
    [(name, goal, measured, met)] = result.targets
    assert goal == ">= 2,000/s"
    assert name == "memory writes with audit, 8 writers" and met is not None
    assert re.fullmatch(r"[\d,]+/s \(\d+\.\d\dx raw's [\d,]+/s\)", measured)
    assert "memory writes with audit, 8 writers" in result.table()
    assert _databases(pg_server) == before


def test_bench_postgres_cli_writers_only(
    pg_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pg.json"
    code = main(["bench", "postgres", "--quick", "--no-pin", "--writers-only", "--dsn",
                 pg_server, "--json-out", str(out)])
    assert code in (0, 1)  # 1 only if the write target is missed on this machine
    document = json.loads(out.read_text())
    assert [t["name"] for t in document["targets"]] == ["memory writes with audit, 8 writers"]
    assert not any(b["name"].startswith(("langgraph", "adk", "raw: get_latest"))
                   for b in document["benchmarks"])
    assert "x raw's" in capsys.readouterr().out
    # The KNN benchmark is not a write: asking for both is refused before any work.
    assert main(["bench", "postgres", "--quick", "--writers-only", "--knn", "--dsn",
                 pg_server]) != 0
    assert "--writers-only runs no KNN benchmark" in capsys.readouterr().err
