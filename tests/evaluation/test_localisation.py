"""Localisation measures on hand-made maps and regions whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from saliency_core.evaluation import localisation as lo

H = W = 100


def _box(y0, y1, x0, x1, shape=(H, W)) -> np.ndarray:
    r = np.zeros(shape, bool)
    r[y0:y1, x0:x1] = True
    return r


def _peak(y, x, shape=(H, W)) -> np.ndarray:
    s = np.zeros(shape)
    s[y, x] = 1.0
    return s


BOX = _box(40, 60, 30, 70)  # 20 x 40 = 800 px of 10 000


# ---- pointing game -----------------------------------------------------------------------------


def test_peak_inside_hits_peak_far_outside_misses():
    assert lo.pointing_game(_peak(50, 50), BOX) == 1.0
    assert lo.pointing_game(_peak(5, 5), BOX) == 0.0


def test_tolerance_decides_a_peak_just_outside():
    s = _peak(50, 80)  # 11 px right of the last box column (69)
    assert lo.pointing_game(s, BOX, tolerance=15) == 1.0
    assert lo.pointing_game(s, BOX, tolerance=10) == 0.0
    assert lo.pointing_game(s, BOX, tolerance=11) == 1.0
    diagonal = _peak(70, 79)  # (10, 10) from the corner (59, 69): 14.1 px
    assert lo.pointing_game(diagonal, BOX, tolerance=14) == 0.0
    assert lo.pointing_game(diagonal, BOX, tolerance=15) == 1.0
    assert lo.pointing_game(_peak(50, 70), BOX, tolerance=0) == 0.0


def test_ties_score_the_share_of_maximal_pixels_that_hit():
    s = _peak(50, 50) + _peak(5, 5) + _peak(95, 95) + _peak(45, 35)
    assert lo.pointing_game(s, BOX, tolerance=0) == 0.5
    flat = np.ones((H, W))
    dilated = ndimage.distance_transform_edt(~BOX) <= 15
    assert lo.pointing_game(flat, BOX) == pytest.approx(dilated.mean())


def test_signed_maps_point_with_their_positive_part():
    s = _peak(50, 50) * 0.5
    s[5, 5] = -3.0  # strong evidence against the class, outside
    assert lo.pointing_game(s, BOX, signed=True) == 1.0
    assert lo.pointing_game(s, BOX, signed=False) == 0.0  # |s|: the negative spike is the maximum


# ---- relevance mass ---------------------------------------------------------------------------------


def test_relevance_mass_of_the_mask_itself_is_one_and_of_a_uniform_map_the_area():
    assert lo.relevance_mass(BOX.astype(float), BOX) == 1.0
    assert lo.relevance_mass(np.ones((H, W)), BOX) == pytest.approx(BOX.mean())
    assert lo.relevance_mass((~BOX).astype(float), BOX) == 0.0
    half = BOX * 3.0 + (~BOX) * (3.0 * BOX.sum() / (~BOX).sum())  # equal mass in and out
    assert lo.relevance_mass(half, BOX) == pytest.approx(0.5)


def test_relevance_mass_ignores_negative_values_of_signed_maps():
    s = BOX * 1.0 - (~BOX) * 5.0
    assert lo.relevance_mass(s, BOX, signed=True) == 1.0
    assert lo.relevance_mass(s, BOX, signed=False) == pytest.approx(800 / (800 + 5 * 9200))


# ---- relevance rank accuracy and top-k IoU --------------------------------------------------------------


def test_relevance_rank_accuracy_on_constructed_maps():
    assert lo.relevance_rank(BOX * 2.0 + 0.1, BOX) == 1.0
    assert lo.relevance_rank((~BOX) * 1.0, BOX) == 0.0
    assert lo.relevance_rank(np.ones((H, W)), BOX) == pytest.approx(BOX.mean())  # ties: chance level
    # the 800 most relevant pixels: 400 in the box (its left half), 400 outside (rows 0-9 of 40 columns)
    s = np.zeros((H, W))
    s[40:60, 30:50] = 2.0
    s[0:10, 30:70] = 1.0
    assert lo.relevance_rank(s, BOX) == pytest.approx(0.5)


def test_top_k_iou_on_constructed_maps():
    ramp = np.arange(H * W, dtype=float).reshape(H, W)  # row 99 highest ... row 0 lowest
    top = ramp >= H * W * 0.9  # the 10 % most relevant pixels: rows 90-99
    assert lo.top_k_iou(ramp, top, top_k=0.1) == 1.0
    region = _box(80, 100, 0, W)  # rows 80-99: 2000 px, contains the top 1000
    assert lo.top_k_iou(ramp, region, top_k=0.1) == pytest.approx(1000 / 2000)
    assert lo.top_k_iou(ramp, _box(0, 10, 0, W), top_k=0.1) == 0.0
    # a uniform map selects a tenth of every pixel: intersection 80, union 800 + 1000 - 80
    assert lo.top_k_iou(np.ones((H, W)), BOX, top_k=0.1) == pytest.approx(80 / 1720)


def test_all_measures_at_once_and_zero_map_is_nan():
    scores = lo.localisation_scores(BOX.astype(float), BOX, top_k=0.08)
    assert scores == {"pointing_game": 1.0, "relevance_mass": 1.0, "relevance_rank": 1.0, "iou_top_k": 1.0}
    empty = lo.localisation_scores(np.zeros((H, W)), BOX)
    assert all(math.isnan(v) for v in empty.values())
    negative = lo.localisation_scores(-np.ones((H, W)), BOX, signed=True)  # no positive evidence
    assert all(math.isnan(v) for v in negative.values())


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: lo.pointing_game(np.ones((4, 4)), np.ones((4, 5), bool)), "the map's shape"),
        (lambda: lo.relevance_mass(np.ones((4, 4)), np.zeros((4, 4), bool)), "region is empty"),
        (lambda: lo.relevance_rank(np.ones((2, 4, 4)), np.ones((4, 4), bool)), "must be 2-D"),
        (lambda: lo.top_k_iou(np.full((4, 4), np.nan), np.ones((4, 4), bool)), "NaN"),
        (lambda: lo.top_k_iou(np.ones((4, 4)), np.ones((4, 4), bool), top_k=0), "top_k"),
        (lambda: lo.pointing_game(np.ones((4, 4)), np.ones((4, 4), bool), tolerance=-1), "tolerance"),
    ],
)
def test_bad_input_says_what_was_expected(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---- baselines -------------------------------------------------------------------------------------------


def test_centre_bias_map_is_a_centred_gaussian():
    m = lo.centre_bias_map(224, sigma=0.25)
    assert m.shape == (224, 224) and m.dtype == np.float32
    assert m[111, 111] == m[112, 112] == m.max()
    assert np.allclose(m, m[::-1, :]) and np.allclose(m, m.T)
    # pixel centres sit at half pixels: pixel 111 is 0.5 px from the centre (112.0), 167 is 55.5 px;
    # sigma = 0.25 x 224 = 56 px
    assert m[111, 167] == pytest.approx(math.exp(-0.5 * ((0.5 / 56) ** 2 + (55.5 / 56) ** 2)), rel=1e-6)
    centred, corner = _box(80, 144, 80, 144, (224, 224)), _box(0, 64, 0, 64, (224, 224))
    assert lo.pointing_game(m, centred) == 1.0 and lo.pointing_game(m, corner) == 0.0


def test_random_map_is_seeded_and_scores_about_chance():
    a, b = lo.random_map(100, rng=5), lo.random_map(100, rng=np.random.default_rng(5))
    assert np.array_equal(a, b) and not np.array_equal(a, lo.random_map(100, rng=6))
    assert lo.relevance_mass(a, BOX) == pytest.approx(BOX.mean(), abs=0.02)
    assert lo.relevance_rank(a, BOX) == pytest.approx(BOX.mean(), abs=0.03)
