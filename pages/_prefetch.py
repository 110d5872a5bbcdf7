"""Maps computed ahead in a background thread (the Review page's next item), into the shared
map cache and under the same one-map-at-a-time lock as the foreground."""

from __future__ import annotations

import logging
import threading

from PIL import Image

import saliency_core as sc
from pages._lru import MapCache
from pages._maps import COMPUTE_LOCK, map_cache, map_key
from pages._models import model_key

log = logging.getLogger("saliency_lens")

_prefetching: set = set()
_prefetched = MapCache(size=256)  # prefetches done (their maps may since have left the map cache)
_prefetch_guard = threading.Lock()


def prefetch(
    model: sc.Classifier, image: Image.Image, image_hash: str, methods: dict
) -> threading.Thread | None:
    """Compute the maps ``{method: params}`` of ``image`` (its predicted class) in a background
    thread into the shared map cache, one map at a time under the same lock as ``explanation``:
    the Review page does this for the next item while the reviewer looks at the current one.
    Returns the thread, or None when every map is cached or the same prefetch is already running.
    Errors are logged only: the page computes a failed map again in the foreground and says why."""
    key = (
        *model_key(model),
        image_hash,
        tuple(sorted((m, tuple(sorted(p.items()))) for m, p in methods.items())),
    )
    cache = map_cache()
    with _prefetch_guard:
        if key in _prefetching or _prefetched.get(key):
            return None
        _prefetching.add(key)

    def work() -> None:
        try:
            with COMPUTE_LOCK:
                target = model.predict(image, k=1)[0][0]
            for method, params in methods.items():
                used = sc.resolve_params(sc.METHODS[method], params, model)
                wanted = map_key(model, image_hash, method, target, used)
                if cache.get(wanted) is not None:
                    continue
                with COMPUTE_LOCK:
                    if cache.get(wanted) is None:
                        cache.put(wanted, sc.explain(model, image, method=method, target=target, **used))
            _prefetched.put(key, True)
        except Exception:  # the foreground computes it again and reports it
            log.exception("prefetch of %s failed", image_hash[:12])
        finally:
            with _prefetch_guard:
                _prefetching.discard(key)

    thread = threading.Thread(target=work, name="saliency-prefetch", daemon=True)
    thread.start()
    return thread
