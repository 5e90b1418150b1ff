"""``memkit demo``: the main job, end to end, in one directory.

init → seed (the seed guide's initial memories) → simulate an agent swarm →
index the repository's docs and search them and the memories → benchmark →
validate → execute the notebooks into an HTML report. Everything goes to
``./memkit-demo/`` (``DemoConfig.output``):

- ``agents.db`` — the database (replaced on each run)
- ``bench/core-<UTC time>.json`` — benchmark results (kept across runs, so a
  second demo shows the trend and regression analysis across runs)
- ``validate.json`` — the health checks
- ``report/index.html`` — the report; ``report/<notebook>.html`` and
  ``report/figures/*.png``
- ``summary.json`` — what this run did and how long each step took
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import agents, audit, memory, sessions, tasks
from ..database import Database
from ..engines.interface import Connection
from ..seed import seed_initial_memories
from ..values import timestamp

if TYPE_CHECKING:
    from .simulate import WorkloadResult

__all__ = ["DemoConfig", "DemoResult", "DemoStep", "run_demo"]

@dataclass(frozen=True)
class DemoConfig:
    output: str | os.PathLike[str] = "memkit-demo"
    agents: int = 50
    operations: int = 100_000
    days: float = 14.0
    seed: int = 7
    full_bench: bool = True  # the full core benchmark takes ~7 s here; False: --quick
    report: bool = True
    progress: bool = True  # progress bars and step lines on stderr


@dataclass
class DemoStep:
    name: str
    seconds: float
    result: str
    ok: bool = True
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    output: Path
    steps: list[DemoStep] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "output": str(self.output),
            "seconds": round(self.seconds, 2),
            "steps": [{"name": s.name, "seconds": round(s.seconds, 2), "ok": s.ok,
                       "result": s.result, "details": s.details} for s in self.steps],
            "paths": self.paths,
            "numbers": self.numbers,
        }

    def table(self) -> str:
        lines = [f"{'step':<10} {'time':>8}  result", f"{'-' * 10} {'-' * 8}  {'-' * 50}"]
        for s in self.steps:
            mark = "" if s.ok else "  << FAILED"
            lines.append(f"{s.name:<10} {s.seconds:>7.1f}s  {s.result}{mark}")
        lines.append(f"{'total':<10} {self.seconds:>7.1f}s")
        lines.append("")
        width = max((len(k) for k in self.numbers), default=0)
        lines += [f"{k:<{width}}  {v}" for k, v in self.numbers.items()]
        lines.append("")
        lines += [f"{k:<{width}}  {v}" for k, v in self.paths.items()]
        return "\n".join(lines)


class _Runner:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.out = Path(config.output).resolve()
        self.result = DemoResult(self.out)

    def say(self, message: str) -> None:
        if self.config.progress:
            print(f"memkit demo: {message}", file=sys.stderr, flush=True)

    async def step(self, name: str, action: Callable[[], Awaitable[DemoStep]]) -> DemoStep:
        self.say(f"{name} ...")
        start = time.perf_counter()
        step = await action()
        step.seconds = time.perf_counter() - start
        self.result.steps.append(step)
        self.say(f"{name}: {step.result} ({step.seconds:.1f} s)")
        return step


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _simulate(db: Database, config: DemoConfig, since: str) -> WorkloadResult:
    from .simulate import WorkloadConfig, progress_bar, simulate

    bar = progress_bar(config.operations, config.progress)
    try:
        return await simulate(db, WorkloadConfig(
            agents=config.agents, operations=config.operations, days=config.days,
            seed=config.seed, backdate_since=since), progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()


#: What the demo asks of the indexed docs (hybrid) and of the memories (keyword).
DOCS_QUERY = "how do I back up the database while agents keep writing?"
MEMORY_QUERY = "audit trail rollback on failure"


def _doc_roots() -> list[tuple[Path, str]]:
    """The repository's sample design docs (none in a wheel).

    Not the README: it quotes this demo's own output, query included, so it
    would only find itself.
    """
    repo = Path(__file__).resolve().parents[2]
    roots = []
    if (repo / "pyproject.toml").is_file():
        for docs in (repo / "docs", repo / "tests" / "data" / "docs"):
            if docs.is_dir():
                roots.append((docs, "**/*.md"))
    return roots


def _hit(hit: Any) -> dict[str, Any]:
    where = (f"{hit.namespace}:{hit.key}" if hit.source == "memory"
             else f"{Path(hit.file_path or '').name} § {hit.heading or hit.title}")
    return {"where": where, "score": round(float(hit.score), 4), "source": hit.source,
            "text": " ".join(hit.text.split())[:120]}


async def _search_step(path: Path) -> DemoStep:
    """Index the repository's docs with the offline embedder, then search them and memories."""
    from ..errors import EmbeddingError, MemkitError

    roots = _doc_roots()
    if not roots:
        return DemoStep("search", 0, "skipped: no markdown docs next to the package")
    async with Database(path, embedder="default") as db:
        documents = chunks = embedded = 0
        model = None
        try:
            for root, pattern in roots:
                synced = await db.documents.sync_directory(root, pattern)
                documents += synced.scanned
                chunks += synced.chunks_written
                embedded += synced.embedded_chunks
                model = synced.model or model
            hits = await db.search.hybrid(DOCS_QUERY, k=3, source="documents")
            mode = "hybrid"
        except (EmbeddingError, ImportError) as exc:  # no offline model: keyword only
            for root, pattern in roots:
                synced = await db.documents.sync_directory(root, pattern, embed=False)
                documents += synced.scanned
                chunks += synced.chunks_written
            hits = await db.search.keyword(DOCS_QUERY, k=3, source="documents")
            mode = f"keyword only ({exc})"
        try:
            memory_hits = await db.search.keyword(MEMORY_QUERY, k=3, source="memories")
        except MemkitError:
            memory_hits = []
    details: dict[str, Any] = {
        "documents": documents, "chunks": chunks, "embedded_chunks": embedded, "model": model,
        "mode": mode, "docs_query": DOCS_QUERY, "docs_hits": [_hit(h) for h in hits],
        "memory_query": MEMORY_QUERY, "memory_hits": [_hit(h) for h in memory_hits],
    }
    top = _hit(hits[0])["where"] if hits else "no hits"
    return DemoStep("search", 0, f"{documents} docs, {chunks} chunks ({model or 'no model'}), "
                    f"{mode}: top hit {top}", details=details)


async def _bench(runner: _Runner) -> DemoStep:
    from ..bench.core import CoreSizes, run_core
    from ..engines.sqlite.driver import select_driver

    bench_dir = runner.out / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    scratch = runner.out / "bench-scratch.db"
    sizes = CoreSizes() if runner.config.full_bench else CoreSizes.quick()
    try:
        report = await run_core(scratch, sizes, progress=lambda m: runner.say(f"bench: {m}"))
    finally:
        _remove_database(scratch)
    driver = select_driver()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = report.write(bench_dir / f"core-{stamp}.json",
                          sqlite_version=driver.sqlite_version, driver=driver.name)
    runner.result.paths["benchmark JSON"] = str(target)
    compared = [r for r in report.results if "met" in r.extra]
    met = sum(1 for r in compared if r.extra["met"])
    runner.result.numbers["bench targets met"] = f"{met}/{len(compared)} (ratios vs raw SQLite)"
    kind = "full" if runner.config.full_bench else "quick"
    return DemoStep("bench", 0.0, f"core ({kind}): {len(report.results)} benchmarks, "
                    f"{met}/{len(compared)} ratio targets met",
                    details={"file": str(target), "table": report.table()})


async def _counts(db: Database) -> dict[str, int]:
    def read(conn: Connection) -> dict[str, int]:
        return {
            "memories (versions)": memory.count_rows(conn),
            "memory keys (live)": memory.count_live_keys(conn),
            "sessions": sessions.count_sessions(conn),
            "session events": sessions.count_events(conn),
            "tasks": tasks.count_tasks(conn),
            "agents": agents.count_agents(conn),
            "audit rows": audit.count_rows(conn),
        }

    return await db.read(read, snapshot=True)


def _capacity_numbers(path: Path) -> dict[str, str]:
    from ..analysis import capacity_projection, memory_growth

    projection = capacity_projection(memory_growth(path), limit_gb=10)
    out = {
        "growth": f"{projection.bytes_per_day / 1e6:,.2f} MB/day over "
                  f"{projection.days_observed} simulated days",
        "reaches 10 GB": projection.when(),
    }
    for kind in ("memory", "event", "document_chunk"):
        value = projection.bytes_per(kind)
        if not math.isnan(value):
            out[f"bytes per {kind.replace('_', ' ')}"] = f"{value:,.0f}"
    if projection.index_share is not None:
        out["index share"] = f"{projection.index_share:.0%} of the bytes (dbstat)"
    return out


async def run_demo(config: DemoConfig | None = None) -> DemoResult:
    """Run the demo; see the module docstring for what it writes."""
    config = config or DemoConfig()
    runner = _Runner(config)
    out = runner.out
    out.mkdir(parents=True, exist_ok=True)
    path = out / "agents.db"
    result = runner.result
    result.paths["database"] = str(path)
    _remove_database(path)
    since = timestamp()
    db = Database(path, record_metrics=True)
    try:
        async def init() -> DemoStep:
            applied = await db.initialize()
            return DemoStep("init", 0, f"{path.name}: schema version "
                            f"{await db.schema_version()} (migrations {applied})")

        async def seed() -> DemoStep:
            ids = await seed_initial_memories(db)
            return DemoStep("seed", 0, f"{len(ids)} initial memories (seed guide §3.1)")

        async def simulate() -> DemoStep:
            run = await _simulate(db, config, since)
            return DemoStep("simulate", 0, f"{run.operations:,} operations by {config.agents} "
                            f"agents, {run.ops_per_second:,.0f} ops/s, spread over "
                            f"{config.days:g} days", details=run.to_dict())

        async def validate() -> DemoStep:
            report = await db.validate()
            (out / "validate.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
            passed = sum(c["passed"] for c in report["checks"])
            failed = [c["name"] for c in report["checks"] if not c["passed"]]
            text = f"{passed}/{len(report['checks'])} checks passed"
            return DemoStep("validate", 0, text + (f" (failed: {', '.join(failed)})"
                                                   if failed else ""), ok=report["ok"])

        await runner.step("init", init)
        await runner.step("seed", seed)
        await runner.step("simulate", simulate)
        found = await runner.step("search", lambda: _search_step(path))
        for label, kind in (("docs", "docs"), ("memories", "memory")):
            if found.details.get(f"{kind}_hits"):
                result.numbers[f"search {label}"] = (
                    f"{found.details[f'{kind}_query']!r} -> "
                    f"{found.details[f'{kind}_hits'][0]['where']}")
        await runner.step("bench", lambda: _bench(runner))
        await runner.step("validate", validate)
        result.paths["validation"] = str(out / "validate.json")
        result.numbers.update({k: f"{v:,}" for k, v in (await _counts(db)).items()})
        await db.checkpoint()
    finally:
        await db.close()
    result.numbers["database size"] = f"{path.stat().st_size / 1e6:,.1f} MB"
    with contextlib.suppress(ImportError):  # no pandas: the report step says what to install
        result.numbers.update(_capacity_numbers(path))
    if config.report:
        async def report() -> DemoStep:
            from ..analysis.optional import MissingDependencyError
            from ..analysis.report import ReportError, build_report

            try:
                built = build_report(out, out / "report", progress=runner.say)
            except (ReportError, MissingDependencyError) as exc:
                return DemoStep("report", 0, str(exc), ok=False)
            return DemoStep("report", 0, f"{len(built.notebooks)} notebooks, "
                            f"{len(built.figures)} plots", details=built.to_dict())

        await runner.step("report", report)
        result.paths["report"] = str(out / "report" / "index.html")
        result.paths["figures"] = str(out / "report" / "figures")
    result.paths["summary"] = str(out / "summary.json")
    (out / "summary.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", "utf-8")
    return result
