"""What a stress or crash run checks: the invariants of any committed state, and the agents' models.

``structural_checks`` needs no knowledge of the workload, so it holds for a
backup, for the database after a crash and for one still being written to.
``verify_stress`` compares the database with what every agent wrote. The SQL
behind both lives with the services that own the tables.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ... import audit, memory, sessions, tasks
from ...database import Database
from ...engines.interface import Connection
from .workload import SHARED_KEYS, SHARED_NS, SHARED_SESSION

__all__ = ["Check", "database_checks", "structural_checks", "verify_backup", "verify_stress"]

#: Audit actions that add one memory_entries row each.
ROW_ACTIONS = ("memory_create", "memory_update", "memory_rollback", "memory_publish")
#: Audit actions that flip is_deleted on existing rows.
DELETE_ACTIONS = ("memory_delete", "memory_expire")
RESTORE_ACTIONS = ("memory_restore",)

Check = dict[str, Any]


def check(name: str, passed: bool, detail: str = "") -> Check:
    return {"name": name, "passed": bool(passed), "detail": detail}


def _none_found(name: str, rows: Sequence[Any], problem: str, fine: str) -> Check:
    """Passed when a query for violations found no ``rows``; else the first ones listed."""
    return check(name, not rows, f"{problem}: {[tuple(r) for r in rows]}" if rows else fine)


# -- invariants that hold in every committed state ------------------------------


def structural_checks(conn: Connection) -> list[Check]:
    """Invariants of any committed state (run inside one read snapshot).

    They need no knowledge of the workload, so they hold for a backup, for
    the database after a crash and for one still being written to.
    """
    checks: list[Check] = []

    checks.append(_none_found("versions_gapless_unique", memory.keys_with_version_gaps(conn),
                              "bad keys", "every key's versions are 1..n"))

    unaudited = memory.rows_without_one_audit_row(conn, ROW_ACTIONS)
    entries = memory.count_rows(conn)
    checks.append(_none_found("one_audit_row_per_memory_row", unaudited,
                              "rows without exactly one audit row",
                              f"{entries} rows, each with its audit row"))

    dangling = memory.audit_rows_without_memory_row(conn)
    checks.append(check("memory_audit_rows_point_at_rows", dangling == 0,
                        f"{dangling} memory audit rows without their memory row"))

    checks.append(_deleted_flags_match_audit(conn))

    checks.append(_none_found("event_seqs_gapless", sessions.sessions_with_seq_gaps(conn),
                              "sessions with gaps", "every session's events are 1..n"))

    checks.append(_none_found("event_and_state_change_together",
                              sessions.torn_counter_sessions(conn), "torn",
                              "each counter session's state equals its event count"))

    # Memories with metadata {"counter": true} hold {"n": version} in every version.
    checks.append(_none_found("memory_counters_match_versions", memory.torn_counters(conn),
                              "torn", "each counter memory holds its own version number"))

    checks.append(_none_found("batches_all_or_nothing", memory.partial_batches(conn),
                              "partial batches", "every batch is stored whole"))

    checks.append(_none_found("task_claims_audited_once",
                              tasks.tasks_disagreeing_with_claim_audit(conn),
                              "tasks whose status and audit disagree",
                              "each claimed task has one claim audit row"))
    return checks


def _deleted_flags_match_audit(conn: Connection) -> Check:
    """Replay the memory audit trail and compare every row's ``is_deleted``.

    A row is live when created; a delete marks every live row of its key
    deleted; a restore marks every row of the key live again. A key's audit ids
    follow its commit order (they are assigned under the write lock, or on
    PostgreSQL under the key's lock), so the replay is exact.
    Keys never deleted must be all live (one query); only the others are replayed.
    """
    untouched_deleted = memory.deleted_rows_never_flipped(conn)
    if untouched_deleted:
        return check("soft_deletes_match_audit", False,
                     f"rows deleted without a delete audit row: "
                     f"{[tuple(r) for r in untouched_deleted]}")
    rows = memory.flipped_rows(conn)
    expected: dict[int, bool] = {}
    by_key: dict[tuple[str, str], list[int]] = {}
    for action, entry_id in memory.flipped_audit_trail(conn):
        ident = rows[entry_id][0]
        if action in ROW_ACTIONS:
            expected[entry_id] = False
            by_key.setdefault(ident, []).append(entry_id)
        elif action in DELETE_ACTIONS:
            for row_id in by_key.get(ident, ()):
                expected[row_id] = True
        elif action in RESTORE_ACTIONS:
            for row_id in by_key.get(ident, ()):
                expected[row_id] = False
    wrong = [(row_id, *ident, deleted) for row_id, (ident, deleted) in rows.items()
             if expected.get(row_id) is not None and expected[row_id] != deleted]
    return check("soft_deletes_match_audit", not wrong,
                 f"rows whose is_deleted disagrees with the audit trail: {wrong[:5]}"
                 if wrong else f"every is_deleted flag follows from the audit trail "
                 f"({len(by_key)} keys ever deleted, replayed)")


async def database_checks(db: Database, *, quick: bool = False) -> list[Check]:
    """``integrity_check`` (or ``quick_check``), the foreign-key check and the invariants.

    On PostgreSQL, ``integrity_check`` is the engine's (tables, indexes and
    constraints valid); the server enforces every foreign key, so there is no
    foreign-key check to run, and no quick variant.
    """
    if db.dialect != "sqlite":
        integrity = await db.integrity_check()
        checks = [check("integrity_check", integrity == ["ok"], "; ".join(integrity[:3]))]
        return checks + await db.read(structural_checks, snapshot=True)
    if quick:
        rows = await db.fetchall("PRAGMA quick_check")
        integrity = [str(next(iter(r.values()))) for r in rows]
    else:
        integrity = await db.integrity_check()
    violations = await db.validate_foreign_keys()
    checks = [
        check("quick_check" if quick else "integrity_check", integrity == ["ok"],
              "; ".join(integrity[:3])),
        check("foreign_key_check", not violations, f"{len(violations)} violations"),
    ]
    return checks + await db.read(structural_checks, snapshot=True)


# -- a backup, and a stress run against its agents' models ------------------------


async def verify_backup(copy: Path, restored: Path) -> list[Check]:
    """Restore ``copy`` (a file copy, as an operator would) and check it."""
    shutil.copyfile(copy, restored)
    async with Database(restored) as db:
        report = await db.validate()
        checks = [check("validate", report["ok"],
                        ", ".join(c["name"] for c in report["checks"] if not c["passed"]))]
        return checks + await db.read(structural_checks, snapshot=True)


async def verify_stress(db: Database, results: Sequence[dict[str, Any]]) -> list[Check]:
    """Check the database against every agent's model, plus the invariants."""
    checks: list[Check] = []
    errors = [e for r in results for e in r["errors"]]
    checks.append(check("no_errors_reached_callers", not errors,
                        f"{len(errors)} errors, first: {errors[:3]}" if errors else
                        f"{sum(r['operations'] for r in results)} operations, no errors"))

    # Every write present, with the value and liveness its writer saw.
    newest = await db.read(memory.newest_versions, snapshot=True)
    missing: list[str] = []
    modelled = 0
    for r in results:
        for ns, key, live, version, value in r["model"]:
            modelled += 1
            row = newest.get((ns, key))
            want = (version, not live, value, version)
            if row != want:
                missing.append(f"{ns}:{key} db={row and row[:2]} model={want[:2]}")
    checks.append(check("every_write_present", not missing,
                        f"{len(missing)} keys differ: {missing[:3]}" if missing else
                        f"{modelled} keys match their writers' models (value, version, live)"))

    # Contended keys: versions handed out are unique and gapless.
    problems = []
    for key in SHARED_KEYS:
        handed = sorted(v for r in results for v in r["shared_versions"][key])
        row = newest.get((SHARED_NS, key))
        top = row[0] if row else 0
        if handed != list(range(2, top + 1)):
            problems.append(f"{key}: {len(handed)} updates, db max version {top}")
    checks.append(check("shared_key_versions_unique", not problems,
                        "; ".join(problems) or "each concurrent update got its own version"))

    # Shared session: every append got its own seq, and all are stored.
    stored = await db.read(sessions.event_counts)
    seqs = sorted(s for r in results for s in r["shared_seqs"])
    n = stored.get(SHARED_SESSION, 0)
    checks.append(check("shared_session_seqs_unique", seqs == list(range(1, n + 1)),
                        f"{len(seqs)} appends, {n} stored"))
    own = {f"stress-{r['name']}": r["events"] for r in results}
    lost = {s: (want, stored.get(s, 0)) for s, want in own.items()
            if stored.get(s, 0) != want}
    checks.append(check("every_event_present", not lost, f"sessions differing: "
                        f"{list(lost.items())[:3]}" if lost else
                        f"{sum(own.values())} own-session events stored"))

    # Exactly one audit row per memory write, counted by kind.
    expected: Counter[str] = Counter()
    for r in results:
        expected.update(r["audits"])
    expected["memory_create"] += len(SHARED_KEYS)  # prepare() created each shared key
    actual = await db.read(audit.memory_action_counts)
    checks.append(check("one_audit_row_per_memory_write", actual == dict(expected),
                        f"audit {actual} vs writes {dict(expected)}"))

    # No task claimed twice.
    claimed = [t for r in results for t in r["claimed"]]
    dupes = [t for t, c in Counter(claimed).items() if c > 1]
    claim_rows, claimed_tasks = await db.read(audit.claim_counts)
    ok = not dupes and claim_rows == claimed_tasks == len(claimed)
    checks.append(check("no_task_claimed_twice", ok,
                        f"{len(claimed)} claims, {len(dupes)} duplicates, "
                        f"{claim_rows} claim audit rows"))
    return checks + await database_checks(db)
