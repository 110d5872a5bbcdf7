"""Saliency map -> normalised values -> colours -> overlay on the image the model saw.

Pure NumPy; this is the one place where maps become uint8 pixels (the page and the CLI draw
what it returns). Colormaps come from plotly's built-in colour lists, interpolated linearly
in RGB to 256 entries, so the PNG overlays and plotly heatmaps show the same colours.

How signs are handled (``sign``, after Captum's sign modes):

- ``"absolute"``: |saliency|; brighter = larger effect, raising or lowering the score alike.
- ``"positive"``: only values > 0 (the rest drawn as 0); brighter = raises the score more.
- ``"negative"``: only values < 0, by size (the rest drawn as 0); brighter = lowers it more.
- ``"signed"``: values keep their sign on a symmetric diverging scale, 0 at the centre colour.

Scaling follows PAIR saliency: the value at full colour (``scale``) is the 99th percentile of
the non-zero |relevant values| by default, so one outlier pixel does not wash out the rest;
larger values saturate. A ``scale`` given explicitly (see ``shared_scale``) makes several maps
comparable. A map that is zero or negligible everywhere is reported as such and drawn in the
lowest (or, for ``"signed"``, the centre) colour, never stretched to full colour.

Example:
    >>> r = render(exp.saliency, exp.image, target_label=exp.target_label)
    >>> r.overlay.shape, r.overlay.dtype
    ((224, 224, 3), dtype('uint8'))
    >>> save_png(r.overlay, "chelsea_gradient.png")
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SEQUENTIAL = ("inferno", "viridis", "magma", "cividis")  # perceptually uniform, for absolute/positive maps
DIVERGING = ("balance", "rdbu")  # for signed maps; "balance" (cmocean) default
SIGN_MODES = ("absolute", "positive", "negative", "signed")

DEFAULT_SEQUENTIAL = "inferno"
DEFAULT_DIVERGING = "balance"

# Colour words for the legend of diverging maps: (low end, centre, high end), plotly's order.
_DIVERGING_WORDS = {"balance": ("blue", "light grey", "red"), "rdbu": ("red", "white", "blue")}


def _plotly_colors(name: str) -> list:
    import plotly.colors as pc

    sources = {
        "inferno": pc.sequential.Inferno,
        "viridis": pc.sequential.Viridis,
        "magma": pc.sequential.Magma,
        "cividis": pc.sequential.Cividis,
        "balance": pc.cmocean.balance,
        "rdbu": pc.diverging.RdBu,
    }
    return list(sources[name])


@cache
def _lut(name: str) -> np.ndarray:
    import plotly.colors as pc

    # plotly's lists mix "#rrggbb" and "rgb(r, g, b)"; "tuple" gives floats in [0, 1].
    stops, _ = pc.convert_colors_to_same_type(_plotly_colors(name), colortype="tuple")
    stops = np.asarray(stops, dtype=np.float64) * 255.0  # (n, 3)
    at = np.linspace(0.0, 1.0, len(stops))  # evenly spaced, as plotly spaces them
    grid = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(grid, at, stops[:, c]) for c in range(3)], axis=1)
    lut = np.clip(np.rint(lut), 0, 255).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def _check_colormap(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in SEQUENTIAL + DIVERGING:
        raise ValueError(f"Unknown colormap {name!r}; choose one of {', '.join(SEQUENTIAL + DIVERGING)}.")
    return name.lower()


def colormap_lut(name: str) -> np.ndarray:
    """The 256 colours of a colormap, low to high.

    Args:
        name: one of ``SEQUENTIAL`` or ``DIVERGING`` (case-insensitive).
    Returns:
        uint8 array (256, 3) of RGB colours; entry 0 is plotly's first colour, entry 255 its last.
    Raises:
        ValueError: unknown name.

    Example:
        >>> colormap_lut("inferno")[[0, -1]].tolist()
        [[0, 0, 4], [252, 255, 164]]
    """
    return _lut(_check_colormap(name)).copy()


def plotly_colorscale(name: str) -> list:
    """The same 256 colours as ``colormap_lut`` as a plotly colorscale.

    Args:
        name: one of ``SEQUENTIAL`` or ``DIVERGING``.
    Returns:
        ``[[position, "rgb(r,g,b)"], ...]`` with positions 0 .. 1, for ``go.Heatmap(colorscale=...)``.

    Example:
        >>> plotly_colorscale("viridis")[0]
        [0.0, 'rgb(68,1,84)']
    """
    lut = _lut(_check_colormap(name))
    return [[i / 255, f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(lut.tolist())]


def _check_sign(sign: str) -> str:
    if sign not in SIGN_MODES:
        raise ValueError(f"Unknown sign mode {sign!r}; choose one of {', '.join(SIGN_MODES)}.")
    return sign


def _check_map(saliency) -> np.ndarray:
    s = np.asarray(saliency)
    if s.ndim != 2:
        raise ValueError(f"A saliency map must be 2-D (H, W); got shape {tuple(s.shape)}.")
    if not np.issubdtype(s.dtype, np.number) or np.iscomplexobj(s):
        raise ValueError(f"A saliency map must hold real numbers; got dtype {s.dtype}.")
    s = s.astype(np.float64, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(s)))
    if bad:
        raise ValueError(
            f"The saliency map (shape {tuple(s.shape)}) contains {bad} NaN or infinite "
            "values; the method did not produce a usable map."
        )
    return s


def _check_percentile(clip_percentile: float) -> float:
    p = float(clip_percentile)
    if not 0 < p <= 100:
        raise ValueError(f"clip_percentile must be in (0, 100]; got {clip_percentile}.")
    return p


def _relevant(s: np.ndarray, sign: str) -> np.ndarray:
    """Non-negative magnitudes that the colour encodes, same shape as ``s``."""
    if sign == "positive":
        return np.maximum(s, 0.0)
    if sign == "negative":
        return np.maximum(-s, 0.0)
    return np.abs(s)  # absolute, and signed (symmetric scale)


def _percentile_scale(magnitudes: list[np.ndarray], clip_percentile: float) -> float:
    # Percentile of the non-zero magnitudes: exact zeros (e.g. Grad-CAM's ReLU, the other sign)
    # would otherwise pull the scale to 0.
    nonzero = np.concatenate([m[m > 0].ravel() for m in magnitudes])
    if nonzero.size == 0:
        return 0.0
    return float(np.percentile(nonzero, clip_percentile))


def map_values(
    saliency, sign: str = "absolute", clip_percentile: float = 99.0, scale: float | None = None
) -> tuple[np.ndarray, float]:
    """Normalise a map for colouring.

    Args:
        saliency: (H, W) real values.
        sign: one of ``SIGN_MODES`` (see the module docstring).
        clip_percentile: with ``scale=None``, full colour is the ``clip_percentile``-th percentile
            of the non-zero |relevant values| (PAIR saliency: 99); 100 = the maximum.
        scale: the saliency value at full colour, fixed (e.g. from ``shared_scale``); overrides
            ``clip_percentile``.
    Returns:
        ``(values, scale)``: float32 (H, W) in [0, 1] ([-1, 1] for ``"signed"``), values beyond
        ``scale`` saturated; and the scale used (0.0 for a map with no relevant values, which
        then maps to all zeros).
    Raises:
        ValueError: not 2-D, non-finite values, unknown sign, scale not positive and finite.

    Example:
        >>> values, scale = map_values(np.array([[0.0, 1.0], [2.0, -4.0]]), clip_percentile=100)
        >>> scale, values.tolist()
        (4.0, [[0.0, 0.25], [0.5, 1.0]])
    """
    s = _check_map(saliency)
    sign = _check_sign(sign)
    p = _check_percentile(clip_percentile)
    if scale is None:
        scale = _percentile_scale([_relevant(s, sign)], p)
        if scale == 0.0:
            return np.zeros(s.shape, dtype=np.float32), 0.0
    else:
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number; got {scale}.")
    if sign == "signed":
        values = np.clip(s / scale, -1.0, 1.0)
    else:
        values = np.clip(_relevant(s, sign) / scale, 0.0, 1.0)
    return values.astype(np.float32), float(scale)


def shared_scale(saliencies: list, sign: str = "absolute", clip_percentile: float = 99.0) -> float:
    """One scale for several maps, so equal colours mean equal saliency across them.

    Args:
        saliencies: (H, W) maps (shapes may differ), e.g. one method on several images.
        sign, clip_percentile: as in ``map_values``; the percentile is taken over all maps' pixels.
    Returns:
        The saliency value at full colour; 0.0 if no map has a relevant non-zero value.

    Example:
        >>> scale = shared_scale([a.saliency, b.saliency])
        >>> ra, rb = render(a.saliency, a.image, scale=scale), render(b.saliency, b.image, scale=scale)
    """
    sign = _check_sign(sign)
    p = _check_percentile(clip_percentile)
    maps = [_check_map(s) for s in saliencies]
    if not maps:
        raise ValueError("shared_scale needs at least one saliency map.")
    return _percentile_scale([_relevant(s, sign) for s in maps], p)


@dataclass
class Rendered:
    """A rendered map with what a reader needs to interpret it.

    Attributes:
        overlay: uint8 (H, W, 3), the image blended with the coloured map.
        heat: uint8 (H, W, 3), the coloured map alone.
        values: float32 (H, W), the normalised map (``map_values``; zeros when ``near_zero``).
        scale: saliency value at the top of the colour bar (and -scale at the bottom for signed).
        colormap, sign: as used.
        near_zero: the map is zero or negligible everywhere; nothing drawn, the legend says so.
        legend: plain words saying what colour means.
        colorbar: uint8 (256, 3), the bar's colours, low to high.
        colorbar_ticks: ``[(position 0..1, label), ...]`` along the bar.
        words: ``legend`` without the numbers, for readers who need no more ("Brighter = ...").
        scale_note: the numbers part of ``legend`` ("absolute values, clipped at the 99th
            percentile: 0.0165 and above = full colour"); empty for a near-zero map.
    """

    overlay: np.ndarray
    heat: np.ndarray
    values: np.ndarray
    scale: float
    colormap: str
    sign: str
    near_zero: bool
    legend: str
    colorbar: np.ndarray
    colorbar_ticks: list
    words: str = ""
    scale_note: str = ""


def _lookup(lut: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Colours at positions in [0, 1], interpolating between LUT entries; float (..., 3)."""
    x = np.clip(position, 0.0, 1.0) * (len(lut) - 1)
    lo = np.floor(x).astype(np.intp)
    hi = np.minimum(lo + 1, len(lut) - 1)
    t = (x - lo)[..., None]
    table = lut.astype(np.float64)
    return table[lo] * (1.0 - t) + table[hi] * t


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _image_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.ndim == 2 and a.dtype == np.uint8:  # a greyscale crop (one-channel model): drawn in grey
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(
            f"The image must be a PIL image or a uint8 array (H, W, 3), or (H, W) for a greyscale "
            f"crop; got {a.dtype} array of shape {tuple(a.shape)}."
        )
    return a


def _fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.3g}"


def _ordinal(p: float) -> str:
    text = f"{p:g}"
    if text.endswith(("11", "12", "13")):
        return text + "th"
    return text + {"1": "st", "2": "nd", "3": "rd"}.get(text[-1], "th")


def _ticks(scale: float, sign: str) -> list:
    if scale <= 0:
        return [(0.5 if sign == "signed" else 0.0, "0")]
    if sign == "signed":
        return [(0.0, _fmt(-scale)), (0.5, "0"), (1.0, _fmt(scale))]
    if sign == "negative":
        return [(0.0, "0"), (0.5, _fmt(-scale / 2)), (1.0, _fmt(-scale))]
    return [(0.0, "0"), (0.5, _fmt(scale / 2)), (1.0, _fmt(scale))]


def _legend(
    sign: str,
    colormap: str,
    target_label: str | None,
    scale: float,
    fixed: bool,
    clip_percentile: float,
    near_zero: bool,
    peak: float,
    atol: float,
    meaning: str | None = None,
) -> tuple[str, str]:
    """(words, scale note): the legend is ``words`` with the note in brackets."""
    score = f"the score for {target_label!r}" if target_label else "the score of the explained class"
    if near_zero:
        part = {"positive": "positive values", "negative": "negative values"}.get(sign)
        if part is None and peak == 0:
            what = f"The map is zero everywhere: no pixel changes {score} by this method"
        elif part is None:
            what = f"The map is numerically negligible everywhere (largest |value| {_fmt(peak)})"
        elif peak == 0:
            verb = "raises" if sign == "positive" else "lowers"
            what = f"The map has no {part}: no pixel {verb} {score} by this method"
        else:
            what = f"The map's {part} are numerically negligible (largest {_fmt(peak)})"
        return (
            f"{what}; nothing is drawn (a map whose values are all within {_fmt(atol)} of 0 "
            "is not stretched to full colour)."
        ), ""
    if fixed:
        how = f"fixed scale shared across maps: {_fmt(scale)} and above = full colour"
    elif clip_percentile >= 100:
        how = f"full colour at the largest value, {_fmt(scale)}"
    else:
        how = f"clipped at the {_ordinal(clip_percentile)} percentile: {_fmt(scale)} and above = full colour"
    if sign == "absolute":
        if meaning:
            return f"Brighter = {meaning.format(score=score)}.", f"absolute values, {how}"
        return (
            f"Brighter = changing these pixels changes {score} most, up or down.",
            f"absolute values, {how}",
        )
    if sign == "positive":
        return (
            f"Brighter = these pixels raise {score} most.",
            f"positive values only, negative ones shown as 0; {how}",
        )
    if sign == "negative":
        return (
            f"Brighter = these pixels lower {score} most.",
            f"negative values only, by size, positive ones shown as 0; {how}",
        )
    low, mid, high = _DIVERGING_WORDS[colormap]
    how = how.replace(f"{_fmt(scale)} and above", f"\u00b1{_fmt(scale)}").replace(
        "percentile:", "percentile of |values|:"
    )
    return (
        f"{high.capitalize()} = these pixels raise {score}, {low} = they lower it, {mid} = no effect.",
        f"signed values on a symmetric scale, {how}",
    )


def render(
    saliency: np.ndarray,
    image,
    *,
    sign: str = "absolute",
    colormap: str | None = None,
    alpha: float = 0.5,
    clip_percentile: float = 99.0,
    scale: float | None = None,
    target_label: str | None = None,
    near_zero_atol: float = 1e-8,
    meaning: str | None = None,
) -> Rendered:
    """Colour a saliency map and blend it onto the image the model saw.

    Args:
        saliency: (H, W) real values, e.g. ``Explanation.saliency``.
        image: the crop the model saw (``Explanation.image``), a PIL image (RGB, or L for a
            one-channel model: the overlay is drawn on the grey image) or uint8 (H, W, 3) / (H, W).
        sign: one of ``SIGN_MODES`` (see the module docstring).
        colormap: ``None`` -> ``"inferno"``, or ``"balance"`` for ``sign="signed"``; sequential
            colormaps go with absolute/positive/negative, diverging ones with signed.
        alpha: weight of the colours in the overlay; 0 = the image alone, 1 = the colours alone.
        clip_percentile, scale: as in ``map_values``.
        target_label: class name used in the legend.
        meaning: what bright means for the method drawn (``Method.meaning``, with ``{score}``),
            used in the legend of absolute maps.
        near_zero_atol: a map whose largest relevant |value| is at most this is reported as
            near zero and drawn in a single colour.
    Returns:
        ``Rendered`` with ``overlay`` and ``heat`` uint8 (H, W, 3), ``values`` float32 (H, W),
        the scale, a plain-words legend and the colour bar.
    Raises:
        ValueError: shapes differ (both are stated), non-finite values, unknown or mismatched
            sign/colormap, alpha outside [0, 1].

    Example:
        >>> r = render(exp.saliency, exp.image, sign="signed", target_label=exp.target_label)
        >>> r.legend
        "Red = these pixels raise the score for 'tabby' ..."
    """
    sign, colormap, alpha = _checked_style(sign, colormap, alpha)
    s = _check_map(saliency)
    picture = _picture_for(image, s)
    p = _check_percentile(clip_percentile)
    fixed = scale is not None
    values, scale, peak, near_zero = _scaled(s, sign, p, scale, float(near_zero_atol))

    lut = _lut(colormap)
    position = (values.astype(np.float64) + 1.0) / 2.0 if sign == "signed" else values.astype(np.float64)
    heat = _lookup(lut, position)
    blended = (1.0 - alpha) * picture.astype(np.float64) + alpha * heat
    words, note = _legend(
        sign,
        colormap,
        target_label,
        scale,
        fixed=fixed,
        clip_percentile=p,
        near_zero=near_zero,
        peak=peak,
        atol=float(near_zero_atol),
        meaning=meaning,
    )
    legend = f"{words[:-1]} ({note})." if note else words
    return Rendered(
        overlay=_to_uint8(blended),
        heat=_to_uint8(heat),
        values=values,
        scale=float(scale),
        colormap=colormap,
        sign=sign,
        near_zero=near_zero,
        legend=legend,
        colorbar=lut.copy(),
        colorbar_ticks=_ticks(float(scale), sign),
        words=words,
        scale_note=note,
    )


FRAME = (128, 128, 128)  # mid grey: visible on light and dark page backgrounds


def colorbar_image(rendered: Rendered, height: int = 12, width: int = 256, frame: bool = False) -> np.ndarray:
    """A horizontal colour bar for ``rendered``, low values on the left.

    Args:
        rendered: the result of ``render``.
        height, width: size in pixels.
        frame: draw a 1 px mid-grey frame around it, so a dark end (inferno's black) stays
            visible on a dark page.
    Returns:
        uint8 (height, width, 3); tick positions are ``rendered.colorbar_ticks`` x (width - 1).

    Example:
        >>> bar = colorbar_image(r, height=12, width=r.overlay.shape[1])
        >>> save_png(np.vstack([r.overlay, bar]), "with_bar.png")
    """
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"A colour bar needs a positive size; got {height}x{width}.")
    row = _to_uint8(_lookup(rendered.colorbar, np.linspace(0.0, 1.0, width)))
    bar = np.repeat(row[None, :, :], height, axis=0)
    if frame and height > 2 and width > 2:
        bar[[0, -1], :] = FRAME
        bar[:, [0, -1]] = FRAME
    return bar


def save_png(array: np.ndarray, path) -> None:
    """Write a uint8 (H, W, 3) RGB or (H, W) grey array as a PNG file.

    Example:
        >>> save_png(render(exp.saliency, exp.image).overlay, "overlay.png")
    """
    a = np.asarray(array)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(
            f"save_png expects a uint8 array (H, W, 3) or (H, W); got {a.dtype} of shape {tuple(a.shape)}."
        )
    Image.fromarray(a).save(os.fspath(path), format="PNG")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def overlay_with_colorbar(rendered: Rendered) -> np.ndarray:
    """The overlay with a colour bar and its tick labels below it, uint8 (H', W, 3)."""
    overlay = rendered.overlay
    width = overlay.shape[1]
    margin, bar_h, gap, text_h = max(2, width // 40), 10, 4, 14
    strip = Image.new("RGB", (width, gap + bar_h + text_h), "white")
    bar = colorbar_image(rendered, height=bar_h, width=max(1, width - 2 * margin))
    strip.paste(Image.fromarray(bar), (margin, gap))
    draw, font = ImageDraw.Draw(strip), _font(10)
    for pos, label in rendered.colorbar_ticks:
        x = margin + pos * (bar.shape[1] - 1)
        draw.line([(x, gap + bar_h), (x, gap + bar_h + 2)], fill="black")
        w = draw.textlength(label, font=font)
        left = min(max(x - w / 2, 0), width - w)
        draw.text((left, gap + bar_h + 2), label, fill="black", font=font)
    return np.vstack([overlay, np.asarray(strip)])


OUTLINE_COLOUR = (255, 214, 0)  # yellow, drawn with a dark edge so it shows on light and dark images


@dataclass
class Outlined:
    """A region view (``render_outline``): the image with the chosen regions outlined.

    Attributes:
        overlay: uint8 (H, W, 3), outside the chosen regions dimmed.
        legend: plain words, the share of the attribution held included.
        choice: the ``regions.RegionChoice`` drawn.
    """

    overlay: np.ndarray
    legend: str
    choice: object


def _checked_style(sign: str, colormap: str | None, alpha: float) -> tuple[str, str, float]:
    """(sign, colormap, alpha) checked: a diverging colormap for signed maps, a sequential one
    otherwise (``None``: the default of each), alpha in [0, 1]."""
    sign = _check_sign(sign)
    if colormap is None:
        colormap = DEFAULT_DIVERGING if sign == "signed" else DEFAULT_SEQUENTIAL
    colormap = _check_colormap(colormap)
    if sign == "signed" and colormap not in DIVERGING:
        raise ValueError(
            f"Signed maps need a diverging colormap ({', '.join(DIVERGING)}) so that 0 "
            f"sits at the centre colour; {colormap!r} is sequential."
        )
    if sign != "signed" and colormap not in SEQUENTIAL:
        raise ValueError(
            f"{sign.capitalize()} maps need a sequential colormap "
            f"({', '.join(SEQUENTIAL)}); {colormap!r} is diverging, for signed maps."
        )
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1; got {alpha}.")
    return sign, colormap, alpha


def _picture_for(image, s: np.ndarray) -> np.ndarray:
    """The image as uint8 (H, W, 3), which must have the map's shape."""
    picture = _image_array(image)
    if picture.shape[:2] != s.shape:
        raise ValueError(
            f"The saliency map has shape {tuple(s.shape)} but the image is "
            f"{tuple(picture.shape)} (H, W, 3); draw the map on the crop the model saw."
        )
    return picture


def _scaled(s: np.ndarray, sign: str, p: float, scale: float | None, atol: float):
    """(values in [-1, 1] or [0, 1], scale, peak, near_zero): a map whose largest relevant |value|
    is at most ``atol`` is near zero, drawn in one colour (its scale kept when one is given)."""
    peak = float(_relevant(s, sign).max()) if s.size else 0.0
    if peak > atol:
        values, scale = map_values(s, sign=sign, clip_percentile=p, scale=scale)
        return values, scale, peak, False
    if scale is not None:
        scale = float(scale)
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"scale must be a positive finite number; got {scale}.")
    else:
        scale = peak
    return np.zeros(s.shape, dtype=np.float32), scale, peak, True


def render_outline(
    saliency: np.ndarray,
    image,
    labels: np.ndarray,
    *,
    share: float = 0.3,
    signed: bool = False,
    target_label: str | None = None,
    dim: float = 0.45,
) -> Outlined:
    """Outline the smallest set of densest regions holding ``share`` of the map's attribution.

    Args:
        saliency: (H, W) map; image: the crop the model saw; labels: ``regions.segment(image)``.
        share: share of the attribution the outlined regions hold (default 30 %).
        signed: the method is signed: its positive part is ranked (``Method.signed``).
        dim: how much the rest of the image is darkened, 0 (not) to 1 (black).
    Returns:
        ``Outlined`` with a uint8 overlay and the legend.

    Example:
        >>> o = render_outline(exp.saliency, exp.image, segment(exp.image), share=0.3)
        >>> o.choice.share >= 0.3
        True
    """
    from scipy.ndimage import binary_dilation
    from skimage.segmentation import find_boundaries

    from .regions import legend, outline_regions

    picture = _image_array(image).astype(np.float64)
    choice = outline_regions(_check_map(saliency), labels, share=share, signed=signed)
    if picture.shape[:2] != choice.selected.shape:
        raise ValueError(
            f"The map has shape {tuple(choice.selected.shape)} but the image is "
            f"{tuple(picture.shape)} (H, W, 3); draw the map on the crop the model saw."
        )
    dim = float(dim)
    if not 0.0 <= dim <= 1.0:
        raise ValueError(f"dim must be between 0 and 1; got {dim}.")
    out = picture.copy()
    if not choice.empty:
        out[~choice.selected] *= 1.0 - dim
        line = find_boundaries(choice.selected, mode="inner") & choice.selected
        line = binary_dilation(line, iterations=1) & choice.selected  # 2-3 px inside the edge
        edge = binary_dilation(line, iterations=1) & ~line  # a dark rim around it
        out[edge] = 0.0
        out[line] = OUTLINE_COLOUR
    return Outlined(overlay=_to_uint8(out), legend=legend(choice, target_label), choice=choice)


def captioned_overlay(
    rendered: Rendered,
    method: str,
    target_label: str,
    probability: float | None = None,
    image_name: str | None = None,
    scale: int = 2,
) -> np.ndarray:
    """The overlay for a download: enlarged ``scale`` times (nearest neighbour, so no pixel is
    invented), with the method, the explained class and its confidence above it and the colour
    bar, its numbers and "low -> high influence" below it. uint8 (H', W', 3).

    Args:
        rendered: the result of ``render``.
        method: the method's display name; target_label: the class the map explains.
        probability: the model's probability for that class, or None.
        image_name: the image's name, shown when given.
        scale: enlargement of the overlay (1 to 8).

    Example:
        >>> figure = captioned_overlay(r, "Grad-CAM", "tabby cat", 0.62, "chelsea.png")
        >>> save_png(figure, "chelsea_gradcam.png")
    """
    scale = int(scale)
    if not 1 <= scale <= 8:
        raise ValueError(f"scale must be between 1 and 8; got {scale}.")
    overlay = Image.fromarray(rendered.overlay)
    overlay = overlay.resize((overlay.width * scale, overlay.height * scale), Image.Resampling.NEAREST)
    width = max(overlay.width, 320)
    font, small = _font(14), _font(11)
    lines = [
        f'{method}: explains "{target_label}"'
        + (f" ({probability:.0%} confidence)" if probability is not None else "")
    ]
    if image_name:
        lines.append(f"Image: {image_name}")
    top_h = 6 + 18 * len(lines)
    margin, bar_h = 8, 12
    bottom_h = 6 + bar_h + 4 + 14 + 16 + 18
    canvas = Image.new("RGB", (width, top_h + overlay.height + bottom_h), "white")
    draw = ImageDraw.Draw(canvas)
    for n, line in enumerate(lines):
        draw.text((margin, 4 + 18 * n), _fit(draw, line, font, width - 2 * margin), fill="black", font=font)
    canvas.paste(overlay, ((width - overlay.width) // 2, top_h))
    y = top_h + overlay.height + 6
    bar = colorbar_image(rendered, height=bar_h, width=width - 2 * margin, frame=True)
    canvas.paste(Image.fromarray(bar), (margin, y))
    y += bar_h
    for pos, label in rendered.colorbar_ticks:
        x = margin + pos * (bar.shape[1] - 1)
        draw.line([(x, y), (x, y + 3)], fill="black")
        w = draw.textlength(label, font=small)
        draw.text((min(max(x - w / 2, 0), width - w), y + 4), label, fill="black", font=small)
    y += 4 + 14
    words = (
        "lowers the score <- no effect -> raises the score"
        if rendered.sign == "signed"
        else "low -> high influence"
    )
    w = draw.textlength(words, font=small)
    draw.text(((width - w) / 2, y), words, fill="black", font=small)
    draw.text(
        (margin, y + 16),
        _fit(draw, rendered.scale_note or rendered.words, small, width - 2 * margin),
        fill=(90, 90, 90),
        font=small,
    )
    return np.asarray(canvas)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


@dataclass(frozen=True)
class Shown:
    """The map as it is drawn, and the words that say how (``shown_map``).

    Attributes:
        saliency: float32 (H, W), the map to colour: the raw saliency, or it blurred by a
            Gaussian of ``detail_px`` (engine/detail.py).
        detail_px: the blur applied, sigma in px of this map (0: full detail).
        words: what was done and why, for under the map ("" for an exact map at full detail).
        unsettled: an averaged map not settled even at the coarsest detail (offer to sample
            until settled).
    """

    saliency: np.ndarray
    detail_px: float
    words: str
    unsettled: bool = False


def shown_map(
    saliency,
    method: str,
    diagnostics: dict | None = None,
    *,
    full_detail: bool = False,
    display_px: float | None = None,
) -> Shown:
    """The map to draw for ``method`` and the words under it: every page and export asks this.

    An averaging method (``Method.averaging``) with a convergence readout is drawn at its
    reproducible detail, the finest that a re-run with other random draws reproduces; finer
    speckle is noise. An exact (deterministic) map is drawn at full detail. Measures (pointing
    game, relevance mass, deletion / insertion) keep using the raw map.

    Args:
        saliency: (H, W) the raw map (``Explanation.saliency``).
        method: a name in ``METHODS``.
        diagnostics: the map's diagnostics (``diagnostics["convergence"]``: the readout).
        full_detail: draw the raw map whatever the readout says (the "Show full detail" switch).
        display_px: a display detail for any map (sigma in px on a 224 px input, scaled to the
            map's size); the words then say the map was smoothed for display. 0 or None: none.
    Returns:
        ``Shown``.

    Example:
        >>> shown = shown_map(exp.saliency, exp.method, exp.diagnostics)
        >>> shown.detail_px, shown.words[:28]
        (4.0, 'Shown at 4-pixel detail, the')
    """
    from .convergence import describe
    from .detail import REFERENCE_SIZE, reproducible_px, smooth
    from .methods import METHODS

    raw = _check_map(saliency).astype(np.float32, copy=False)
    readout = (diagnostics or {}).get("convergence")
    if isinstance(readout, list):
        readout = readout[0] if readout else None
    readout = readout if isinstance(readout, dict) else None
    averaged = method in METHODS and METHODS[method].averaging and readout is not None
    settled_px = reproducible_px(diagnostics) if averaged else None
    leveled = averaged and bool(readout.get("levels")) and readout.get("verdict") != "unknown"
    if display_px:
        if not (isinstance(display_px, (int, float)) and math.isfinite(display_px) and display_px > 0):
            raise ValueError(f"display detail must be a number of pixels > 0, got {display_px!r}")
        px = round(float(display_px) * min(raw.shape) / REFERENCE_SIZE, 3)
        words = (
            describe(readout, shown_px=px)[0]
            if leveled and settled_px is not None
            else f"Smoothed for display at {px:g}-pixel detail (a Gaussian blur); the map itself is finer."
        )
        return Shown(smooth(raw, px), px, words)
    if not leveled:
        return Shown(raw, 0.0, describe(readout)[0] if readout is not None else "")
    if settled_px is None:
        return Shown(raw, 0.0, describe(readout)[0], unsettled=True)
    if full_detail:
        return Shown(raw, 0.0, describe(readout, shown_px=0.0)[0])
    return Shown(smooth(raw, settled_px) if settled_px else raw, settled_px, describe(readout)[0])
