"""pytest plugin (entry point ``pytest11: memkit``): fixtures, markers, options, reports.

This module loads in every pytest run of every project that has abathur-memkit
installed, so it imports nothing heavy at import time: abathur_memkit, aiosqlite
and numpy load only when a memkit fixture is used.
"""

from __future__ import annotations

import json
import statistics
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .assertions import PlanAssertions
from .factories import apply_seed, build_template, clone_template, load_seed
from .guard import QueryGuard, install_trace
from .latency import (
    Baseline,
    Gates,
    LatencyGateError,
    LatencyStats,
    MemkitBaselineWarning,
    benchmark_json,
    compare,
    evaluate,
    machine_key,
    measure,
)
from .sync import SyncDatabase

__all__ = [
    "GuardFactory",
    "LatencyRunner",
    "memkit_db",
    "memkit_db_path",
    "memkit_embedder",
    "memkit_latency",
    "memkit_plan",
    "memkit_query_guard",
    "memkit_seeded_db",
    "memkit_sync_db",
]

# The async fixtures need pytest-asyncio (pytest itself then reports them as
# unsupported); importing this plugin, and the sync fixtures, never need it.
try:
    import pytest_asyncio

    _async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    _async_fixture = pytest.fixture

VERSION = "0.1.0"
DEFAULT_ROUNDS = 200
DEFAULT_WARMUP = 20
DEFAULT_VM_ROUNDS = 3
GATE_MODES = ("all", "vm", "off")

MARKERS = (
    "memkit_latency(p50_ms=None, p95_ms=None, p99_ms=None, mean_ms=None, max_ms=None, "
    "max_regression=None, max_vm_steps=None, alpha=None): gates for every memkit_latency "
    "measurement of the test",
    "memkit_allow_scan(*tables, reason): the query guard accepts full scans of these tables "
    "(reason required)",
    "memkit_query_guard: guard the whole test: every statement run on memkit_db / "
    "memkit_seeded_db is explained and a full table scan fails the test",
    "memkit_seed(*seeds): seed files (JSON, relative to the test file) or 'initial' that "
    "memkit_seeded_db applies",
)


# -- options ------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memkit", "abathur-memkit fixtures, plan assertions, latency gates")
    group.addoption(
        "--memkit-baseline",
        metavar="PATH",
        default=None,
        help="baseline file to compare latency measurements with (ini: memkit_baseline)",
    )
    group.addoption(
        "--memkit-save-baseline",
        action="store_true",
        default=False,
        help="store this run's measurements in the baseline file, for this machine and "
        "SQLite build (default file: .memkit/baseline.json)",
    )
    group.addoption(
        "--memkit-json",
        metavar="PATH",
        default=None,
        help="write measurements as pytest-benchmark JSON (readable by `pytest-benchmark compare`)",
    )
    group.addoption(
        "--memkit-gates",
        choices=GATE_MODES,
        default=None,
        help="which gates fail tests: all (default), vm (VM steps only: for noisy CI), off",
    )
    parser.addini("memkit_baseline", "baseline file (relative to the rootdir)", default="")
    parser.addini("memkit_gates", "all | vm | off", default="all")
    parser.addini("memkit_rounds", "default rounds per measurement", default=str(DEFAULT_ROUNDS))
    parser.addini("memkit_warmup", "default warm-up calls", default=str(DEFAULT_WARMUP))
    parser.addini(
        "memkit_vm_rounds", "extra calls that count VM steps", default=str(DEFAULT_VM_ROUNDS)
    )
    for gate in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms"):
        parser.addini(f"memkit_{gate}", f"default {gate} gate for every measurement", default="")
    parser.addini(
        "memkit_max_regression", "default tolerance against the baseline, e.g. 20%", default=""
    )
    parser.addini("memkit_alpha", "significance level of the regression test", default="0.01")
    parser.addini(
        "memkit_seed_files",
        "JSON seed files (relative to the rootdir) memkit_seeded_db loads",
        type="linelist",
        default=[],
    )


# -- session state ----------------------------------------------------------------------------


@dataclass
class _State:
    root: Path
    gate_mode: str
    wall_gates: bool
    rounds: int
    warmup: int
    vm_rounds: int
    ini_gates: Gates
    baseline_path: Path | None
    save_baseline: bool
    json_path: Path | None
    xdist_note: str | None = None
    records: list[tuple[str, LatencyStats]] = field(default_factory=list)
    _baseline: Baseline | None = None
    notes: list[str] = field(default_factory=list)

    def baseline(self) -> Baseline | None:
        if self.baseline_path is None:
            return None
        if self._baseline is None:
            self._baseline = Baseline(self.baseline_path)
        return self._baseline


_STATE = pytest.StashKey[_State]()
_DBS = pytest.StashKey[list[Any]]()
_MEASURED = pytest.StashKey[int]()
_MARKER_GUARD = pytest.StashKey[QueryGuard]()


def _int_ini(config: pytest.Config, name: str) -> int:
    raw = str(config.getini(name)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise pytest.UsageError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise pytest.UsageError(f"{name} must be >= 0, got {value}")
    return value


def _ini_gates(config: pytest.Config) -> Gates:
    values: dict[str, Any] = {}
    for key in Gates.KEYS:
        if key == "max_vm_steps":
            continue
        raw = str(config.getini(f"memkit_{key}")).strip()
        if raw:
            values[key] = raw
    try:
        return Gates.from_mapping(values)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"memkit ini gates: {exc}") from None


def _xdist_active(config: pytest.Config) -> bool:
    if hasattr(config, "workerinput"):
        return True
    if not config.pluginmanager.hasplugin("xdist"):
        return False
    workers = config.getoption("numprocesses", None)
    return workers not in (None, 0, "0")


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    root = config.rootpath
    invocation = config.invocation_params.dir
    mode = config.getoption("memkit_gates") or str(config.getini("memkit_gates")).strip() or "all"
    if mode not in GATE_MODES:
        raise pytest.UsageError(f"memkit_gates must be one of {GATE_MODES}, got {mode!r}")
    cli_baseline = config.getoption("memkit_baseline")
    ini_baseline = str(config.getini("memkit_baseline")).strip()
    save = bool(config.getoption("memkit_save_baseline"))
    baseline_path: Path | None = None
    if cli_baseline:
        baseline_path = (invocation / cli_baseline).resolve()
    elif ini_baseline:
        baseline_path = (root / ini_baseline).resolve()
    elif save:
        baseline_path = root / ".memkit" / "baseline.json"
    json_opt = config.getoption("memkit_json")
    xdist = _xdist_active(config)
    state = _State(
        root=root,
        gate_mode=mode,
        wall_gates=mode == "all" and not xdist,
        rounds=max(1, _int_ini(config, "memkit_rounds")),
        warmup=_int_ini(config, "memkit_warmup"),
        vm_rounds=_int_ini(config, "memkit_vm_rounds"),
        ini_gates=_ini_gates(config),
        baseline_path=baseline_path,
        save_baseline=save,
        json_path=(invocation / json_opt).resolve() if json_opt else None,
    )
    if xdist and mode == "all":
        state.xdist_note = (
            "memkit: wall-time latency gates are disabled under pytest-xdist (parallel "
            "workers share the CPUs, so wall time says nothing); VM-step gates still apply"
        )
    config.stash[_STATE] = state


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("memkit_allow_scan"):
        reason = marker.kwargs.get("reason")
        if not marker.args or not isinstance(reason, str) or not reason.strip():
            pytest.fail(
                "memkit_allow_scan needs table names and a reason: "
                '@pytest.mark.memkit_allow_scan("audit", reason="nightly report")',
                pytrace=False,
            )
    names = getattr(item, "fixturenames", ())
    if item.get_closest_marker("memkit_query_guard") and not (
        "memkit_db" in names or "memkit_seeded_db" in names
    ):
        pytest.fail(
            "the memkit_query_guard marker guards memkit_db / memkit_seeded_db: "
            "use one of them, or `async with memkit_query_guard(db):` for another database",
            pytrace=False,
        )
    latency = item.get_closest_marker("memkit_latency")
    if latency is not None:
        if latency.args:
            pytest.fail("memkit_latency takes keyword arguments only", pytrace=False)
        try:
            Gates.from_mapping(latency.kwargs)
        except (TypeError, ValueError) as exc:
            pytest.fail(f"memkit_latency marker: {exc}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    __tracebackhide__ = True
    guard = item.stash.get(_MARKER_GUARD, None)
    try:
        result = yield
    finally:
        _stop_marker_guard(item)
    if guard is not None:
        # Checked here, not at fixture teardown, so a scan fails the test itself.
        guard.check_sync()
        guard.raise_for_violations()
    if item.get_closest_marker("memkit_latency") and not item.stash.get(_MEASURED, 0):
        warnings.warn(
            MemkitBaselineWarning(
                f"{item.nodeid} has a memkit_latency marker but measured nothing "
                "(await memkit_latency(...) in the test)"
            ),
            stacklevel=1,
        )
    return result


# -- databases ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def memkit_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide initialized database file that memkit_db copies (internal)."""
    return build_template(tmp_path_factory.mktemp("memkit-template") / "template.db")


@pytest.fixture(scope="session")
def memkit_seeded_template(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Path:
    """The template plus the initial memories and the ini seed files (internal)."""
    seeds: list[Any] = ["initial", *pytestconfig.getini("memkit_seed_files")]
    load_seed(seeds, pytestconfig.rootpath)  # fail on a bad seed file before building
    return build_template(
        tmp_path_factory.mktemp("memkit-seeded") / "template.db",
        seed=seeds,
        base=pytestconfig.rootpath,
    )


@pytest.fixture
def memkit_db_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Path of a fresh database file in ``tmp_path``, copied from the template.

    Seeded (initial memories and ini seed files) when the test also uses
    ``memkit_seeded_db`` (both then name the same database), or uses
    ``memkit_sync_db`` with a ``memkit_seed`` marker.
    """
    seeded = "memkit_seeded_db" in request.fixturenames or (
        "memkit_sync_db" in request.fixturenames
        and request.node.get_closest_marker("memkit_seed") is not None
    )
    template: Path = request.getfixturevalue(
        "memkit_seeded_template" if seeded else "memkit_template"
    )
    return clone_template(template, tmp_path / "memkit.db")


def _wants_guard(request: pytest.FixtureRequest) -> bool:
    return "memkit_query_guard" in request.fixturenames or bool(
        request.node.get_closest_marker("memkit_query_guard")
    )


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
        request.node.stash[_MARKER_GUARD] = guard


def _stop_marker_guard(node: pytest.Item) -> None:
    guard = node.stash.get(_MARKER_GUARD, None)
    if guard is not None:
        del node.stash[_MARKER_GUARD]
        guard.stop()


@_async_fixture
async def memkit_db(request: pytest.FixtureRequest, memkit_db_path: Path) -> AsyncIterator[Any]:
    """A fresh, initialized WAL ``Database`` in ``tmp_path``, closed at teardown."""
    from abathur_memkit import Database

    db = Database(memkit_db_path)
    await db.initialize()
    try:
        if _wants_guard(request):
            await install_trace(db)
        request.node.stash.setdefault(_DBS, []).append(db)
        if "memkit_seeded_db" not in request.fixturenames:
            _start_marker_guard(request, db)
        yield db
    finally:
        _stop_marker_guard(request.node)
        await db.close()


def _marker_seeds(node: Any) -> list[Any]:
    """The ``memkit_seed`` markers' seeds, outermost (module) first.

    ``"initial"`` is dropped: the seeded template has those memories already.
    """
    seeds: list[Any] = []
    for marker in reversed(list(node.iter_markers("memkit_seed"))):
        seeds += [s for s in marker.args if s != "initial"]
    return seeds


@_async_fixture
async def memkit_seeded_db(request: pytest.FixtureRequest, memkit_db: Any) -> AsyncIterator[Any]:
    """``memkit_db`` with seed 004's initial memories, the ini seed files and the
    ``memkit_seed`` marker's files (the same Database object as ``memkit_db``)."""
    seeds = _marker_seeds(request.node)
    if seeds:
        await apply_seed(memkit_db, seeds, Path(str(request.node.path)).parent)
    _start_marker_guard(request, memkit_db)
    yield memkit_db


@pytest.fixture
def memkit_sync_db(request: pytest.FixtureRequest, memkit_db_path: Path) -> Iterator[SyncDatabase]:
    """``memkit_db`` for sync tests: a ``SyncDatabase`` facade on its own loop thread.

    With a ``memkit_seed`` marker it is seeded like ``memkit_seeded_db``.
    """
    facade = SyncDatabase.open(memkit_db_path)
    request.node.stash.setdefault(_DBS, []).append(facade.db)
    try:
        seeds = _marker_seeds(request.node)
        if seeds:
            facade.run(apply_seed(facade.db, seeds, Path(str(request.node.path)).parent))
        yield facade
    finally:
        facade.close()


@pytest.fixture
def memkit_embedder() -> Any:
    """A deterministic, offline embedder (``HashingEmbedder``, 384 dimensions)."""
    try:
        from abathur_memkit.embeddings import HashingEmbedder
    except ImportError as exc:
        pytest.skip(f"memkit_embedder: abathur_memkit.embeddings.HashingEmbedder missing ({exc})")
    return HashingEmbedder()


# -- plans and guards ----------------------------------------------------------------------------


@pytest.fixture
def memkit_plan() -> PlanAssertions:
    """``explain`` / ``assert_uses_index`` / ``assert_no_full_scan`` (all awaitable)."""
    return PlanAssertions()


class GuardFactory:
    """``memkit_query_guard(db, allow={...})`` -> a ``QueryGuard`` (``with`` / ``async with``).

    Scans allowed by ``@pytest.mark.memkit_allow_scan`` on the test are added.
    """

    def __init__(self, node: pytest.Item) -> None:
        self._node = node

    def __call__(self, db: Any, *, allow: dict[str, str] | None = None) -> QueryGuard:
        return QueryGuard(db, allow={**_allowed_scans(self._node), **(allow or {})})


@pytest.fixture
def memkit_query_guard(request: pytest.FixtureRequest) -> GuardFactory:
    """Guard a block: ``with memkit_query_guard(db):`` or ``async with ...``."""
    return GuardFactory(request.node)


# -- latency ---------------------------------------------------------------------------


class LatencyRunner:
    """``await memkit_latency(fn, rounds=..., warmup=...)`` -> ``LatencyStats``.

    Gates come from the ini options, then the ``memkit_latency`` marker, then
    keyword arguments of the call. VM steps are counted on ``db`` (default: the
    memkit database of the test, if any).
    """

    def __init__(self, item: pytest.Item, state: _State) -> None:
        self._item = item
        self._state = state

    async def __call__(
        self,
        fn: Callable[[], Awaitable[Any] | Any],
        *,
        rounds: int | None = None,
        warmup: int | None = None,
        name: str | None = None,
        db: Any = None,
        vm_steps: bool = True,
        vm_rounds: int | None = None,
        **gates: Any,
    ) -> LatencyStats:
        __tracebackhide__ = True
        state, item = self._state, self._item
        marker = item.get_closest_marker("memkit_latency")
        merged = Gates.from_mapping(marker.kwargs if marker else {}, state.ini_gates)
        merged = Gates.from_mapping(gates, merged)
        rounds = state.rounds if rounds is None else rounds
        warmup = min(state.warmup, rounds) if warmup is None else warmup
        if db is None and vm_steps:
            dbs = item.stash.get(_DBS, [])
            db = dbs[-1] if dbs else None
        data, steps = await measure(
            fn,
            rounds=rounds,
            warmup=warmup,
            db=db if vm_steps else None,
            vm_rounds=state.vm_rounds if vm_rounds is None else vm_rounds,
        )
        count = item.stash.get(_MEASURED, 0) + 1
        item.stash[_MEASURED] = count
        label = name or (None if count == 1 else f"#{count}")
        driver = getattr(db, "driver", None)
        stats = LatencyStats(
            name=f"{item.name}:{label}" if label else item.name,
            fullname=f"{item.nodeid}:{label}" if label else item.nodeid,
            data_ns=data,
            warmup=warmup,
            vm_steps=statistics.median_low(steps) if steps else None,
            vm_steps_rounds=steps,
            sqlite_version=str(driver.module.sqlite_version) if driver else None,
            driver=str(driver.name) if driver else None,
            gates=merged.as_dict(),
        )
        self._compare(stats, merged)
        wall = state.wall_gates
        vm = state.gate_mode != "off"
        if not wall and state.gate_mode == "all":
            stats.notes.append("wall-time gates off under pytest-xdist")
        stats.failures = evaluate(stats, merged, wall=wall, vm=vm)
        state.records.append((item.nodeid, stats))
        if stats.failures:
            lines = [f"memkit latency gate failed for {stats.name}:"]
            lines += [f"  {failure}" for failure in stats.failures]
            lines.append(f"  measured: {stats.summary()}")
            raise LatencyGateError("\n".join(lines))
        return stats

    def _compare(self, stats: LatencyStats, gates: Gates) -> None:
        state = self._state
        baseline = state.baseline()
        if baseline is None:
            if gates.max_regression is not None:
                warnings.warn(
                    MemkitBaselineWarning(
                        f"{stats.fullname}: max_regression is set but no baseline file is "
                        "configured (--memkit-baseline PATH or ini memkit_baseline)"
                    ),
                    stacklevel=3,
                )
            return
        key = machine_key(stats.sqlite_version, stats.driver)
        entry = baseline.entry(key, stats.fullname)
        if entry is None:
            if not state.save_baseline:
                where = "file missing" if not baseline.exists else f"machine key {key!r}"
                warnings.warn(
                    MemkitBaselineWarning(
                        f"no baseline for {stats.fullname} in {baseline.path} ({where}); "
                        "record one with --memkit-save-baseline"
                    ),
                    stacklevel=3,
                )
            return
        stats.comparison = compare(stats, entry)


@pytest.fixture
def memkit_latency(request: pytest.FixtureRequest) -> LatencyRunner:
    """Time individual awaits; gate them (marker, ini) and record them (JSON, baseline)."""
    return LatencyRunner(request.node, _state(request.config))


# -- end of session: xdist hand-over, baseline, JSON, summary -------------------------------


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the records to the controller
        workeroutput["memkit_records"] = json.dumps(
            [[nodeid, stats.to_dict()] for nodeid, stats in state.records]
        )
        return
    if not state.records:
        return
    if state.save_baseline:
        baseline = state.baseline()
        assert baseline is not None  # save_baseline always sets a path
        # A measurement that failed its gates does not become the new normal;
        # to accept one on purpose, run with --memkit-gates=off.
        kept = [stats for _, stats in state.records if stats.passed]
        for stats in kept:
            baseline.record(stats)
        baseline.save()
        skipped = len(state.records) - len(kept)
        note = f"memkit: baseline saved to {baseline.path} ({len(kept)} measurements)"
        if skipped:
            note += f"; {skipped} that failed their gates were not saved"
        state.notes.append(note)
    if state.json_path is not None:
        doc = benchmark_json(state.records, state.root, VERSION)
        state.json_path.parent.mkdir(parents=True, exist_ok=True)
        state.json_path.write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
        state.notes.append(f"memkit: pytest-benchmark JSON written to {state.json_path}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect a finished worker's measurements."""
    state = node.config.stash.get(_STATE, None)
    raw = getattr(node, "workeroutput", {}).get("memkit_records")
    if state is None or not raw:
        return
    for nodeid, data in json.loads(raw):
        state.records.append((nodeid, LatencyStats.from_dict(data)))


def _fmt_change(stats: LatencyStats) -> str:
    comp = stats.comparison
    if comp is None:
        return "-"
    text = f"{comp.change:+.1%} p={comp.p_value:.2g}"
    vm_change = comp.vm_change
    if vm_change:
        text += f" vm {vm_change:+.1%}"
    return text


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or hasattr(config, "workerinput"):
        return
    if not state.records and not state.notes:
        return
    tr = terminalreporter
    tr.section("memkit latency")
    if state.records:
        header = (
            f"{'name':<44} {'rounds':>6} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} "
            f"{'mean ms':>9} {'vm steps':>9}  {'vs baseline':<22} gate"
        )
        tr.write_line(header)
        for _, stats in state.records:
            name = stats.name if len(stats.name) <= 44 else "..." + stats.name[-41:]
            vm = "-" if stats.vm_steps is None else str(stats.vm_steps)
            gated = any(k != "alpha" for k in stats.gates)
            gate = "FAIL" if stats.failures else ("ok" if gated else "-")
            tr.write_line(
                f"{name:<44} {stats.rounds:>6} {stats.p50_ms:>9.4f} {stats.p95_ms:>9.4f} "
                f"{stats.p99_ms:>9.4f} {stats.mean_ms:>9.4f} {vm:>9}  "
                f"{_fmt_change(stats):<22} {gate}"
            )
    if state.gate_mode != "all":
        tr.write_line(f"memkit: gates mode {state.gate_mode!r}")
    if state.xdist_note:
        tr.write_line(state.xdist_note)
    for note in state.notes:
        tr.write_line(note)
