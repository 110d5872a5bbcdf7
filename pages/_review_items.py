"""Review page: where a batch's items come from (the sample photos, the review folder on the server,
uploads, a Gallery selection), their image hashes, and their images."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import saliency_core as sc
from pages._images import UPLOAD_TYPES, decode
from saliency_core.engine.samples import sample_images
from saliency_core.review import batches, folders

FOLDER_ENV = "SALIENCY_REVIEW_DIR"
MAX_ITEMS = 2000
SOURCES = {"Sample photos": "samples", "Server folder": "folder", "Uploaded images": "upload"}


@dataclass
class ItemSource:
    """The places a batch's items are read from: the review folder on the server and the sample photos."""

    folder_root: str
    samples: dict[str, str]

    @classmethod
    def from_environment(cls) -> ItemSource:
        """The review folder named by ``FOLDER_ENV`` (blank: none) and the installed sample photos."""
        return cls(os.environ.get(FOLDER_ENV, "").strip(), sample_images())

    def read_path(self, path: str) -> bytes:
        """A sample photo, or a file of the review folder (refused if it leads outside the folder)."""
        if path in self.samples.values():
            return Path(path).read_bytes()
        return folders.read_file(self.folder_root, path)

    def image(self, item: dict):
        """The decoded image of a queue item (its uploaded bytes or its file)."""
        return decode(item["data"] if "data" in item else self.read_path(item["path"]), item["name"])

    def folder_choices(self) -> list[str]:
        """The configured review folder and its direct subfolders, relative to it ("." = the folder);
        links that lead outside it are left out (saliency_core.folders)."""
        if not self.folder_root or not Path(self.folder_root).is_dir():
            return []
        return ["."] + folders.subfolders(self.folder_root)

    def batch_items(self, source: str, uploads) -> tuple[list[dict], list[str]]:
        """Queue items [{name, hash, path | data}] in order, and messages about files left out
        (the rules: saliency_core.batches)."""
        if source.startswith("gallery:"):  # a selection sent from the Gallery (pages/gallery.py)
            entries, problems = gallery_entries(source[len("gallery:") :]), []
        else:
            entries, problems = batches.source_entries(
                source,
                samples=self.samples,
                folder_root=self.folder_root,
                suffixes=UPLOAD_TYPES,
                max_items=MAX_ITEMS,
                uploads=[(f.name, f.getvalue()) for f in uploads or []],
            )

        def hash_of(name, where):
            if isinstance(where, bytes):
                return bytes_hash(where, name)
            return file_hash(where, *batches.file_signature(where), self)

        items, left_out = batches.queue_items(entries, hash_of)
        return items, problems + left_out


@st.cache_data(max_entries=4096, show_spinner=False)
def file_hash(path: str, mtime_ns: int, size: int, _source: ItemSource) -> str:
    """Image hash of a sample photo or a file in the review folder, recomputed only when the file changes
    (``_source``, which reads it, is not part of the cache key)."""
    return sc.image_hash(sc.load_image(_source.read_path(path), name=os.path.basename(path)))


@st.cache_data(max_entries=512, show_spinner=False)
def bytes_hash(data: bytes, name: str) -> str:
    """Image hash of uploaded or stored bytes."""
    return sc.image_hash(sc.load_image(data, name=name))


def gallery_entries(selection: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of the images the Gallery sent as ``selection``."""
    from saliency_core.gallery import ResultStore, gallery_path

    found = ResultStore(gallery_path()).selection_items(selection)
    if not found:
        raise ValueError(f"The Gallery's selection {selection!r} is not in {gallery_path()}.")
    return [(it["name"], it["data"]) for it in found]
