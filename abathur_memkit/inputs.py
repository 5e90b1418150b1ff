"""Checks on what callers pass to the services; every error names the argument.

Each check returns the value in the form that is stored, so a service can
validate everything before it opens a transaction (a bad argument then never
reaches the database, and nothing changes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidInputError
from .values import timestamp

__all__ = [
    "DOCUMENT_TYPES",
    "MAX_ID_LENGTH",
    "MAX_LIMIT",
    "VECTOR_BACKENDS",
    "as_timestamp",
    "clip",
    "optional_text",
    "require_bool",
    "require_document_type",
    "require_int",
    "require_limit",
    "require_object",
    "require_text",
    "require_vector_backend",
    "show",
]

#: Longest id or name accepted (characters).
MAX_ID_LENGTH = 512
#: Largest page a list call returns.
MAX_LIMIT = 10_000


def require_text(value: object, field: str, *, max_length: int | None = MAX_ID_LENGTH) -> str:
    """A non-empty ``str`` without NUL that SQLite can store as TEXT."""
    if not isinstance(value, str):
        raise InvalidInputError(f"Invalid {field}: expected a string, got {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"Invalid {field}: empty")
    if "\x00" in value:
        raise InvalidInputError(f"Invalid {field}: contains a NUL character")
    if max_length is not None and len(value) > max_length:
        raise InvalidInputError(f"Invalid {field}: longer than {max_length} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot be stored as TEXT
        raise InvalidInputError(f"Invalid {field}: not encodable as UTF-8") from exc
    return value


def optional_text(value: object, field: str) -> str | None:
    """``None``, or what ``require_text`` accepts."""
    return None if value is None else require_text(value, field)


def show(value: object, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters, for error messages.

    Never raises: Python refuses to print ints of more than 4,300 digits.
    """
    try:
        return f"{value!r:.{width}}"
    except ValueError:
        return f"<{type(value).__name__} too large to show>"


def clip(value: object, width: int = 60) -> str:
    """``str(value)`` cut to ``width`` characters (with "…"), for error messages."""
    try:
        text = str(value)
    except ValueError:  # an int of more than 4,300 digits
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= width else text[: width - 1] + "…"


#: SQLite's INTEGER range (64-bit signed); Python ints outside it cannot be bound.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def require_int(value: object, field: str, *, minimum: int | None = None) -> int:
    """An ``int`` (not a ``bool``) SQLite can store, at least ``minimum`` when given."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"Invalid {field}: expected an integer, got {show(value)}")
    if minimum is not None and value < minimum:
        shown = value if value >= INT64_MIN else "out of the 64-bit integer range"
        raise InvalidInputError(f"Invalid {field}: {shown} (expected an integer >= {minimum})")
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidInputError(f"Invalid {field}: out of the 64-bit integer range")
    return value


def require_bool(value: object, field: str) -> bool:
    """A real ``bool``: the string ``"false"`` is truthy, so it must not pass as one."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"Invalid {field}: expected True or False, got {show(value)}")
    return value


def require_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"Invalid limit: {show(limit)} (expected 1..{MAX_LIMIT})")
    return limit


def require_object(value: object, field: str) -> dict[str, Any]:
    """A mapping with string keys, as a dict (``to_json`` checks the values)."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"Invalid {field}: expected a JSON object (dict), got {type(value).__name__}"
        )
    for key in value:
        if not isinstance(key, str):
            # json.dumps would silently turn 1 into "1"; say so instead.
            raise InvalidInputError(f"Invalid {field}: key {key!r} is not a string")
    return dict(value)


# A stored-form time or a prefix of one ("2025", "2025-01-02", "2025-01-02 10:00"),
# with "T" accepted for " " and a UTC suffix ("Z", "+00:00") accepted and dropped.
_STORED_TIME = re.compile(
    r"(\d{4}(?:-\d{2}(?:-\d{2}(?:[ T]\d{2}(?::\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?)?)?)?)"
    r"(?:Z|[+-]00:?00)?",
    re.ASCII,
)

_EARLIEST = "0000-01-01 00:00:00"


def as_timestamp(value: object, field: str) -> str | None:
    """A time bound in stored form; a naive ``datetime`` is taken as UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return timestamp(aware.astimezone(UTC))
    if isinstance(value, str):
        match = _STORED_TIME.fullmatch(value)
        if match:
            # The stored form compares as text: "T" would sort after " " and a
            # UTC suffix after the digits, so both are normalised away.
            bound = match.group(1).replace("T", " ")
            # A prefix is completed to a whole time, which bounds alike as text:
            # SQLite would compare a bare year as an integer (TIMESTAMP columns
            # have numeric affinity, so 2026 sorts below every text), and
            # PostgreSQL reads only whole dates and times.
            bound += _EARLIEST[len(bound):]
            try:
                datetime.strptime(bound[:19], "%Y-%m-%d %H:%M:%S")
            except ValueError:
                pass  # 2025-13, 2025-02-30: no such time
            else:
                return bound
    raise InvalidInputError(
        f"Invalid {field}: expected a datetime or a UTC 'YYYY-MM-DD HH:MM:SS' string "
        f"(or a prefix of one), got {show(value)}"
    )


# Both lists live here, not in search/, so the CLI offers them as choices
# without loading numpy.

#: Kinds of indexed document (``documents.document_type``).
DOCUMENT_TYPES = ("design", "specification", "plan", "report")
#: Vector backends, as ``Database(vector_backend=...)`` takes them.
VECTOR_BACKENDS = ("vec", "vss")


def require_document_type(value: object) -> str | None:
    """None (any type) or one of ``DOCUMENT_TYPES``."""
    if value is not None and value not in DOCUMENT_TYPES:
        raise InvalidInputError(
            f"Invalid document_type: {value} (expected one of {', '.join(DOCUMENT_TYPES)})")
    return value  # type: ignore[return-value]


def require_vector_backend(value: object) -> str:
    """One of ``VECTOR_BACKENDS``."""
    if not isinstance(value, str) or value not in VECTOR_BACKENDS:
        raise InvalidInputError(f"Invalid vector_backend: {show(value)} (choose 'vec' or 'vss')")
    return value
