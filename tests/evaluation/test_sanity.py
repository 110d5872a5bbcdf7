"""Model parameter randomisation (Adebayo et al. 2018) on the real demo model: the verdicts the
paper reports, the cached model left bit-identical, the layer blocks, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

import saliency_core as sc
from saliency_core.evaluation import sanity as rz

DEPTH = 7  # _fc, _conv_head + _bn1, _blocks.15 .. _blocks.11: keeps the run to ~24 maps on 2 cores


def _snapshot(network: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def _hooks(network: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in network.modules()
    )


@pytest.fixture(scope="module")
def cascade(demo, chelsea_path):
    """One cascading run of gradient, Grad-CAM and guided backprop, with the cached model's
    state before and after."""
    before = _snapshot(demo.network)
    flags = [p.requires_grad for p in demo.network.parameters()]
    seen = []
    result = rz.sanity_check(
        demo,
        chelsea_path,
        ["gradient", "gradcam", "guided_backprop"],
        depth=DEPTH,
        image_name="chelsea.png",
        progress=lambda done, total: seen.append((done, total)),
    )
    return result, before, flags, seen


def test_cascading_verdicts_match_the_paper(cascade):
    result, *_ = cascade
    verdicts = result.verdicts()
    assert verdicts["gradient"].passed, verdicts["gradient"].summary
    assert verdicts["gradcam"].passed, verdicts["gradcam"].summary
    assert not verdicts["guided_backprop"].passed, verdicts["guided_backprop"].summary
    # and not by a hair: guided backprop barely moves, the others decorrelate
    assert result.curve("guided_backprop")[-1] > 0.8
    assert result.curve("gradient")[-1] < 0.4
    assert result.curve("gradcam")[-1] < 0.4
    # randomising the logits alone already changes Grad-CAM and gradient, not guided backprop
    first = result.steps[1].similarity
    assert first["guided_backprop"]["spearman_abs"] > 0.95
    assert first["gradient"]["spearman_abs"] < 0.6 and first["gradcam"]["spearman_abs"] < 0.6
    assert verdicts["guided_backprop"].final_similarity == pytest.approx(result.curve("guided_backprop")[-1])
    # Grad-CAM's ReLU leaves nothing once the head is random: a zero map, said in words
    assert "gradcam" in result.steps[-1].zero and verdicts["gradcam"].final_map_zero
    assert "zero everywhere" in verdicts["gradcam"].summary
    assert not verdicts["gradient"].final_map_zero and "zero" not in verdicts["gradient"].summary
    text = verdicts["guided_backprop"].summary
    assert text.startswith("Fails") and "chelsea.png" in text and "7 of 19" in text and "0.50" in text


def test_cached_model_is_bit_identical_after_a_run(demo, cascade, chelsea_path):
    result, before, flags, _ = cascade
    after = demo.network.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in after.items():
        assert torch.equal(before[name], tensor), name
    assert [p.requires_grad for p in demo.network.parameters()] == flags
    assert not demo.network.training
    assert _hooks(demo.network) == 0
    # the run really changed weights (on its copy): the prediction at the last step is not the cat
    assert result.steps[0].prediction[0] == result.target == 282
    assert result.steps[-1].prediction[0] != 282
    assert demo.predict(chelsea_path, k=1)[0][0] == 282


def test_steps_record_maps_similarities_and_notes(cascade):
    result, _, _, seen = cascade
    assert [s.block for s in result.steps] == [
        "",
        "_fc",
        "_conv_head + _bn1",
        "_blocks.15",
        "_blocks.14",
        "_blocks.13",
        "_blocks.12",
        "_blocks.11",
    ]
    assert result.steps[3].random_blocks == ["_fc", "_conv_head + _bn1", "_blocks.15"]
    assert all(v == pytest.approx(1.0) for v in result.steps[0].similarity["gradient"].values())
    assert set(result.steps[1].similarity["gradient"]) == {"spearman_abs", "spearman_signed", "ssim", "hog"}
    assert result.steps[-1].saliency["gradcam"].shape == (224, 224)
    assert any("_bn1" in n and "running statistics kept" in n for n in result.steps[2].notes)
    assert seen[-1] == (3 * (DEPTH + 1), 3 * (DEPTH + 1))
    record = json.loads(json.dumps(result.record()))
    assert record["verdicts"]["guided_backprop"]["verdict"] == "fails"
    assert len(result.rows()) == 3 * (DEPTH + 1)


def test_layer_blocks_demo_and_generic(demo):
    names = [b.name for b in rz.layer_blocks(demo)]
    assert names == (
        ["_fc", "_conv_head + _bn1"] + [f"_blocks.{i}" for i in range(15, -1, -1)] + ["_conv_stem + _bn0"]
    )
    assert rz.default_depth(rz.layer_blocks(demo)) == 10
    assert _hooks(demo.network) == 0
    resnet = [b.name for b in rz.layer_blocks(torchvision.models.resnet18())]
    assert resnet == [
        "fc",
        "layer4.1",
        "layer4.0",
        "layer3.1",
        "layer3.0",
        "layer2.1",
        "layer2.0",
        "layer1.1",
        "layer1.0",
        "conv1 + bn1",
    ]


def test_reinitialise_is_seeded_and_keeps_batchnorm_statistics(demo):
    import copy

    block = rz.layer_blocks(demo)[1]  # _conv_head + _bn1
    a, b = copy.deepcopy(demo.network), copy.deepcopy(demo.network)
    state = torch.random.get_rng_state()
    notes = rz.reinitialise(a, block, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    rz.reinitialise(b, block, seed=3)
    head, bn = a.get_submodule("1._conv_head"), a.get_submodule("1._bn1")
    trained_bn = demo.network.get_submodule("1._bn1")
    assert torch.equal(head.weight, b.get_submodule("1._conv_head").weight)  # same seed, same weights
    assert not torch.equal(head.weight, demo.network.get_submodule("1._conv_head").weight)
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(
        bn.bias, torch.zeros_like(bn.bias)
    )
    assert torch.equal(bn.running_mean, trained_bn.running_mean)
    assert torch.equal(a.get_submodule("1._fc").weight, demo.network.get_submodule("1._fc").weight)
    assert notes == ["1._bn1: normalisation layer, affine weight/bias reset to 1/0, running statistics kept"]


def test_independent_mode_restores_other_blocks(demo, coffee_path):
    result = rz.sanity_check(demo, coffee_path, ["gradcam"], mode="independent", depth=2)
    assert [s.random_blocks for s in result.steps] == [[], ["_fc"], ["_conv_head + _bn1"]]
    verdict = result.verdicts()["gradcam"]
    assert verdict.final_similarity == pytest.approx(sum(result.curve("gradcam")) / 2)
    assert "on average over the steps" in verdict.summary


def test_bad_input(demo, chelsea_path):
    for depth in (0, 20, 10_000):
        with pytest.raises(ValueError, match="between 1 and 19"):
            rz.sanity_check(demo, chelsea_path, ["gradient"], depth=depth)
    with pytest.raises(ValueError, match="mode must be one of cascading, independent"):
        rz.sanity_check(demo, chelsea_path, ["gradient"], mode="sideways")
    with pytest.raises(ValueError, match="at least one saliency method"):
        rz.sanity_check(demo, chelsea_path, [])
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        rz.sanity_check(demo, chelsea_path, ["gradient"], threshold=5)
    weightless = sc.Classifier(
        name="no weights",
        network=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        labels=["r", "g", "b"],
        fingerprint="0" * 64,
    )
    with pytest.raises(ValueError, match="has none to re-initialise"):
        rz.sanity_check(weightless, chelsea_path, ["gradient"])
    mlp = sc.Classifier(
        name="mlp",
        network=nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 2)),
        labels=["a", "b"],
        fingerprint="1" * 64,
    )
    with pytest.raises(ValueError, match="gradcam cannot run on this model"):
        rz.sanity_check(mlp, chelsea_path, ["gradcam"])


def test_command_line(chelsea_path, capsys):
    from saliency_core.cli import main

    assert main(["sanity", chelsea_path, "--method", "guided_backprop", "--depth", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["chelsea.png", "guided_backprop", "fails"]
    assert lines[1].split()[4] == "2/19"
    assert main(["sanity", chelsea_path, "--method", "gradient", "--depth", "0"]) == 1
    assert "between 1 and 19; got 0" in capsys.readouterr().err


def test_maps_at_a_few_steps_give_the_cascading_verdict_of_every_step(demo, cascade, chelsea_path):
    full, *_ = cascade
    assert rz.checkpoints(10, 4) == [1, 4, 7, 10] and rz.checkpoints(3, 5) == [1, 2, 3]
    few = rz.sanity_check(
        demo,
        chelsea_path,
        ["gradient", "gradcam", "guided_backprop"],
        depth=DEPTH,
        maps_at=rz.checkpoints(DEPTH, 3),
        image_name="chelsea.png",
    )
    assert [s.index for s in few.steps] == [0, 1, 4, 7]
    assert few.steps[-1].random_blocks == full.steps[-1].random_blocks
    for m in ("gradient", "gradcam", "guided_backprop"):  # same random weights at the last step
        assert few.steps[-1].similarity[m] == pytest.approx(full.steps[-1].similarity[m], abs=1e-6)
        a, b = few.verdicts()[m], full.verdicts()[m]
        assert (a.passed, a.blocks) == (b.passed, b.blocks) == (b.passed, DEPTH)
    independent = rz.sanity_check(
        demo, chelsea_path, ["gradcam"], mode="independent", depth=DEPTH, maps_at=[2, 5]
    )
    assert [s.random_blocks for s in independent.steps[1:]] == [[full.blocks[1].name], [full.blocks[4].name]]
    assert independent.verdicts()["gradcam"].blocks == 2
    for bad in ([0], [DEPTH + 1], [], [True]):
        with pytest.raises(ValueError, match="Steps with maps|at least one step"):
            rz.sanity_check(demo, chelsea_path, ["gradcam"], depth=DEPTH, maps_at=bad)
