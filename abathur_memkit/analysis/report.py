"""``memkit report``: execute the notebooks on a database and export them to HTML.

Each notebook in ``notebooks/`` has a cell tagged ``parameters`` (the
papermill convention) setting ``db = None`` and ``bench = None``. The report
has papermill inject a cell tagged ``injected-parameters`` right after it with
the database file and benchmark directory to read, executes the notebook with
nbclient in a Python kernel of this interpreter, exports it with nbconvert's
``HTMLExporter`` to ``<name>.html``, extracts each plot to
``figures/<name>-<cell>-<n>.png`` (nbconvert's ``ExtractOutputPreprocessor``),
and renders ``index.html`` from a jinja2 template: the key numbers first, then
a link and the plots of each notebook.

Needs the ``notebooks`` extra (pandas, matplotlib, nbclient, nbconvert,
papermill, ipykernel): ``pip install 'abathur-memkit[notebooks]'``.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..engines.interface import Connection
from ..errors import InvalidInputError, MemkitError
from .optional import require
from .queries import REPORT_COUNTS
from .sources import NotebookInputs, connect_readonly, notebook_inputs

__all__ = [
    "NOTEBOOKS",
    "NotebookRun",
    "Report",
    "ReportError",
    "build_report",
    "execute_notebook",
    "key_numbers",
    "notebooks_dir",
]

#: The notebooks a report runs, in order.
NOTEBOOKS = ("performance", "capacity", "audit")
#: The notebooks that read benchmark files only (no database needed).
BENCH_ONLY = ("performance",)
#: The index page's template, beside this module.
INDEX_TEMPLATE = "report_index.html.j2"


class ReportError(MemkitError):
    """A notebook failed to execute (its partial HTML is written all the same)."""


@dataclass
class NotebookRun:
    """One executed notebook."""

    name: str
    html: Path
    figures: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Report:
    """What ``build_report`` wrote."""

    directory: Path
    index: Path
    notebooks: list[NotebookRun] = field(default_factory=list)
    numbers: dict[str, str] = field(default_factory=dict)

    @property
    def figures(self) -> list[Path]:
        return [f for run in self.notebooks for f in run.figures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "index": str(self.index),
            "numbers": dict(self.numbers),
            "notebooks": [{"name": r.name, "html": str(r.html), "seconds": round(r.seconds, 2),
                           "figures": [str(f) for f in r.figures]} for r in self.notebooks],
        }


def _module(name: str) -> Any:
    return require(name, "memkit report")


def notebooks_dir() -> Path:
    """Where the notebooks are: shipped in the package, or the repository's ``notebooks/``."""
    here = Path(__file__).resolve().parents[1]  # the package: abathur_memkit/
    for candidate in (here / "notebooks", here.parent / "notebooks"):
        if all((candidate / f"{name}.ipynb").is_file() for name in NOTEBOOKS):
            return candidate
    raise InvalidInputError(
        "the notebooks were not found (looked in "
        f"{here / 'notebooks'} and {here.parent / 'notebooks'}): pass --notebooks-dir"
    )


def execute_notebook(
    path: str | os.PathLike[str],
    parameters: dict[str, Any] | None = None,
    *,
    timeout: int = 600,
) -> tuple[Any, BaseException | None]:
    """Execute a notebook in its own directory; return it with its outputs, and any error.

    ``parameters`` (e.g. ``{"db": "/abs/agents.db"}``) are injected by
    papermill after the ``parameters`` cell. The error, if a cell failed, is
    returned rather than raised, so the caller can still export what ran.
    """
    nbclient = _module("nbclient")
    traitlets_config = _module("traitlets.config")
    iorw = _module("papermill.iorw")
    parameterize = _module("papermill.parameterize")
    _module("ipykernel")
    notebook = Path(path)
    nb = iorw.load_notebook_node(str(notebook))
    if parameters:
        nb = parameterize.parameterize_notebook(nb, parameters,
                                                comment="Injected by memkit report")
    with tempfile.TemporaryDirectory(prefix="memkit-kernel-") as sockets:
        # Unix sockets in a private directory: no TCP ports, and no warning about them.
        # Given as configuration, so nbclient still owns (and shuts down) the kernel.
        config = traitlets_config.Config(
            {"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}}
            if os.name == "posix" else {})
        # nbclient waits only 4 s for a cell's last output after it finishes and
        # then drops it silently; on a loaded machine that lost printed results.
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3", config=config,
            iopub_timeout=60, raise_on_iopub_timeout=True,
            resources={"metadata": {"path": str(notebook.parent.resolve())}})
        try:
            client.execute()
        except Exception as exc:  # CellExecutionError, DeadKernelError, timeouts
            return nb, exc
    return nb, None


def _figures(nb: Any, name: str, out: Path) -> list[Path]:
    """Write each PNG output of ``nb`` to ``out/figures/`` (nbconvert's extractor)."""
    preprocessors = _module("nbconvert.preprocessors")
    extractor = preprocessors.ExtractOutputPreprocessor(
        extract_output_types={"image/png"},
        output_filename_template="{unique_key}-{cell_index}-{index}{extension}")
    _, resources = extractor.preprocess(
        nb.copy(), {"unique_key": name, "output_files_dir": "figures", "outputs": {}})
    paths = []
    for relative, data in resources["outputs"].items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        paths.append(target.resolve())
    return paths


def _count(conn: Connection, sql: str) -> str:
    try:
        return f"{conn.execute(sql).fetchone()[0]:,}"
    except Exception:  # an older schema without the table
        return "n/a"


def _database_numbers(database: Path, limit_gb: float) -> dict[str, str]:
    from . import capacity_projection, memory_growth

    with connect_readonly(database) as conn:
        numbers = {name: _count(conn, sql) for name, sql in REPORT_COUNTS.items()}
    size = sum(f.stat().st_size for f in (database, Path(f"{database}-wal")) if f.is_file())
    numbers["database size"] = f"{size / 1e6:,.1f} MB"
    projection = capacity_projection(memory_growth(database), limit_gb=limit_gb)
    numbers["growth"] = f"{projection.bytes_per_day / 1e6:,.2f} MB/day" + (
        "" if projection.reliable else " (unreliable)")
    numbers[f"reaches {limit_gb:g} GB"] = projection.when()
    return numbers


def _bench_numbers(files: list[Path]) -> dict[str, str]:
    from . import latest_run, load_benchmarks

    latest = latest_run(load_benchmarks(files))

    def value(name: str, column: str) -> float:
        rows = latest[latest["name"] == name]
        return float(rows[column].iloc[-1]) if len(rows) else math.nan

    p50, writes = value("get_memory", "p50_ms"), value("add_memories_batch", "ops")
    return {
        "writes/s (add_memories_batch)": "n/a" if math.isnan(writes) else f"{writes:,.0f}",
        "p50 get_memory": "n/a" if math.isnan(p50) else f"{p50:.3f} ms",
    }


def key_numbers(inputs: NotebookInputs, *, limit_gb: float = 10) -> dict[str, str]:
    """The numbers the report's index page leads with, as display text.

    From the database: memories (not deleted), sessions, file size (with its
    WAL), growth per day and when it reaches ``limit_gb`` (or why that is not
    projected). From the newest benchmark run: writes per second of
    ``add_memories_batch`` and the p50 latency of ``get_memory``.
    """
    numbers: dict[str, str] = {}
    if inputs.database is not None:
        numbers.update(_database_numbers(inputs.database, limit_gb))
    numbers.update(_bench_numbers(inputs.benchmarks) if inputs.benchmarks else
                   {"benchmarks": "none (no benchmark JSON files)"})
    return numbers


def _index(report: Report, inputs: NotebookInputs) -> str:
    jinja2 = _module("jinja2")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return str(env.get_template(INDEX_TEMPLATE).render(
        report=report, inputs=inputs,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))


def _chosen(notebooks: Sequence[str] | None, inputs: NotebookInputs) -> Sequence[str]:
    """The notebooks to run: those asked for, or all the inputs allow."""
    if inputs.database is not None:
        return notebooks or NOTEBOOKS
    if not notebooks:
        return BENCH_ONLY
    needing = [n for n in notebooks if n not in BENCH_ONLY]
    if needing:
        raise InvalidInputError(
            f"notebook(s) {', '.join(needing)} read a database: pass --db PATH")
    return notebooks


def build_report(
    db: str | os.PathLike[str] | None,
    output_dir: str | os.PathLike[str],
    *,
    bench: str | os.PathLike[str] | None = None,
    notebooks: Sequence[str] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
    timeout: int = 600,
    progress: Callable[[str], object] | None = None,
) -> Report:
    """Execute ``notebooks`` on ``db`` and ``bench``; write HTML and PNGs to ``output_dir``.

    ``db`` is a memkit database file of any name, or a directory holding
    ``agents.db`` and ``bench/*.json`` (what ``memkit demo`` writes); ``bench``
    a directory of benchmark JSON (default: ``bench/`` beside the database).
    With ``bench`` only, the notebooks that need no database run. Raises
    ``ReportError`` naming the notebook when one fails, after writing its HTML
    up to the failing cell.
    """
    exporter_module = _module("nbconvert")
    if db is None and bench is None:
        raise InvalidInputError("nothing to report on: pass a database (--db) or --bench DIR")
    inputs = notebook_inputs(db, bench)
    chosen = _chosen(notebooks, inputs)
    source = Path(source_dir) if source_dir is not None else notebooks_dir()
    unknown = [n for n in chosen if not (source / f"{n}.ipynb").is_file()]
    if unknown:
        raise InvalidInputError(f"Unknown notebook(s) in {source}: {', '.join(unknown)}")
    # Absolute paths: each notebook runs in its own directory.
    parameters = {
        "db": None if inputs.database is None else str(inputs.database),
        "bench": None if bench is None else str(Path(os.fspath(bench)).resolve()),
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out.resolve(), (out / "index.html").resolve(), numbers=key_numbers(inputs))
    failures = []
    for name in chosen:
        if progress is not None:
            progress(f"executing {name}.ipynb")
        start = time.perf_counter()
        nb, error = execute_notebook(source / f"{name}.ipynb", parameters, timeout=timeout)
        body, _ = exporter_module.HTMLExporter().from_notebook_node(nb)
        target = out / f"{name}.html"
        target.write_text(body, "utf-8")
        run = NotebookRun(name, target.resolve(), _figures(nb, name, out),
                          time.perf_counter() - start)
        report.notebooks.append(run)
        if error is not None:
            failures.append(f"{name}.ipynb: {_last_line(error)} (see {target})")
    report.index.write_text(_index(report, inputs), "utf-8")
    if failures:
        raise ReportError("notebook failed: " + "; ".join(failures))
    return report


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _last_line(error: BaseException) -> str:
    text = _ANSI.sub("", str(error)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    # nbclient's message ends with the exception line; show that.
    return lines[-1] if lines else type(error).__name__
