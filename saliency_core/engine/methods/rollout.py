"""Attention rollout (Abnar & Zuidema 2020) for vision transformers with a class token (ViT).

Each ``nn.MultiheadAttention`` layer's attention weights are read during one forward pass
(recomputed from its input and ``in_proj`` weights inside a forward hook that lives for the
call); averaged over heads, mixed with the identity for the residual connection, and multiplied
through the layers. The class token's row of the product, over the patch tokens, is the map.
It does not depend on the class: the caution says so.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F
from torch import nn

from ._autograd import as_targets, target_scores
from ._registry import Cost, register

CAUTION = (
    "The same map for every class: attention rollout shows which patches the class token "
    "gathers information from through the attention layers, not evidence for the explained "
    "class, and it ignores the MLP layers (Abnar & Zuidema 2020; Chefer et al. 2021)."
)


def attention_layers(network: nn.Module) -> list[nn.MultiheadAttention]:
    """The network's ``nn.MultiheadAttention`` modules, in registration order."""
    return [m for m in network.modules() if isinstance(m, nn.MultiheadAttention)]


def attention_weights(module: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) per head, (B, heads, N, N), as ``module`` computes it
    (Vaswani et al. 2017, Eq. 1) for inputs ``query`` / ``key`` in its layout."""
    if not module._qkv_same_embed_dim or module.in_proj_weight is None:
        raise ValueError(
            "Attention rollout needs attention layers whose query, key and value share one "
            "projection (torchvision's ViT); this model's do not."
        )
    if not module.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)
    e, heads = module.embed_dim, module.num_heads
    w, b = module.in_proj_weight, module.in_proj_bias
    q = F.linear(query, w[:e], b[:e] if b is not None else None)
    k = F.linear(key, w[e : 2 * e], b[e : 2 * e] if b is not None else None)
    batch, n, _ = q.shape
    q = q.view(batch, n, heads, e // heads).transpose(1, 2)
    k = k.view(batch, k.shape[1], heads, e // heads).transpose(1, 2)
    return (q @ k.transpose(-2, -1) / math.sqrt(e // heads)).softmax(dim=-1)


@register(
    "attention_rollout",
    "Attention rollout",
    "Patches the class token draws on through all attention layers (Abnar & Zuidema 2020); "
    "the same for every class.",
    reduction="sum",
    needs=("attention",),
    passes=lambda params, size: Cost(forward=1),  # attention read in one pass, no gradient
    caution=CAUTION,
    meaning="the class token gathers most information from these patches through attention "
    "(the same map for every class)",
    reference="Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers",
)
def attention_rollout(network: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Rollout map (B, 1, H, W): the class token's row of prod_l (0.5 A_l + 0.5 I) over the patch
    tokens, A_l the head-averaged attention of layer l (Abnar & Zuidema 2020, Sec. 3), laid out
    as the square patch grid and upsampled bilinearly to the input size.

    ``target`` is checked but does not change the map.

    Raises:
        ValueError: no attention layer, masked attention, or tokens that are not a class token
            followed by a square grid of patches.
    """
    layers = attention_layers(network)
    if not layers:
        raise ValueError(
            "Attention rollout needs multi-head attention layers (a vision transformer); this model has none."
        )
    found: list[torch.Tensor] = []
    me = threading.get_ident()  # the network is shared between sessions' threads: only our own pass

    def read(module, args, kwargs, output):
        if threading.get_ident() != me:
            return
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs.get("key", query)
        if kwargs.get("attn_mask") is not None or kwargs.get("key_padding_mask") is not None:
            raise ValueError("Attention rollout does not support masked attention.")
        found.append(attention_weights(module, query, key).mean(dim=1))  # heads averaged

    hooks = [m.register_forward_hook(read, with_kwargs=True) for m in layers]
    try:
        with torch.no_grad():
            target_scores(network, x.detach(), as_targets(target, x.shape[0], x.device))
    finally:
        for h in hooks:
            h.remove()
    n = found[0].shape[-1]
    side = math.isqrt(max(n - 1, 0))
    if side < 1 or side * side != n - 1 or any(a.shape[-1] != n for a in found):
        raise ValueError(
            f"Attention rollout needs a class token followed by a square grid of patch tokens; the "
            f"attention layers see {n} tokens."
        )
    eye = torch.eye(n, dtype=found[0].dtype, device=found[0].device)
    rollout = eye.expand_as(found[0])
    for a in found:  # Ã_l = 0.5 A_l + 0.5 I (residual), rows sum to 1; rollout = Ã_L ... Ã_1
        rollout = (0.5 * a + 0.5 * eye) @ rollout
    grid = rollout[:, 0, 1:].reshape(-1, 1, side, side)
    return F.interpolate(grid.to(x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=False)
