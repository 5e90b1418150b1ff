"""How memkit stores values: JSON text and UTC timestamps.

JSON is encoded strictly (no NaN/Infinity, which SQLite's json_valid rejects
and other JSON parsers choke on) and every failure names the field.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import InvalidInputError

__all__ = ["MAX_JSON_BYTES", "from_json", "timestamp", "timestamp_ago", "to_json"]

#: Largest JSON value accepted (bytes of UTF-8); SQLite's own limit is 1 GB.
MAX_JSON_BYTES = 16 * 1024 * 1024


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def to_json(value: Any, field: str = "value") -> str:
    """Encode ``value`` as compact JSON, or raise InvalidInputError naming ``field``."""
    try:
        text = _ENCODER.encode(value)
    except ValueError as exc:  # NaN / Infinity, circular references
        raise InvalidInputError(f"Invalid {field}: not valid JSON ({exc})") from exc
    except TypeError as exc:  # sets, bytes, objects
        raise InvalidInputError(f"Invalid {field}: not JSON-serializable ({exc})") from exc
    except RecursionError as exc:
        raise InvalidInputError(f"Invalid {field}: nested too deeply for JSON") from exc
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate: SQLite cannot store it as TEXT
            raise InvalidInputError(
                f"Invalid {field}: a string in it is not encodable as UTF-8 ({exc.reason})"
            ) from exc
    if size > MAX_JSON_BYTES:
        raise InvalidInputError(f"Invalid {field}: larger than {MAX_JSON_BYTES} bytes of JSON")
    return text


def from_json(text: str | bytes | None) -> Any:
    """Decode a JSON column; ``None`` stays ``None``."""
    if text is None:
        return None
    return json.loads(text)


def timestamp(now: datetime | None = None) -> str:
    """UTC time as stored: ``YYYY-MM-DD HH:MM:SS.ffffff``.

    Same layout as SQLite's CURRENT_TIMESTAMP plus microseconds, so the two
    sort together and ``datetime('now')`` comparisons keep working.
    """
    return (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S.%f")


def timestamp_ago(**delta: float) -> str:
    """The stored form of ``now - timedelta(**delta)``."""
    return timestamp(datetime.now(UTC) - timedelta(**delta))


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
