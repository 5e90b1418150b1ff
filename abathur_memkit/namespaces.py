"""Hierarchical namespaces (``scope:id[:more]``), prefix ranges and the write policy.

A prefix is segment-aware: ``user:alice`` matches ``user:alice`` and
``user:alice:…`` but never ``user:alice2:…`` (a plain string prefix would leak
one user's memories to another). Prefix queries are index ranges, never
``LIKE`` (SQLite's LIKE is case-insensitive so it cannot use the index,
and ``_``/``%`` in user input would be wildcards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from .errors import InvalidInputError, WritePolicyError
from .inputs import require_text, show

__all__ = [
    "MAX_NAME_LENGTH",
    "PRECEDENCE",
    "SCOPES",
    "WritePolicy",
    "check_key",
    "is_segment",
    "optional_segment",
    "parse_namespace",
    "prefix_bounds",
    "require_segment",
]

SCOPES = ("project", "app", "user", "session", "temp")

#: Context precedence, strongest first: temp > session > user > app > project.
PRECEDENCE = ("temp", "session", "user", "app", "project")

MAX_NAME_LENGTH = 512

#: The rule for ids that become a namespace segment, as error messages state it.
SEGMENT_RULE = "ids that become a namespace segment may not contain ':'"


def _check_text(kind: str, text: object) -> str:
    return require_text(text, kind, max_length=MAX_NAME_LENGTH)


def require_segment(value: object, field: str) -> str:
    """An id that becomes one namespace segment: a session, user, app, project or agent id.

    Any name ``require_text`` accepts, without ``:``: session ``s1:victim``
    would own ``session:s1:victim``, which lies inside session ``s1``'s tree,
    and user ``alice:bob`` would own a part of alice's. Whitespace and other
    odd characters are allowed: they cannot move a namespace boundary, and
    namespaces accept them too.
    """
    text = _check_text(field, value)
    if ":" in text:
        raise InvalidInputError(f"Invalid {field}: {show(text)} ({SEGMENT_RULE})")
    return text


def optional_segment(value: object, field: str) -> str | None:
    """``None``, or what ``require_segment`` accepts."""
    return None if value is None else require_segment(value, field)


def is_segment(value: object) -> bool:
    """Whether ``value`` is a valid segment (rows written before the rule may not be)."""
    return isinstance(value, str) and value != "" and ":" not in value


def parse_namespace(namespace: object) -> tuple[str, tuple[str, ...]]:
    """Validate ``scope:id[:more]``; return the scope and the remaining segments."""
    if isinstance(namespace, str):
        return _parse_namespace(namespace)
    _check_text("namespace format", namespace)  # raises for non-strings
    raise AssertionError("unreachable")


@lru_cache(maxsize=4096)  # agents reuse a few namespaces: batch inserts parse each once
def _parse_namespace(namespace: str) -> tuple[str, tuple[str, ...]]:
    text = _check_text("namespace format", namespace)
    segments = text.split(":")
    if len(segments) < 2 or segments[0] not in SCOPES or not all(segments):
        raise InvalidInputError(
            f"Invalid namespace format: {text!r} (expected scope:id[:more] with scope in "
            f"{', '.join(SCOPES)} and no empty segments)"
        )
    return segments[0], tuple(segments[1:])


def check_key(key: object) -> str:
    return _check_text("key", key)


def prefix_bounds(prefix: object) -> tuple[str, str, str] | None:
    """``(exact, low, high)`` for a segment-aware prefix, or None for "everything".

    A namespace matches when it equals ``exact`` or lies in ``[low, high)``:
    ``low`` is ``exact + ":"`` and ``high`` is ``exact + ";"`` (";" follows ":"
    in every encoding SQLite's BINARY collation compares).
    """
    if prefix is None or prefix == "":
        return None
    text = _check_text("namespace prefix", prefix).rstrip(":")
    segments = text.split(":")
    if segments[0] not in SCOPES or not all(segments):
        raise InvalidInputError(
            f"Invalid namespace format: {prefix!r} (a prefix starts with a scope: "
            f"{', '.join(SCOPES)})"
        )
    return text, text + ":", text + ";"


def within(namespace: str, prefix: str) -> bool:
    """Whether ``namespace`` is ``prefix`` or below it, segment-aware."""
    return namespace == prefix or namespace.startswith(prefix + ":")


@dataclass(frozen=True)
class WritePolicy:
    """Who may write where.

    A writer named ``session:<id>`` may write only its own ``session:<id>``
    namespaces and the ``user:<user_id>`` namespaces of that session's user,
    unless the call is elevated; a writer ``session:<x>`` where ``x`` is not a
    valid segment (``session:s1:x``, ``session:``) is invalid input. Other
    writers (``system``, ``agent:…``) are not restricted. ``enforce=False``
    turns the policy off. ``db.memory`` enforces it only when the database
    was opened with ``Database(..., write_policy=True)``.
    """

    enforce: bool = True

    def check(
        self,
        writer: str | None,
        namespace: str,
        session_user: Callable[[str], str | None],
        *,
        elevated: bool,
    ) -> None:
        """Raise WritePolicyError unless ``writer`` may write ``namespace``.

        ``session_user(session_id)`` looks up a session's user; it is called
        only for session writers outside their own session namespace.
        """
        # The scope is matched case-insensitively: "Session:s1" is a session too.
        if not self.enforce or not writer or writer[:8].lower() != "session:":
            return
        session_id = writer[len("session:"):]
        if not is_segment(session_id):
            # "session:s1:x" names no session: not s1, and no session "s1:x" can exist.
            raise InvalidInputError(
                f"Invalid writer: {show(writer)} (a session writer is session:<session id>; "
                f"{SEGMENT_RULE})"
            )
        if elevated or within(namespace, f"session:{session_id}"):
            return
        user = session_user(session_id)
        if not is_segment(user):  # none, or a user id stored before ids were checked
            user = None
        if user is not None and within(namespace, f"user:{user}"):
            return
        allowed = f"session:{session_id}" + (f" and user:{user}" if user is not None else "")
        raise WritePolicyError(
            f"Write denied: {writer} may write only {allowed} namespaces, not {namespace} "
            f"(pass elevated=True, or --elevated to `memkit memory`, to override)"
        )
