"""What PostgreSQL's errors mean to a memkit caller, on either of the engine's
paths, and when to try a transaction again."""

from __future__ import annotations

import random

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from ...errors import InvalidInputError, MemkitError

__all__ = [
    "RETRY", "LostDuringCommit", "conflicts", "lost_during_commit", "retry_delay", "translate",
]

#: Errors after which the same transaction, run again, may succeed.
RETRY = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


def retry_delay(attempt: int) -> float:
    """Seconds to wait before running a transaction again: jittered, growing, at most 0.1."""
    return random.uniform(0.0, min(0.1, 0.002 * 2**attempt))


def translate(exc: Exception, where: str, timeout: float) -> MemkitError:
    """What a driver error on ``where`` means, as a MemkitError."""
    if isinstance(exc, PoolTimeout):
        return MemkitError(f"no connection to {where} within {timeout:g} s: {exc}")
    if isinstance(exc, psycopg.IntegrityError):
        return InvalidInputError(f"Rejected by a database constraint: {exc}")
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return MemkitError(f"a read tried to write (writes go through write()): {exc}")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return MemkitError(f"{where} refused: {exc}")
    if isinstance(exc, psycopg.DataError | psycopg.ProgrammingError):
        return InvalidInputError(f"PostgreSQL rejected the statement: {exc}")
    if isinstance(exc, psycopg.OperationalError):
        return MemkitError(f"cannot use {where}: {exc}")
    return MemkitError(f"PostgreSQL failed on {where}: {exc}")


def conflicts(where: str, attempts: int, exc: Exception) -> MemkitError:
    """A write that met a serialization failure or a deadlock on every attempt."""
    return MemkitError(
        f"the transaction failed {attempts} times on {where} (concurrent writers): {exc}")


class LostDuringCommit(MemkitError):
    """The connection went while COMMIT was on its way: nobody can tell the outcome."""


def lost_during_commit(where: str) -> MemkitError:
    """The connection went while COMMIT was on its way: nobody can tell the outcome."""
    return LostDuringCommit(
        f"the connection to {where} was lost during COMMIT: the write may or may not "
        "have been applied")
