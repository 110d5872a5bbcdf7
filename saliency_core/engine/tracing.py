"""torch.fx tracing that other threads can live with.

While it traces, torch.fx replaces ``nn.Module.__call__`` and ``nn.Module.__getattr__`` for the
whole process. A model that runs in another thread at that moment (the pages compute maps and
time passes in background threads) would be recorded into the graph being traced, or fail with
``NameError: module is not installed as a submodule``. ``ConvLeafTracer`` records only the calls
made by the thread that traces; other threads' calls and attribute reads go through unchanged.

Example:
    >>> graph = ConvLeafTracer().trace(network)
"""

from __future__ import annotations

import threading

from torch import fx, nn


class ConvLeafTracer(fx.Tracer):
    """Keeps every Conv2d (subclasses too, e.g. "same"-padded ones) as one call, so its consumers
    are known; traces only its own thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner: int | None = None

    def trace(self, root, concrete_args=None):
        self.owner = threading.get_ident()
        try:
            return super().trace(root, concrete_args)
        finally:
            self.owner = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        if threading.get_ident() != self.owner:  # another thread's model: run it as if not tracing
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if threading.get_ident() != self.owner:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)
