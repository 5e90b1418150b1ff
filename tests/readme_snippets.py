"""Code blocks of README.md that tests run as copied."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_plugin_snippet() -> str:
    """The first python block of the README's "Use it in your test suite" section."""
    text = README.read_text("utf-8")
    section = text[text.index("## Use it in your test suite") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block in the README's plugin section"
    return match.group(1)
