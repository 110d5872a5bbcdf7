"""Region view: the outlined regions hold at least the stated share of the attribution, the set is
the shortest densest-first prefix, and a map concentrated in one region outlines that region."""

from __future__ import annotations

import numpy as np
import pytest

import saliency_core as sc
from saliency_core.engine import render as rd
from saliency_core.engine.regions import legend, outline_regions, relevance, segment


@pytest.fixture(scope="module")
def maps(demo, chelsea_path):
    """Real maps of the cat, an unsigned and a signed method, and the image's regions."""
    grad = sc.explain(demo, chelsea_path, method="gradient")
    occ = sc.explain(demo, chelsea_path, method="occlusion", window=56, stride=28)
    return grad, occ, segment(grad.image)


def test_segments_are_dense_connected_and_repeatable(maps):
    *_, labels = maps
    n = labels.max() + 1
    assert labels.shape == (224, 224) and labels.min() == 0 and 30 <= n <= 200
    assert len(np.unique(labels)) == n
    assert np.array_equal(segment(maps[0].image), labels)
    from scipy.ndimage import label as components

    assert all(components(labels == k)[1] == 1 for k in range(n))


@pytest.mark.parametrize("share", [0.05, 0.3, 0.5, 0.9, 1.0])
def test_outlined_regions_hold_at_least_the_share(maps, share):
    grad, occ, labels = maps
    for exp in (grad, occ):
        signed = sc.METHODS[exp.method].signed
        choice = outline_regions(exp.saliency, labels, share=share, signed=signed)
        r = relevance(exp.saliency, signed)
        held = r[choice.selected].sum() / r.sum()
        assert held >= share - 1e-12 and abs(held - choice.share) < 1e-9
        assert choice.share >= share
        # the shortest densest-first prefix: without its last region it holds less than the share
        without = np.isin(labels, choice.chosen[:-1])
        assert r[without].sum() / r.sum() < share
        density = [r[labels == k].mean() for k in choice.chosen]
        assert density == sorted(density, reverse=True)
        rest = [r[labels == k].mean() for k in range(labels.max() + 1) if k not in choice.chosen]
        assert not rest or min(density) >= max(rest)
        assert f"{choice.share:.0%}" in legend(choice) and f"{share:.0%}" in legend(choice)


def test_signed_maps_rank_their_positive_part(maps):
    _, occ, labels = maps
    assert (occ.saliency < 0).any()
    choice = outline_regions(occ.saliency, labels, share=0.3, signed=True)
    flipped = outline_regions(-occ.saliency, labels, share=0.3, signed=True)
    assert choice.chosen != flipped.chosen
    assert "positive attribution" in legend(choice)


def test_map_in_one_region_outlines_that_region(maps):
    *_, labels = maps
    for k in (0, int(labels.max()) // 2, int(labels.max())):
        saliency = np.where(labels == k, 1.0, 0.0).astype(np.float32)
        choice = outline_regions(saliency, labels, share=0.3)
        assert choice.chosen == [k] and np.array_equal(choice.selected, labels == k)
        assert choice.share == 1.0
    # a little attribution elsewhere: still that region, as long as it holds the share
    rng = np.random.default_rng(0)
    saliency = np.where(labels == 5, 1.0, 0.0) + rng.uniform(0, 1e-3, labels.shape)
    assert outline_regions(saliency, labels, share=0.3).chosen == [5]


def test_empty_maps_outline_nothing(maps):
    *_, labels = maps
    for saliency, signed in [(np.zeros(labels.shape), False), (-np.ones(labels.shape), True)]:
        choice = outline_regions(saliency, labels, share=0.3, signed=signed)
        assert choice.empty and choice.chosen == [] and not choice.selected.any()
        assert legend(choice).startswith("Nothing is outlined")


def test_render_outline(maps):
    grad, _, labels = maps
    out = rd.render_outline(grad.saliency, grad.image, labels, share=0.3, target_label=grad.target_label)
    picture = np.asarray(grad.image).astype(int)
    selected = out.choice.selected
    assert out.overlay.shape == (224, 224, 3) and out.overlay.dtype == np.uint8
    assert (out.overlay[~selected].astype(int) <= picture[~selected]).all()  # the rest is dimmed
    assert (out.overlay == rd.OUTLINE_COLOUR).all(axis=-1)[selected].any()  # outline inside
    assert not (out.overlay == rd.OUTLINE_COLOUR).all(axis=-1)[~selected].any()
    assert grad.target_label in out.legend and "30%" in out.legend


@pytest.mark.parametrize("bad", [{"share": 0}, {"share": 1.5}, {"share": float("nan")}])
def test_bad_share(maps, bad):
    grad, _, labels = maps
    with pytest.raises(ValueError, match="share"):
        outline_regions(grad.saliency, labels, **bad)


def test_shapes_must_match(maps):
    grad, _, labels = maps
    with pytest.raises(ValueError, match="shape"):
        outline_regions(grad.saliency[:100], labels)
