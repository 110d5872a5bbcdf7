"""Text from files (names, labels) shown as itself by the gallery: inside Markdown and inside plotly."""

from __future__ import annotations

import html
import re


def md(text) -> str:
    """Text from files (names, labels) shown as itself inside Markdown: the characters Markdown
    and Streamlit's extensions (:emoji:, :red[colour], $maths$) act on backslash-escaped, line
    breaks folded."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=^%])", r"\\\1", " ".join(str(text).split()))


def shown(label) -> str:
    """A label as plotly shows it: plotly reads a few HTML tags (links among them) in text, so
    ``<`` and ``&`` are written as entities, which it shows as the characters."""
    return html.escape(str(label), quote=False)
