"""Review batches: which items a queue holds, in what order, under what name, and where a
reviewer resumes. The rules the Review page applies, without a page (tests/review/test_batches.py).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..engine.estimate import check_work, work_passes
from . import folders

MAX_ITEMS = 500


def source_entries(
    source: str,
    *,
    samples: dict[str, str],
    folder_root: str | None,
    uploads: Sequence[tuple[str, bytes]] = (),
    suffixes: Sequence[str] = (),
    max_items: int = MAX_ITEMS,
) -> tuple[list[tuple[str, str | bytes]], list[str]]:
    """The (name, path or bytes) entries of a batch source, and messages about what was left out.

    Args:
        source: ``"samples"``, ``"upload"`` or ``"folder:REL"`` (REL under ``folder_root``).
        samples: display name -> path of the bundled photos.
        folder_root: the server's review folder; links leading outside it are never listed.
        uploads: (name, bytes) of uploaded files.
    Raises:
        ValueError: a folder source without a review folder, or a folder outside it.
    """
    problems: list[str] = []
    if source == "samples":
        return [(os.path.basename(p), p) for p in samples.values()], problems
    if source.startswith("folder:"):
        rel = source[len("folder:") :]
        if not folder_root:
            raise ValueError(f"The review folder {rel!r} is not available (no review folder is configured).")
        files = folders.list_files(folder_root, rel, list(suffixes))
        if len(files) > max_items:
            problems.append(f"{len(files)} images in the folder; the queue takes the first {max_items}.")
        return [(p.name, str(p)) for p in files[:max_items]], problems
    if source == "upload":
        return [(name, data) for name, data in uploads][:max_items], problems
    raise ValueError(f"Unknown batch source {source[:40]!r}.")


def queue_items(
    entries: Iterable[tuple[str, str | bytes]], hash_of: Callable[[str, str | bytes], str]
) -> tuple[list[dict], list[str]]:
    """Queue items ``{name, hash, path | data}`` in order, one per distinct image (by
    ``hash_of(name, path or bytes)``), and a message per file left out (unreadable, or the same
    image as an earlier item)."""
    items, problems, seen = [], [], set()
    for name, where in entries:
        try:
            digest = hash_of(name, where)
        except (ValueError, OSError) as err:
            text = " ".join(str(err).split())
            problems.append(text if text.startswith(name) else f"{name}: {text}")
            continue
        if digest in seen:
            problems.append(f"{name}: the same image as an earlier item; reviewed once.")
            continue
        seen.add(digest)
        items.append(
            {
                "name": name,
                "hash": digest,
                **({"data": where} if isinstance(where, bytes) else {"path": where}),
            }
        )
    return items, problems


def default_name(source: str, hashes: Iterable[str]) -> str:
    """A batch's name when the reviewer gives none: the same items give the same name, so
    reviewers who open the same images share one queue."""
    if source == "samples":
        return "sample-photos"
    if source.startswith("folder:"):
        rel = source[len("folder:") :]
        return f"folder-{'root' if rel in ('', '.') else rel}"
    return "upload-" + hashlib.sha256("".join(sorted(hashes)).encode()).hexdigest()[:10]


def resume_position(items: Sequence[dict], decided: Iterable[str]) -> int:
    """Where a reviewer resumes: the first item they have not decided, else the last item."""
    done = set(decided)
    if not items:
        return 0
    return next((i for i, it in enumerate(items) if it["hash"] not in done), len(items) - 1)


def check_batch_work(methods: dict, items: int, name: str) -> int:
    """The network passes a batch's maps take over all its items (``estimate.work_passes``);
    a batch's methods come from the database, so its total is checked like any work from a file.

    Raises:
        estimate.TooMuchWork: past the operator's limit (``SALIENCY_MAX_PASSES``), in words.
    """
    passes = work_passes(methods.items() if isinstance(methods, dict) else (), repeat=items)
    return check_work(passes, f"Review batch {name[:80]!r} ({items} items)")


def file_signature(path: str | Path) -> tuple[int, int]:
    """(modification time in ns, size): recompute a file's hash only when these change."""
    s = os.stat(path)
    return s.st_mtime_ns, s.st_size
