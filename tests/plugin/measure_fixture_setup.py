"""Measure memkit_db's setup against initializing a database from the DDL.

    python tests/plugin/measure_fixture_setup.py [rounds]

Both are timed in one run, interleaved, on the same filesystem:

* ``ddl``: ``Database(new_file).initialize()`` - open, PRAGMAs, run every migration;
* ``clone``: what memkit_db does per test - copy the session template file, then
  ``Database(copy).initialize()`` (open and PRAGMAs; no migration to apply);
* ``copy`` alone, and ``open``: ``initialize()`` on an already-built file,
  the part both paths pay (threads, connections, per-connection schema parse).

Not a test (nothing asserts on a machine's speed); the numbers go in the notes.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from abathur_memkit import Database
from pytest_abathur.factories import build_template, clone_template


async def _timed_init(path: Path) -> float:
    start = time.perf_counter()
    db = Database(path)
    await db.initialize()
    elapsed = time.perf_counter() - start
    await db.close()
    return elapsed


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = build_template(root / "template.db")
        ddl, clone, copy, reopen = [], [], [], []
        for i in range(rounds):
            ddl.append(await _timed_init(root / f"ddl{i}.db"))
            start = time.perf_counter()
            clone_template(template, root / f"clone{i}.db")
            copied = time.perf_counter() - start
            copy.append(copied)
            clone.append(copied + await _timed_init(root / f"clone{i}.db"))
            reopen.append(await _timed_init(root / f"ddl{i}.db"))

    def ms(xs: list[float]) -> str:
        p90 = sorted(xs)[int(len(xs) * 0.9)]
        return f"median {statistics.median(xs) * 1e3:6.2f} ms  (p90 {p90 * 1e3:6.2f})"

    print(f"rounds: {rounds}")
    print(f"ddl   (Database(new).initialize()):       {ms(ddl)}")
    print(f"clone (copy template + initialize()):     {ms(clone)}")
    print(f"  copy of the template file:              {ms(copy)}")
    print(f"open  (initialize() of a built file):     {ms(reopen)}")
    ratio = statistics.median(clone) / statistics.median(ddl)
    print(f"ratio clone / ddl:                        {ratio:.2f}")
    schema_only = statistics.median(copy) / (statistics.median(ddl) - statistics.median(reopen))
    print(f"ratio copy / (ddl - open), schema part:   {schema_only:.2f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 40))
