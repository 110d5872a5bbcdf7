"""Names and paths inside a labelled set (a folder or a ZIP): which files are images, which are
the set's label tables, and which paths are refused because they would leave the set's root.

Example:
    >>> unsafe_path("../etc/passwd")
    "its path leaves the set's root folder ('..'); left out for safety"
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePosixPath

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
TABLE_NAMES = ("labels.csv", "labels.json")
CLASSES_NAME = "classes.json"


def unsafe_path(path: str) -> str | None:
    """Why ``path`` (a path inside a set) cannot be used, or None."""
    if not path or "\x00" in path or any(ord(c) < 32 for c in path):
        return "its name holds control characters; left out"
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return "its path is absolute, so it would leave the set's root folder; left out for safety"
    if ".." in re.split(r"[\\/]+", path):
        return "its path leaves the set's root folder ('..'); left out for safety"
    return None


def hidden(parts: Sequence[str]) -> bool:
    """Whether a path (its parts) is hidden: a dot file or folder, or macOS's ``__MACOSX``."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def is_image(name: str) -> bool:
    """Whether ``name`` is an image file, by its suffix."""
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES
