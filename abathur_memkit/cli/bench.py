"""``memkit bench SUITE``: benchmarks with ratios against a same-run baseline."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import add_json_flag, emit, example, positive_int

if TYPE_CHECKING:
    from ..bench import Report

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("bench", help="benchmarks (ratios against raw SQLite)",
                              **example("memkit bench core --quick"))
    suites = p.add_subparsers(dest="suite", metavar="SUITE", required=True)
    _suite(suites, "core", "sessions and memory vs raw aiosqlite",
           "memkit bench core --json-out bench/core.json", cmd_bench_core)

    scope = _suite(suites, "scope", "scope-wide memory queries vs the old queries",
                   "memkit bench scope --memories 100000", cmd_bench_scope)
    scope.add_argument("--memories", type=positive_int, default=None,
                       help="memories to build (default 100,000; the target at 1,000,000 "
                            "is 1.5x the one at 100,000)")

    _suite(suites, "peers", "the same workload through raw sqlite3/aiosqlite, LangGraph, ADK "
           "and memkit (extra [peers])", "memkit bench peers --quick", cmd_bench_peers,
           where="dir")
    pg = _suite(suites, "postgres", "raw psycopg, memkit, LangGraph's AsyncPostgresStore and "
                "ADK's DatabaseSessionService on one PostgreSQL server (extra [peers-postgres])",
                "memkit bench postgres --quick", cmd_bench_postgres, where="dsn")
    pg.add_argument("--knn", action="store_true",
                    help="also run the pgvector KNN benchmark (abathur_memkit.bench.pgvector) "
                         "at 100,000 x 768 (--quick: 2,000 x 64); takes minutes")
    pg.add_argument("--block", type=positive_int, default=None,
                    help="calls of one operation in a row before the next system's turn "
                         "(default 20; 1: one call per system per round, each then pays "
                         "the server's wake-up after the others' calls)")
    pg.add_argument("--writers-only", action="store_true",
                    help="only raw psycopg's and memkit's writes from 1 and from 8 concurrent "
                         "writers (no peers, no single calls): the write rate alone, faster")
    _suite(suites, "writers", "50 concurrent writers with group commit vs one writer and vs "
           "group_commit=False", "memkit bench writers --quick", cmd_bench_writers)

    search = _suite(suites, "search", "vector KNN, ingest and re-sync (vs sqlite-vec float "
                    "vec0 and a scalar scan)", "memkit bench search --quick --no-vss",
                    cmd_bench_search, where="dir", pin=False)
    search.add_argument("--sizes", help="KNN sizes as N:DIMS,... (default: "
                                        "10000:384,10000:768,100000:384,100000:768)")
    search.add_argument("--no-vss", action="store_true", help="skip the sqlite-vss backend")
    search.add_argument("--no-model", action="store_true",
                        help="skip the offline-model ingest run")
    search.add_argument("--quality", action="store_true",
                        help="instead: recall@5/10, MRR@10, hit@1 and p50 of each mode (and "
                             "BM25 and exact-numpy baselines) on labelled questions over the "
                             "Python docs (Debian package python3.11-doc; takes minutes)")
    search.add_argument("--html", help="with --quality: the Python docs' HTML folder "
                                       "(default: /usr/share/doc/python3.11/html)")
    search.add_argument("--questions", help="with --quality: a labelled questions JSON file "
                                            "(default: the shipped Python-docs set)")
    search.add_argument("--scale", type=int, metavar="N",
                        help="with --quality: also time semantic and hybrid search against a "
                             "numpy scan at N synthetic chunks (e.g. 100000)")

    ingest = _suite(suites, "ingest", "offline document ingest with the model: the old "
                    "embedding path vs the new, interleaved",
                    "memkit bench ingest --step 8 --rounds 2", cmd_bench_ingest,
                    where="dir", quick=False, pin=False)
    ingest.add_argument("--html", help="the Python docs' HTML folder "
                                       "(default /usr/share/doc/python3.11/html)")
    ingest.add_argument("--step", type=positive_int, default=8,
                        help="take every STEP-th page of the docs corpus (default 8)")
    ingest.add_argument("--rounds", type=positive_int, default=2,
                        help="old/new sync pairs, interleaved (default 2)")
    ingest.add_argument("--resync", type=positive_int, metavar="N",
                        help="instead: edit one paragraph in each of N pages per round and "
                             "time the re-sync, every chunk of a changed page embedded again "
                             "(before) vs only its changed chunks (after), interleaved")


def _suite(suites: Any, name: str, help: str, sample: str, handler: Any, *,
           where: str = "db", quick: bool = True, pin: bool = True) -> argparse.ArgumentParser:
    """A ``memkit bench`` suite with the options every suite shares."""
    p: argparse.ArgumentParser = suites.add_parser(name, help=help, **example(sample))
    if where == "db":
        p.add_argument("--db", help="database file to build (default: a temporary file)")
    elif where == "dsn":
        p.add_argument("--dsn", help="a postgresql:// URI of a server where the user may "
                                     "CREATE DATABASE (default: start pgserver in a temporary "
                                     "folder)")
    else:
        p.add_argument("--dir", help="working directory for the databases (default: temp)")
    p.add_argument("--json-out", "--output", dest="output",
                   help="write the results as JSON here")
    if quick:
        p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    if pin:
        p.add_argument("--no-pin", action="store_true",
                       help="do not pin the process to one CPU (ratios get noisier)")
    add_json_flag(p)
    p.set_defaults(handler=handler)
    return p


def _say(message: str) -> None:
    print(f"... {message}", file=sys.stderr)


def _finish(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    """Write ``--json-out`` if asked for, then print the document or the text."""
    if args.output:
        Path(args.output).write_text(json.dumps(document, indent=2) + "\n", "utf-8")
        text += f"\n\nJSON written to {args.output}"
    emit(args, document, text)


def _docs_html(args: argparse.Namespace) -> Path:
    from ..bench.pydocs import DEFAULT_HTML
    from ..errors import InvalidInputError

    html = Path(args.html) if args.html else DEFAULT_HTML
    if not (html / "library").is_dir():
        raise InvalidInputError(
            f"no Python documentation HTML at {html}: apt-get install python3.11-doc "
            f"(or pass --html DIR)")
    return html


def _document(report: Report, targets: list[tuple[str, str, str, bool]] | None = None
              ) -> dict[str, Any]:
    """The JSON of a benchmark report, with the SQLite build and the targets."""
    from ..engines.sqlite.driver import select_driver

    driver = select_driver()
    document = report.to_json(sqlite_version=driver.sqlite_version, driver=driver.name)
    if targets is not None:
        document["targets"] = [{"name": n, "goal": g, "measured": m, "met": ok}
                               for n, g, m, ok in targets]
    return document


async def cmd_bench_core(args: argparse.Namespace) -> int:
    from ..bench.core import CoreSizes, run_core

    sizes = CoreSizes.quick() if args.quick else CoreSizes()
    with tempfile.TemporaryDirectory(prefix="memkit-bench-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "bench.db"
        report = await run_core(path, sizes, pin=not args.no_pin,
                                progress=_say)
    document = _document(report)
    missed = [b["name"] for b in document["benchmarks"] if b["extra_info"].get("met") is False]
    _finish(args, document, report.table())
    return 1 if missed else 0


async def cmd_bench_scope(args: argparse.Namespace) -> int:
    from ..bench.scope import ScopeSizes, run_scope

    sizes = ScopeSizes.quick() if args.quick else ScopeSizes()
    if args.memories:
        # Above 100k the old queries take seconds each: fewer rounds of them.
        sizes = replace(sizes, memories=args.memories,
                        users=max(sizes.users, args.memories // 100),
                        legacy_rounds=sizes.legacy_rounds if args.memories <= 100_000 else 3)
    with tempfile.TemporaryDirectory(prefix="memkit-bench-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "scope.db"
        result = await run_scope(path, sizes, pin=not args.no_pin,
                                 progress=_say)
    document = _document(result.report)
    text = result.table()
    _finish(args, document, text)
    return 1 if result.missed else 0


async def cmd_bench_peers(args: argparse.Namespace) -> int:
    from ..bench.peers import PEERS_EXTRA, PeerSizes, missing_peers, run_peers

    missing = missing_peers()
    if missing:
        print(f"memkit bench peers needs the [peers] extra ({', '.join(missing)} missing): "
              f"{PEERS_EXTRA}", file=sys.stderr)
        return 2
    sizes = PeerSizes.quick() if args.quick else PeerSizes()
    with tempfile.TemporaryDirectory(prefix="memkit-bench-") as tmp:
        directory = Path(args.dir) if args.dir else Path(tmp)
        result = await run_peers(directory, sizes, pin=not args.no_pin, progress=_say)
    document = _document(result.report)
    text = result.table()
    _finish(args, document, text)
    return 0


async def cmd_bench_postgres(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from ..bench.postgres import PostgresSizes, knn_bench, local_server, run_postgres

    sizes = PostgresSizes.quick() if args.quick else PostgresSizes()
    if args.block is not None:
        sizes = replace(sizes, block=args.block)
    knn = (knn_bench(*((2_000, 64) if args.quick else (100_000, 768)))
           if args.knn else None)
    with nullcontext(args.dsn) if args.dsn else local_server() as server:
        result = await run_postgres(server, sizes, pin=not args.no_pin, knn=knn,
                                    progress=_say, writers_only=args.writers_only)
    _finish(args, result.to_json(), result.table())
    return 1 if result.missed else 0


async def cmd_bench_search(args: argparse.Namespace) -> int:
    from ..bench.search import SearchSizes, run_search
    from ..errors import InvalidInputError

    if args.quality:
        return await _bench_quality(args)
    sizes = SearchSizes.quick() if args.quick else SearchSizes()
    if args.sizes:
        try:
            knn = tuple((int(n), int(d)) for n, d in
                        (part.split(":") for part in args.sizes.split(",")))
        except ValueError:
            raise InvalidInputError(f"Invalid --sizes {args.sizes!r}: use N:DIMS,...") from None
        sizes = replace(sizes, knn=knn)
    if args.no_vss:
        sizes = replace(sizes, vss=False)
    result = await run_search(args.dir, sizes, model=not args.no_model,
                              progress=_say)
    document = _document(result.report, result.targets)
    text = result.table()
    _finish(args, document, text)
    return 1 if result.missed else 0


async def _bench_quality(args: argparse.Namespace) -> int:
    from ..bench.quality import load_questions, run_quality, run_scale

    html = _docs_html(args)
    questions = load_questions(args.questions) if args.questions else None
    report = await run_quality(args.dir, html_root=html, questions=questions, progress=_say)
    if args.scale:
        report.lines.extend(await run_scale(args.scale, args.dir, progress=_say))
    document = report.to_dict()
    text = report.table()
    _finish(args, document, text)
    return 0


async def cmd_bench_writers(args: argparse.Namespace) -> int:
    from ..bench.writers import WritersSizes, run_writers
    sizes = WritersSizes.quick() if args.quick else WritersSizes()
    with tempfile.TemporaryDirectory(prefix="memkit-bench-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "writers.db"
        result = await run_writers(path, sizes, pin=not args.no_pin,
                                   progress=_say)
    document = _document(result.report, result.targets)
    text = result.table()
    _finish(args, document, text)
    return 1 if result.missed else 0


async def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from ..bench.ingest import run_ingest

    html = _docs_html(args)
    if args.resync:
        from ..bench.resync import run_resync

        resync = await run_resync(args.dir, html_root=html, step=args.step, files=args.resync,
                                  rounds=args.rounds, progress=_say)
        _finish(args, resync.to_dict(), resync.table())
        return 0
    report = await run_ingest(args.dir, html_root=html, step=args.step, rounds=args.rounds,
                              progress=_say)
    document = report.to_dict()
    text = report.table()
    _finish(args, document, text)
    return 0
