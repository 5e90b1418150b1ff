"""Embedders: text to float32, L2-normalised vectors, behind one small interface.

- :class:`MiniLMEmbedder` — the offline default (all-MiniLM-L6-v2, 384 dims,
  int8 ONNX on onnxruntime; no server, no torch, no download at run time).
- :class:`OllamaEmbedder` — production: nomic-embed-text (768 dims) on Ollama.
- :class:`OnnxEmbedder` — any local ONNX sentence-embedding directory.
- :class:`HashingEmbedder` — deterministic and lexical-only, for tests.

:func:`get_embedder` turns a configuration string into one of them.
"""

from __future__ import annotations

import inspect
from os import PathLike
from pathlib import Path

from abathur_memkit.extras import require_extra

try:  # vectors are numpy arrays: fail with the extra to install, not deep inside
    import numpy  # noqa: F401
except ImportError:
    require_extra("embed", "embeddings (for the hashing or your own embedder, [search] is enough)")
    raise

from abathur_memkit.embeddings.base import Embedder, Vectors, check_vectors, l2_normalize
from abathur_memkit.embeddings.hashing import HashingEmbedder
from abathur_memkit.embeddings.minilm import MAX_BATCH_SIZE, MiniLMEmbedder, OnnxEmbedder
from abathur_memkit.embeddings.ollama import OllamaEmbedder
from abathur_memkit.errors import InvalidInputError

__all__ = [
    "MAX_BATCH_SIZE",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "OllamaEmbedder",
    "OnnxEmbedder",
    "Vectors",
    "check_vectors",
    "get_embedder",
    "l2_normalize",
]

_CHOICES = (
    '"default" or "minilm" (offline all-MiniLM-L6-v2), "hashing" (lexical-only, for tests), '
    '"ollama" or "ollama:<model>", a directory holding model.onnx and tokenizer.json, '
    "or an Embedder instance"
)


def get_embedder(spec: Embedder | str | PathLike[str]) -> Embedder:
    """The embedder a configuration value names.

    ``spec`` is an :class:`Embedder` (returned as is), ``"default"`` / ``"minilm"``
    (:class:`MiniLMEmbedder`), ``"hashing"`` (:class:`HashingEmbedder`, 384 dims),
    ``"ollama"`` or ``"ollama:<model>"`` (:class:`OllamaEmbedder`), or the path of
    a directory holding ``model.onnx`` and ``tokenizer.json`` (:class:`OnnxEmbedder`).
    Anything else raises :class:`InvalidInputError` listing these choices.

    Building one is cheap: models load at their first embed and Ollama is
    not contacted until then (call ``health_check()`` to find out early).
    """
    if isinstance(spec, PathLike):
        return _onnx_dir(Path(spec))
    if not isinstance(spec, str):
        if _is_embedder(spec):
            return spec
        raise InvalidInputError(f"unknown embedder {spec!r}: use {_CHOICES}")
    key = spec.strip()
    if key.lower() in ("default", "minilm", "all-minilm-l6-v2"):
        require_extra("embed", f"the offline embedder {key!r} (all-MiniLM-L6-v2)")
        return MiniLMEmbedder()
    if key.lower() in ("hashing", "hashing-lexical-v1"):
        return HashingEmbedder()
    if key.lower() == "ollama":
        return OllamaEmbedder()
    if key.lower().startswith("ollama:") and key[len("ollama:") :].strip():
        return OllamaEmbedder(model=key[len("ollama:") :].strip())
    if _looks_like_path(key):
        return _onnx_dir(Path(key))
    raise InvalidInputError(f"unknown embedder {spec!r}: use {_CHOICES}")


def _is_embedder(obj: object) -> bool:
    # Not isinstance(obj, Embedder): on Python 3.11 that evaluates properties,
    # and OnnxEmbedder.dimensions may load a model to answer.
    for attr in ("name", "dimensions", "embed_documents", "embed_query"):
        try:
            inspect.getattr_static(obj, attr)
        except AttributeError:
            return False
    return True


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith((".", "~", "/")) or "/" in value or "\\" in value or (Path(value).exists())
    )


def _onnx_dir(path: Path) -> Embedder:
    path = path.expanduser()
    if not path.is_dir() or not (
        (path / "model.onnx").is_file() or (path / "onnx" / "model.onnx").is_file()
    ):
        raise InvalidInputError(
            f"embedder path {str(path)!r} is not a directory holding model.onnx "
            f"and tokenizer.json; use {_CHOICES}"
        )
    return OnnxEmbedder(path)
