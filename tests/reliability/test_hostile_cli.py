"""Bad input through the ``memkit`` CLI: one line of error, exit 2, the database unchanged.

The CLI is run in-process (``main(argv)``) for the property tests, so argv can
hold what a shell hands over: quotes, ``%``, SQL, and lone surrogates (Python
decodes non-UTF-8 bytes in argv to them). One test runs the real console
script with raw non-UTF-8 bytes. Valid but odd names round-trip exactly.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbdump import dump
from hostile_strategies import bad_namespaces, bad_text, json_values, keys, namespaces
from hypothesis import given
from hypothesis import strategies as st
from reliability_support import PROFILE, TRIED, Harness

from abathur_memkit.cli import build_parser, main

MEMKIT = str(Path(sys.executable).parent / "memkit")


def has_command(*words: str) -> bool:
    """Whether ``memkit <words>`` exists (other commands are added by other modules)."""
    parser = build_parser()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            parser.parse_args([*words, "--help"])
        except SystemExit as exc:
            return exc.code == 0
    return False


needs_memory_cli = pytest.mark.skipif(
    not has_command("memory", "put"), reason="`memkit memory put` is not in this build yet")


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def assert_clean_failure(code: int, out: str, err: str) -> None:
    assert code in (1, 2), (code, out, err)
    assert "Traceback" not in err + out, err
    text = (err or out).strip()
    assert text, "a failure must say something"
    if err:
        lines = err.strip().splitlines()
        # One line from memkit's handler, or argparse's usage + error.
        assert lines[-1].startswith(("memkit: error:", "usage:", "memkit ")), err


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("cli") / "cli.db")
    h.run(h.db.memory.add_memory("user:alice", "k", {"v": 1}, "semantic", "system"))
    try:
        yield h
    finally:
        h.close()


@needs_memory_cli
@PROFILE
@given(namespace=bad_namespaces.filter(lambda n: isinstance(n, str) and n),
       key=st.one_of(keys, bad_text.filter(bool)),
       action=st.sampled_from(["put", "get", "history", "delete", "restore"]))
def test_bad_names_fail_cleanly(cli_db: Harness, namespace: str, key: str, action: str) -> None:
    TRIED["cli bad name"] += 1
    before = cli_db.run(dump(cli_db.db))
    argv = ["memory", action, cli_db.db.path, namespace, key]
    if action == "put":
        argv.append('{"x": 1}')
    assert_clean_failure(*cli(*argv))
    assert cli_db.run(dump(cli_db.db)) == before


@needs_memory_cli
@PROFILE
@given(value=st.sampled_from([
    "NaN", "Infinity", "-Infinity", "[1, NaN]", '{"a": Infinity}', "{not json", "", "'single'",
    '"\\ud800"', '{"\\udfff": 1}', "\ud800", "1 2",
]), as_string=st.booleans())
def test_bad_values_fail_cleanly(cli_db: Harness, value: str, as_string: bool) -> None:
    TRIED["cli bad value"] += 1
    before = cli_db.run(dump(cli_db.db))
    argv = ["memory", "put", cli_db.db.path, "user:alice", "new", value]
    if as_string:
        if "\ud800" not in value:
            return  # any other text is a fine JSON string
        argv.append("--string")
    assert_clean_failure(*cli(*argv))
    assert cli_db.run(dump(cli_db.db)) == before


@needs_memory_cli
@pytest.mark.parametrize("option", ["value", "metadata"])
def test_deeply_nested_json_fails_cleanly(cli_db: Harness, option: str) -> None:
    TRIED["cli bad value"] += 1
    deep = "[" * 100_000 + "]" * 100_000
    before = cli_db.run(dump(cli_db.db))
    argv = ["memory", "put", cli_db.db.path, "user:alice", "new"]
    argv += [deep] if option == "value" else ["1", "--metadata", deep]
    try:
        result = cli(*argv)
    except RecursionError:
        pytest.fail("RecursionError escaped from the CLI")
    assert_clean_failure(*result)
    assert cli_db.run(dump(cli_db.db)) == before


@needs_memory_cli
@PROFILE
@given(metadata=st.sampled_from(["[1]", "5", '"x"', "{", '{"a": NaN}', "true", '{"\\ud800": 1}']))
def test_bad_metadata_fails_cleanly(cli_db: Harness, metadata: str) -> None:
    TRIED["cli bad metadata"] += 1
    before = cli_db.run(dump(cli_db.db))
    assert_clean_failure(*cli("memory", "put", cli_db.db.path, "user:alice", "new", "1",
                              "--metadata", metadata))
    assert cli_db.run(dump(cli_db.db)) == before


@needs_memory_cli
@PROFILE
@given(namespace=namespaces, key=keys, value=json_values)
def test_odd_names_round_trip_through_the_cli(cli_db: Harness, namespace: str, key: str,
                                              value: Any) -> None:
    TRIED["cli odd valid"] += 1
    path = cli_db.db.path
    # "--": a value or name starting with "-" (e.g. -1e+16) is not an option.
    code, out, err = cli("memory", "put", "--json", "--", path, namespace, key,
                         json.dumps(value))
    assert code == 0, err
    code, out, err = cli("memory", "get", "--json", "--", path, namespace, key)
    assert code == 0, err
    entry = json.loads(out)
    assert (entry["namespace"], entry["key"], entry["value"]) == (namespace, key, value)


@needs_memory_cli
def test_non_utf8_argv_through_the_console_script(cli_db: Harness) -> None:
    """Raw bytes that are not UTF-8, as a shell passes them: a clear error, nothing stored."""
    before = cli_db.run(dump(cli_db.db))
    for argv in ([b"user:\xff\xfe", b"k"], [b"user:alice", b"k\xc3("], [b"user:\x80", b"\x80"]):
        result = subprocess.run([MEMKIT.encode(), b"memory", b"put", cli_db.db.path.encode(),
                                 *argv, b"1"], capture_output=True)
        TRIED["cli non-utf8 argv"] += 1
        err = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 2, err
        assert "Traceback" not in err and err.startswith("memkit: error: Invalid"), err
    assert cli_db.run(dump(cli_db.db)) == before


@pytest.mark.parametrize("argv", [
    ["stress", "--agents", "-1"], ["stress", "--operations", "0"], ["stress", "--agents", "x"],
    ["soak", "--minutes", "-5"], ["crash", "--kills", "0"], ["capacity", "--size", "lots"],
    ["capacity", "--size", "-1GB"], ["capacity", "--size", "0"], ["capacity", "--size", "1 PB"],
])
def test_reliability_commands_refuse_bad_arguments(argv: list[str]) -> None:
    TRIED["cli bad argument"] += 1
    assert_clean_failure(*cli(*argv))


def test_reliability_commands_refuse_an_existing_file(tmp_path: Path) -> None:
    existing = tmp_path / "precious.db"
    existing.write_bytes(b"do not touch")
    for command in ("stress", "crash", "capacity"):
        code, _, err = cli(command, "--db", str(existing))
        assert code == 2 and "exists" in err, (code, err)
    assert existing.read_bytes() == b"do not touch"
