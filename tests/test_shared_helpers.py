"""Each list of choices and each check is written once; the CLI and the services share it."""

from __future__ import annotations

import argparse

import pytest

from abathur_memkit import Database
from abathur_memkit.cli import build_parser
from abathur_memkit.errors import InvalidInputError
from abathur_memkit.inputs import DOCUMENT_TYPES, VECTOR_BACKENDS, require_vector_backend


def _choices(command: str, dest: str) -> object:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if a.dest == dest)
    return action.choices


@pytest.mark.parametrize(("command", "dest", "expected"), [
    ("index", "document_type", DOCUMENT_TYPES),
    ("search", "document_type", DOCUMENT_TYPES),
    ("index", "backend", VECTOR_BACKENDS),
    ("search", "backend", VECTOR_BACKENDS),
])
def test_the_cli_offers_the_librarys_choices(command: str, dest: str, expected: object) -> None:
    # The CLI kept its own copy of the document types (and of the backends).
    assert _choices(command, dest) is expected


def test_search_uses_the_same_lists() -> None:
    pytest.importorskip("numpy")
    from abathur_memkit.search import BACKENDS, service

    assert service.DOCUMENT_TYPES is DOCUMENT_TYPES
    assert BACKENDS is VECTOR_BACKENDS


@pytest.mark.parametrize("value", ["faiss", "", "VEC", 3, ["vec"]])
def test_one_check_refuses_a_bad_vector_backend(value: object) -> None:
    pytest.importorskip("numpy")
    from abathur_memkit.search import make_backend

    with pytest.raises(InvalidInputError) as direct:
        require_vector_backend(value)
    with pytest.raises(InvalidInputError) as facade:
        Database(":memory:", vector_backend=value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError) as backend:
        make_backend(value, "chunks", 8)  # type: ignore[arg-type]
    assert str(direct.value) == str(facade.value) == str(backend.value)
    assert "Invalid vector_backend" in str(direct.value)


@pytest.mark.parametrize("value", VECTOR_BACKENDS)
def test_a_known_vector_backend_passes(value: str) -> None:
    assert require_vector_backend(value) == value


def test_each_engine_takes_its_own_vector_backends() -> None:
    assert Database(":memory:").vector_backend == "vec"  # None: the engine's default
    with pytest.raises(InvalidInputError, match="'pgvector' is not a sqlite backend"):
        Database(":memory:", vector_backend="pgvector")
    with pytest.raises(InvalidInputError, match="'vec' is not a postgresql backend"):
        require_vector_backend("vec", "postgresql")
    assert require_vector_backend("pgvector", "postgresql") == "pgvector"
