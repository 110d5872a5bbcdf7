"""Measures on saliency maps: how alike two maps are, how stable a map is across similar
inputs, and whether it passes the model-randomisation sanity check.

    >>> from saliency_core.metrics import stability_check, sanity_check
    >>> stability_check(model, "coffee.png", ["gradcam"]).summary["gradcam"].verdict
    'stable'
    >>> sanity_check(model, "chelsea.png", ["gradient"]).verdicts()["gradient"].passed
    True
"""
from . import sanity as randomisation
from . import similarity
from . import stability
from .sanity import Block, SanityResult, SanityVerdict, layer_blocks, sanity_check, sanity_verdicts
from .similarity import compare, hog_similarity, spearman, ssim, top_k_overlap
from .stability import (Perturbation, StabilityResult, StabilityThresholds, make_variants, similar_variants,
                        stability_check)

__all__ = ["similarity", "stability", "randomisation", "compare", "spearman", "top_k_overlap", "ssim",
           "hog_similarity", "Perturbation", "StabilityThresholds", "StabilityResult", "make_variants",
           "similar_variants", "stability_check", "Block", "SanityResult", "SanityVerdict", "layer_blocks",
           "sanity_check", "sanity_verdicts"]
