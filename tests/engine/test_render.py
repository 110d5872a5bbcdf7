"""render.py: colormaps, scaling, sign modes, near-zero maps, overlays."""

import os
import subprocess
import sys

import numpy as np
import plotly.colors as pc
import pytest
import skimage
from PIL import Image

import saliency_core as sc
from saliency_core.engine.render import (
    DIVERGING,
    SEQUENTIAL,
    SIGN_MODES,
    Rendered,
    colorbar_image,
    colormap_lut,
    map_values,
    plotly_colorscale,
    render,
    save_png,
    shared_scale,
    shown_map,
)

PLOTLY = {
    "inferno": pc.sequential.Inferno,
    "viridis": pc.sequential.Viridis,
    "magma": pc.sequential.Magma,
    "cividis": pc.sequential.Cividis,
    "balance": pc.cmocean.balance,
    "rdbu": pc.diverging.RdBu,
}


def _rgb255(colour: str) -> tuple:
    rgb = pc.convert_colors_to_same_type([colour], colortype="rgb")[0][0]  # hex or rgb() -> rgb()
    return tuple(round(float(c)) for c in pc.unlabel_rgb(rgb))


def _ramp(h=32, w=48, seed=0):
    return np.random.default_rng(seed).random((h, w)).astype(np.float32)


def _grey(h=32, w=48, level=128):
    return np.full((h, w, 3), level, np.uint8)


@pytest.mark.parametrize("name", SEQUENTIAL + DIVERGING)
def test_lut_shape_dtype_and_ends_match_plotly(name):
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == _rgb255(PLOTLY[name][0])
    assert tuple(lut[-1]) == _rgb255(PLOTLY[name][-1])
    # Interpolated, not a step function: neighbouring entries differ by a few levels at most.
    assert np.abs(np.diff(lut.astype(int), axis=0)).max() <= 12


def test_lut_is_a_copy_and_unknown_name_raises():
    lut = colormap_lut("inferno")
    lut[:] = 0
    assert colormap_lut("inferno")[-1].sum() > 0
    with pytest.raises(ValueError, match="jet"):
        colormap_lut("jet")


@pytest.mark.parametrize("name", SEQUENTIAL + DIVERGING)
def test_plotly_colorscale_matches_lut(name):
    scale = plotly_colorscale(name)
    lut = colormap_lut(name)
    assert len(scale) == 256 and scale[0][0] == 0.0 and scale[-1][0] == 1.0
    assert [p for p, _ in scale] == sorted(p for p, _ in scale)
    colours = np.array([pc.unlabel_rgb(c) for _, c in scale], dtype=int)
    np.testing.assert_array_equal(colours, lut)
    pc.validate_colorscale(scale)  # plotly accepts it


def test_percentile_clip_outlier_does_not_squash_the_rest():
    s = _ramp()
    s[0, 0] = 1e6  # one hot pixel
    values, scale = map_values(s, clip_percentile=99.0)
    assert scale < 2.0  # the 99th percentile of the rest, not the outlier
    assert values[0, 0] == 1.0  # the outlier saturates
    assert np.median(values) > 0.3  # ordinary pixels keep their spread of colours
    # Without clipping the outlier takes the whole range and everything else is ~0.
    unclipped, top = map_values(s, clip_percentile=100)
    assert top == 1e6 and np.median(unclipped) < 1e-5


def test_values_range_per_sign_mode():
    s = _ramp() - 0.5
    for sign in ("absolute", "positive", "negative"):
        values, scale = map_values(s, sign=sign)
        assert values.dtype == np.float32 and values.min() >= 0 and values.max() == 1.0 and scale > 0
    pos, _ = map_values(s, sign="positive")
    neg, _ = map_values(s, sign="negative")
    assert np.all(pos[s < 0] == 0) and np.all(neg[s > 0] == 0)
    signed, _ = map_values(s, sign="signed")
    assert signed.min() == -1.0 and signed.max() == 1.0
    assert np.all(np.sign(signed) == np.sign(s))


def test_fixed_shared_scale_makes_maps_comparable():
    a = _ramp(seed=1)
    b = 0.1 * _ramp(seed=2)  # ten times weaker
    own_a, own_b = render(a, _grey()), render(b, _grey())
    assert own_a.scale > 5 * own_b.scale
    assert abs(own_a.values.mean() - own_b.values.mean()) < 0.1  # own scales hide the difference
    scale = shared_scale([a, b])
    assert own_b.scale < scale <= own_a.scale * 1.001
    ra, rb = render(a, _grey(), scale=scale), render(b, _grey(), scale=scale)
    assert ra.scale == rb.scale == scale
    assert rb.values.max() < 0.15 and ra.values.max() == 1.0
    assert rb.heat.astype(int).mean() < ra.heat.astype(int).mean()  # weaker map looks darker
    # Equal saliency -> equal colour across the two maps, which their own scales do not give.
    a[0, 0] = b[0, 0] = 0.05
    ra, rb = render(a, _grey(), scale=scale), render(b, _grey(), scale=scale)
    np.testing.assert_array_equal(ra.heat[0, 0], rb.heat[0, 0])
    assert np.any(render(a, _grey()).heat[0, 0] != render(b, _grey()).heat[0, 0])
    assert "fixed scale" in ra.legend


def test_signed_mode_is_symmetric_and_zero_is_the_centre_colour():
    s = np.linspace(-1, 1, 21, dtype=np.float32).reshape(1, 21).repeat(4, axis=0)  # 0 at column 10
    r = render(s, _grey(4, 21), sign="signed", clip_percentile=100)
    assert r.colormap == "balance" and r.scale == pytest.approx(1.0)
    np.testing.assert_allclose(r.values, -r.values[:, ::-1], atol=1e-6)
    lut = colormap_lut("balance").astype(float)
    centre = (lut[127] + lut[128]) / 2
    assert np.abs(r.heat[0, 10] - centre).max() <= 1
    # Colour at +v is the mirror position of -v on the bar.
    for k in range(1, 11):
        plus, minus = r.values[0, 10 + k], r.values[0, 10 - k]
        i_plus = (plus + 1) / 2 * 255
        i_minus = (minus + 1) / 2 * 255
        assert i_plus + i_minus == pytest.approx(255, abs=1e-3)
    np.testing.assert_array_equal(r.heat[0, 0], lut[0].astype(np.uint8))
    np.testing.assert_array_equal(r.heat[0, -1], lut[-1].astype(np.uint8))
    assert [label for _, label in r.colorbar_ticks] == ["-1", "0", "1"]
    # RdBu's centre is white.
    rdbu = render(s, _grey(4, 21), sign="signed", colormap="rdbu", clip_percentile=100)
    assert np.abs(rdbu.heat[0, 10].astype(int) - 247).max() <= 1
    assert "white = no effect" in rdbu.legend


@pytest.mark.parametrize("sign", SIGN_MODES)
def test_zero_and_near_zero_maps_are_not_stretched(sign):
    for s in (np.zeros((16, 16), np.float32), np.full((16, 16), 3e-10, np.float32) * _ramp(16, 16)):
        r = render(s, _grey(16, 16), sign=sign)
        assert r.near_zero
        assert np.all(r.values == 0)
        expected = colormap_lut(r.colormap).astype(float)
        heat = r.heat.reshape(-1, 3)
        assert np.all(heat == heat[0])  # one colour, nothing stretched
        if sign == "signed":
            assert np.abs(heat[0].astype(float) - (expected[127] + expected[128]) / 2).max() <= 1
        else:
            np.testing.assert_array_equal(heat[0], expected[0].astype(np.uint8))
        assert "nothing is drawn" in r.legend
        assert r.scale <= 1e-8


def test_near_zero_threshold_and_missing_sign():
    s = np.full((16, 16), 1e-6, np.float32)
    assert not render(s, _grey(16, 16)).near_zero
    assert render(s, _grey(16, 16), near_zero_atol=1e-5).near_zero
    # A map with no negative values has nothing to show in negative mode.
    r = render(_ramp(16, 16), _grey(16, 16), sign="negative")
    assert r.near_zero and "no negative values" in r.legend


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as info:
        render(np.zeros((224, 224)), _grey(300, 451))
    assert "(224, 224)" in str(info.value) and "(300, 451, 3)" in str(info.value)
    with pytest.raises(ValueError, match=r"\(3, 224, 224\)"):
        render(np.zeros((3, 224, 224)), _grey(224, 224))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(bad):
    s = _ramp()
    s[3, 4] = bad
    with pytest.raises(ValueError) as info:
        render(s, _grey())
    assert "(32, 48)" in str(info.value) and "NaN or infinite" in str(info.value)
    with pytest.raises(ValueError):
        map_values(s)
    with pytest.raises(ValueError):
        shared_scale([_ramp(), s])


def test_colormap_sign_mismatch_raises_clear_message():
    with pytest.raises(ValueError, match="diverging"):
        render(_ramp(), _grey(), sign="signed", colormap="inferno")
    with pytest.raises(ValueError, match="sequential"):
        render(_ramp(), _grey(), sign="absolute", colormap="balance")
    with pytest.raises(ValueError, match="sign mode"):
        render(_ramp(), _grey(), sign="both")


def test_overlay_blending_and_types():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    s = _ramp()
    r0 = render(s, image, alpha=0.0)
    assert r0.overlay.dtype == np.uint8 and r0.overlay.shape == (32, 48, 3)
    np.testing.assert_array_equal(r0.overlay, image)
    r1 = render(s, image, alpha=1.0)
    np.testing.assert_array_equal(r1.overlay, r1.heat)
    half = render(s, image, alpha=0.5)
    expected = 0.5 * image.astype(float) + 0.5 * half.heat.astype(float)
    assert np.abs(half.overlay - expected).max() <= 1.0
    # A PIL image gives the same result as its array.
    np.testing.assert_array_equal(render(s, Image.fromarray(image)).overlay, half.overlay)
    assert half.values.dtype == np.float32 and half.values.shape == (32, 48)
    with pytest.raises(ValueError, match="alpha"):
        render(s, image, alpha=1.5)


def test_rendered_fields_legend_and_colorbar(tmp_path):
    s = _ramp()
    r = render(s, _grey(), target_label="tabby cat")
    assert isinstance(r, Rendered) and r.colormap == "inferno" and r.sign == "absolute"
    assert "tabby cat" in r.legend and "99th percentile" in r.legend and "absolute" in r.legend
    np.testing.assert_array_equal(r.colorbar, colormap_lut("inferno"))
    positions = [p for p, _ in r.colorbar_ticks]
    assert positions == [0.0, 0.5, 1.0]
    assert float(r.colorbar_ticks[-1][1]) == pytest.approx(r.scale, rel=1e-2)
    bar = colorbar_image(r, height=10, width=100)
    assert bar.shape == (10, 100, 3) and bar.dtype == np.uint8
    np.testing.assert_array_equal(bar[0, 0], r.colorbar[0])
    np.testing.assert_array_equal(bar[0, -1], r.colorbar[-1])
    path = tmp_path / "overlay.png"
    save_png(np.vstack([r.overlay, colorbar_image(r, width=48)]), path)
    with Image.open(path) as im:
        assert im.size == (48, 32 + 12) and im.mode == "RGB"
    with pytest.raises(ValueError, match="uint8"):
        save_png(r.values, tmp_path / "bad.png")


def test_positive_and_negative_legends_and_ticks():
    s = _ramp() - 0.5
    pos = render(s, _grey(), sign="positive")
    neg = render(s, _grey(), sign="negative")
    assert "raise" in pos.legend and "lower" in neg.legend
    assert neg.colorbar_ticks[-1][1].startswith("-")


def test_real_explanation_renders():
    chelsea = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")
    exp = sc.explain(sc.load_model("demo"), chelsea, method="gradient")
    r = render(exp.saliency, exp.image, target_label=exp.target_label)
    assert r.overlay.shape == (224, 224, 3) and not r.near_zero
    assert exp.target_label in r.legend
    assert 0 < r.scale <= float(np.abs(exp.saliency).max())


def test_engine_imports_neither_streamlit_nor_matplotlib():
    code = (
        "import sys, saliency_core, saliency_core.engine.render, saliency_core.cli; "
        "bad = [m for m in ('streamlit', 'matplotlib') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_captioned_overlay_carries_bar_method_class_and_confidence():
    from saliency_core.engine.render import captioned_overlay

    rng = np.random.default_rng(0)
    r = render(rng.random((224, 224)), np.zeros((224, 224, 3), np.uint8), target_label="tabby cat")
    out = captioned_overlay(r, "Grad-CAM", "tabby cat", 0.62, "chelsea.png")
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[1] >= 448 and out.shape[0] > 448 + 60
    # the overlay itself is in there, enlarged without new colours
    big, x0 = np.repeat(np.repeat(r.overlay, 2, axis=0), 2, axis=1), (out.shape[1] - 448) // 2
    top = next(y for y in range(out.shape[0] - 448) if np.array_equal(out[y : y + 448, x0 : x0 + 448], big))
    assert top > 30  # the method and class lines above it
    # the colour bar below it runs from the colormap's low to its high end, framed in grey
    bar_row = out[top + 448 + 12]
    assert tuple(bar_row[8]) == (128, 128, 128)
    assert r.words.startswith("Brighter") and "99th percentile" in r.scale_note and "99th" not in r.words
    assert r.legend == f"{r.words[:-1]} ({r.scale_note})."
    with pytest.raises(ValueError, match="scale"):
        captioned_overlay(r, "Grad-CAM", "tabby cat", scale=0)


def test_shown_map_draws_averaged_maps_at_their_reproducible_detail_and_exact_maps_raw():
    """render.shown_map: the one choice of the drawn map and its words, for every page and export."""
    from saliency_core.engine import detail

    rng = np.random.default_rng(0)
    raw = rng.random((224, 224)).astype(np.float32)
    levels = [
        {"px": px, "rerun_spearman": 0.5 + px / 40, "rerun_top10": 0.5, "settled": px >= 4}
        for px in (0, 1, 2, 4, 8, 16)
    ]
    readout = {
        "verdict": "settled",
        "samples": 50,
        "rerun_spearman": 0.5,
        "rerun_top10": 0.5,
        "levels": levels,
        "reproducible_px": 4.0,
        "threshold": 0.9,
    }
    shown = shown_map(raw, "smoothgrad", {"convergence": readout})
    assert shown.detail_px == 4 and not shown.unsettled
    np.testing.assert_allclose(shown.saliency, detail.smooth(raw, 4), rtol=1e-6)
    assert shown.words == (
        "Shown at 4-pixel detail, the finest that a re-run with other noise reproduces (estimated agreement "
        "0.60). Finer speckle is random noise."
    )
    full = shown_map(raw, "smoothgrad", {"convergence": readout}, full_detail=True)
    assert (
        full.detail_px == 0
        and np.array_equal(full.saliency, raw)
        and full.words.startswith("Shown at full detail")
    )
    unsettled = {**readout, "reproducible_px": None, "verdict": "still changing"}
    drawn = shown_map(raw, "smoothgrad", {"convergence": unsettled})
    assert drawn.unsettled and drawn.detail_px == 0 and "Sample until settled" in drawn.words
    exact = shown_map(raw, "gradient", {})
    assert exact.detail_px == 0 and exact.words == "" and np.array_equal(exact.saliency, raw)
    assert not sc.METHODS["gradient"].averaging and sc.METHODS["smoothgrad"].averaging
    smoothed = shown_map(raw, "gradient", {}, display_px=8)
    assert smoothed.detail_px == 8 and smoothed.words.startswith("Smoothed for display at 8-pixel detail")
    with pytest.raises(ValueError):
        shown_map(raw, "gradient", {}, display_px=float("nan"))
