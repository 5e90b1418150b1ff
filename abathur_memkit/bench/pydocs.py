"""The Python documentation (Debian's ``python3.11-doc``) as a folder of markdown.

``memkit bench search --quality`` needs a real documentation corpus that the
team did not write. Debian ships Sphinx's HTML of the Python docs under
``/usr/share/doc/python3.11/html``; this turns a fixed subset of it (the
tutorial, the HOWTOs, the FAQ and the library reference pages of about a
hundred everyday modules — see :func:`corpus_pages`) into
markdown: headings become ATX headings, ``<pre>`` blocks fenced code, list
items ``-`` lines, API signatures their own paragraph. Only the standard
library's ``html.parser`` is used.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

__all__ = ["DEFAULT_HTML", "corpus_pages", "html_to_markdown", "write_corpus"]

DEFAULT_HTML = Path("/usr/share/doc/python3.11/html")
#: Folders of the HTML tree taken whole (but their index pages, lists of links).
SECTIONS = ("tutorial", "howto", "faq")
#: Library reference pages taken: modules a developer reaches for every day.
#: The whole library (317 pages) would take the offline model ~10 minutes to
#: embed; these make ~5,400 chunks (~2 minutes). The longest pages (os,
#: stdtypes, typing, datetime) are left out: each would crowd the corpus.
LIBRARY_PAGES = (
    "abc", "argparse", "array", "asyncio-queue", "asyncio-runner", "asyncio-stream",
    "asyncio-subprocess", "asyncio-sync", "asyncio-task", "atexit", "base64", "bisect",
    "calendar", "codecs", "collections", "concurrent.futures", "configparser", "constants",
    "contextlib", "contextvars", "copy", "csv", "dataclasses", "difflib", "doctest", "enum",
    "exceptions", "fnmatch", "fractions", "functions", "functools", "gc", "getpass",
    "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html.parser", "http.server",
    "importlib.metadata", "importlib.resources", "inspect", "io", "itertools", "json",
    "locale", "logging", "math", "operator", "os.path", "pathlib", "pdb", "pickle",
    "platform", "pprint", "profile", "queue", "random", "re", "sched", "secrets", "select",
    "shelve", "shutil", "signal", "smtplib", "socket", "sqlite3", "statistics", "string",
    "struct", "subprocess", "sys", "tarfile", "tempfile", "textwrap", "threading", "time",
    "timeit", "tomllib", "traceback", "tracemalloc", "unicodedata", "unittest",
    "urllib.parse", "urllib.request", "uuid", "venv", "warnings", "weakref",
    "xml.etree.elementtree", "zipapp", "zipfile", "zoneinfo",
)

_BLOCKS = {"p", "div", "section", "dl", "dd", "table", "tr", "ul", "ol", "blockquote",
           "figure", "article"}


class _Converter(HTMLParser):
    """Sphinx body HTML to markdown; everything outside ``role="main"`` is ignored."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.depth = 0  # <div> nesting inside the main body (0 = outside)
        self.skip = 0  # inside a header link, a script or a style
        self.pre = 0
        self.lists: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if self.depth == 0:
            if tag == "div" and attr.get("role") == "main":
                self.depth = 1
            return
        if tag == "div":
            self.depth += 1
        if self.skip or tag in ("script", "style") or "headerlink" in (attr.get("class") or ""):
            self.skip += 1
            return
        if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._block()
            self.out.append("#" * int(tag[1]) + " ")
        elif tag == "pre":
            self._block()
            self.out.append("```\n")
            self.pre += 1
        elif tag in ("ul", "ol"):
            self.lists.append(tag)
            self._block()
        elif tag == "li":
            self._line()
            self.out.append("  " * max(0, len(self.lists) - 1) + "- ")
        elif tag == "dt":
            self._block()
        elif tag in ("td", "th"):
            self.out.append(" | ")
        elif tag == "br":
            self._line()
        elif tag in _BLOCKS:
            self._block()

    def handle_endtag(self, tag: str) -> None:
        if self.depth == 0:
            return
        if self.skip:
            if tag in ("a", "script", "style"):
                self.skip -= 1
            if tag == "div":
                self.depth -= 1
            return
        if tag == "div":
            self.depth -= 1
        if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._block()
        elif tag == "pre":
            self.pre -= 1
            self._line()
            self.out.append("```")
            self._block()
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._block()
        elif tag in ("dt", "tr") or tag in _BLOCKS:
            self._block()

    def handle_data(self, data: str) -> None:
        if self.depth == 0 or self.skip:
            return
        if self.pre:
            self.out.append(data)
            return
        text = " ".join(data.split())
        if not text:
            if data and self.out and not self.out[-1].endswith((" ", "\n")):
                self.out.append(" ")
            return
        if data[:1].isspace() and self.out and not self.out[-1].endswith((" ", "\n")):
            text = " " + text
        if data[-1:].isspace():
            text += " "
        self.out.append(text)

    def _line(self) -> None:
        if self.out and not self.out[-1].endswith("\n"):
            self.out.append("\n")

    def _block(self) -> None:
        self._line()
        if self.out and not "".join(self.out[-2:]).endswith("\n\n"):
            self.out.append("\n")

    def markdown(self) -> str:
        lines = [line.rstrip() for line in "".join(self.out).splitlines()]
        text = "\n".join(lines)
        while "\n\n\n" in text:
            text = text.replace("\n\n\n", "\n\n")
        return text.strip() + "\n"


def html_to_markdown(html: str) -> str:
    """The main body of one Sphinx HTML page as markdown."""
    parser = _Converter()
    parser.feed(html)
    parser.close()
    return parser.markdown()


def corpus_pages(html_root: Path = DEFAULT_HTML) -> list[Path]:
    """The pages of the corpus, relative to ``html_root``, sorted."""
    pages = [path.relative_to(html_root)
             for section in SECTIONS
             for path in sorted((html_root / section).glob("*.html"))
             if path.name != "index.html"]
    pages += [Path("library", f"{name}.html") for name in LIBRARY_PAGES]
    return pages


def write_corpus(dest: Path, html_root: Path = DEFAULT_HTML,
                 pages: list[Path] | None = None) -> list[Path]:
    """Write each page as ``dest/<section>/<name>.md``; return the paths written
    (relative to ``dest``). ``pages`` defaults to :func:`corpus_pages`."""
    written = []
    for page in pages if pages is not None else corpus_pages(html_root):
        text = html_to_markdown((html_root / page).read_text("utf-8"))
        target = dest / page.with_suffix(".md")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, "utf-8")
        written.append(page.with_suffix(".md"))
    return written
