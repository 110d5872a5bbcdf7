"""Model parameter randomisation test (Adebayo et al. 2018, Sanity Checks for Saliency Maps).

The weights are re-initialised block by block from the logits down, either cumulatively
(``cascading``: after step i the top i blocks are random) or one block at a time on
otherwise trained weights (``independent``). At every step each method's map is computed
again and compared with the trained model's map (Spearman rank correlation of |map| and of
the signed map, SSIM, HOG similarity; ``similarity.compare``). A method whose maps stay
similar while the model is destroyed is not explaining the model.

Verdict: the method **passes** when the Spearman rank correlation of |map| with the trained
model's map at the last step of a cascading run is below ``threshold`` (default 0.5), i.e. the
map decorrelated from the trained model's (for an independent run, where no step is "last",
the mean over the steps is used).

How deep the default run goes: the top half of the blocks (``default_depth``). By then the
classifier and the upper half of the feature layers are random and the prediction means
nothing, so a map that still matches the trained model's shows the input more than what the
model learned (Adebayo et al. Fig. 2: guided backprop stays the same until the lowest
layers). Once the very first layers (the edge filters) are re-initialised too, every map
changes, guided backprop included, so a run through all blocks can only separate the methods
by the curve, not by its last point; the curve is always shown.

How the weights are destroyed:

- All work happens on a deep copy of the network; the caller's model is never touched.
- A block is re-initialised with each layer's own ``reset_parameters()`` (PyTorch's default
  initialisation for that layer) under a fixed seed per block, so a run can be repeated and
  the cascading and independent runs draw the same random weights for a block.
- Normalisation layers (BatchNorm, GroupNorm, LayerNorm...) get their affine weight and bias
  reset (to 1 and 0); BatchNorm's running mean and variance are statistics, not learned
  weights, and are kept (as in the paper, which re-initialises trainable weights).
- A layer with parameters but no ``reset_parameters()`` has each parameter redrawn from a
  normal distribution with that parameter's own mean and standard deviation (noted per step).

Blocks (``layer_blocks``): the model's parameterised layers in reverse forward order, with
containers (``nn.Sequential`` / ``nn.ModuleList`` of several layers) opened one level and a
normalisation layer kept with the layer before it. For the demo EfficientNet-Lite0 that is
``_fc``, ``_conv_head + _bn1``, ``_blocks.15`` ... ``_blocks.0``, ``_conv_stem + _bn0``.

Example:
    >>> result = sanity_check(model, "chelsea.png", ["gradient", "guided_backprop"], depth=7)
    >>> {m: v.passed for m, v in result.verdicts().items()}
    {'gradient': True, 'guided_backprop': False}
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..engine.classifier import Classifier
from ..engine.explain import attribute, check_methods, get_method, reduce_channels
from ..engine.images import ImageSource, image_hash, load_image
from .similarity import compare

MODES = ("cascading", "independent")
DEPTH_SHARE = 0.5  # default run: the top half of the blocks
MEASURES = ("spearman_abs", "spearman_signed", "ssim", "hog")
VERDICT_MEASURE = "spearman_abs"
DEFAULT_THRESHOLD = 0.5
_NORMS = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)
_CONTAINERS = (nn.Sequential, nn.ModuleList)


@dataclass(frozen=True)
class Block:
    """A group of layers re-initialised together.

    Attributes:
        name: display name, e.g. ``"_conv_head + _bn1"``.
        modules: qualified names in the network (``network.get_submodule``).
    """

    name: str
    modules: tuple[str, ...]


def _has_own_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _trunk(network: nn.Module, prefix: str = "") -> tuple[nn.Module, str]:
    """Descend while only one child holds parameters (e.g. past a normalisation wrapper)."""
    while not _has_own_parameters(network):
        holders = [(n, c) for n, c in network.named_children() if _has_parameters(c)]
        if len(holders) != 1:
            break
        name, network = holders[0]
        prefix = f"{prefix}{name}."
    return network, prefix


def _candidates(trunk: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    out = []
    for name, child in trunk.named_children():
        if not _has_parameters(child):
            continue
        inner = [(n, c) for n, c in child.named_children() if _has_parameters(c)]
        if isinstance(child, _CONTAINERS) and len(inner) > 1 and not _has_own_parameters(child):
            out += [(f"{prefix}{name}.{n}", c) for n, c in inner]
        else:
            out.append((f"{prefix}{name}", child))
    return out


def _forward_order(network: nn.Module, names: list[str], size: int, channels: int = 3) -> list[str]:
    """``names`` in the order their modules first run, observed with hooks on a copy of the
    network (the caller's is never hooked); registration order if that cannot be observed."""
    order: list[str] = []
    try:
        clone = copy.deepcopy(network)
        for name in names:
            clone.get_submodule(name).register_forward_pre_hook(
                lambda m, i, name=name: order.append(name) if name not in order else None
            )
        device = next(clone.parameters()).device
        with torch.no_grad():
            clone(torch.zeros(1, channels, size, size, device=device))
    except Exception:  # scripted or unusual models: fall back to registration order
        order = []
    if not order:
        return list(names)
    return order + [n for n in names if n not in order]


def layer_blocks(model: Classifier | nn.Module, input_size: int | None = None) -> list[Block]:
    """The blocks a randomisation run re-initialises, logits first.

    One forward pass of a zero image through a copy of the network, with hooks on the copy,
    finds the forward order.

    Args:
        model: a ``Classifier`` or a network.
        input_size: side of the zero image for the forward pass (default: the model's, or 224).
    Returns:
        list of ``Block``, from the output layer down to the first layer.
    Raises:
        ValueError: the model has no layers with parameters.

    Example:
        >>> [b.name for b in layer_blocks(load_model("demo"))][:3]
        ['_fc', '_conv_head + _bn1', '_blocks.15']
    """
    network = model.network if isinstance(model, Classifier) else model
    size = input_size or (model.input_size if isinstance(model, Classifier) else 224)
    trunk, prefix = _trunk(network)
    named = _candidates(trunk, prefix)
    if not named and _has_own_parameters(trunk):  # a single layer, e.g. one nn.Linear
        named = [(prefix[:-1], trunk)]
    if not named:
        raise ValueError(
            "The randomisation check needs a model with layers that have weights; "
            "this model has none to re-initialise."
        )
    modules = dict(named)
    groups: list[list[str]] = []
    channels = model.channels if isinstance(model, Classifier) else 3
    for name in _forward_order(network, [n for n, _ in named], size, channels):
        if groups and isinstance(modules[name], _NORMS):
            groups[-1].append(name)  # a norm layer belongs to the layer it normalises
        else:
            groups.append([name])
    blocks = [
        Block(" + ".join(n[len(prefix) :] or type(modules[n]).__name__ for n in g), tuple(g)) for g in groups
    ]
    return blocks[::-1]


def default_depth(blocks: Sequence[Block]) -> int:
    """Blocks a default run re-initialises: the top half (at least one)."""
    return max(1, math.ceil(len(blocks) * DEPTH_SHARE))


def checkpoints(depth: int, count: int) -> list[int]:
    """``count`` steps of a run of ``depth`` blocks, evenly spread, the first and the last
    included: where maps are computed when not at every step (``sanity_check(maps_at=...)``).

    Example:
        >>> checkpoints(10, 4)
        [1, 4, 7, 10]
    """
    depth, count = int(depth), int(count)
    if depth < 1 or count < 1:
        raise ValueError(f"depth and count must be 1 or more; got {depth} and {count}.")
    if count >= depth:
        return list(range(1, depth + 1))
    return sorted({int(round(v)) for v in np.linspace(1, depth, count)})


def _block_seed(seed: int, block: Block) -> int:
    digest = hashlib.blake2b(f"{seed}:{'|'.join(block.modules)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def reinitialise(network: nn.Module, block: Block, seed: int = 0) -> list[str]:
    """Re-initialise the layers of ``block`` in ``network`` IN PLACE (use a copy!).

    Args:
        network: the network to change (never a cached model's).
        block: from ``layer_blocks``.
        seed: with the block's names, fixes the random weights; the global RNG is left as it was.
    Returns:
        Notes on anything not re-initialised by ``reset_parameters()`` (norm layers, fallbacks).
    """
    notes = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # draws are on the CPU
        torch.random.default_generator.manual_seed(_block_seed(seed, block))  # CPU only
        for top in block.modules:
            for name, module in network.get_submodule(top).named_modules(prefix=top):
                if not _has_own_parameters(module):
                    continue
                with _on_cpu(module):  # CPU draws: the same random weights on any device
                    notes.extend(_reset(module, name))
    return notes


@contextmanager
def _on_cpu(module: nn.Module):
    """``module``'s own parameters and buffers on the CPU inside, back on their device after."""
    own = [t for _, t in (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False))]
    devices = [t.device for t in own]
    for t in own:
        t.data = t.data.cpu()
    try:
        yield
    finally:
        for t, device in zip(own, devices):
            t.data = t.data.to(device)


def _reset(module: nn.Module, name: str) -> list[str]:
    """Re-initialise one module's own parameters from the global (seeded) CPU generator."""
    if isinstance(module, _NORMS):
        for pname, p in module.named_parameters(recurse=False):
            p.fill_(1.0 if pname == "weight" else 0.0)
        return [
            f"{name}: normalisation layer, affine weight/bias reset to 1/0"
            + (", running statistics kept" if isinstance(module, nn.modules.batchnorm._BatchNorm) else "")
        ]
    if callable(getattr(module, "reset_parameters", None)):
        module.reset_parameters()
        return []
    for p in module.parameters(recurse=False):
        mean, std = float(p.float().mean()), float(p.float().std()) if p.numel() > 1 else 0.0
        p.copy_(torch.randn_like(p) * std + mean)
    return [f"{name}: no reset_parameters(); redrawn from a normal with its own mean and std"]


@dataclass
class Step:
    """One step of a run: which block(s) are random, the maps and their similarity to step 0.

    Attributes:
        index: 0 = the trained model; i = after re-initialising block i (cascading: blocks 1..i).
        block: the block re-initialised at this step ("" for step 0).
        random_blocks: names of all blocks random at this step.
        prediction: the (randomised) model's top-1 (index, label, probability) on the image.
        saliency: method -> (H, W) drawn map.
        similarity: method -> {measure: value} against step 0.
        zero: methods whose map is zero everywhere at this step (Spearman then counts as 0).
        notes: what was re-initialised other than by ``reset_parameters()``.
        diagnostics: method -> the map's diagnostics (an averaged map's convergence readout, from
            which it is drawn at its reproducible detail; the similarity uses the raw map).
    """

    index: int
    block: str
    random_blocks: list
    prediction: tuple
    saliency: dict = field(default_factory=dict)
    similarity: dict = field(default_factory=dict)
    zero: set = field(default_factory=set)
    notes: list = field(default_factory=list)
    diagnostics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SanityVerdict:
    """Pass / fail of one method in one randomisation run.

    Attributes:
        passed: True if the map decorrelated (``final_similarity < threshold``).
        final_similarity: ``measure`` (Spearman of |map|) at the last step (independent runs:
            the mean over the steps).
        blocks, total_blocks: blocks re-initialised at the last step, of how many.
        final_map_zero: the method's map is zero everywhere at the last step, e.g. Grad-CAM
            when no feature of the random model supports the class (its ReLU leaves nothing);
            that counts as changed (rank correlation 0), and the summary says so.
    """

    method: str
    passed: bool
    measure: str
    final_similarity: float
    threshold: float
    mode: str
    blocks: int
    total_blocks: int
    model_fingerprint: str
    image_hash: str
    image_name: str = ""
    final_map_zero: bool = False

    @property
    def summary(self) -> str:
        """One plain sentence for a caution mark."""
        state = "passes" if self.passed else "fails"
        how = "from the output down" if self.mode == "cascading" else "one at a time"
        on = f" on {self.image_name}" if self.image_name else ""
        where = "at the last step" if self.mode == "cascading" else "on average over the steps"
        return (
            f"{state.capitalize()} the randomisation sanity check{on} "
            f"({self.blocks} of {self.total_blocks} layer blocks re-initialised {how}): "
            f"rank correlation with the trained model's map {self.final_similarity:.2f} {where} "
            f"({'below' if self.passed else 'not below'} the threshold {self.threshold:.2f})."
            + (
                " At the last step the map is zero everywhere: nothing in the randomised model supports "
                "the class by this method."
                if self.final_map_zero
                else ""
            )
        )

    def record(self) -> dict:
        return {**dataclasses.asdict(self), "verdict": "passes" if self.passed else "fails"}


@dataclass
class SanityResult:
    """A randomisation run: steps (step 0 = trained model), blocks, settings."""

    mode: str
    blocks: list
    steps: list
    methods: list
    target: int
    target_label: str
    prediction: list
    image: Image.Image
    image_hash: str
    model_fingerprint: str
    threshold: float
    params: dict
    seed: int
    image_name: str = ""
    total_blocks: int = 0
    errors: dict = field(default_factory=dict)

    def curve(self, method: str, measure: str = VERDICT_MEASURE) -> list[float]:
        """Similarity to the trained model's map at steps 1..n."""
        return [s.similarity[method][measure] for s in self.steps[1:] if method in s.similarity]

    def verdicts(self, threshold: float | None = None) -> dict[str, SanityVerdict]:
        """Method -> ``SanityVerdict``: Spearman of |map| at the last step of a cascading run,
        or its mean over the steps of an independent run, against ``threshold`` (default: the
        run's; another value re-judges the same maps)."""
        threshold = self.threshold if threshold is None else _check_threshold(threshold)
        out = {}
        for m in self.methods:
            curve = self.curve(m)
            if not curve:
                continue
            value = curve[-1] if self.mode == "cascading" else float(np.mean(curve))
            out[m] = SanityVerdict(
                m,
                bool(value < threshold),
                VERDICT_MEASURE,
                float(value),
                threshold,
                self.mode,
                (len(self.steps[-1].random_blocks) if self.mode == "cascading" else len(self.steps) - 1),
                self.total_blocks or len(self.blocks),
                self.model_fingerprint,
                self.image_hash,
                self.image_name,
                final_map_zero=self.mode == "cascading" and m in self.steps[-1].zero,
            )
        return out

    def rows(self) -> list[dict]:
        """One row per (step, method) with every similarity; for a table or CSV."""
        return [
            {
                "step": s.index,
                "block": s.block or "(trained model)",
                "method": m,
                "prediction": s.prediction[1],
                "probability": s.prediction[2],
                **s.similarity.get(m, {}),
            }
            for s in self.steps
            for m in self.methods
            if m in s.saliency
        ]

    def record(self) -> dict:
        """JSON-ready summary: settings, verdicts, curves."""
        return {
            "mode": self.mode,
            "blocks": [b.name for b in self.blocks],
            "target": self.target,
            "target_label": self.target_label,
            "image_hash": self.image_hash,
            "image_name": self.image_name,
            "model_fingerprint": self.model_fingerprint,
            "threshold": self.threshold,
            "seed": self.seed,
            "measure": VERDICT_MEASURE,
            "params": self.params,
            "verdicts": {m: v.record() for m, v in self.verdicts().items()},
            "steps": [
                {
                    "step": s.index,
                    "block": s.block,
                    "prediction": list(s.prediction),
                    "similarity": s.similarity,
                    "zero_maps": sorted(s.zero),
                    "notes": s.notes,
                }
                for s in self.steps
            ],
            "errors": self.errors,
        }


def _check_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not (isinstance(threshold, (int, float)) and 0 < float(threshold) <= 1):
        raise ValueError(f"The pass threshold must be between 0 and 1; got {threshold}.")
    return float(threshold)


def _independent_copy(network: nn.Module) -> nn.Module:
    clone = copy.deepcopy(network)
    theirs = {t.data_ptr() for t in list(network.parameters()) + list(network.buffers()) if t.numel()}
    if any(t.data_ptr() in theirs for t in list(clone.parameters()) + list(clone.buffers()) if t.numel()):
        raise ValueError(
            "The model could not be copied without sharing its weights; "
            "the randomisation check refuses to run on the original."
        )
    return clone.eval()


def _maps(model: Classifier, x: torch.Tensor, target: int, method: str, params: dict):
    attribution, used, diagnostics = attribute(
        model, x, torch.tensor([target], device=x.device), method, **params
    )
    drawn = reduce_channels(attribution, get_method(method).reduction)[0].float().cpu().numpy()
    signed = attribution.sum(dim=1)[0].float().cpu().numpy()
    return drawn, signed, used, diagnostics


def sanity_check(
    model: Classifier,
    image: ImageSource,
    methods: Sequence[str],
    *,
    mode: str = "cascading",
    depth: int | None = None,
    blocks: Sequence[Block] | None = None,
    target: int | None = None,
    params: dict | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    image_name: str = "",
    progress: Callable[[int, int], None] | None = None,
    maps_at: Sequence[int] | None = None,
) -> SanityResult:
    """Run the model parameter randomisation test on one image.

    Args:
        model: the classifier; it is deep-copied and never modified.
        image: PIL image, path or bytes.
        methods: names in ``METHODS``.
        mode: ``"cascading"`` (from the logits down, cumulative) or ``"independent"``.
        depth: how many blocks to go through, from the top; None = ``default_depth`` (the top
            half); ``len(layer_blocks(model))`` = all.
        blocks: override ``layer_blocks(model)``.
        target: class explained at every step; None = the trained model's prediction.
        params: method parameters; each method takes the ones it knows.
        threshold: a method passes if its final Spearman of |map| is below this.
        seed: fixes the random weights.
        image_name: how to call the image in verdicts.
        progress: ``progress(done, total)`` after each map.
        maps_at: the steps (1 .. depth) at which maps are computed; None = every step. In a
            cascading run the blocks in between are re-initialised all the same (each with its
            own seed), so the last step, and the verdict, equal a run with maps at every step;
            an independent run tests only these blocks. See ``checkpoints``.
    Returns:
        ``SanityResult``; ``.verdicts()`` gives pass / fail per method. A method that fails
        to run is reported in ``errors``.
    Raises:
        ValueError: unknown mode or method, depth out of range, a model without layers
            with weights, or a method this model cannot run.

    Example:
        >>> r = sanity_check(model, "chelsea.png", ["gradcam"], depth=4)
        >>> r.verdicts()["gradcam"].passed
        True
    """
    if mode not in MODES:
        raise ValueError(f"The randomisation mode must be one of {', '.join(MODES)}; got {mode!r}.")
    threshold = _check_threshold(threshold)
    methods = check_methods(model, methods)
    every = list(blocks) if blocks is not None else layer_blocks(model)
    chosen = _chosen_blocks(every, depth)
    image = load_image(image)
    run = _Run(model, image, target, mode, chosen, seed)
    params = dict(params or {})
    own = {m: {k: v for k, v in params.items() if k in get_method(m).defaults} for m in methods}
    steps = run.steps(methods, own, _wanted_steps(maps_at, len(chosen)), progress)
    return SanityResult(
        mode=mode,
        blocks=chosen,
        steps=steps,
        methods=[m for m in methods if m not in run.errors],
        target=run.target,
        target_label=model.labels[run.target],
        prediction=run.prediction,
        image=model.crop(image),
        image_hash=image_hash(image),
        model_fingerprint=model.fingerprint,
        threshold=float(threshold),
        params=run.used_params,
        seed=int(seed),
        image_name=image_name,
        total_blocks=len(every),
        errors=run.errors,
    )


def _chosen_blocks(every: list[Block], depth) -> list[Block]:
    """The top ``depth`` blocks (None = ``default_depth``), checked."""
    if not every:
        raise ValueError("No layer blocks to re-initialise.")
    if depth is None:
        depth = default_depth(every)
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not 1 <= depth <= len(every):
        raise ValueError(
            f"The number of blocks to re-initialise must be between 1 and {len(every)}; got {depth}."
        )
    return every[: int(depth)]


def _wanted_steps(maps_at: Sequence[int] | None, depth: int) -> set[int]:
    """The steps (1 .. depth) at which maps are computed, checked; None = every step."""
    if maps_at is None:
        return set(range(1, depth + 1))
    wanted = set()
    for i in maps_at:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 1 <= i <= depth:
            raise ValueError(f"Steps with maps must be between 1 and {depth}; got {i}.")
        wanted.add(int(i))
    if not wanted:
        raise ValueError("Choose at least one step at which to compute the maps.")
    return wanted


class _Run:
    """One randomisation run on an independent copy of the network: the trained model's
    prediction, then the steps with their maps, compared with the trained model's maps."""

    def __init__(self, model: Classifier, image: Image.Image, target, mode: str, chosen, seed: int):
        self.network = _independent_copy(model.network)
        self.work = dataclasses.replace(model, network=self.network)
        device = next((p.device for p in self.network.parameters()), torch.device("cpu"))
        self.x = model.preprocess(image).to(device)
        self.prediction = self.work.predict(self.x, k=5)
        target = self.prediction[0][0] if target is None else int(target)
        if not 0 <= target < len(model.labels):
            raise ValueError(f"Target class must be between 0 and {len(model.labels) - 1}; got {target}.")
        self.target, self.mode, self.chosen, self.seed = target, mode, chosen, seed
        self.trained = (
            {k: v.clone() for k, v in self.network.state_dict().items()} if mode == "independent" else None
        )
        self.original: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.used_params, self.errors = {}, {}
        self.done = 0  # maps done (or skipped), for ``progress``

    def steps(self, methods: list[str], own: dict, wanted: set[int], progress) -> list[Step]:
        """Step 0 (the trained model) and each wanted step, with every method's map."""
        total = len(methods) * (len(wanted) + 1)
        chosen, steps = self.chosen, []
        pending: list[str] = []  # notes of cascading steps without maps, shown at the next step with maps
        for index in range(len(chosen) + 1):
            notes = []
            if index:
                if self.mode == "independent":
                    if index not in wanted:
                        continue
                    self.network.load_state_dict(self.trained)
                notes = pending + reinitialise(self.network, chosen[index - 1], self.seed)
                if index not in wanted:
                    pending = notes
                    continue
                pending = []
            random_blocks = (
                []
                if not index
                else [b.name for b in chosen[:index]]
                if self.mode == "cascading"
                else [chosen[index - 1].name]
            )
            top = self.work.predict(self.x, k=1)[0]
            step = Step(index, chosen[index - 1].name if index else "", random_blocks, top, notes=notes)
            for m in methods:
                self._add_map(step, m, own[m], progress, total)
            steps.append(step)
        return steps

    def _add_map(self, step: Step, m: str, own: dict, progress, total: int) -> None:
        """Method ``m``'s map at ``step`` and its similarity to the trained model's."""
        self.done += 1
        if m in self.errors:
            return
        try:
            drawn, signed, used, diagnostics = _maps(self.work, self.x, self.target, m, own)
        except ValueError as err:
            self.errors[m] = f"step {step.index} ({step.block or 'trained model'}): {err}"
            return
        finally:
            if progress is not None:
                progress(self.done, total)
        step.saliency[m] = drawn
        if diagnostics.get("convergence") is not None:
            step.diagnostics[m] = {"convergence": diagnostics["convergence"]}
        if not np.any(drawn):  # exactly zero, e.g. Grad-CAM's ReLU (tiny values still rank)
            step.zero.add(m)
        if step.index == 0:
            self.original[m], self.used_params[m] = (drawn, signed), used
        original = self.original[m]
        step.similarity[m] = compare(
            original[0], drawn, signed_a=original[1], signed_b=signed, measures=MEASURES
        )


def sanity_verdicts(
    model: Classifier, image: ImageSource, methods: Sequence[str], **options
) -> dict[str, SanityVerdict]:
    """The pass / fail verdict of each method: a default cascading run (the top half of the blocks).

    This is what the Explain page's caution marks show once it has been computed; it takes
    one map per method and block (10 blocks for the demo model), so callers cache it by
    model fingerprint and method.

    Args:
        options: passed to ``sanity_check`` (``params``, ``threshold``, ``seed``, ``image_name``,
            ``progress``, ``depth``).
    Returns:
        method -> ``SanityVerdict``.
    """
    return sanity_check(model, image, methods, mode="cascading", **options).verdicts()
