"""Saliency Lens engine: models, saliency methods, rendering. Pure PyTorch, no streamlit.

>>> import saliency_core as sc
>>> model = sc.load_model("demo")
>>> exp = sc.explain(model, "chelsea.png", method="smoothgrad", samples=50, noise=0.15, seed=0)
>>> exp.saliency.shape
(224, 224)
"""

from ._version import __version__
from .engine.classifier import Classifier
from .engine.explain import (
    Explanation,
    attribute,
    available_methods,
    explain,
    reduce_channels,
    resolve_params,
)
from .engine.images import image_hash, load_image
from .engine.methods import METHODS, Method, register
from .engine.models import load_model

__all__ = [
    "__version__",
    "load_model",
    "Classifier",
    "METHODS",
    "Method",
    "register",
    "explain",
    "attribute",
    "Explanation",
    "available_methods",
    "reduce_channels",
    "resolve_params",
    "load_image",
    "image_hash",
]
