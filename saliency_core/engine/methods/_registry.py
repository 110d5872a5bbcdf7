from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch


@dataclass(frozen=True)
class Cost:
    """Network passes one map of one image takes.

    Attributes:
        forward: passes without gradients (occlusion's hidden copies, RISE's masked copies).
        backward: forward + backward passes (one per gradient: a SmoothGrad sample, an
            Integrated Gradients step).
        batched: the gradients are taken several images per pass (SmoothGrad's samples,
            Integrated Gradients' steps), which costs less per image than one at a time.
    """

    forward: int = 0
    backward: int = 0
    batched: bool = False

    def __mul__(self, times: int) -> Cost:
        return Cost(self.forward * times, self.backward * times, batched=self.batched or times > 1)


@dataclass(frozen=True)
class Setting:
    """How the pages offer one method parameter (the CLI derives its flags from ``defaults``).

    Attributes:
        label: the widget's label.
        help: one or two sentences under the widget's help icon.
        widget: ``"slider"``, ``"number"`` (a typed number), ``"select"`` (a list of
            ``choices``) or ``"select_slider"`` (a slider over ``choices``).
        low, high, step: the range offered (numbers); within what the method accepts.
        choices: the values offered (``select`` and ``select_slider``).
        place: where the pages offer it: ``"top"`` (the sidebar, always shown), ``"more"``
            (the sidebar's "More parameters") or ``"page"`` (on the page that uses it).
        default: the method's default; filled in by ``register`` from ``defaults``.
    """

    label: str
    help: str = ""
    widget: str = "slider"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple = ()
    place: str = "more"
    default: object = None


# The random seed: the same label and range for every method that draws at random.
SEED = Setting("Random seed", "The same seed gives the same map.", widget="number", low=0, high=2**31 - 1)


def one_gradient(params: dict, size: tuple[int, int]) -> Cost:
    """The cost of a method that takes one gradient of the score (saliency, Grad-CAM...)."""
    return Cost(backward=1)


def whole(value, low: int = 1) -> int:
    """``value`` as a whole count of at least ``low`` for an estimate; ``low`` when it is not a
    finite number (an estimate never raises: the method itself rejects a bad value)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return low
    return max(low, int(value))


@dataclass(frozen=True)
class Method:
    """A registered saliency method.

    Attributes:
        name: registry key, e.g. ``"smoothgrad"``.
        label: display name.
        description: one plain-language line for reviewers.
        attribute: ``(network, x, target, **params) -> Tensor (B, C, H, W)``.
        defaults: every parameter the method takes, with its default.
        reduction: how ``attribution`` (C, H, W) becomes the drawn ``saliency`` (H, W):
            ``"max_abs"`` (max of |.| over colour channels, Simonyan et al. 2014) or
            ``"sum"`` (signed sum over channels; keeps Integrated Gradients' completeness).
        signed: whether the saliency carries a meaningful sign.
        caution: a known limit shown next to every map of this method, or None.
        needs: what the model must offer: ``"gradient"`` (scores that can be differentiated with
            respect to the pixels; not an ONNX model), ``"relu"`` (hookable ReLU activations),
            ``"conv"`` (a feature map: convolutional, or a transformer's tokens as a grid),
            ``"attention"`` (``nn.MultiheadAttention`` layers, e.g. torchvision's ViT).
            ``register`` defaults it to ``("gradient",)``, so a method is offered for gradient-free
            models only when it says it needs no gradient (occlusion and RISE pass ``needs=()``).
        check: optional ``(network, x, target, attribution, params) -> dict`` of diagnostics.
        reference: the paper.
        meaning: what a bright pixel means, for legends; ``{score}`` names the explained score.
        averaging: an average over random draws (SmoothGrad family): the seed matters, and speed
            paths that change the function are allowed within the tolerance
            saliency_core/engine/_fast.py states.
        smoothable: SmoothGrad may average this method's map over noisy copies of the image
            (its ``base``); False for SmoothGrad itself and for path methods (Integrated Gradients).
        passes: ``(params, (height, width)) -> Cost``: the passes one map takes with the full
            parameters (defaults filled in); ``register`` defaults it to one gradient. Ask
            ``cost``, which fills in the defaults.
        settings: the parameters the pages offer, name -> ``Setting`` (default from ``defaults``).
    """

    name: str
    label: str
    description: str
    attribute: Callable[..., torch.Tensor]
    defaults: dict = field(default_factory=dict)
    reduction: str = "max_abs"
    signed: bool = False
    caution: str | None = None
    needs: frozenset = frozenset()
    check: Callable[..., dict] | None = None
    reference: str = ""
    meaning: str = "changing these pixels changes {score} most, up or down"
    averaging: bool = False
    smoothable: bool = True
    passes: Callable[[dict, tuple[int, int]], Cost] = one_gradient
    settings: dict = field(default_factory=dict)

    def cost(self, params: dict | None = None, size: int | tuple[int, int] = 224) -> Cost:
        """Passes one map of one ``size`` (side, or (height, width)) image takes with ``params``
        (this method's defaults where they are missing; other methods' entries are ignored).

        Example:
            >>> METHODS["occlusion"].cost({"window": 32, "stride": 16}, 224)
            Cost(forward=170, backward=0)
        """
        height, width = (size, size) if isinstance(size, int) else size
        return self.passes({**self.defaults, **self.params_for(params or {})}, (int(height), int(width)))

    def params_for(self, params: dict) -> dict:
        """The entries of ``params`` this method takes; the others are left out (a page or a
        command holds one set of parameters for all methods)."""
        return {k: v for k, v in params.items() if k in self.defaults}


METHODS: dict[str, Method] = {}


def register(name: str, label: str, description: str, **options) -> Callable:
    """Decorator: register ``fn`` as method ``name``. ``options`` are ``Method`` fields."""

    def wrap(fn: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"A method named {name!r} is already registered.")
        defaults = options.get("defaults", {})
        unknown = set(options.get("settings", {})) - set(defaults)
        if unknown:
            raise ValueError(
                f"Method {name!r} offers settings it does not take: {', '.join(sorted(unknown))}."
            )
        options["settings"] = {
            k: replace(s, default=defaults[k]) for k, s in options.get("settings", {}).items()
        }
        METHODS[name] = Method(
            name=name,
            label=label,
            description=description,
            attribute=fn,
            needs=frozenset(options.pop("needs", ("gradient",))),
            **options,
        )
        return fn

    return wrap


def page_settings() -> dict[str, Setting]:
    """Every parameter a page offers, one ``Setting`` per name over the registry (methods that
    share a name, such as ``seed`` or SmoothGrad's ``samples``, share its setting and default).

    Raises:
        ValueError: two methods offer the same name with different settings.
    """
    found: dict[str, Setting] = {}
    for method in METHODS.values():
        for key, setting in method.settings.items():
            if found.setdefault(key, setting) != setting:
                raise ValueError(
                    f"Methods offer {key!r} with different settings: {found[key]} and {setting}."
                )
    return found


def reduce_channels(attribution: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W): ``max_abs`` = max_c |a_c| (Simonyan et al. 2014), ``sum`` = sum_c a_c."""
    if reduction == "max_abs":
        return attribution.abs().amax(dim=1)
    if reduction == "sum":
        return attribution.sum(dim=1)
    raise ValueError(f"Unknown channel reduction {reduction!r}; use 'max_abs' or 'sum'.")
