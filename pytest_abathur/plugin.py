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
from typing import TYPE_CHECKING, Any

import pytest

from .assertions import PlanAssertions
from .factories import (
    DBS,
    MARKER_GUARD,
    _allowed_scans,
    _async_fixture,
    _marker_seeds,
    _session_template,
    _start_marker_guard,
    _stop_marker_guard,
    _trace_for_guard,
    apply_seed,
    fresh_database,
    load_seed,
)
from .guard import QueryGuard
from .history import (
    FIELDS,
    CompareRule,
    find_run,
    histogram,
    parse_compare_fail,
    run_values,
    save_run,
    stats_values,
)
from .latency import (
    Baseline,
    Gates,
    LatencyGateError,
    LatencyGateWarning,
    MemkitBaselineWarning,
    benchmark_json,
    compare,
    evaluate,
    measure,
)
from .postgres import DB_CONFIG, DbConfig, PgTemplate, start_server
from .sync import SyncDatabase

if TYPE_CHECKING:
    from abathur_memkit.stats import LatencyStats

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

VERSION = "0.1.0"
DEFAULT_ROUNDS = 200
DEFAULT_WARMUP = 20
DEFAULT_VM_ROUNDS = 3
GATE_MODES = ("fail", "warn", "vm", "off")

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

# Every ini option is also a command-line option (the command line wins):
# (ini name, flag, metavar, help, ini default).
_INI_OPTIONS: tuple[tuple[str, str, str, str, str], ...] = (
    ("memkit_baseline", "--memkit-baseline", "PATH",
     "baseline file to compare latency measurements with (ini: relative to the rootdir)", ""),
    ("memkit_gates", "--memkit-gates", "MODE",
     "what a failed gate does: fail (default), warn, vm (only VM-step gates fail: for noisy "
     "CI), off (each measured function runs once, untimed)", "fail"),
    ("memkit_rounds", "--memkit-rounds", "N", "default rounds per measurement",
     str(DEFAULT_ROUNDS)),
    ("memkit_warmup", "--memkit-warmup", "N", "default warm-up calls", str(DEFAULT_WARMUP)),
    ("memkit_vm_rounds", "--memkit-vm-rounds", "N", "extra calls that count VM steps",
     str(DEFAULT_VM_ROUNDS)),
    *(
        (f"memkit_{gate}", f"--memkit-{gate.replace('_', '-')}", "MS",
         f"default {gate} gate for every measurement", "")
        for gate in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")
    ),
    ("memkit_max_regression", "--memkit-max-regression", "TOL",
     "default tolerance against the baseline, e.g. 20%", ""),
    ("memkit_alpha", "--memkit-alpha", "A", "significance level of the regression test", "0.01"),
    ("memkit_storage", "--memkit-storage", "DIR",
     "where runs are saved and compared from (ini: relative to the rootdir)", ".memkit/runs"),
    ("memkit_autosave", "--memkit-autosave", "yes|no",
     "save every run that measured something in the storage folder", "yes"),
    ("memkit_engine", "--memkit-engine", "ENGINE",
     "where the memkit_db fixtures put their databases: sqlite (files in tmp_path; the "
     "default without memkit_dsn) or postgresql (a database per test on a server; the "
     "default with memkit_dsn; without it the plugin starts one with pgserver)", ""),
    ("memkit_dsn", "--memkit-dsn", "URI",
     "PostgreSQL server (postgresql://user@host/db) the memkit_db fixtures create their "
     "databases on: a template migrated once, a clone per test", ""),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memkit", "abathur-memkit fixtures, plan assertions, latency gates")
    for name, flag, metavar, help_text, default in _INI_OPTIONS:
        group.addoption(flag, dest=name, metavar=metavar, default=None,
                        help=f"{help_text} (ini: {name}, default: {default or 'none'})"
                        .replace("%", "%%"))  # argparse formats help with %
        parser.addini(name, help_text, default=default)
    group.addoption(
        "--memkit-seed-file",
        dest="memkit_seed_files",
        metavar="PATH",
        action="append",
        default=None,
        help="JSON seed file memkit_seeded_db loads; repeat for more "
        "(ini: memkit_seed_files, relative to the rootdir)",
    )
    parser.addini(
        "memkit_seed_files",
        "JSON seed files (relative to the rootdir) memkit_seeded_db loads",
        type="linelist",
        default=[],
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
        "--memkit-compare",
        metavar="RUN",
        nargs="?",
        const="",
        default=None,
        help="compare with a saved run: the latest (no value), a number, a file-name "
        "prefix or a path",
    )
    group.addoption(
        "--memkit-compare-fail",
        metavar="FIELD:LIMIT",
        action="append",
        default=[],
        help="fail the session when a measurement is worse than the compared run by more "
        "than LIMIT: p50:10%% (relative) or p99:0.5 (ms); fields "
        f"{', '.join(FIELDS)}; repeatable; implies --memkit-compare",
    )
    group.addoption(
        "--memkit-histogram",
        metavar="PREFIX",
        nargs="?",
        const="memkit-histogram",
        default=None,
        help="plot each measurement's latencies to PREFIX-<name>.png (needs matplotlib; "
        "default prefix: memkit-histogram)",
    )


def _option(config: pytest.Config, name: str) -> str:
    """The command-line value of an ini option, else the ini value."""
    cli = config.getoption(name)
    return str(cli if cli is not None else config.getini(name)).strip()


def _path_option(config: pytest.Config, name: str) -> Path | None:
    """A path option: relative to the invocation dir on the command line, to the rootdir in ini."""
    cli = config.getoption(name)
    if cli:
        return (config.invocation_params.dir / str(cli)).resolve()
    ini = str(config.getini(name)).strip()
    return (config.rootpath / ini).resolve() if ini else None


def _seed_files(config: pytest.Config) -> list[str]:
    cli = config.getoption("memkit_seed_files")
    if cli:
        return [str((config.invocation_params.dir / path).resolve()) for path in cli]
    return [str(path) for path in config.getini("memkit_seed_files")]


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
    storage: Path
    autosave: bool
    compare: str | None
    compare_fail: list[CompareRule]
    histogram: Path | None
    xdist_note: str | None = None
    records: list[tuple[str, LatencyStats]] = field(default_factory=list)
    compared: list[tuple[str, dict[str, float], dict[str, float]]] = field(default_factory=list)
    compare_run: Path | None = None
    untimed: int = 0
    _baseline: Baseline | None = None
    notes: list[str] = field(default_factory=list)

    def baseline(self) -> Baseline | None:
        if self.baseline_path is None:
            return None
        if self._baseline is None:
            self._baseline = Baseline(self.baseline_path)
        return self._baseline


_STATE = pytest.StashKey[_State]()
_MEASURED = pytest.StashKey[int]()


def _int_option(config: pytest.Config, name: str) -> int:
    raw = _option(config, name)
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
        raw = _option(config, f"memkit_{key}")
        if raw:
            values[key] = raw
    try:
        return Gates.from_mapping(values)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"memkit gate options: {exc}") from None


def _gate_mode(config: pytest.Config) -> str:
    mode = _option(config, "memkit_gates") or "fail"
    mode = "fail" if mode == "all" else mode  # "all": the name before warn existed
    if mode not in GATE_MODES:
        raise pytest.UsageError(
            f"memkit_gates must be one of {', '.join(GATE_MODES)}, got {mode!r}"
        )
    return mode


def _yes(config: pytest.Config, name: str) -> bool:
    raw = _option(config, name).lower()
    if raw not in ("yes", "no", "true", "false", "1", "0", "on", "off"):
        raise pytest.UsageError(f"{name} must be yes or no, got {raw!r}")
    return raw in ("yes", "true", "1", "on")


def _compare_rules(config: pytest.Config) -> list[CompareRule]:
    try:
        return [parse_compare_fail(text) for text in config.getoption("memkit_compare_fail")]
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


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
    mode = _gate_mode(config)
    save = bool(config.getoption("memkit_save_baseline"))
    baseline_path = _path_option(config, "memkit_baseline")
    if baseline_path is None and save:
        baseline_path = root / ".memkit" / "baseline.json"
    json_opt = config.getoption("memkit_json")
    histogram = config.getoption("memkit_histogram")
    rules = _compare_rules(config)
    compare = config.getoption("memkit_compare")
    xdist = _xdist_active(config)
    state = _State(
        root=root,
        gate_mode=mode,
        wall_gates=mode in ("fail", "warn") and not xdist,
        rounds=max(1, _int_option(config, "memkit_rounds")),
        warmup=_int_option(config, "memkit_warmup"),
        vm_rounds=_int_option(config, "memkit_vm_rounds"),
        ini_gates=_ini_gates(config),
        baseline_path=baseline_path,
        save_baseline=save,
        json_path=(invocation / json_opt).resolve() if json_opt else None,
        storage=_path_option(config, "memkit_storage") or root / ".memkit" / "runs",
        autosave=_yes(config, "memkit_autosave"),
        compare="" if compare is None and rules else compare,
        compare_fail=rules,
        histogram=(invocation / histogram).resolve() if histogram else None,
    )
    if xdist and mode in ("fail", "warn"):
        state.xdist_note = (
            "memkit: wall-time latency gates are disabled under pytest-xdist (parallel "
            "workers share the CPUs, so wall time says nothing); VM-step gates still apply"
        )
    config.stash[_STATE] = state
    config.stash[DB_CONFIG] = DbConfig.from_options(
        _option(config, "memkit_engine"), _option(config, "memkit_dsn")
    )


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
    guard = item.stash.get(MARKER_GUARD, None)
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
def memkit_pg_server(pytestconfig: pytest.Config) -> Iterator[str]:
    """The PostgreSQL server the templates and test databases go on (internal):
    ``memkit_dsn``'s, or one started with pgserver for the session."""
    dsn = pytestconfig.stash[DB_CONFIG].dsn
    if dsn is not None:
        yield dsn
        return
    yield from start_server()


@pytest.fixture(scope="session")
def memkit_template(request: pytest.FixtureRequest) -> Path | PgTemplate:
    """A session-wide initialized database that memkit_db copies (internal):
    a file, or a template database on PostgreSQL."""
    return _session_template(request)


@pytest.fixture(scope="session")
def memkit_seeded_template(
    request: pytest.FixtureRequest, pytestconfig: pytest.Config
) -> Path | PgTemplate:
    """The template plus the initial memories and the ini seed files (internal)."""
    seeds: list[Any] = ["initial", *_seed_files(pytestconfig)]
    load_seed(seeds, pytestconfig.rootpath)  # fail on a bad seed file before building
    return _session_template(request, seeds)


@pytest.fixture
def memkit_db_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Path of a fresh database file in ``tmp_path``, copied from the template; on
    PostgreSQL the DSN of a fresh database cloned from the template database,
    dropped after the test.

    Seeded (initial memories and ini seed files) when the test also uses
    ``memkit_seeded_db`` (both then name the same database), or uses
    ``memkit_sync_db`` with a ``memkit_seed`` marker.
    """
    seeded = "memkit_seeded_db" in request.fixturenames or (
        "memkit_sync_db" in request.fixturenames
        and request.node.get_closest_marker("memkit_seed") is not None
    )
    template: Path | PgTemplate = request.getfixturevalue(
        "memkit_seeded_template" if seeded else "memkit_template"
    )
    return fresh_database(request, template, tmp_path / "memkit.db")


@_async_fixture
async def memkit_db(
    request: pytest.FixtureRequest, memkit_db_path: Path | str
) -> AsyncIterator[Any]:
    """A fresh, initialized WAL ``Database`` in ``tmp_path`` (on PostgreSQL: a fresh
    database of its own), closed at teardown."""
    from abathur_memkit import Database

    db = Database(memkit_db_path)
    await db.initialize()
    try:
        await _trace_for_guard(request, db)
        request.node.stash.setdefault(DBS, []).append(db)
        if "memkit_seeded_db" not in request.fixturenames:
            _start_marker_guard(request, db)
        yield db
    finally:
        _stop_marker_guard(request.node)
        await db.close()


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
def memkit_sync_db(
    request: pytest.FixtureRequest, memkit_db_path: Path | str
) -> Iterator[SyncDatabase]:
    """``memkit_db`` for sync tests: a ``SyncDatabase`` facade on its own loop thread.

    With a ``memkit_seed`` marker it is seeded like ``memkit_seeded_db``.
    """
    facade = SyncDatabase.open(memkit_db_path)
    request.node.stash.setdefault(DBS, []).append(facade.db)
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
        if state.gate_mode == "off":  # like --benchmark-disable: run once, time nothing
            rounds, warmup, vm_steps = 1, 0, False
        if db is None and vm_steps:
            dbs = item.stash.get(DBS, [])
            db = dbs[-1] if dbs else None
        if getattr(db, "dialect", "sqlite") != "sqlite":
            db = None  # VM steps and the driver are SQLite's: PostgreSQL is timed only
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
        from abathur_memkit.stats import LatencyStats

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
        if state.gate_mode == "off":
            state.untimed += 1
            return stats
        self._compare(stats, merged)
        wall = state.wall_gates
        if not wall and state.gate_mode in ("fail", "warn"):
            stats.notes.append("wall-time gates off under pytest-xdist")
        stats.failures = evaluate(stats, merged, wall=wall)
        state.records.append((item.nodeid, stats))
        if stats.failures:
            lines = [f"memkit latency gate failed for {stats.name}:"]
            lines += [f"  {failure}" for failure in stats.failures]
            lines.append(f"  measured: {stats.summary()}")
            if state.gate_mode == "warn":
                warnings.warn(LatencyGateWarning("\n".join(lines)), stacklevel=2)
            else:
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
        from abathur_memkit.machine import machine_key

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


# -- end of session: xdist hand-over, baseline, JSON, history, summary ------------------------


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
        _save_baseline(state)
    doc = benchmark_json(state.records, state.root, VERSION)
    if state.json_path is not None:
        state.json_path.parent.mkdir(parents=True, exist_ok=True)
        state.json_path.write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
        state.notes.append(f"memkit: pytest-benchmark JSON written to {state.json_path}")
    if state.compare is not None and _compare_with_run(state):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if state.autosave:
        saved = save_run(state.storage, doc)
        state.notes.append(f"memkit: run saved to {_shown(saved, state.root)}")
    if state.histogram is not None:
        _write_histograms(state, state.histogram)


def _save_baseline(state: _State) -> None:
    baseline = state.baseline()
    assert baseline is not None  # save_baseline always sets a path
    # A measurement that failed its gates does not become the new normal;
    # to accept one on purpose, run with --memkit-gates=warn.
    kept = [s for _, s in state.records if s.passed or state.gate_mode == "warn"]
    for stats in kept:
        baseline.record(stats)
    baseline.save()
    skipped = len(state.records) - len(kept)
    note = f"memkit: baseline saved to {baseline.path} ({len(kept)} measurements)"
    if skipped:
        note += f"; {skipped} that failed their gates were not saved"
    state.notes.append(note)


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to the rootdir when it is inside it."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _compare_with_run(state: _State) -> bool:
    """Compare this run with a saved one; True when a --memkit-compare-fail rule broke."""
    try:
        state.compare_run = find_run(state.storage, state.compare)
    except (LookupError, ValueError) as exc:
        state.notes.append(f"memkit: cannot compare: {exc}")
        return False
    then = run_values(state.compare_run)
    failures = []
    for _, stats in state.records:
        if stats.fullname not in then:
            continue
        now = stats_values(stats)
        state.compared.append((stats.name, now, then[stats.fullname]))
        for rule in state.compare_fail:
            failure = rule.check(stats.name, now, then[stats.fullname])
            if failure:
                failures.append(failure)
    if failures:
        state.notes.append(f"memkit: performance regressed against {state.compare_run.name}:")
        state.notes += [f"  {failure}" for failure in failures]
    return bool(failures)


def _write_histograms(state: _State, prefix: Path) -> None:
    try:
        paths = [histogram(prefix, stats) for _, stats in state.records]
    except ImportError:
        state.notes.append(
            "memkit: --memkit-histogram needs matplotlib: pip install matplotlib "
            "(or 'abathur-memkit[notebooks]'); no histogram written"
        )
        return
    state.notes.append(f"memkit: {len(paths)} histogram(s) written: {prefix}-*.png")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect a finished worker's measurements."""
    state = node.config.stash.get(_STATE, None)
    raw = getattr(node, "workeroutput", {}).get("memkit_records")
    if state is None or not raw:
        return
    from abathur_memkit.stats import LatencyStats

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
    if not state.records and not state.notes and not state.untimed:
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
            failed = "WARN" if state.gate_mode == "warn" else "FAIL"
            gate = failed if stats.failures else ("ok" if gated else "-")
            tr.write_line(
                f"{name:<44} {stats.rounds:>6} {stats.p50_ms:>9.4f} {stats.p95_ms:>9.4f} "
                f"{stats.p99_ms:>9.4f} {stats.mean_ms:>9.4f} {vm:>9}  "
                f"{_fmt_change(stats):<22} {gate}"
            )
    if state.compared:
        _write_comparison(tr, state)
    if state.gate_mode != "fail":
        tr.write_line(f"memkit: gates mode {state.gate_mode!r}")
    if state.untimed:
        tr.write_line(
            f"memkit: {state.untimed} measurement(s) ran once, untimed (--memkit-gates=off)"
        )
    if state.xdist_note:
        tr.write_line(state.xdist_note)
    for note in state.notes:
        tr.write_line(note)


def _write_comparison(tr: Any, state: _State) -> None:
    assert state.compare_run is not None
    tr.write_line(f"memkit: compared with {_shown(state.compare_run, state.root)}")
    tr.write_line(f"{'name':<44} {'field':>8} {'then':>10} {'now':>10} {'change':>8}")
    for name, now, then in state.compared:
        short = name if len(name) <= 44 else "..." + name[-41:]
        for key in ("p50", "p99", "vm_steps"):
            if key in now and key in then:
                change = f"{now[key] / then[key] - 1:+.1%}" if then[key] else "-"
                tr.write_line(
                    f"{short:<44} {key:>8} {then[key]:>10.4g} {now[key]:>10.4g} {change:>8}"
                )
                short = ""
