"""Where a measurement ran: the machine and the commit, as pytest-benchmark records them.

Standard library only (py-cpuinfo when it is installed), so ``memkit bench``
and the pytest plugin describe a run the same way without loading the database
layer.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["commit_info", "machine_info", "machine_key"]


def _proc_cpu_brand() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return " ".join(line.split(":", 1)[1].split())
    return platform.processor() or platform.machine() or "unknown"


_CPU: dict[str, Any] = {}


def _cpu() -> dict[str, Any]:
    """py-cpuinfo's ``get_cpu_info()`` as pytest-benchmark records it, or a /proc summary.

    Computed once per process: py-cpuinfo spawns a subprocess.
    """
    if not _CPU:
        try:
            import cpuinfo  # py-cpuinfo, which pytest-benchmark depends on

            _CPU.update(cpuinfo.get_cpu_info())
        except Exception:  # not installed, or it failed on this platform
            _CPU.update({"brand_raw": _proc_cpu_brand(), "arch": platform.machine(),
                         "count": os.cpu_count()})
    return _CPU


def _cpu_brand() -> str:
    return str(_cpu().get("brand_raw") or _proc_cpu_brand())


def _implementation_version() -> str:
    # pytest-benchmark's: Python's version, except PyPy's own.
    pypy = getattr(sys, "pypy_version_info", None)
    if platform.python_implementation() != "PyPy" or pypy is None:
        return platform.python_version()
    text = ".".join(str(int(part)) for part in pypy[:3])
    return text if pypy.releaselevel == "final" else f"{text}-{pypy.releaselevel}{pypy.serial}"


def machine_info(sqlite_version: str | None = None, driver: str | None = None) -> dict[str, Any]:
    """``machine_info`` as pytest-benchmark records it, plus the SQLite build measured.

    Same keys and sources as pytest-benchmark's ``pytest_benchmark_generate_machine_info``:
    the ``platform`` module, and ``cpu`` from py-cpuinfo when it is installed.
    """
    return {
        "node": platform.node(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": _implementation_version(),
        "python_version": platform.python_version(),
        "python_build": list(platform.python_build()),
        "release": platform.release(),
        "system": platform.system(),
        "cpu": dict(_cpu()),
        "sqlite_version": sqlite_version,
        "sqlite_driver": driver,
    }


def machine_key(sqlite_version: str | None, driver: str | None) -> str:
    """What a baseline is valid for: CPU, OS, Python and the SQLite build."""
    return " | ".join(
        [
            f"{platform.system()}-{platform.machine()}",
            _cpu_brand(),
            f"{os.cpu_count()} cpus",
            f"{platform.python_implementation()}-{sys.version_info[0]}.{sys.version_info[1]}",
            f"sqlite-{sqlite_version or 'unknown'}-{driver or 'unknown'}",
        ]
    )


def _git(args: list[str], cwd: Path) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.strip()


def commit_info(root: Path) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": "unversioned",
        "time": None,
        "author_time": None,
        "dirty": False,
        "project": root.name,
        "branch": "(unknown)",
    }
    try:
        info["id"] = _git(["rev-parse", "HEAD"], root)
        info["time"] = _git(["show", "-s", "--pretty=format:%cI"], root)
        info["author_time"] = _git(["show", "-s", "--pretty=format:%aI"], root)
        info["branch"] = _git(["rev-parse", "--abbrev-ref", "HEAD"], root)
        info["dirty"] = bool(_git(["status", "--porcelain", "--untracked-files=no"], root))
    except (OSError, subprocess.SubprocessError) as exc:
        info["error"] = repr(exc)
    return info
