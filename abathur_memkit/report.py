"""``memkit report``: execute the notebooks on a data directory and export them to HTML.

Each notebook in ``notebooks/`` has a cell tagged ``parameters`` (the
papermill convention) that sets ``DATA_DIR = None``. The report inserts a
cell tagged ``injected-parameters`` right after it with the directory to
read, executes the notebook with nbclient in a Python kernel of this
interpreter, and writes ``<name>.html`` (nbconvert), each plot as
``figures/<name>-<n>.png``, and an ``index.html`` linking them.

Needs the ``notebooks`` extra (pandas, matplotlib, nbclient, nbconvert,
ipykernel): ``pip install 'abathur-memkit[notebooks]'``.
"""

from __future__ import annotations

import base64
import html
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .analysis.optional import require
from .analysis.sources import notebook_inputs
from .errors import InvalidInputError, MemkitError

__all__ = [
    "NOTEBOOKS",
    "NotebookRun",
    "Report",
    "ReportError",
    "build_report",
    "execute_notebook",
    "notebooks_dir",
]

#: The notebooks a report runs, in order.
NOTEBOOKS = ("performance", "capacity", "audit")
#: The tag of the cell whose assignments a run overrides.
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


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

    @property
    def figures(self) -> list[Path]:
        return [f for run in self.notebooks for f in run.figures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "index": str(self.index),
            "notebooks": [{"name": r.name, "html": str(r.html), "seconds": round(r.seconds, 2),
                           "figures": [str(f) for f in r.figures]} for r in self.notebooks],
        }


def _module(name: str) -> Any:
    return require(name, "memkit report")


def notebooks_dir() -> Path:
    """Where the notebooks are: shipped in the package, or the repository's ``notebooks/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "notebooks", here.parent / "notebooks"):
        if all((candidate / f"{name}.ipynb").is_file() for name in NOTEBOOKS):
            return candidate
    raise InvalidInputError(
        "the notebooks were not found (looked in "
        f"{here / 'notebooks'} and {here.parent / 'notebooks'}): pass --notebooks-dir"
    )


def _inject(nb: Any, parameters: dict[str, Any]) -> None:
    """Insert a cell assigning ``parameters`` after the ``parameters`` cell (or first)."""
    nbformat = _module("nbformat")
    source = "# Injected by memkit report\n" + "".join(
        f"{key} = {value!r}\n" for key, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    cells = nb.cells
    cells[:] = [c for c in cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    position = next((i + 1 for i, c in enumerate(cells)
                     if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])), 0)
    cells.insert(position, cell)


def execute_notebook(
    path: str | os.PathLike[str],
    parameters: dict[str, Any] | None = None,
    *,
    timeout: int = 600,
) -> tuple[Any, BaseException | None]:
    """Execute a notebook in its own directory; return it with its outputs, and any error.

    ``parameters`` (e.g. ``{"DATA_DIR": "/abs/dir"}``) are injected after the
    ``parameters`` cell. The error, if a cell failed, is returned rather than
    raised, so the caller can still export what ran.
    """
    nbformat = _module("nbformat")
    nbclient = _module("nbclient")
    traitlets_config = _module("traitlets.config")
    _module("ipykernel")
    notebook = Path(path)
    nb = nbformat.read(notebook, as_version=4)
    if parameters:
        _inject(nb, parameters)
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


def _figures(nb: Any, name: str, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                target = directory / f"{name}-{len(paths) + 1}.png"
                target.write_bytes(base64.b64decode(png))
                paths.append(target)
    return paths


def _index(report: Report, data_dir: Path) -> str:
    items = []
    for run in report.notebooks:
        thumbs = "".join(
            f'<a href="figures/{f.name}"><img src="figures/{f.name}" alt="{f.name}"></a>'
            for f in run.figures)
        items.append(f'<h2><a href="{run.html.name}">{html.escape(run.name)}</a></h2>'
                     f"<p>{len(run.figures)} plots, executed in {run.seconds:.1f} s</p>"
                     f'<div class="figs">{thumbs}</div>')
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>memkit report</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        ".figs img{width:32%;margin:0.3%;border:1px solid #ccc}</style></head><body>"
        f"<h1>memkit report</h1><p>Data: <code>{html.escape(str(data_dir))}</code></p>"
        + "".join(items) + "</body></html>\n")


def build_report(
    data_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    notebooks: Sequence[str] = NOTEBOOKS,
    source_dir: str | os.PathLike[str] | None = None,
    timeout: int = 600,
    progress: Callable[[str], object] | None = None,
) -> Report:
    """Execute ``notebooks`` on ``data_dir`` and write HTML and PNGs to ``output_dir``.

    ``data_dir`` holds ``agents.db`` and ``bench/*.json`` (what ``memkit demo``
    writes; see ``analysis.notebook_inputs``). Raises ``ReportError`` naming
    the notebook when one fails, after writing its HTML up to the failing cell.
    """
    exporter_module = _module("nbconvert")
    data = notebook_inputs(data_dir).directory  # checks it holds a database
    source = Path(source_dir) if source_dir is not None else notebooks_dir()
    unknown = [n for n in notebooks if not (source / f"{n}.ipynb").is_file()]
    if unknown:
        raise InvalidInputError(f"Unknown notebook(s) in {source}: {', '.join(unknown)}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out.resolve(), (out / "index.html").resolve())
    failures = []
    for name in notebooks:
        if progress is not None:
            progress(f"executing {name}.ipynb")
        start = time.perf_counter()
        nb, error = execute_notebook(source / f"{name}.ipynb", {"DATA_DIR": str(data)},
                                     timeout=timeout)
        exporter = exporter_module.HTMLExporter()
        body, _ = exporter.from_notebook_node(nb)
        target = out / f"{name}.html"
        target.write_text(body, "utf-8")
        run = NotebookRun(name, target.resolve(), _figures(nb, name, out / "figures"),
                          time.perf_counter() - start)
        report.notebooks.append(run)
        if error is not None:
            failures.append(f"{name}.ipynb: {_last_line(error)} (see {target})")
    report.index.write_text(_index(report, data), "utf-8")
    if failures:
        raise ReportError("notebook failed: " + "; ".join(failures))
    return report


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _last_line(error: BaseException) -> str:
    text = _ANSI.sub("", str(error)).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    # nbclient's message ends with the exception line; show that.
    return lines[-1] if lines else type(error).__name__
