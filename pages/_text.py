"""Words the pages show: user-written text escaped for Markdown (``plain``), the disclaimer,
a prediction in words and a map's alt text. No streamlit here: only strings."""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import saliency_core as sc

DISCLAIMER = (
    "Saliency maps are supporting evidence and approximations of what the model used, "
    "not proof. Compare several methods and read each map's caution."
)

_ESCAPE = {ord(c): "\\" + c for c in string.punctuation}
_BLANK = {ord(c): " " for c in "\r\n\t\v\f\x85\u2028\u2029"}


def plain(text, limit: int = 2000) -> str:
    """User-written text (names, notes, labels, file names, messages quoting them) for the
    Markdown that st.markdown, st.caption, alerts, image captions, labels and toasts render:
    every ASCII punctuation character backslash-escaped, so links, images, emphasis, HTML,
    LaTeX and Streamlit's :colour[...] directives show as typed; line breaks become spaces;
    at most ``limit`` characters. Longer text with line breaks belongs in st.text / st.code.

    Example:
        >>> plain("![x](http://example.invalid/a.png)")
        '\\!\\[x\\]\\(http\\:\\/\\/example\\.invalid\\/a\\.png\\)'
    """
    text = str(text).translate(_BLANK)
    text = "".join(c for c in text if c.isprintable() or c == " ")
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.translate(_ESCAPE)


def prediction_words(model: sc.Classifier, predicted: list) -> str:
    """The prediction in words for Markdown: the top class, or a multi-label model's set."""
    if not model.multilabel:
        ((_, label, p),) = predicted
        return f"**Prediction:** {plain(label)} ({p:.1%})"
    rule = f"multi-label: every class above {model.threshold:.0%}"
    if not predicted:
        return f"**Predicted classes** ({rule}): none"
    return f"**Predicted classes** ({rule}): " + ", ".join(
        f"{plain(label)} ({p:.1%})" for _, label, p in predicted
    )


def map_alt(method_label: str, image_name: str, target_label: str, probability: float | None = None) -> str:
    """Alt text of an overlay: which method, which class, which image."""
    what = f"{method_label} saliency map over {image_name}, explaining the class {target_label}"
    return (
        what
        + (f" ({probability:.0%} confidence)" if probability is not None else "")
        + ": brighter areas influenced the score more."
    )
