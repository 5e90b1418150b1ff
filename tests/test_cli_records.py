"""memkit memory / session / stats / backup, in process with main([...])."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from abathur_memkit import Database
from abathur_memkit.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code, out, _ = run(capsys, *argv, "--json")
    return code, json.loads(out)


@pytest.fixture
def dbfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "agents.db")
    assert run(capsys, "init", path)[0] == 0
    return path


def test_memory_lifecycle(dbfile: str, capsys: pytest.CaptureFixture[str]) -> None:
    ns = "user:alice:prefs"
    code, out, _ = run(capsys, "memory", "put", dbfile, ns, "theme", '{"mode": "dark"}')
    assert code == 0 and out.startswith(f"created {ns} theme v1 (semantic; by cli")
    code, data = run_json(capsys, "memory", "put", dbfile, ns, "theme", '{"mode": "light"}',
                          "--by", "agent:x", "--task", "task:1")
    assert code == 0 and isinstance(data, dict)
    assert (data["action"], data["version"], data["value"]) == ("updated", 2, {"mode": "light"})
    assert data["created_by"] == "cli" and data["updated_by"] == "agent:x"

    code, out, _ = run(capsys, "memory", "get", dbfile, ns, "theme")
    assert code == 0 and f"{ns} theme v2" in out and '"mode": "light"' in out
    code, data = run_json(capsys, "memory", "get", dbfile, ns, "theme", "--version", "1")
    assert code == 0 and isinstance(data, dict) and data["value"] == {"mode": "dark"}

    run(capsys, "memory", "put", dbfile, "user:alice:notes", "todo", "buy milk", "--string",
        "--type", "episodic", "--metadata", '{"source": "cli"}')
    code, data = run_json(capsys, "memory", "list", dbfile, "user:alice")
    assert code == 0 and isinstance(data, list)
    assert [(e["key"], e["version"]) for e in data] == [("todo", 1), ("theme", 2)]
    assert data[0]["value"] == "buy milk" and data[0]["metadata"] == {"source": "cli"}
    code, out, _ = run(capsys, "memory", "list", dbfile, "user:alice", "--type", "episodic")
    assert code == 0 and "todo" in out and "theme" not in out and "1 key(s)" in out
    code, data = run_json(capsys, "memory", "list", dbfile, "--namespaces")
    assert data == ["user:alice:notes", "user:alice:prefs"]

    code, out, _ = run(capsys, "memory", "delete", dbfile, ns, "theme", "--by", "agent:x")
    assert code == 0 and out.startswith(f"deleted {ns} theme")
    code, _, err = run(capsys, "memory", "get", dbfile, ns, "theme")
    assert code == 2 and "Memory not found: namespace 'user:alice:prefs', key 'theme'" in err
    code, _, err = run(capsys, "memory", "delete", dbfile, ns, "theme")
    assert code == 2 and "nothing live to delete" in err
    code, out, _ = run(capsys, "memory", "history", dbfile, ns, "theme")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4 and lines[2].split()[:2] == ["2", "yes"]
    code, data = run_json(capsys, "memory", "restore", dbfile, ns, "theme")
    assert code == 0 and data == {"restored": True, "namespace": ns, "key": "theme",
                                  "version": 2}
    assert run(capsys, "memory", "get", dbfile, ns, "theme")[0] == 0

    async def audit() -> list[str]:
        async with Database(dbfile) as db:
            return [r["action_type"] for r in await db.audit.list(memory_namespace=ns)]

    assert asyncio.run(audit()) == ["memory_restore", "memory_delete", "memory_update",
                                    "memory_create"]


def test_memory_bad_input(dbfile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "memory", "put", dbfile, "user:a", "k", "not json")
    assert code == 2 and "Invalid value: not JSON" in err and "--string" in err
    code, data = run_json(capsys, "memory", "put", dbfile, "nope", "k", "1")
    assert code == 2 and isinstance(data, dict) and "Invalid namespace format" in data["error"]
    code, _, err = run(capsys, "memory", "put", dbfile, "user:a", "k", "[" * 10**5 + "]" * 10**5)
    assert code == 2 and "nested too deeply" in err
    code, _, err = run(capsys, "memory", "history", dbfile, "user:a", "missing")
    assert code == 2 and "Memory not found" in err
    code, _, err = run(capsys, "memory", "get", str(Path(dbfile).with_name("x.db")), "user:a", "k")
    assert code == 2 and "no database at" in err
    assert not Path(dbfile).with_name("x.db").exists()  # reading never creates a file


async def _sessions(path: str) -> None:
    async with Database(path) as db:
        for n in range(5):
            await db.sessions.create_session(f"s{n}", "abathur", "alice" if n < 3 else "bob",
                                             project_id="p1", initial_state={"n": n})
        await db.sessions.update_status("s1", "active")
        for e in range(12):
            await db.sessions.append_event("s1", {"event_type": "message", "content": f"m{e}"})


def test_session_list_and_show(dbfile: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_sessions(dbfile))
    code, page = run_json(capsys, "session", "list", dbfile, "--limit", "3")
    assert code == 0 and isinstance(page, dict)
    assert [s["id"] for s in page["sessions"]] == ["s4", "s3", "s2"]
    code, rest = run_json(capsys, "session", "list", dbfile, "--limit", "3", "--cursor",
                          page["next_cursor"])
    assert isinstance(rest, dict) and [s["id"] for s in rest["sessions"]] == ["s1", "s0"]
    assert rest["next_cursor"] is None
    code, out, _ = run(capsys, "session", "list", dbfile, "--user", "bob")
    assert code == 0 and "2 session(s)" in out and "s3" in out and "s1 " not in out
    code, out, _ = run(capsys, "session", "list", dbfile, "--status", "active")
    assert "s1" in out and "1 session(s)" in out

    code, out, _ = run(capsys, "session", "show", dbfile, "s1", "--events", "2")
    assert code == 0 and "session s1: active" in out and "12 event(s), the last 2:" in out
    assert "#11" in out and "#12" in out and "#10" not in out
    code, data = run_json(capsys, "session", "show", dbfile, "s1")
    assert isinstance(data, dict) and data["event_count"] == 12 and len(data["events"]) == 10
    assert data["state"] == {"n": 1}
    code, data = run_json(capsys, "session", "show", dbfile, "s1", "--events", "-1")
    assert isinstance(data, dict) and len(data["events"]) == 12
    code, _, err = run(capsys, "session", "show", dbfile, "nope")
    assert code == 2 and "Session nope not found" in err


def test_stats(dbfile: str, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_sessions(dbfile))
    run(capsys, "memory", "put", dbfile, "user:alice:prefs", "theme", '"dark"')
    code, stats = run_json(capsys, "stats", dbfile)
    assert code == 0 and isinstance(stats, dict)
    assert stats["rows"]["sessions"] == 5 and stats["rows"]["session_events"] == 12
    assert stats["rows"]["memory_entries"] == 1
    assert not any(name.endswith(("_data", "_idx", "_config")) for name in stats["rows"])
    assert stats["memory"] == {"live_keys": 1, "namespaces": 1, "deleted_rows": 0,
                               "max_version": 1}
    assert stats["sessions by status"] == {"created": 4, "active": 1}
    assert stats["memory writes by operation"] == {"create": 1}
    assert stats["schema_version"] >= 3
    pages = stats["pages"]
    assert pages["bytes"] == pages["page_size"] * pages["page_count"]
    assert stats["storage_by_kind"]["memory"]["data"] >= pages["page_size"]
    code, out, _ = run(capsys, "stats", dbfile)
    assert code == 0 and "session_events" in out and "storage (dbstat)" in out
    assert "sessions by status: created 4, active 1" in out


def test_backup(dbfile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_sessions(dbfile))
    dest = tmp_path / "copy.db"
    code, report = run_json(capsys, "backup", dbfile, str(dest))
    assert code == 0 and isinstance(report, dict)
    assert report["ok"] is True and report["quick_check"] == "ok" and dest.is_file()
    code, _, err = run(capsys, "backup", dbfile, str(dest))
    assert code == 2 and "exists" in err
    code, out, _ = run(capsys, "backup", dbfile, str(dest), "--overwrite")
    assert code == 0 and "quick_check ok" in out
    code, out, _ = run(capsys, "session", "show", str(dest), "s1", "--events", "0")
    assert code == 0 and "12 event(s)" in out
