"""A stand-in Ollama server on 127.0.0.1 for tests: real HTTP, fake model.

It speaks the subset of Ollama's REST API that the official ``ollama`` Python
client uses for embeddings (``POST /api/embed``, ``GET /api/tags``,
``POST /api/show``, ``GET /api/version``), with the request and response
shapes of ollama 0.6 (checked against ``ollama/_client.py`` / ``_types.py``).
Only the model is stood in for: vectors come from :class:`HashingEmbedder`
(lexical, deterministic), so tests can compute the expected ones. Every
request is recorded, and the server can be told to misbehave (wrong vector
size, HTTP errors, slow answers).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from abathur_memkit.embeddings import HashingEmbedder

__all__ = ["OllamaStub", "RecordedRequest"]

_MODIFIED_AT = "2024-08-01T12:00:00.000000000Z"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: Any  # parsed JSON, or None for a GET


@dataclass
class OllamaStub:
    """``with OllamaStub() as stub: OllamaEmbedder(host=stub.host)``.

    ``models`` maps the names ``/api/tags`` lists to their embedding size.
    Knobs, settable while running: ``wrong_dimensions`` (return vectors of
    this size instead), ``fail_status`` / ``fail_message`` (answer every
    ``/api/embed`` with this HTTP error), ``delay`` (seconds to sleep first).
    """

    models: dict[str, int] = field(default_factory=lambda: {"nomic-embed-text:latest": 768})
    wrong_dimensions: int | None = None
    fail_status: int | None = None
    fail_message: str = "stub failure"
    delay: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def host(self) -> str:
        if self._server is None:
            raise RuntimeError("stub not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def embed_batches(self) -> list[list[str]]:
        """The ``input`` lists of every ``/api/embed`` request, in order."""
        with self._lock:
            return [
                list(r.body["input"]) if isinstance(r.body["input"], list) else [r.body["input"]]
                for r in self.requests
                if r.path == "/api/embed"
            ]

    def start(self) -> OllamaStub:
        stub = self

        class Handler(_Handler):
            owner = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> OllamaStub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the API ---------------------------------------------------------------

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, body))

    def _find(self, name: str) -> tuple[str, int] | None:
        tagged = name if ":" in name else name + ":latest"
        for model, dims in self.models.items():
            if model == tagged:
                return model, dims
        return None

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self._record(method, path, body)
        if self.delay:
            time.sleep(self.delay)
        if method == "GET" and path == "/api/version":
            return 200, {"version": "0.0.0-stub"}
        if method == "GET" and path == "/api/tags":
            return 200, {"models": [_model_entry(m) for m in self.models]}
        if method == "POST" and path == "/api/show":
            found = self._find(str(body.get("model", "")))
            if found is None:
                return 404, {"error": f"model '{body.get('model')}' not found"}
            return 200, _show(found[1])
        if method == "POST" and path == "/api/embed":
            return self._embed(body)
        return 404, {"error": f"no route {method} {path} in the Ollama stub"}

    def _embed(self, body: Any) -> tuple[int, Any]:
        if self.fail_status is not None:
            return self.fail_status, {"error": self.fail_message}
        model = str(body.get("model", ""))
        found = self._find(model)
        if found is None:
            return 404, {"error": f'model "{model}" not found, try pulling it first'}
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else list(texts)
        dims = self.wrong_dimensions or found[1]
        vectors = HashingEmbedder(dims).embed_sync(texts).tolist()
        return 200, {
            "model": model,
            "embeddings": vectors,
            "total_duration": 1_000_000,
            "load_duration": 0,
            "prompt_eval_count": sum(len(t.split()) for t in texts),
        }


class _Handler(BaseHTTPRequestHandler):
    owner: OllamaStub
    protocol_version = "HTTP/1.1"  # keep-alive, like the real server
    # Headers and body go out in two writes; with Nagle's algorithm the second
    # request on a kept-alive connection would wait 40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            self._send(400, {"error": "invalid JSON"})
            return
        self._serve(body)

    def _serve(self, body: Any) -> None:
        status, payload = self.owner.handle(self.command, self.path, body)
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test); nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean


def _model_entry(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": _MODIFIED_AT,
        "size": 274_302_450,
        "digest": "0" * 64,
        "details": _details(),
    }


def _details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "nomic-bert",
        "families": ["nomic-bert"],
        "parameter_size": "137M",
        "quantization_level": "F16",
    }


def _show(dimensions: int) -> dict[str, Any]:
    return {
        "license": "stand-in model of the test stub",
        "modelfile": "# stand-in model of the test stub",
        "parameters": "num_ctx 8192",
        "template": "{{ .Prompt }}",
        "details": _details(),
        "model_info": {
            "general.architecture": "nomic-bert",
            "nomic-bert.embedding_length": dimensions,
        },
        "capabilities": ["embedding"],
        "modified_at": _MODIFIED_AT,
    }
