"""The CLI's shape: database first, output formats, examples in --help, exit codes."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from abathur_memkit.cli import build_parser, main

LONG_NS = "user:alice:projects:" + "a-very-long-project-name-" * 4 + "x:preferences"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dbfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "agents.db")
    assert run(capsys, "init", path)[0] == 0
    value = json.dumps({"mode": "dark", "note": "line one\nline two " + "x" * 300})
    assert run(capsys, "memory", "put", path, LONG_NS, "theme", value)[0] == 0
    assert run(capsys, "memory", "put", path, "user:bob", "k", '"v"')[0] == 0
    return path


def test_memory_list_csv_parses(dbfile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "memory", "list", dbfile, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["namespace"] for r in rows] == ["user:bob", LONG_NS]
    assert json.loads(rows[1]["value"])["mode"] == "dark"  # nested values are JSON
    assert rows[0]["value"] == "v" and rows[0]["version"] == "1"


def test_memory_list_nl_is_one_json_object_a_line(dbfile: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "memory", "list", dbfile, "--nl")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert [json.loads(line)["key"] for line in lines] == ["k", "theme"]
    code, out, _ = run(capsys, "memory", "list", dbfile, "--json")
    assert [e["key"] for e in json.loads(out)] == ["k", "theme"]  # --json: an array


def _column_starts(line: str, names: list[str]) -> list[int]:
    return [line.index(name) for name in names]


def test_memory_list_table_stays_aligned_on_long_namespaces(
        dbfile: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run(capsys, "memory", "list", dbfile)
    header, rule, *rows, footer = out.splitlines()
    assert code == 0 and footer == "2 key(s)" and set(rule) == {"-", " "}
    assert all(len(line) <= 100 for line in out.splitlines())
    # every row's "key" cell starts where the header's "key" does
    key_at = header.index(" key ") + 1
    assert rows[0][key_at:].startswith("k ") and rows[1][key_at:].startswith("theme ")
    assert "…" in rows[1] and "\n" not in rows[1]
    code, out, _ = run(capsys, "memory", "list", dbfile, "--table")
    assert LONG_NS in out  # --table shortens nothing
    code, out, _ = run(capsys, "memory", "list", dbfile, "--table", "--fmt", "github")
    assert out.splitlines()[0].startswith("| namespace") and out.count("\n") == 4


def test_other_row_commands_take_the_formats(dbfile: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "memory", "history", dbfile, "user:bob", "k", "--csv")
    assert code == 0 and next(csv.DictReader(io.StringIO(out)))["version"] == "1"
    code, out, _ = run(capsys, "validate", dbfile, "--nl")
    checks = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and checks and all(c["passed"] is True for c in checks)
    code, out, _ = run(capsys, "stats", dbfile, "--csv")
    tables = {r["table"]: r["rows"] for r in csv.DictReader(io.StringIO(out))}
    assert tables["memory_entries"] == "2"
    code, out, _ = run(capsys, "session", "list", dbfile, "--table", "--fmt", "psql")
    assert code == 0 and out.startswith("+") and "last_update_time" in out
    code, out, _ = run(capsys, "memory", "get", dbfile, "user:bob", "k", "--nl")
    assert json.loads(out)["value"] == "v"


def test_fmt_needs_table(dbfile: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["memory", "list", dbfile, "--csv", "--fmt", "github"])
    assert exit_.value.code == 2 and "--fmt applies to --table only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["memory", "list", dbfile, "--csv", "--nl"])
    assert exit_.value.code == 2


def test_database_is_the_first_argument(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Busy\n\nSQLITE_BUSY means the database is locked.\n")
    db = str(tmp_path / "docs.db")
    code, out, _ = run(capsys, "index", db, str(docs), "--no-embed")
    assert code == 0 and "1 added" in out
    code, out, _ = run(capsys, "search", db, "SQLITE_BUSY", "--nl")
    assert code == 0 and json.loads(out.splitlines()[0])["chunks"][0]["heading"] == "Busy"
    args = build_parser().parse_args(["watch", db, str(docs)])
    assert (args.db, args.directory) == (db, str(docs))


def test_db_option_still_works_with_a_warning(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Busy\n\nSQLITE_BUSY\n")
    db = str(tmp_path / "docs.db")
    code, _, err = run(capsys, "index", str(docs), "--db", db, "--no-embed")
    assert code == 0 and "--db is deprecated" in err
    code, out, err = run(capsys, "search", "SQLITE_BUSY", f"--db={db}", "--json")
    assert code == 0 and json.loads(out)["hits"] and "memkit search DB" in err


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_command_help_shows_an_example() -> None:
    commands = dict(_commands(build_parser()))
    assert len(commands) > 20
    for path, parser in commands.items():
        text = parser.format_help()
        assert "\nExample" in text, path
        example = text.split("\nExample", 1)[1]
        assert f"memkit {' '.join(path)}" in example, (path, example)


def test_main_help_groups_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith("usage: memkit [-h] [--version] COMMAND ...")
    for title in ("Databases:", "Records:", "Documents:", "Benchmarks and reliability:"):
        assert f"\n  {title}\n" in out
    names = {path[0] for path in dict(_commands(build_parser()))}
    assert all(f"\n    {name} " in out for name in names)
    assert "Exit codes: 0 success, 1 a check failed, 2 bad input" in out


@pytest.mark.parametrize(("module", "argv", "extra"), [
    ("ollama", ["index", "{db}", "{docs}", "--embedder", "ollama"], "ollama"),
    ("sqlite_vss", ["index", "{db}", "{docs}", "--embedder", "hashing", "--backend", "vss"],
     "vss"),
    ("pandas", ["report", "{db}", "--output", "{docs}/report"], "notebooks"),
])
def test_a_missing_optional_dependency_exits_2(
        module: str, argv: list[str], extra: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\ntext\n")
    db = tmp_path / "agents.db"
    assert run(capsys, "init", str(db))[0] == 0
    monkeypatch.setitem(sys.modules, module, None)  # import now fails
    code, _, err = run(capsys, *(a.format(db=db, docs=docs) for a in argv))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("memkit: error:")
    assert extra in err and "pip install" in err


def test_a_backup_that_fails_its_check_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from abathur_memkit.engines.sqlite import files
    from abathur_memkit.errors import DatabaseFileError

    db = str(tmp_path / "agents.db")
    assert run(capsys, "init", db)[0] == 0

    def corrupt(driver: object, path: Path, what: str) -> None:
        raise DatabaseFileError(f"{what} fails quick_check: row 3 missing from index")

    monkeypatch.setattr(files, "check_copy", corrupt)
    code, _, err = run(capsys, "backup", db, str(tmp_path / "copy.db"))
    assert code == 1 and "fails quick_check" in err
    assert not (tmp_path / "copy.db").exists()
