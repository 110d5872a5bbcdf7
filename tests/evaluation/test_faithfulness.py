"""Deletion / insertion (Petsiuk et al. 2018) on tiny models whose answer is known, and on the
real demo model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from saliency_core.evaluation import faithfulness as fa
from saliency_core.evaluation import localisation as lo

SIDE = 8


class RegionReader(nn.Module):
    """Two classes; the logit of class 1 is sum(weight * x) - bias: it reads only where weight != 0."""

    def __init__(self, weight: torch.Tensor, bias: float = 2.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.bias = bias

    def forward(self, x):
        score = (x * self.weight).sum(dim=(1, 2, 3)) - self.bias
        return torch.stack([torch.zeros_like(score), score], dim=1)


@pytest.fixture(scope="module")
def reader():
    w = torch.zeros(1, 3, SIDE, SIDE)
    w[0, :, 2:5, 3:7] = torch.arange(1, 13, dtype=torch.float32).view(3, 4) / 4  # 12 px, all different
    return RegionReader(w)


@pytest.fixture(scope="module")
def image():
    return torch.full((1, 3, SIDE, SIDE), 0.8)


def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


def test_deletion_with_the_true_weights_matches_the_analytic_curve(reader, image):
    truth = reader.weight[0].sum(0).numpy()  # the model's own per-pixel weight
    curve = fa.deletion_curve(reader, image, truth, target=1, step=3, replacement="black")
    # removing pixels in order of weight, 3 per step, onto black: the logit loses 0.8 * 3 * w
    w = np.sort(truth[truth > 0])[::-1]
    logits = [0.8 * w[3 * k :].sum() - 2.0 for k in range(5)] + [-2.0] * (math.ceil(64 / 3) + 1 - 5)
    assert curve.scores == pytest.approx([_sigmoid(v) for v in logits], abs=1e-6)
    assert (
        curve.fractions[0] == 0 and curve.fractions[-1] == 1 and len(curve.fractions) == math.ceil(64 / 3) + 1
    )
    assert curve.auc == pytest.approx(fa.area_under_curve(curve.fractions, curve.scores))
    assert (curve.step, curve.replacement, curve.mode, curve.target) == (3, "black", "deletion", 1)


def test_true_order_beats_the_reversed_order(reader, image):
    truth = reader.weight[0].sum(0).numpy()
    reverse = truth.max() - truth  # the pixels the model ignores first
    for replacement in ("black", "mean", "blurred"):
        good = fa.deletion_curve(reader, image, truth, 1, step=2, replacement=replacement)
        bad = fa.deletion_curve(reader, image, reverse, 1, step=2, replacement=replacement)
        if replacement == "black":
            assert good.auc < bad.auc - 0.3, (good.auc, bad.auc)
        else:  # a uniform image: its mean and its blur are the image itself, nothing changes
            assert good.auc == pytest.approx(bad.auc)
    good = fa.insertion_curve(reader, image, truth, 1, step=2, replacement="black")
    bad = fa.insertion_curve(reader, image, reverse, 1, step=2, replacement="black")
    assert good.auc > bad.auc + 0.3, (good.auc, bad.auc)
    assert good.scores[0] == pytest.approx(_sigmoid(-2.0)) and good.scores[-1] == pytest.approx(
        float(reader(image).softmax(1)[0, 1])
    )


def test_a_region_reader_with_a_textured_image_and_the_default_replacements(reader):
    """A dark textured image with a bright patch where the model reads: replacing the patch with
    the mean colour or a blur lowers the score, replacing the rest changes little."""
    x = 0.3 * torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    x[0, :, 2:5, 3:7] = 0.9
    reader = RegionReader(reader.weight / 10, bias=2.0)  # logit about 3.3: not saturated
    truth = reader.weight[0].sum(0).numpy()
    outside = (truth == 0).astype(float)  # a map that points away from what the model reads
    good = fa.deletion_curve(reader, x, truth, 1, step=4)
    bad = fa.deletion_curve(reader, x, outside, 1, step=4)
    assert good.replacement == "mean" and good.auc < bad.auc
    good = fa.insertion_curve(reader, x, truth, 1, step=4)
    bad = fa.insertion_curve(reader, x, outside, 1, step=4)
    assert good.replacement == "blurred" and good.auc > bad.auc


def test_signed_maps_order_by_the_positive_part(reader, image):
    truth = reader.weight[0].sum(0).numpy()
    signed = truth - 10.0 * (truth == 0)  # large negative values where the model does not read
    as_signed = fa.deletion_curve(reader, image, signed, 1, step=2, replacement="black", signed=True)
    as_abs = fa.deletion_curve(reader, image, signed, 1, step=2, replacement="black", signed=False)
    assert as_signed.auc < as_abs.auc


def test_replacements():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mean = fa.replacement_image(x, "mean")
    assert torch.allclose(mean[0, :, 5, 7], x.mean(dim=(2, 3))[0]) and mean.shape == x.shape
    blurred = fa.replacement_image(x, "blurred")
    assert blurred.shape == x.shape and blurred.std() < 0.5 * x.std()
    assert fa.replacement_image(x, "black").abs().sum() == 0
    grey = fa.replacement_image(x, (0.5, 0.4, 0.3))
    assert torch.equal(grey[0, :, 0, 0], torch.tensor([0.5, 0.4, 0.3]))
    with pytest.raises(ValueError, match="Unknown replacement 'noise'"):
        fa.replacement_image(x, "noise")
    with pytest.raises(ValueError, match="needs 3 numbers"):
        fa.replacement_image(x, (0.5, 0.5))


def test_ties_are_broken_by_the_seed():
    flat = np.ones((6, 6))
    a, b = fa.pixel_order(flat, seed=0), fa.pixel_order(flat, seed=0)
    assert np.array_equal(a, b) and not np.array_equal(a, fa.pixel_order(flat, seed=1))
    assert not np.array_equal(a, np.arange(36))  # not raster order
    ramp = np.arange(36.0).reshape(6, 6)
    assert np.array_equal(fa.pixel_order(ramp), np.arange(36)[::-1])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"saliency": np.ones((4, 4))}, r"The map is \(4, 4\) but the image is \(8, 8\)"),
        ({"step": 0}, "step must be 1 pixel or more"),
        ({"mode": "both"}, "mode must be 'deletion' or 'insertion'"),
    ],
)
def test_bad_arguments(reader, image, kwargs, message):
    args = {"saliency": np.ones((SIDE, SIDE)), "mode": "deletion", "step": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        fa.causal_curve(reader, image, args.pop("saliency"), 1, args.pop("mode"), **args)


def test_one_output_network_is_refused(image):
    with pytest.raises(ValueError, match="two or more classes"):
        fa.deletion_curve(
            nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 1)), image, np.ones((SIDE, SIDE)), 0
        )


def test_demo_model_gradcam_beats_its_reverse_and_random(demo, coffee_x):
    """On the real model: deleting Grad-CAM's most relevant pixels first lowers the espresso
    probability faster than deleting them last, and inserting them first raises it faster than
    inserting them last or at random (coarse steps: 21 points). Deletion is not compared with a
    random order: scattering mean-coloured pixels over the whole image breaks this model's
    prediction sooner than any compact region does (the artefact ROAD, Rong et al. 2022, avoids)."""
    import saliency_core as sc

    target = demo.predict(coffee_x, k=1)[0][0]
    attribution, _, _ = sc.attribute(demo, coffee_x, torch.tensor([target]), "gradcam")
    cam = attribution[0, 0].numpy()
    step = 224 * 224 // 20
    good = fa.deletion_curve(demo, coffee_x, cam, target, step=step)
    reverse = fa.deletion_curve(demo, coffee_x, cam.max() - cam, target, step=step)
    noise = fa.deletion_curve(demo, coffee_x, lo.random_map(224, rng=0), target, step=step)
    assert good.scores[0] == pytest.approx(demo.predict(coffee_x, k=1)[0][2], abs=1e-5)
    assert good.auc < reverse.auc - 0.3, (good.auc, reverse.auc)
    assert noise.auc < reverse.auc
    inserted = fa.insertion_curve(demo, coffee_x, cam, target, step=step)
    inserted_last = fa.insertion_curve(demo, coffee_x, cam.max() - cam, target, step=step)
    noise_in = fa.insertion_curve(demo, coffee_x, lo.random_map(224, rng=0), target, step=step)
    assert inserted.auc > noise_in.auc and inserted.auc > inserted_last.auc, (
        inserted.auc,
        noise_in.auc,
        inserted_last.auc,
    )


def test_both_curves_in_shared_batches_equal_each_curve_alone(reader, image):
    truth = reader.weight[0].sum(0).numpy()
    for batch_size in (1, 5, 64):
        both = fa.causal_curves(
            reader, image, truth, 1, step=3, batch_size=batch_size, replacements={"deletion": "black"}
        )
        for mode, replacement in (("deletion", "black"), ("insertion", None)):
            alone = fa.causal_curve(
                reader, image, truth, 1, mode, step=3, replacement=replacement, batch_size=4
            )
            assert both[mode].scores == pytest.approx(alone.scores, abs=1e-7), (mode, batch_size)
            assert both[mode].auc == pytest.approx(alone.auc, abs=1e-7)
            assert both[mode].replacement == alone.replacement and both[mode].mode == mode
    assert both["insertion"].replacement == "blurred"  # the mode's default
    with pytest.raises(ValueError, match="mode must be"):
        fa.causal_curves(reader, image, truth, 1, ("deletion", "sideways"), step=3)


def test_known_end_points_are_not_run_again_and_give_the_same_curves(reader, image):
    truth = reader.weight[0].sum(0).numpy()
    backgrounds = {
        "deletion": fa.replacement_image(image, "black"),
        "insertion": fa.replacement_image(image, "blurred"),
    }
    ends = fa.end_scores(reader, image, 1, backgrounds)
    assert set(ends) == {"image", "deletion", "insertion"}
    seen = []

    class Counting(nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return reader(x)

    plain = fa.causal_curves(reader, image, truth, 1, step=3, replacements={"deletion": "black"})
    shared = fa.causal_curves(
        Counting(),
        image,
        truth,
        1,
        step=3,
        replacements={"deletion": "black"},
        backgrounds=backgrounds,
        end_scores=ends,
    )
    steps = math.ceil(64 / 3)
    assert sum(seen) == 2 * (steps + 1) - 4  # both ends of both curves were known
    for mode in ("deletion", "insertion"):
        assert shared[mode].scores == pytest.approx(plain[mode].scores, abs=1e-7)
        assert shared[mode].auc == pytest.approx(plain[mode].auc, abs=1e-7)
