"""Hypothesis strategies for hostile and odd input, shared by the reliability tests."""

from __future__ import annotations

import datetime
import math
from typing import Any

from hypothesis import strategies as st

from abathur_memkit.namespaces import MAX_NAME_LENGTH, SCOPES

# -- strategies -------------------------------------------------------------------

SQL_AND_WILDCARDS = [
    "%", "_", "%%", "a%", "a_b", "'", '"', "''", "\\", "\\%", "*", "?", "[a-z]", "^",
    "' OR '1'='1", "'; DROP TABLE memory_entries; --", "\"; DELETE FROM audit; --",
    "1 UNION SELECT * FROM sessions", "*/ /*", "x') --", "NULL", "null", "%' ESCAPE '\\",
    " ", "  lead", "trail  ", "\t", "\n", "\r\n", "\u200b", "\u202e", "🙂", "名前", "é", "e\u0301",
    "\ufeff", "\uffff", "\U0010ffff", ";", "semantic",
]
# Text SQLite can store: no NUL, no lone surrogates.
storable = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
odd_text = st.one_of(st.sampled_from(SQL_AND_WILDCARDS),
                     st.text(storable, min_size=1, max_size=30),
                     st.builds(lambda a, b: a + b, st.sampled_from(SQL_AND_WILDCARDS),
                               st.text(storable, min_size=1, max_size=8)))
segment = odd_text.map(lambda s: s.replace(":", "")).filter(bool)
long_segment = st.integers(min_value=1, max_value=40).map(lambda n: "x" * n)
namespaces = st.builds(
    lambda scope, segs: ":".join([scope, *segs]),
    st.sampled_from(SCOPES),
    st.lists(st.one_of(segment, long_segment), min_size=1, max_size=3),
).filter(lambda ns: len(ns) <= MAX_NAME_LENGTH)
keys = st.one_of(odd_text, st.integers(1, MAX_NAME_LENGTH).map(lambda n: "k" * n)).filter(
    lambda k: len(k) <= MAX_NAME_LENGTH)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(storable, max_size=40) | st.sampled_from(SQL_AND_WILDCARDS),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(storable, max_size=12), children, max_size=4),
    max_leaves=20,
)
writers = st.one_of(st.none(), st.sampled_from(["system", "agent:a1", "x' OR 1=1 --"]), odd_text)


def _not_json_serializable() -> st.SearchStrategy[Any]:
    return st.sampled_from([
        {1, 2}, b"bytes", bytearray(b"x"), object(), complex(1, 2), Ellipsis, range(3),
        math.nan, math.inf, -math.inf, float("nan"), {"deep": [1, {"x": math.nan}]},
        [1, 2, {"s": {3}}], {"when": datetime.datetime(2024, 1, 1)},
        "lone \ud800 surrogate", {"k": "\udfff"}, {"\ud83d": 1}, [["\udc00"]],
    ])


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _circular() -> Any:
    loop: list[Any] = []
    loop.append(loop)
    return loop


bad_text = st.one_of(
    st.just(""),
    st.text(storable, max_size=10).map(lambda s: s + "\x00"),
    st.text(storable, max_size=10).map(lambda s: "\x00" + s),
    st.sampled_from(["\ud800", "a\udfffb", "\udc80\udc80"]),
    st.integers(MAX_NAME_LENGTH + 1, 5000).map(lambda n: "x" * n),
)
wrong_types = st.one_of(st.integers(), st.floats(), st.binary(max_size=5), st.booleans(),
                        st.lists(st.integers(), max_size=2), st.just({"a": 1}), st.just(object()))
bad_namespaces = st.one_of(
    bad_text.map(lambda s: f"user:{s}" if s else s),
    st.sampled_from(["user", "user:", ":alice", "user::x", "user:a:", "galaxy:x", "USER:x",
                     " user:x", "user :x", "%:x", "_:x", "session", "temp:", "project:a::b"]),
    st.text(storable, max_size=20).filter(lambda s: s.split(":")[0] not in SCOPES),
    st.integers(MAX_NAME_LENGTH - 4, 3000).map(lambda n: "user:" + "n" * n),
    wrong_types,
)
bad_values = st.one_of(_not_json_serializable(), st.just(_deep(100_000)), st.just(_circular()))
bad_ints = st.one_of(st.integers(max_value=0), st.integers(min_value=2**63),
                     st.just(-(2**63) - 1), st.booleans(), st.floats(), st.text(max_size=3),
                     st.none())
