"""Markdown chunking: by heading, then at a token bound with overlap.

A document is cut at its ATX headings (``#`` … ``######``, not inside fenced
code). Each section keeps the path of headings above it ("Guide > Sessions >
Expiry"). A section longer than ``max_tokens`` is cut into windows of at most
``max_tokens`` tokens that overlap by ``overlap`` tokens, each cut placed at a
paragraph or sentence end when one is near. Offsets are character offsets
into the text given, so ``text[chunk.start:chunk.end] == chunk.text``.

Tokens here are words and punctuation marks (``\\w+|[^\\w\\s]``), a cheap
stand-in for a model's own tokens. Code, identifiers and non-English text
take more model tokens per word, so a :class:`TokenWindow` (the embedder's
tokenizer and window) may be given: any chunk whose embedding text (headings
included) would overflow the model's window is split again, in smaller
windows of the same span, until every piece fits. Nothing is cut off.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidInputError

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_OVERLAP",
    "Chunk",
    "TokenWindow",
    "chunk_markdown",
    "count_tokens",
    "embedding_text",
    "front_matter",
    "title_of",
    "token_window",
]

DEFAULT_MAX_TOKENS = 200
DEFAULT_OVERLAP = 32

_TOKEN = re.compile(r"\w+|[^\w\s]")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*(?:[ \t]#+[ \t]*)?$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)
# Where a window may end: after a blank line, or after a sentence.
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]*(?=\s)")


@dataclass(frozen=True)
class Chunk:
    """One piece of a document, as stored in ``document_chunks``."""

    index: int
    heading_path: tuple[str, ...]
    start: int
    end: int
    text: str
    tokens: int

    @property
    def heading(self) -> str:
        """The nearest heading above the chunk ("" before the first heading)."""
        return self.heading_path[-1] if self.heading_path else ""

    @property
    def heading_text(self) -> str:
        """The heading path joined with " > "."""
        return " > ".join(self.heading_path)

    def embedding_text(self) -> str:
        """What the embedder sees: the headings above the text, then the text."""
        return embedding_text(self.heading_text, self.text)


@dataclass(frozen=True)
class TokenWindow:
    """What an embedder reads of a text: ``count(text)`` model tokens (special
    tokens and prefixes included), of which it keeps at most ``size``."""

    count: Callable[[str], int]
    size: int

    def fits(self, chunk: Chunk) -> bool:
        return self.count(chunk.embedding_text()) <= self.size


def token_window(embedder: object) -> TokenWindow | None:
    """The window of an embedder that says how it counts (``count_tokens(text)``)
    and how many tokens it reads (``max_tokens``); None for one that does not."""
    count = getattr(embedder, "count_tokens", None)
    size = getattr(embedder, "max_tokens", None)
    if callable(count) and isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return TokenWindow(count, size)
    return None


def embedding_text(heading_path: str, text: str) -> str:
    """A chunk's text with the headings above it (those not already in the text)."""
    path = [h for h in heading_path.split(" > ") if h] if heading_path else []
    if path and text.lstrip().startswith("#"):
        path = path[:-1]  # the text starts with its own heading line
    return f"{' > '.join(path)}\n\n{text}" if path else text


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


def front_matter(text: str) -> tuple[dict[str, str], int]:
    """Simple ``key: value`` pairs of a leading ``---`` block, and where the body starts."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, 0
    fields: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith((" ", "\t", "-", "#")):
            fields[key.strip().lower()] = value.strip().strip("\"'")
    return fields, match.end()


def title_of(text: str, fallback: str) -> str:
    """The front matter's ``title``, else the first level-1 heading, else ``fallback``."""
    fields, body = front_matter(text)
    if fields.get("title"):
        return fields["title"]
    for _, level, heading, _ in _headings(text, body):
        if level == 1 and heading:
            return heading
    return fallback


def chunk_markdown(
    text: str, *, max_tokens: int = DEFAULT_MAX_TOKENS, overlap: int = DEFAULT_OVERLAP,
    window: TokenWindow | None = None,
) -> list[Chunk]:
    """Cut markdown ``text`` into chunks (see the module docstring); with
    ``window``, every chunk's embedding text fits it."""
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 8:
        raise InvalidInputError(f"max_tokens must be an int >= 8, got {max_tokens!r}")
    if (not isinstance(overlap, int) or isinstance(overlap, bool)
            or not 0 <= overlap < max_tokens // 2):
        raise InvalidInputError(
            f"overlap must be an int from 0 to max_tokens/2, got {overlap!r}"
        )
    _, body = front_matter(text)
    chunks: list[Chunk] = []
    for path, start, end in _sections(text, body):
        for s, e, tokens in _windows(text, start, end, max_tokens, overlap):
            piece = Chunk(len(chunks), path, s, e, text[s:e], tokens)
            for fitted in _fit(text, piece, window, overlap):
                chunks.append(Chunk(len(chunks), path, fitted.start, fitted.end, fitted.text,
                                    fitted.tokens))
    return chunks


def _fit(text: str, chunk: Chunk, window: TokenWindow | None, overlap: int) -> list[Chunk]:
    """``chunk``, or smaller chunks of its span that each fit ``window``."""
    if window is None or window.fits(chunk):
        return [chunk]
    if chunk.tokens <= 1:
        # One word longer than the model's whole window: cut it at characters.
        middle = chunk.start + (chunk.end - chunk.start) // 2
        if middle == chunk.start:
            return [chunk]  # one character: nothing left to split
        halves = [(chunk.start, middle), (middle, chunk.end)]
        return [p for s, e in halves
                for p in _fit(text, Chunk(0, chunk.heading_path, s, e, text[s:e], 1),
                              window, 0)]
    # Shrink the window in proportion to the overflow; recurse until all fit.
    used = window.count(chunk.embedding_text())
    smaller = max(1, min(chunk.tokens - 1, chunk.tokens * window.size * 9 // (used * 10)))
    lap = min(overlap, smaller // 4)
    out = []
    for s, e, tokens in _windows(text, chunk.start, chunk.end, smaller, lap):
        out.extend(_fit(text, Chunk(0, chunk.heading_path, s, e, text[s:e], tokens),
                        window, lap))
    return out


def _headings(text: str, start: int) -> list[tuple[int, int, str, int]]:
    """(line start, level, heading text, line end) of each ATX heading outside fences."""
    found = []
    fence: str | None = None
    offset = start
    for line in text[start:].splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        marker = _FENCE.match(stripped)
        if fence is not None:
            if marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                fence = None
        elif marker:
            fence = marker.group(1)
        else:
            heading = _HEADING.match(stripped)
            if heading:
                found.append((offset, len(heading.group(1)), heading.group(2).strip(),
                              offset + len(stripped)))
        offset += len(line)
    return found


def _sections(text: str, body: int) -> list[tuple[tuple[str, ...], int, int]]:
    """(heading path, start, end) of each section that has text besides its heading."""
    headings = _headings(text, body)
    bounds = [(body, 0, "", body), *headings]
    stack: list[tuple[int, str]] = []
    out = []
    for n, (start, level, heading, line_end) in enumerate(bounds):
        if n > 0:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
        end = bounds[n + 1][0] if n + 1 < len(bounds) else len(text)
        content_start = line_end if n > 0 else start
        if not text[content_start:end].strip():
            continue  # a heading directly followed by another, or an empty preamble
        # Trim surrounding blank space so offsets point at real text.
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        out.append((tuple(h for _, h in stack), start, end))
    return out


def _windows(
    text: str, start: int, end: int, max_tokens: int, overlap: int
) -> list[tuple[int, int, int]]:
    """(start, end, tokens) windows covering ``text[start:end]``."""
    spans = [(m.start() + start, m.end() + start) for m in _TOKEN.finditer(text[start:end])]
    if len(spans) <= max_tokens:
        return [(start, end, len(spans))]
    breaks = _break_scores(text, start, end)
    out = []
    first = 0
    while True:
        last = min(first + max_tokens, len(spans)) - 1
        if last < len(spans) - 1:
            # Prefer to end at a paragraph, then a sentence, in the window's last 40%.
            floor = first + max(1, int(max_tokens * 0.6))
            if floor <= last:
                best = max(range(floor, last + 1),
                           key=lambda i: (breaks.get(spans[i][1], 0), i))
                if breaks.get(spans[best][1], 0) > 0:
                    last = best
        chunk_start = start if first == 0 else spans[first][0]
        chunk_end = end if last == len(spans) - 1 else spans[last][1]
        out.append((chunk_start, chunk_end, last - first + 1))
        if last == len(spans) - 1:
            return out
        first = max(first + 1, last + 1 - overlap)


def _break_scores(text: str, start: int, end: int) -> dict[int, int]:
    """Character offsets where a window may end: 2 = paragraph end, 1 = sentence end."""
    scores: dict[int, int] = {}
    segment = text[start:end]
    for m in _SENTENCE_END.finditer(segment):
        scores[start + m.end()] = 1
    for m in _PARAGRAPH_END.finditer(segment):
        # The paragraph ends at the last non-space character before the blank line.
        pos = start + m.start()
        while pos > start and text[pos - 1].isspace():
            pos -= 1
        scores[pos] = 2
    return scores
