"""Embeddings from an Ollama server: the seeds' production choice.

Uses the official ``ollama`` client (``AsyncClient.embed``, i.e. ``POST
/api/embed`` with a list input) in batches. nomic-embed-text is trained with
task prefixes, so documents are sent as ``search_document: <text>`` and queries
as ``search_query: <text>``; other models get their own prefixes or none.
Every failure (server down, timeout, model not pulled, wrong vector size)
becomes an :class:`EmbeddingError` naming the host and the model.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from abathur_memkit.embeddings.base import Vectors, check_texts, l2_normalize
from abathur_memkit.embeddings.minilm import wordpiece_count
from abathur_memkit.errors import EmbeddingError, InvalidInputError

if TYPE_CHECKING:
    import ollama

# ollama and httpx (with pydantic) are imported at first use, not at import:
# they add 0.2 s to every program that imports memkit but never calls Ollama.

__all__ = ["DEFAULT_OLLAMA_HOST", "OllamaEmbedder"]

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"

_T = TypeVar("_T")

# (dimensions, document prefix, query prefix, context window in tokens) of
# models whose card says so. Keys are model names without the ":tag".
_KNOWN_MODELS: dict[str, tuple[int, str, str, int]] = {
    "nomic-embed-text": (768, "search_document: ", "search_query: ", 8192),
    "mxbai-embed-large": (1024, "", "Represent this sentence for searching relevant passages: ",
                          512),
    "all-minilm": (384, "", "", 256),
}


def known_dimensions(model: str) -> int | None:
    """The vector size of a model named here (any ``:tag``; nomic's ``-v1.5`` name too)."""
    known = _KNOWN_MODELS.get(model.split(":", 1)[0].removesuffix("-v1.5"))
    return known[0] if known else None


class OllamaEmbedder:
    """Embed through an Ollama server with the official client.

    ``host``: argument, else ``$OLLAMA_HOST``, else ``http://127.0.0.1:11434``.
    ``dimensions``: known for nomic-embed-text (768), mxbai-embed-large (1024) and
    all-minilm (384); required for other models. ``document_prefix`` /
    ``query_prefix``: ``None`` means the model's own (nomic's ``search_document: ``
    / ``search_query: ``), ``""`` turns them off. ``timeout`` (seconds) bounds
    each HTTP request; ``batch_size`` texts go in one ``/api/embed`` request.
    """

    def __init__(
        self,
        model: str = "nomic-embed-text",
        host: str | None = None,
        dimensions: int | None = None,
        timeout: float = 30.0,
        batch_size: int = 32,
        *,
        document_prefix: str | None = None,
        query_prefix: str | None = None,
        keep_alive: str | float | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError(f"model must be a non-empty string, got {model!r}")
        known = _KNOWN_MODELS.get(model.split(":", 1)[0])
        if dimensions is None:
            if known is None:
                raise InvalidInputError(
                    f"dimensions of Ollama model {model!r} are not known here: "
                    f"pass dimensions= (known: {', '.join(sorted(_KNOWN_MODELS))})"
                )
            dimensions = known[0]
        if not _is_int(dimensions) or dimensions < 1:
            raise InvalidInputError(f"dimensions must be a positive int, got {dimensions!r}")
        if not _is_int(batch_size) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidInputError(f"timeout must be a positive number, got {timeout!r}")
        self.model = model
        self.host = host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
        self.timeout = float(timeout)
        self.batch_size = batch_size
        self.document_prefix = (
            document_prefix if document_prefix is not None else (known[1] if known else "")
        )
        self.query_prefix = (
            query_prefix if query_prefix is not None else (known[2] if known else "")
        )
        self.keep_alive = keep_alive
        self._window = known[3] if known else None
        self._dimensions = dimensions
        self._ssl: ssl.SSLContext | None = None

    @property
    def name(self) -> str:
        # "nomic-embed-text" and "nomic-embed-text:latest" are one model; store
        # one name so that spelling it either way does not re-embed everything.
        return self.model.removesuffix(":latest")

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_tokens(self) -> int | None:
        """The model's context window in tokens (None for models not known here)."""
        return self._window

    def count_tokens(self, text: str) -> int:
        """Tokens of a document as sent (its prefix included), counted offline.

        The known models are BERT-family and share the bert-base-uncased
        WordPiece vocabulary bundled for MiniLM; Ollama's own tokenizer may
        differ slightly, so the count is padded by 5 % (an overestimate only
        makes chunks smaller).
        """
        n = wordpiece_count(self.document_prefix + text)
        return n + n // 20 + 1

    def __repr__(self) -> str:
        return f"OllamaEmbedder(model={self.model!r}, host={self.host!r})"

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        texts = check_texts(texts)
        return await self._embed([self.document_prefix + t for t in texts])

    async def embed_query(self, text: str) -> Vectors:
        (text,) = check_texts([text])
        vectors = await self._embed([self.query_prefix + text])
        return vectors.reshape(vectors.shape[1])

    async def health_check(self) -> None:
        """Raise :class:`EmbeddingError` unless the server answers, has the model
        pulled, and (when it reports one) the model's embedding size matches."""
        async with self._client() as client:
            listing = await self._call(client.list(), "list models")
            names = {m.model for m in listing.models if m.model}
            if _tagged(self.model) not in {_tagged(n) for n in names}:
                raise EmbeddingError(
                    f"Ollama at {self.host} does not have model {self.model!r} "
                    f"(has: {', '.join(sorted(names)) or 'none'}); run: ollama pull {self.model}"
                )
            info = await self._call(client.show(self.model), "show model")
        reported = _embedding_length(info.modelinfo or {})
        if reported is not None and reported != self._dimensions:
            raise EmbeddingError(
                f"Ollama model {self.model!r} at {self.host} makes {reported}-dimensional "
                f"vectors, but this embedder expects {self._dimensions}"
            )

    # -- internals -------------------------------------------------------------

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[ollama.AsyncClient]:
        # A client per call, closed at the end: an httpx pool is bound to the
        # event loop it was first used on, and embedders outlive loops (tests,
        # asyncio.run per CLI command). Batches within one call share it. The
        # TLS context is what costs (30 ms to load the CA bundle), so it is
        # built once, off the loop, and reused.
        import httpx
        import ollama

        if self._ssl is None:
            self._ssl = await asyncio.to_thread(httpx.create_ssl_context)
        async with ollama.AsyncClient(
            host=self.host, timeout=httpx.Timeout(self.timeout), verify=self._ssl
        ) as client:
            yield client

    async def _embed(self, inputs: list[str]) -> Vectors:
        out = np.zeros((len(inputs), self._dimensions), dtype=np.float32)
        if not inputs:
            return out
        async with self._client() as client:
            for start in range(0, len(inputs), self.batch_size):
                batch = inputs[start : start + self.batch_size]
                response = await self._call(
                    client.embed(model=self.model, input=batch, keep_alive=self.keep_alive),
                    "embed",
                )
                out[start : start + len(batch)] = self._check(response.embeddings, len(batch))
        return out

    def _check(self, embeddings: Sequence[Sequence[float]], count: int) -> Vectors:
        if len(embeddings) != count:
            raise EmbeddingError(
                f"Ollama model {self.model!r} at {self.host} returned {len(embeddings)} "
                f"vectors for {count} texts"
            )
        sizes = {len(v) for v in embeddings}
        if sizes != {self._dimensions}:
            raise EmbeddingError(
                f"Ollama model {self.model!r} at {self.host} returned "
                f"{'/'.join(map(str, sorted(sizes)))}-dimensional vectors, expected "
                f"{self._dimensions}: pass the model's real dimensions, or use the model "
                f"the database was built with"
            )
        arr = np.asarray(embeddings, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise EmbeddingError(
                f"Ollama model {self.model!r} at {self.host} returned NaN or infinite values"
            )
        # Ollama normalises /api/embed output already; doing it again is cheap
        # and makes the contract hold for servers that do not.
        return l2_normalize(arr)

    async def _call(self, request: Awaitable[_T], what: str) -> _T:
        import httpx
        import ollama

        where = f"Ollama at {self.host} (model {self.model!r})"
        try:
            return await request
        except ConnectionError as exc:  # the client's translation of httpx.ConnectError
            raise EmbeddingError(
                f"cannot connect to {where}: is the server running (`ollama serve`) "
                f"and OLLAMA_HOST right?"
            ) from exc
        except httpx.TimeoutException as exc:
            raise EmbeddingError(
                f"{where} did not answer {what} within {self.timeout:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"{what} failed at {where}: {exc!r}") from exc
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                raise EmbeddingError(
                    f"{where}: {exc.error}; run: ollama pull {self.model}"
                ) from exc
            raise EmbeddingError(
                f"{where} refused {what}: {exc.error} (HTTP {exc.status_code})"
            ) from exc
        except ValueError as exc:  # pydantic validation or JSON decoding of the reply
            raise EmbeddingError(f"{where} sent an unexpected reply to {what}: {exc}") from exc


def _tagged(model: str) -> str:
    return model if ":" in model else model + ":latest"


def _embedding_length(model_info: Any) -> int | None:
    # /api/show reports "<architecture>.embedding_length", e.g. "nomic-bert.embedding_length".
    for key, value in dict(model_info).items():
        if str(key).endswith(".embedding_length") and _is_int(value):
            return int(value)
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
