"""Checks on what callers pass to the services; every error names the argument.

Each check returns the value in the form that is stored, so a service can
validate everything before it opens a transaction (a bad argument then never
reaches the database, and nothing changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import InvalidInputError
from .values import timestamp

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_LIMIT",
    "as_timestamp",
    "optional_text",
    "require_int",
    "require_limit",
    "require_object",
    "require_text",
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


def require_int(value: object, field: str, *, minimum: int | None = None) -> int:
    """An ``int`` (not a ``bool``), at least ``minimum`` when given."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"Invalid {field}: expected an integer, got {value!r:.60}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"Invalid {field}: {value} (expected an integer >= {minimum})")
    return value


def require_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"Invalid limit: {limit!r:.60} (expected 1..{MAX_LIMIT})")
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


def as_timestamp(value: object, field: str) -> str | None:
    """A time bound in stored form; a naive ``datetime`` is taken as UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return timestamp(aware.astimezone(UTC))
    if isinstance(value, str) and value and "\x00" not in value:
        return value
    raise InvalidInputError(
        f"Invalid {field}: expected a datetime or a 'YYYY-MM-DD HH:MM:SS' string, got {value!r:.60}"
    )
