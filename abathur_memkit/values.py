"""How memkit stores values: JSON text and UTC timestamps.

JSON is encoded strictly (no NaN/Infinity, which SQLite's json_valid rejects
and other JSON parsers choke on) and every failure names the field.

What is accepted can be read back: values are at most ``MAX_JSON_DEPTH``
levels deep, so decoding them (which recurses in Python) stays far from the
recursion limit; a deeper value stored before that bound is still decoded,
without recursion.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from .errors import InvalidInputError, MemkitError

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "from_json",
    "json_depth",
    "timestamp",
    "timestamp_ago",
    "to_json",
]

#: Largest JSON value accepted (bytes of UTF-8); SQLite's own limit is 1 GB.
MAX_JSON_BYTES = 16 * 1024 * 1024
#: Deepest nesting of arrays and objects accepted. Python decodes JSON
#: recursively (default recursion limit 1,000, including the caller's frames)
#: and SQLite's JSON functions stop at 1,000 levels.
MAX_JSON_DEPTH = 256

# A JSON string (escapes included); what is not a bracket; each bracket's step;
# and the tokens of JSON: a string, a bracket or separator, or a scalar's text.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]|[^\s\[\]{},:"]+')


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
    # Counting brackets is quick; only text with enough of them is measured.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        raise InvalidInputError(
            f"Invalid {field}: nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects"
        )
    return text


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of valid JSON ``text`` nest (0 for a scalar).

    Measured without recursion: strings are dropped, then the brackets counted.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def from_json(text: str | bytes | None) -> Any:
    """Decode a JSON column; ``None`` stays ``None``.

    A value nested too deeply for ``json.loads`` (stored by a process with a
    raised recursion limit, before depth was bounded) is decoded without
    recursion rather than failing every read that meets it.
    """
    if text is None:
        return None
    try:
        return json.loads(text)
    except RecursionError:
        return _loads_flat(text if isinstance(text, str) else text.decode("utf-8"))


def _loads_flat(text: str) -> Any:
    """``json.loads`` of valid JSON with an explicit stack instead of recursion."""
    result: list[Any] = []  # the top-level value, once complete
    open_: list[Any] = []  # the containers being filled, innermost last
    keys: list[Any] = []  # per open container: the object key awaiting its value

    def place(value: Any) -> None:
        if not open_:
            result.append(value)
        elif isinstance(open_[-1], list):
            open_[-1].append(value)
        else:
            open_[-1][keys[-1]] = value
            keys[-1] = None

    try:
        for token in _TOKEN.findall(text):
            if token in ("[", "{"):
                container: list[Any] | dict[str, Any] = [] if token == "[" else {}
                place(container)
                open_.append(container)
                keys.append(None)
            elif token in ("]", "}"):
                open_.pop()
                keys.pop()
            elif token not in (",", ":"):
                scalar = json.loads(token)  # a string, number, true, false or null: flat
                if open_ and isinstance(open_[-1], dict) and keys[-1] is None:
                    keys[-1] = scalar
                else:
                    place(scalar)
    except (IndexError, ValueError, TypeError):
        pass  # reported below
    if len(result) != 1 or open_:
        raise MemkitError(f"Stored JSON is not valid: {text[:60]!r}")
    return result[0]


def timestamp(now: datetime | None = None) -> str:
    """UTC time as stored: ``YYYY-MM-DD HH:MM:SS.ffffff``.

    Same layout as SQLite's CURRENT_TIMESTAMP plus microseconds, so the two
    sort together and ``datetime('now')`` comparisons keep working.
    """
    if now is None:
        # isoformat is ~2x faster than strftime (every write stamps its rows);
        # the year is four digits now, so the two agree.
        return datetime.now(UTC).isoformat(" ", "microseconds")[:26]
    return now.strftime("%Y-%m-%d %H:%M:%S.%f")


def timestamp_ago(**delta: float) -> str:
    """The stored form of ``now - timedelta(**delta)``."""
    return timestamp(datetime.now(UTC) - timedelta(**delta))


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
