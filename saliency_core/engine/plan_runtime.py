"""The execution plan in force: which plans exist, the one set around an averaging method, and
the network and input as that plan runs them. How a plan is chosen (timing, the map-change rule,
the cache) is saliency_core/engine/plans.py; this module is what the methods' hooks read, so it
imports nothing from the methods.
"""

from __future__ import annotations

import contextvars
import copy
import threading
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from ._fast import function_changes_allowed


@dataclass(frozen=True)
class Plan:
    """How an averaging method runs the network: ``dtype`` of autocast (``float32``: none) and layout."""

    name: str
    dtype: str
    channels_last: bool

    @property
    def reduced(self) -> bool:
        return self.dtype != "float32"


PLANS = {
    p.name: p
    for p in (
        Plan("float32", "float32", False),
        Plan("float32-channels-last", "float32", True),
        Plan("bfloat16", "bfloat16", False),
        Plan("bfloat16-channels-last", "bfloat16", True),
    )
}
FLOAT32 = PLANS["float32"]


# ---- applying a plan: set by explain() around an averaging method, read by the methods' hooks

_active: contextvars.ContextVar[Plan | None] = contextvars.ContextVar("plan", default=None)


@contextmanager
def using(plan: Plan | str | None):
    """Averaging methods called inside run their network with ``plan`` (None: float32)."""
    token = _active.set(PLANS[plan] if isinstance(plan, str) else plan)
    try:
        yield
    finally:
        _active.reset(token)


def active() -> Plan | None:
    """The plan in force for a gradient or forward pass now: only inside an averaging method
    (outside guided backprop), and only a plan other than float32."""
    plan = _active.get()
    if plan is None or plan == FLOAT32 or not function_changes_allowed():
        return None
    return plan


_LAYOUT: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()
_LAYOUT_LOCK = threading.Lock()


def _stamp(network: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in (*network.parameters(), *network.buffers()))


def _channels_last_copy(network: nn.Module) -> nn.Module:
    """A channels-last copy of ``network`` (cached while its weights stay the same); the caller's
    network is never changed. A network that cannot be copied is used as it is."""
    with _LAYOUT_LOCK:
        stamp = _stamp(network)
        hit = _LAYOUT.get(network)
        if hit is None or hit[0] != stamp:
            try:
                copied = copy.deepcopy(network).to(memory_format=torch.channels_last)
            except Exception:  # noqa: BLE001  TorchScript and the like: the network as written
                copied = network
            hit = (stamp, copied)
            _LAYOUT[network] = hit
        return hit[1]


@contextmanager
def applied(network: nn.Module, x: torch.Tensor):
    """``(network, x)`` as the active plan runs them, inside its autocast; unchanged without one."""
    plan = active()
    if plan is None:
        yield network, x
        return
    if plan.channels_last and x.dim() == 4:
        network, x = _channels_last_copy(network), x.contiguous(memory_format=torch.channels_last)
    cast = torch.autocast(device_type=x.device.type, dtype=torch.bfloat16) if plan.reduced else nullcontext()
    with cast:
        yield network, x
