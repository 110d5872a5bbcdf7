"""A thread-safe least-recently-used store, shared by all sessions of the server."""

from __future__ import annotations

import threading
from collections import OrderedDict


class MapCache:
    """Explanations (or other results) shared by all sessions, least recently used dropped first."""

    def __init__(self, size: int = 512):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
