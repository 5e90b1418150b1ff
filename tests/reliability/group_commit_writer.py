"""Child process of test_group_commit_crash: 50 concurrent writers until SIGKILLed.

Usage: ``python group_commit_writer.py DB ROUND``. Each writer updates its own
key again and again (every tenth write is an add that fails, rolled back inside
the group) and, as each await returns, prints the acknowledged
``namespace<TAB>key<TAB>version`` with one ``os.write`` (atomic on a pipe), so
the parent sees exactly what was acknowledged before the kill.
"""

from __future__ import annotations

import asyncio
import os
import sys

from abathur_memkit import AlreadyExistsError, Database

WRITERS = 50


async def writer(db: Database, namespace: str) -> None:
    by = f"agent:{namespace.rsplit(':', 1)[1]}"
    await db.memory.add_memory(namespace, "k", {"i": 0}, "semantic", by)
    os.write(1, f"{namespace}\tk\t1\n".encode())
    i = 1
    while True:
        i += 1
        if i % 10 == 0:
            try:
                await db.memory.add_memory(namespace, "k", {"i": i}, "semantic", by)
            except AlreadyExistsError:
                continue
            raise AssertionError("an add of a live key succeeded")
        version = await db.memory.update_memory(namespace, "k", {"i": i}, by)
        os.write(1, f"{namespace}\tk\t{version}\n".encode())


async def main(path: str, round_: str) -> None:
    async with Database(path, group_commit=True) as db:
        await asyncio.gather(*(writer(db, f"app:r{round_}w{n}") for n in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
