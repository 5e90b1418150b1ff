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
    assert len(tagged) == 1 and "DATA_DIR = None" in "".join(tagged[0]["source"])
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
    assert f"{SAMPLE.resolve()} (parameter)" in html  # what notebook_inputs resolved
    assert "bytes measured by: dbstat" in html
    index = (out / "index.html").read_text()
    assert all(f"{n}.html" in index for n in ("performance", "capacity", "audit"))
    # The notebooks on disk are untouched (still stripped).
    assert all(c.get("outputs", []) == [] for c in json.loads(
        (NOTEBOOKS / "capacity.ipynb").read_text())["cells"])


def test_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("nbclient")
    from abathur_memkit.cli import main

    code = main(["report", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and "holds no agents.db or agents.sqlite3" in err
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
