"""Worker processes of stress and crash runs: ``python -m abathur_memkit.workloads.stress``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from .crash import crash_worker
from .runner import stress_worker


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m abathur_memkit.workloads.stress")
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("worker")
    p.add_argument("path")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--agents", type=int, required=True)
    p.add_argument("--operations", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--go", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--until", type=float)
    p.add_argument("--parent", type=int, default=0)
    c = sub.add_parser("crash-worker")
    c.add_argument("path")
    c.add_argument("--index", type=int, required=True)
    c.add_argument("--kill-at", type=int, default=0)
    c.add_argument("--kill-before", default="")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--parent", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(stress_worker(args) if args.role == "worker" else crash_worker(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
