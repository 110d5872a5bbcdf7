"""Shortcut grouping time (saliency_core/gallery/groups.py) for many stored maps in one class.

    python bench/gallery_groups.py                      # 10,000 maps, the number in docs/gallery.md
    python bench/gallery_groups.py --maps 2000 --cold 200   # a quick run

Synthetic Grad-CAM-like maps (224 x 224): a Gaussian blob at a random place on most, a blob in
the top-left corner on 10 % (a watermark), an edge band on 5 %. They are written to a real
SQLite result store as the gallery run writes them (the full map encoded, and its 32 x 32 kept
for grouping), and ``class_groups`` is timed end to end (reading the maps, the kNN graph, the
eigengap, spectral clustering, the flags): "warm" reads the stored 32 x 32 maps. "Cold"
times maps stored by an older version (no 32 x 32 kept): ``--cold`` of them are decoded and
downsampled, and the per-map cost is multiplied out. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from saliency_core.gallery import (  # noqa: E402
    ResultStore,
    encode_map,
    groups,  # noqa: E402
)


class _Model:  # what model_key / params_key need: no network is run
    fingerprint, card, labels, gradcam_layer = "bench", {}, ["object"], "features"


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(n, 224, 224) maps and their kind (0 object, 1 corner, 2 edge band)."""
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32)
    kinds = rng.choice(3, size=n, p=[0.85, 0.10, 0.05])
    maps = np.empty((n, 224, 224), np.float32)
    for i, kind in enumerate(kinds):
        if kind == 1:
            cy, cx, s = 12 + rng.normal(0, 2), 12 + rng.normal(0, 2), 8
        else:
            cy, cx, s = rng.uniform(50, 174), rng.uniform(50, 174), rng.uniform(20, 40)
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        if kind == 2:
            m = ((np.minimum(np.minimum(yy, xx), np.minimum(223 - yy, 223 - xx)) < 20) * 1.0).astype(
                np.float32
            )
        maps[i] = m + rng.random((224, 224), dtype=np.float32) * 0.002
    return maps, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maps", type=int, default=10_000)
    parser.add_argument("--cold", type=int, default=500, help="maps decoded for the cold per-map cost")
    args = parser.parse_args()
    started = time.perf_counter()
    import sklearn.cluster  # noqa: F401  imported before the clock starts (the app imports once)
    import sklearn.decomposition  # noqa: F401
    import sklearn.neighbors  # noqa: F401

    imports = time.perf_counter() - started
    rng = np.random.default_rng(0)
    model, method = _Model(), "gradient"
    folder = tempfile.mkdtemp()
    store = ResultStore(os.path.join(folder, "gallery.sqlite"))
    from saliency_core.gallery import model_key, params_key

    mkey, pkey = model_key(model), params_key(model, method, {})
    hashes, kinds_all, written = [], [], time.perf_counter()
    for start in range(0, args.maps, 1000):
        maps, kinds = synthetic(min(1000, args.maps - start), rng)
        batch = [f"{start + i:064x}" for i in range(len(maps))]
        store.put_small_maps(
            [
                (mkey, h, method, pkey, groups.SIDE, groups.downsample(m).tobytes())
                for h, m in zip(batch, maps)
            ]
        )
        hashes += batch
        kinds_all += list(kinds)
        if start == 0:  # full maps for the cold measure, as an older store holds them
            with sqlite3.connect(store.path) as db:
                for h, m in zip(batch[: args.cold], maps[: args.cold]):
                    db.execute(
                        "INSERT INTO predictions VALUES (?, ?, 0, 0.9, '[]', '0', '', NULL)", (mkey, h)
                    )
                    db.execute(
                        "INSERT INTO maps VALUES (?, ?, ?, ?, 0, '{}', NULL, '', '[224, 224]', NULL, ?)",
                        (mkey, h, method, pkey, encode_map(m)),
                    )
    written = time.perf_counter() - written
    rows = pd.DataFrame({"status": "done", "image_hash": hashes, "predicted_label": "object", "name": hashes})
    started = time.perf_counter()
    found = groups.class_groups(store, model, rows, method, {})["object"]
    warm = time.perf_counter() - started
    # cold: the maps of an older store, decoded and downsampled
    with sqlite3.connect(store.path) as db:
        db.execute("DELETE FROM small_maps WHERE image_hash IN (SELECT image_hash FROM maps)")
    started = time.perf_counter()
    small = groups.small_maps(store, model, hashes[: args.cold], method, {})
    cold_each = (time.perf_counter() - started) / max(len(small), 1)
    kinds = dict(zip(hashes, kinds_all))
    flagged = [g for g in found.groups if g.flag]
    corner = {h for h, k in kinds.items() if k == 1}
    best = max(flagged, key=lambda g: len(corner & set(g.members)), default=None)
    print(
        json.dumps(
            {
                "maps": args.maps,
                "groups": len(found.groups),
                "group_sizes": [g.size for g in found.groups],
                "flagged": [g.flag[:60] for g in flagged],
                "corner_group_purity": round(len(corner & set(best.members)) / best.size, 3)
                if best
                else None,
                "corner_group_recall": round(len(corner & set(best.members)) / len(corner), 3)
                if best
                else None,
                "seconds_warm": round(warm, 2),
                "seconds_clustering": round(found.seconds, 2),
                "seconds_cold_per_map": round(cold_each, 5),
                "seconds_cold_extrapolated": round(warm + cold_each * args.maps, 1),
                "seconds_writing_store": round(written, 1),
                "seconds_importing_scikit_learn": round(imports, 1),
                "cpu_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
