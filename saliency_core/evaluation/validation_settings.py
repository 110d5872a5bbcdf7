"""What a validation run computes (``ValidationSettings``) and how its intervals are described;
recorded with every result. ``saliency_core.evaluation.validate`` runs it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ..engine.methods import METHODS
from . import faithfulness as fa
from . import localisation as lo

INTERVALS = ("bootstrap", "t")
MEASURED_ON = {
    "raw": "the raw map, pixel by pixel",
    "shown": "the map as drawn: averaged maps at their reproducible detail, the others raw",
}


@dataclass
class ValidationSettings:
    """What a run computes; recorded with the result.

    Attributes:
        methods: registry names.
        params: method parameters (``samples``, ``noise``, ``seed``, ``steps``, ``baseline``...);
            each method gets those it takes.
        tolerance: pointing game tolerance in pixels of the model's input (Zhang et al.: 15).
        top_k: share of pixels for the top-k IoU.
        faithfulness: compute deletion / insertion curves (the slow part: 2 x (1/step_fraction
            + 1) forward passes per map).
        step_fraction: share of the pixels changed per step (Petsiuk et al.: 224 px of a 224 px
            image = 0.45 %; 5 % here by default, 21 points per curve).
        deletion_replacement, insertion_replacement: see ``metrics.faithfulness``.
        centre_sigma: the centre-bias Gaussian's standard deviation, a share of the side.
        seed: random baseline, pixel-order tie breaks, bootstrap.
        interval: ``"bootstrap"`` (percentile bootstrap over images) or ``"t"`` (Student t).
        confidence: of the interval.
        resamples: bootstrap resamples.
        worst: thumbnails kept per method (the images with the least relevance mass).
        thumbnail: their side in pixels.
        measure_on: ``"raw"`` (default): every score on the raw map; ``"shown"``: on the map as
            drawn (``render.shown_map``: an averaged map at its reproducible detail, an exact map
            or an averaged one settled at no detail raw). Each row records ``measured_px``.
    """

    methods: Sequence[str]
    params: dict = field(default_factory=dict)
    tolerance: float = lo.POINTING_TOLERANCE
    top_k: float = lo.TOP_K
    faithfulness: bool = True
    step_fraction: float = 0.05
    deletion_replacement: str = fa.DELETION_REPLACEMENT
    insertion_replacement: str = fa.INSERTION_REPLACEMENT
    centre_sigma: float = lo.CENTRE_SIGMA
    seed: int = 0
    interval: str = "bootstrap"
    confidence: float = 0.95
    resamples: int = 2000
    worst: int = 6
    thumbnail: int = 112
    batch_size: int = fa.BATCH_SIZE
    measure_on: str = "raw"

    def check(self) -> None:
        """ValueError in plain words for a setting out of range."""
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"Unknown method(s) {', '.join(unknown)}; available: {', '.join(METHODS)}.")
        if not self.methods:
            raise ValueError("Choose at least one saliency method.")
        if not (self.tolerance >= 0 and math.isfinite(self.tolerance)):
            raise ValueError(f"The pointing game tolerance must be 0 pixels or more; got {self.tolerance}.")
        if not 0 < self.top_k <= 1:
            raise ValueError(f"top_k must be a share of the pixels in (0, 1]; got {self.top_k}.")
        if not 0 < self.step_fraction <= 0.5:
            raise ValueError(
                f"The deletion/insertion step must be a share of the pixels in (0, 0.5]; "
                f"got {self.step_fraction}."
            )
        for r in (self.deletion_replacement, self.insertion_replacement):
            if r not in fa.REPLACEMENTS:
                raise ValueError(f"Unknown replacement {r!r}; use one of {', '.join(fa.REPLACEMENTS)}.")
        if self.measure_on not in MEASURED_ON:
            raise ValueError(f"measure_on must be 'raw' or 'shown'; got {self.measure_on!r}.")
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be 'bootstrap' or 't'; got {self.interval!r}.")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence must be between 0.5 and 1; got {self.confidence}.")

    def step_pixels(self, input_size: int) -> int:
        return max(1, int(math.ceil(self.step_fraction * input_size * input_size)))

    def record(self, input_size: int | None = None) -> dict:
        out = asdict(self)
        out["methods"] = list(self.methods)
        out["params"] = {k: self.params[k] for k in sorted(self.params)}
        if input_size:
            out["step_pixels"] = self.step_pixels(input_size)
        out["interval_description"] = interval_description(self)
        out["saliency_used"] = "|saliency| for unsigned methods, its positive part for signed ones"
        out["measured_on"] = MEASURED_ON[self.measure_on]
        return out


def interval_description(settings: ValidationSettings) -> str:
    pct = f"{settings.confidence:.0%}"
    if settings.interval == "t":
        return f"{pct} CI: Student t-interval of the mean over images"
    return f"{pct} CI: percentile bootstrap over images, {settings.resamples} resamples, seed {settings.seed}"
