"""The notebooks: stripped in git, and executed on the sample data into the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SAMPLE = NOTEBOOKS / "data"


@pytest.mark.parametrize("name", ["performance", "capacity", "audit"])
def test_notebook_is_stripped_and_parameterized(name: str) -> None:
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    assert {"db = None", "bench = None"} <= set("".join(tagged[0]["source"]).splitlines())
    # Logic lives in the package: cells call abathur_memkit.analysis, and stay short.
    assert all(len("".join(c["source"]).splitlines()) <= 8 for c in code)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_report_on_the_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pandas")
    pytest.importorskip("nbclient")
    pytest.importorskip("nbconvert")
    pytest.importorskip("ipykernel")
    from abathur_memkit.cli import main

    out = tmp_path / "report"
    code = main(["report", str(SAMPLE), "--output", str(out), "--json"])
    stdout, _ = capsys.readouterr()
    assert code == 0, stdout
    report = json.loads(stdout)
    assert [n["name"] for n in report["notebooks"]] == ["performance", "capacity", "audit"]
    figures = [Path(f) for n in report["notebooks"] for f in n["figures"]]
    assert len(figures) >= 4
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "capacity.html").read_text()
    assert "Traceback" not in html
    assert "# Injected by memkit report" in html  # the parameters cell's override
    assert f"{SAMPLE.resolve()} (db)" in html  # what notebook_inputs resolved
    assert "bytes measured by: dbstat" in html
    index = (out / "index.html").read_text()
    assert all(f'<a href="{n}.html">' in index for n in ("performance", "capacity", "audit"))
    # The key numbers lead the page, before the first notebook link.
    numbers = report["numbers"]
    assert numbers["memories"] == "600" and numbers["sessions"] == "98"
    assert numbers["p50 get_memory"] == "0.051 ms"
    assert numbers["writes/s (add_memories_batch)"] == "10,357"
    assert numbers["reaches 10 GB"].startswith("on 2")
    for label, value in numbers.items():
        assert f"<tr><th>{label}</th><td>{value}</td></tr>" in index
    assert index.index("<th>memories</th>") < index.index('<a href="performance.html">')
    assert "regression: get_memory" in (out / "performance.html").read_text()
    # The notebooks on disk are untouched (still stripped).
    assert all(c.get("outputs", []) == [] for c in json.loads(
        (NOTEBOOKS / "capacity.ipynb").read_text())["cells"])


def test_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("nbclient")
    from abathur_memkit.cli import main

    code = main(["report", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and "holding no agents.db or agents.sqlite3" in err
    code = main(["report", "--bench", str(SAMPLE / "bench"), "--only", "capacity"])
    _, err = capsys.readouterr()
    assert code == 2 and "capacity read a database: pass --db PATH" in err
    broken = tmp_path / "nbs"
    broken.mkdir()
    for name in ("performance", "capacity", "audit"):
        (broken / f"{name}.ipynb").write_text((NOTEBOOKS / f"{name}.ipynb").read_text())
    nb = json.loads((broken / "audit.ipynb").read_text())
    nb["cells"].append({"cell_type": "code", "id": "boom", "metadata": {}, "execution_count": None,
                        "outputs": [], "source": "raise RuntimeError('boom')"})
    (broken / "audit.ipynb").write_text(json.dumps(nb))
    code = main(["report", str(SAMPLE), "--output", str(tmp_path / "out"), "--notebooks-dir",
                 str(broken), "--only", "audit"])
    _, err = capsys.readouterr()
    assert code == 1 and "audit.ipynb: RuntimeError: boom" in err
    assert (tmp_path / "out" / "audit.html").is_file()  # what ran is still exported


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_report_on_any_database_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh swarm under a name of its own, and a first benchmark run, via --db/--bench."""
    pytest.importorskip("pandas")
    pytest.importorskip("nbclient")
    pytest.importorskip("papermill")
    from abathur_memkit.cli import main

    db = tmp_path / "swarm-2026.sqlite"
    assert main(["simulate", str(db), "--operations", "200", "--agents", "3", "--days", "0",
                 "--no-progress", "--json"]) == 0
    bench = tmp_path / "first-run"
    bench.mkdir()
    first = sorted((SAMPLE / "bench").glob("core-*.json"))[0]
    (bench / first.name).write_text(first.read_text())
    capsys.readouterr()
    out = tmp_path / "report"
    code = main(["report", "--db", str(db), "--bench", str(bench), "--output", str(out),
                 "--json"])
    stdout, _ = capsys.readouterr()
    assert code == 0, stdout
    report = json.loads(stdout)
    assert [n["name"] for n in report["notebooks"]] == ["performance", "capacity", "audit"]
    capacity = (out / "capacity.html").read_text()
    assert "Traceback" not in capacity
    assert str(db.resolve()) in capacity and "swarm-2026.sqlite" in capacity
    assert "unreliable: only" in capacity  # seconds of data: no confident date
    assert "unreliable: only" in report["numbers"]["reaches 10 GB"]
    performance = (out / "performance.html").read_text()
    assert "nothing to compare yet" in performance  # a first run: a message, not a blank
    assert str(bench.resolve()) in performance
    figures = [Path(f) for n in report["notebooks"] for f in n["figures"]]
    assert len(figures) == 12 and all(_png_size(f)[0] > 300 for f in figures)
    index = (out / "index.html").read_text()
    assert "<th>memories</th>" in index and "swarm-2026.sqlite" in index
