"""The operator's model as it really is: a one-channel ResNet-18, a multi-label ResNet-18 (sigmoid,
4 classes) and torchvision's ViT-B/16 and Swin-T, each as a state dict + card.

- one-channel and multi-label: predictions equal the PyTorch model's (preprocessing written with
  torchvision's own transforms), gradient maps equal a backward pass written out layer by layer
  (no autograd) to 1e-5;
- ViT-B/16 and Swin-T (random weights): the gradient equals Captum's ``Saliency`` to 1e-4, and
  Grad-CAM on the token layer equals pytorch-grad-cam with its documented ``reshape_transform``
  to 1e-4; guided backprop is unavailable on their GELU activations, with the reason;
- every card error of these kinds gives its message (the sidebar: tests/app/test_kinds_page.py).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import Saliency
from conftest import relative_error
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform, vit_reshape_transform
from torch import nn
from torchvision import transforms as T

import saliency_core as sc
from saliency_core.cli import main
from saliency_core.engine.methods.gradcam import to_grid, token_grid
from saliency_core.engine.render import render
from saliency_core.engine.samples import sample_images

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

GREY_LABELS = ["sound", "porosity", "crack"]
DEFECTS = ["crack", "dent", "rust", "scratch"]
SIZE, RESIZE = 64, 72


def _photos() -> list[str]:
    return list(sample_images().values())[:2]  # chelsea.png, coffee.png


# ---- a backward pass written out, for torchvision's ResNet-18 in eval mode -------------------


def _bn(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = a x + b per channel."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return a.view(1, -1, 1, 1), (bn.bias - bn.running_mean * a).view(1, -1, 1, 1)


def _conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)


def _conv_back(conv: nn.Conv2d, grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """d/d input of a convolution: its adjoint, the transposed convolution, sized to ``shape``."""
    extra = [
        shape[i + 2] - ((grad.shape[i + 2] - 1) * conv.stride[i] - 2 * conv.padding[i] + conv.kernel_size[i])
        for i in range(2)
    ]
    return F.conv_transpose2d(grad, conv.weight, None, conv.stride, conv.padding, output_padding=tuple(extra))


def resnet18_by_hand(
    net: nn.Module, x: torch.Tensor, mean, std, target: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, d logit[target] / d x) of a torchvision ResNet-18 with (x - mean) / std in front,
    in float64, the forward pass and the chain rule written out layer by layer, without autograd."""
    net = copy.deepcopy(net).double().eval()
    with torch.no_grad():
        x = x.double()
        m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        z = (x - m) / s
        a1, b1 = _bn(net.bn1)
        stem = _conv(net.conv1, z) * a1 + b1
        relu = stem.clamp(min=0)
        pooled, where = F.max_pool2d(relu, 3, 2, 1, return_indices=True)
        h, tape = pooled, []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in layer:
                a, b = _bn(block.bn1)
                inner = _conv(block.conv1, h) * a + b
                c, d = _bn(block.bn2)
                branch = _conv(block.conv2, inner.clamp(min=0)) * c + d
                if block.downsample is not None:
                    e, f = _bn(block.downsample[1])
                    shortcut = _conv(block.downsample[0], h) * e + f
                else:
                    e, shortcut = None, h
                total = branch + shortcut
                tape.append((block, h.shape, inner, a, c, e, total))
                h = total.clamp(min=0)
        logits = h.mean(dim=(2, 3)) @ net.fc.weight.T + net.fc.bias
        # backward: mean pooling, then each block in reverse
        g = (net.fc.weight[target] / (h.shape[2] * h.shape[3])).view(1, -1, 1, 1).expand_as(h).clone()
        for block, shape, inner, a, c, e, total in reversed(tape):
            g = g * (total > 0)  # ReLU after the sum
            inner_grad = _conv_back(block.conv2, g * c, inner.shape) * (inner > 0) * a
            into = _conv_back(block.conv1, inner_grad, shape)
            into = into + (_conv_back(block.downsample[0], g * e, shape) if e is not None else g)
            g = into
        # max pooling: each output's gradient goes to the input position it took
        g = torch.zeros_like(relu).flatten(2).scatter_add_(2, where.flatten(2), g.flatten(2)).view_as(relu)
        g = g * (stem > 0) * a1
        return logits, _conv_back(net.conv1, g, z.shape) / s


# ---- the two ResNet-18 kinds -------------------------------------------------------------------


@pytest.fixture(scope="module")
def grey(tmp_path_factory):
    """A one-channel ResNet-18 (first convolution with 1 input channel), 3 classes."""
    folder = tmp_path_factory.mktemp("grey")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=len(GREY_LABELS))
    net.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    net.eval()
    torch.save(net.state_dict(), folder / "radiograph.pth")
    (folder / "radiograph.yaml").write_text(
        f"name: Weld radiograph\nfile: radiograph.pth\narchitecture: resnet18\nchannels: 1\nmean: [0.5]\n"
        f"std: [0.25]\ninput_size: {SIZE}\nresize: {RESIZE}\nlabels: [{', '.join(GREY_LABELS)}]\n"
    )
    return folder / "radiograph.yaml", net


def _eager_probabilities(net, x, mean, std, sigmoid: bool) -> torch.Tensor:
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = net((x - m) / s)
    return logits.sigmoid()[0] if sigmoid else logits.softmax(1)[0]


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory):
    """A multi-label ResNet-18: 4 classes, one sigmoid each. The card's threshold lies between the
    second and third probability of the first photo, so its prediction is a set of two."""
    folder = tmp_path_factory.mktemp("multilabel")
    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=len(DEFECTS)).eval()
    with torch.no_grad():
        net.fc.weight.mul_(8)  # spread the logits: probabilities far from 0.5
    torch.save(net.state_dict(), folder / "defects.pth")
    x = _reference_input(_photos()[0], channels=3)
    p = (
        _eager_probabilities(net, x, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True)
        .sort(descending=True)
        .values
    )
    threshold = round(float(p[1] + p[2]) / 2, 4)
    assert p[1] - threshold > 0.01 and threshold - p[2] > 0.01, p
    (folder / "defects.yaml").write_text(
        f"name: Surface defects\nfile: defects.pth\narchitecture: resnet18\noutput: sigmoid\n"
        f"threshold: {threshold}\ninput_size: {SIZE}\nresize: {RESIZE}\nlabels: [{', '.join(DEFECTS)}]\n"
    )
    return folder / "defects.yaml", net, threshold


def _reference_input(path: str, channels: int) -> torch.Tensor:
    """Preprocessing written with torchvision's transforms: grey (for one channel), resize, crop."""
    steps = ([T.Grayscale(1)] if channels == 1 else []) + [T.Resize(RESIZE), T.CenterCrop(SIZE), T.ToTensor()]
    return T.Compose(steps)(sc.load_image(path)).unsqueeze(0)


def test_one_channel_resnet18_predictions_equal_pytorch(grey, record):
    card, net = grey
    model = sc.load_model(card)
    assert model.channels == 1 and model.mean == (0.5,) and not model.multilabel
    assert model.card["channels"] == 1 and model.gradcam_layer == "1.layer4"
    for path in _photos():
        x = _reference_input(path, channels=1)
        assert model.crop(path).mode == "L"  # overlays are drawn on the grey crop
        assert torch.equal(model.preprocess(path), x)  # (1, 1, 64, 64), as torchvision makes it
        reference = _eager_probabilities(net, x, (0.5,), (0.25,), sigmoid=False)
        ours = model.predict(path, k=3)
        assert [i for i, _, _ in ours] == reference.argsort(descending=True).tolist()
        err = record(
            "one-channel ResNet-18 probabilities vs PyTorch (max abs)",
            max(abs(p - float(reference[i])) for i, _, p in ours),
        )
        assert err < 1e-6
        assert model.predicted_set(path) == ours[:1]


def test_one_channel_gradient_equals_backward_by_hand(grey, record):
    card, net = grey
    model = sc.load_model(card)
    for path in _photos():
        x = model.preprocess(path)
        target = model.predict(x, k=1)[0][0]
        logits, grad = resnet18_by_hand(net, x, (0.5,), (0.25,), target)
        with torch.no_grad():
            assert (
                relative_error(net((x - 0.5) / 0.25), logits) < 1e-5
            )  # the written-out forward is the model (fp32)
        exp = sc.explain(model, path, method="gradient")
        assert exp.target == target and exp.attribution.shape == (1, SIZE, SIZE) and exp.image.mode == "L"
        err = record(
            "one-channel ResNet-18 gradient vs backward by hand", relative_error(exp.attribution, grad[0])
        )
        assert err < 1e-5
        assert relative_error(exp.saliency, grad[0, 0].abs()) < 1e-5  # one channel: the map is |gradient|
        rendered = render(exp.saliency, exp.image)
        grey_pixels = np.asarray(exp.image.convert("RGB"))
        assert rendered.overlay.shape == (SIZE, SIZE, 3)
        assert (grey_pixels[..., 0] == grey_pixels[..., 2]).all()  # drawn on the grey crop


def test_one_channel_model_through_stability_sanity_and_report(grey):
    """Every check takes the one-channel input as the model sees it."""
    from saliency_core.evaluation.sanity import sanity_check
    from saliency_core.evaluation.stability import make_variants, stability_check
    from saliency_core.report import build_report

    model = sc.load_model(grey[0])
    path = _photos()[0]
    variants = make_variants(model, path, count=6)  # noise, brightness, contrast, shift, rotation, JPEG
    assert {v.kind for v in variants} == {"noise", "brightness", "contrast", "shift", "rotation", "jpeg"}
    assert all(tuple(v.x.shape) == (1, 1, SIZE, SIZE) for v in variants)
    shifted = next(v for v in variants if v.kind == "shift")
    right = shifted.params["right"]
    assert torch.equal(
        shifted.x[0, :, :, right:], model.preprocess(path)[0, :, :, :-right]
    )  # grey pixels moved
    result = stability_check(model, path, ["gradient"], variants=variants)
    assert len(result.variants) == 6
    sanity_check(model, path, ["gradient", "gradcam"])
    report = build_report(model, [path], ["gradient", "gradcam"])
    assert report.images[0].crop.mode == "L" and not report.images[0].errors
    assert "<img" in report.to_html()
    grey_crop = np.asarray(report.images[0].crop)
    overlay = render(sc.explain(model, path, method="gradient").saliency, grey_crop, alpha=0.0).overlay
    assert (overlay == grey_crop[:, :, None]).all()  # alpha 0: the grey image itself


def test_multilabel_resnet18_predictions_equal_pytorch(multilabel, record):
    card, net, threshold = multilabel
    model = sc.load_model(card)
    assert model.multilabel and model.threshold == threshold and model.card["output"] == "sigmoid"
    sizes = []
    for path in _photos():
        x = _reference_input(path, channels=3)
        assert torch.equal(model.preprocess(path), x)
        reference = _eager_probabilities(net, x, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), sigmoid=True)
        ours = model.predict(path, k=4)
        assert [i for i, _, _ in ours] == reference.argsort(descending=True).tolist()
        err = record(
            "multi-label ResNet-18 sigmoid probabilities vs PyTorch (max abs)",
            max(abs(p - float(reference[i])) for i, _, p in ours),
        )
        assert err < 1e-6
        assert sum(p for _, _, p in ours) != pytest.approx(1.0, abs=1e-3)  # not a softmax
        predicted = model.predicted_set(path)
        expected = [i for i in reference.argsort(descending=True).tolist() if reference[i] > threshold]
        assert [i for i, _, _ in predicted] == expected
        assert all(label == DEFECTS[i] for i, label, _ in predicted)
        sizes.append(len(predicted))
    assert sizes[0] == 2  # the threshold was set so: a set, not a top-1


def test_multilabel_gradient_equals_backward_by_hand_for_any_class(multilabel, record):
    card, net, _ = multilabel
    model = sc.load_model(card)
    path = _photos()[0]
    x = model.preprocess(path)
    for target in range(len(DEFECTS)):  # predicted or not, every class can be explained
        _, grad = resnet18_by_hand(net, x, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), target)
        exp = sc.explain(model, path, method="gradient", target=target)
        err = record(
            f"multi-label ResNet-18 gradient (class {target}) vs backward by hand",
            relative_error(exp.attribution, grad[0]),
        )
        assert err < 1e-5
        assert relative_error(exp.saliency, grad[0].abs().amax(0)) < 1e-5


def test_pipeline_records_the_predicted_set(multilabel, grey):
    from saliency_core.pipeline import explain_image

    card, _, threshold = multilabel
    model = sc.load_model(card)
    result = explain_image(model, _photos()[0], "chelsea.png", ["gradient"])
    record = result.record()
    assert record["model"]["output"] == "sigmoid" and record["model"]["threshold"] == threshold
    assert [p["index"] for p in record["predicted"]] == [i for i, _, _ in model.predicted_set(_photos()[0])]
    assert len(record["predicted"]) == 2 and all(p["probability"] > threshold for p in record["predicted"])
    grey_model = sc.load_model(grey[0])
    grey_record = explain_image(grey_model, _photos()[0], "chelsea.png", ["gradient", "gradcam"]).record()
    assert grey_record["model"]["channels"] == 1 and "threshold" not in grey_record["model"]
    assert len(grey_record["predicted"]) == 1 and not grey_record["errors"]


def test_multilabel_meaning_in_faithfulness_and_the_report(multilabel):
    """Deletion curves follow the class's own sigmoid; the report names the predicted set."""
    from saliency_core.evaluation.faithfulness import causal_curve
    from saliency_core.report import build_report

    card, _, threshold = multilabel
    model = sc.load_model(card)
    path = _photos()[0]
    x = model.preprocess(path)
    predicted = model.predicted_set(x)
    exp = sc.explain(model, path, method="gradient", target=predicted[1][0])
    curve = causal_curve(model, x, exp.saliency, exp.target, "deletion", step=SIZE * SIZE // 4)
    assert curve.scores[0] == pytest.approx(predicted[1][2], abs=1e-6)  # the sigmoid, not a softmax
    assert curve.record()["score"] == "sigmoid probability of the target class"
    text = build_report(model, [path], ["gradient"]).to_html()
    words = ", ".join(f"\u201c{label}\u201d ({100 * p:.1f} %)" for _, label, p in predicted)
    assert f"2 classes above the multi-label threshold of {100 * threshold:.1f} %: {words}" in text.replace(
        "&#x27;", "'"
    )
    assert "the model answers" not in text


def test_validation_with_both_kinds(grey, multilabel):
    """A validation run: the grey model's worst-image thumbnails are RGB, the multi-label rows
    carry the predicted set."""
    from saliency_core.evaluation.annotations import dataset_from_files
    from saliency_core.evaluation.validate import ValidationSettings, run_validation

    path = _photos()[0]
    boxes = b"image,x_min,y_min,x_max,y_max\nchelsea.png,100,50,300,250\n"
    settings = ValidationSettings(methods=["gradient", "gradcam"], step_fraction=0.25, resamples=50, worst=2)
    for card in (grey[0], multilabel[0]):
        model = sc.load_model(card)
        result = run_validation(
            model, dataset_from_files([("chelsea.png", path)], [("boxes.csv", boxes)]), settings
        )
        rows = result.per_image()
        assert len(rows) == 4 and not result.skipped, result.skipped  # 2 methods + 2 baselines
        assert result.worst["gradient"] and all(
            case.crop.shape == (112, 112, 3) for case in result.worst["gradient"]
        )
        if model.multilabel:
            expected = "; ".join(label for _, label, _ in model.predicted_set(path))
            assert set(rows["predicted"]) == {expected} and expected.count(";") == 1


# ---- vision transformers -------------------------------------------------------------------


def _vit(folder):
    torch.manual_seed(0)
    net = torchvision.models.vit_b_16(num_classes=len(DEFECTS))
    nn.init.normal_(net.heads.head.weight, std=0.05)  # torchvision starts the head at zero
    return net.eval(), vit_reshape_transform


def _swin(folder):
    torch.manual_seed(0)
    # pytorch-grad-cam's documented Swin transform takes (B, 49, C) tokens; torchvision's Swin
    # keeps them as (B, 7, 7, C): flatten the grid row by row first
    return torchvision.models.swin_t(num_classes=len(DEFECTS)).eval(), lambda t: swinT_reshape_transform(
        t.flatten(1, 2)
    )


TRANSFORMERS = {
    "vit_b_16": (_vit, "1.encoder.layers.encoder_layer_11.ln_1", "class_token"),
    "swin_t": (_swin, "1.features", "channels_last"),
}


@pytest.fixture(scope="module", params=list(TRANSFORMERS))
def transformer(request, tmp_path_factory):
    arch = request.param
    build, layer, reshape = TRANSFORMERS[arch]
    folder = tmp_path_factory.mktemp(arch)
    net, transform = build(folder)
    torch.save(net.state_dict(), folder / f"{arch}.pth")
    (folder / f"{arch}.yaml").write_text(
        f"file: {arch}.pth\narchitecture: {arch}\nlabels: [{', '.join(DEFECTS)}]\n"
    )
    model = sc.load_model(folder / f"{arch}.yaml")
    (folder / f"{arch}.pth").unlink()  # 110-330 MB
    assert model.gradcam_layer == layer and model.gradcam_reshape == reshape
    return arch, model, transform


def test_transformer_gradient_equals_captum_saliency(transformer, record):
    arch, model, _ = transformer
    path = _photos()[0]
    x = model.preprocess(path)
    exp = sc.explain(model, path, method="gradient")  # as a user calls it: the predicted class
    reference = Saliency(model.network).attribute(x.clone(), target=exp.target, abs=False)
    err = record(
        f"{arch} gradient vs captum Saliency(abs=False)", relative_error(exp.attribution, reference[0])
    )
    assert err < 1e-4


def _min_max(a: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1] as pytorch-grad-cam's output. Its scale_cam_image divides by max + 1e-7,
    but after a first scaling, where the max is 1: the 1e-7 must not meet a raw map (Grad-CAM of a
    random ViT peaks near 6e-4, where 1e-7 is a 1.7e-4 error)."""
    a = a - a.min()
    assert a.max() > 0
    return a / a.max()


def test_transformer_gradcam_on_tokens_equals_pytorch_grad_cam(transformer, record):
    arch, model, transform = transformer
    path = _photos()[0]
    x = model.preprocess(path)
    network = copy.deepcopy(model.network).requires_grad_(True)
    layer = network.get_submodule(model.gradcam_layer)
    checked = 0
    for target in range(len(DEFECTS)):
        exp = sc.explain(model, path, method="gradcam", target=target)
        assert exp.params == {"layer": model.gradcam_layer, "reshape": model.gradcam_reshape}
        with GradCAM(model=network, target_layers=[layer], reshape_transform=transform) as cam:
            reference = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(target)])[0]
        if not reference.any():  # ReLU(cam) = 0 everywhere for this class: both must say so
            assert not exp.saliency.any()
            continue
        ours = _min_max(exp.saliency)
        err = record(
            f"{arch} Grad-CAM on tokens vs pytorch_grad_cam + reshape_transform, min-max scaled "
            f"(class {target})",
            relative_error(torch.from_numpy(ours), torch.from_numpy(reference)),
        )
        assert err < 1e-4
        assert np.abs(ours - reference).max() < 1e-4
        checked += 1
    assert checked >= 2


def test_transformer_methods_available_and_why_not(transformer):
    arch, model, _ = transformer
    usable = sc.available_methods(model)
    for name in ("gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "gradcam"):
        assert usable[name] is None, (name, usable[name])
    for name in ("guided_backprop", "guided_gradcam"):
        assert "GELU" in usable[name] and "ReLU" in usable[name], usable[name]
    assert (usable["attention_rollout"] is None) == (arch == "vit_b_16")  # Swin's windowed attention: no
    path = _photos()[0]
    for name, params in (("smoothgrad", {"samples": 2}), ("integrated_gradients", {"steps": 2})):
        exp = sc.explain(model, path, method=name, **params)
        assert np.isfinite(exp.saliency).all() and exp.saliency.any()


@pytest.mark.parametrize("transformer", ["vit_b_16"], indirect=True)
def test_vit_gradcam_is_not_the_patch_embedding(transformer):
    """On the patch embedding (what the last-feature-map rule picked before) the map differs: the
    comparison with pytorch-grad-cam can tell the two layers apart."""
    arch, model, _ = transformer
    path = _photos()[0]
    tokens = sc.explain(model, path, method="gradcam", target=0).saliency
    patches = sc.explain(model, path, method="gradcam", target=0, layer="1.conv_proj").saliency
    assert relative_error(_min_max(patches), _min_max(tokens)) > 0.1


def _rollout_reference(model: sc.Classifier, x: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) of torchvision's ViT, the encoder run block by
    block with PyTorch's own attention weights (need_weights=True), the product in float64."""
    normalize, vit = model.network[0], model.network[1]
    with torch.no_grad():
        tokens = vit._process_input(normalize(x))
        tokens = torch.cat([vit.class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + vit.encoder.pos_embedding
        weights = []
        for block in vit.encoder.layers:
            y = block.ln_1(tokens)
            attended, w = block.self_attention(y, y, y, need_weights=True, average_attn_weights=True)
            weights.append(w.double())
            tokens = tokens + attended
            tokens = tokens + block.mlp(block.ln_2(tokens))
    eye = torch.eye(weights[0].shape[-1], dtype=torch.float64)
    rollout = eye
    for w in weights:
        rollout = (0.5 * w + 0.5 * eye) @ rollout
    side = math.isqrt(rollout.shape[-1] - 1)
    grid = rollout[:, 0, 1:].reshape(-1, 1, side, side)
    return F.interpolate(grid, size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.mark.parametrize("transformer", ["vit_b_16"], indirect=True)
def test_attention_rollout_on_vit(transformer, grey, record):
    _, model, _ = transformer
    assert sc.available_methods(model)["attention_rollout"] is None
    path = _photos()[0]
    x = model.preprocess(path)
    reference = _rollout_reference(model, x)[0]
    maps = [sc.explain(model, path, method="attention_rollout", target=t) for t in (0, 3)]
    err = record(
        "vit_b_16 attention rollout vs PyTorch's attention weights multiplied out (float64)",
        relative_error(maps[0].attribution, reference),
    )
    assert err < 1e-5
    assert np.array_equal(maps[0].saliency, maps[1].saliency)  # the same for every class: the caution says so
    assert "same map for every class" in sc.METHODS["attention_rollout"].caution
    # a call that fails leaves no hook behind
    attention = [m for m in model.network.modules() if isinstance(m, nn.MultiheadAttention)]
    with pytest.raises(ValueError, match="Target class"):
        sc.METHODS["attention_rollout"].attribute(model.network, x, torch.tensor([7]))
    assert len(attention) == 12 and not any(m._forward_hooks for m in attention)
    assert not model.network.training
    grey_model = sc.load_model(grey[0])
    assert "needs the multi-head attention layers" in sc.available_methods(grey_model)["attention_rollout"]


# ---- the reshape, by hand ------------------------------------------------------------------


def test_to_grid_lays_tokens_out_row_by_row():
    tokens = torch.arange(2 * 10 * 3, dtype=torch.float64).view(2, 10, 3)  # class token + 3 x 3
    grid = to_grid(tokens, "class_token")
    assert grid.shape == (2, 3, 3, 3)
    assert torch.equal(grid[1, 2, 1, 0], tokens[1, 1 + 1 * 3 + 0, 2])  # row 1, column 0, channel 2
    assert torch.equal(to_grid(tokens[:, 1:], "tokens"), grid)
    bhwc = tokens[:, 1:].reshape(2, 3, 3, 3)
    assert torch.equal(to_grid(bhwc, "channels_last"), grid)
    assert torch.equal(grid, vit_reshape_transform(tokens, 3, 3))
    for bad, reshape in ((tokens, "tokens"), (tokens[:, :7], "class_token"), (tokens, "none")):
        with pytest.raises(ValueError, match="square grid|expects"):
            to_grid(bad, reshape)
    assert token_grid((1, 197, 768), "class_token") == (768, 14, 14)


# ---- card errors of these kinds: the message, from the engine and the command line -----------


@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    """A tiny token network exported with torch.export: 8 x 8 patches of a 56-pixel image -> 49
    tokens, a class token in front (50 tokens), a LayerNorm, a head on the class token."""
    folder = tmp_path_factory.mktemp("tokens")

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.patches = nn.Conv2d(3, 8, 8, stride=8)
            self.cls = nn.Parameter(torch.randn(1, 1, 8))
            self.mix = nn.Linear(8, 8)
            self.norm = nn.LayerNorm(8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            t = self.patches(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1)
            t = self.norm(t + self.mix(t).mean(dim=1, keepdim=True))
            return self.head(t[:, 0])

    torch.manual_seed(0)
    program = torch.export.export(
        Tokens().eval(), (torch.rand(2, 3, 56, 56),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, folder / "tokens.pt2")
    return folder


CARD_ERRORS = [
    (
        "grey_three_means",
        "channels: 1\nmean: [0.485, 0.456, 0.406]\n",
        "'mean' has three values (R, G, B), but the model takes one channel ('channels: 1', greyscale): "
        "give one value, e.g. mean: [0.449]",
    ),
    ("grey_three_stds", "channels: 1\nmean: 0.5\nstd: [0.2, 0.2, 0.2]\n", "'std' has three values (R, G, B)"),
    ("colour_one_mean", "mean: [0.5]\n", "'mean' has one value, but the model takes three colour channels"),
    ("channels_2", "channels: 2\n", "'channels' must be 3 (colour, R, G, B) or 1 (greyscale); got 2."),
    (
        "threshold_high",
        "output: sigmoid\nthreshold: 1.5\n",
        "'threshold' must be a probability strictly between 0 and 1",
    ),
    (
        "threshold_zero",
        "output: sigmoid\nthreshold: 0\n",
        "'threshold' must be a probability strictly between 0 and 1",
    ),
    (
        "threshold_nan",
        "output: sigmoid\nthreshold: .nan\n",
        "'threshold' must be a probability strictly between",
    ),
    (
        "threshold_text",
        "output: sigmoid\nthreshold: high\n",
        "'threshold' must be a probability strictly between",
    ),
    ("threshold_softmax", "threshold: 0.5\n", "'threshold' is for multi-label models ('output: sigmoid')"),
    ("output_word", "output: logits\n", "'output' must be one of softmax, sigmoid; got 'logits'."),
    (
        "reshape_word",
        "gradcam_layer: norm\ngradcam_reshape: grid\n",
        "'gradcam_reshape' must be one of none, channels_last, tokens, class_token; got 'grid'.",
    ),
    (
        "reshape_not_square",
        "gradcam_layer: norm\ngradcam_reshape: tokens\n",
        "'gradcam_layer' 'norm' with 'gradcam_reshape' tokens: Grad-CAM reshape 'tokens': the layer gives 50 "
        "tokens (shape (1, 50, 8)), which do not form a square grid (side x side). Reshape 'class_token' "
        "would give a square grid.",
    ),
    (
        "reshape_wrong_rank",
        "gradcam_layer: patches\ngradcam_reshape: class_token\n",
        "Grad-CAM reshape 'class_token' expects the layer to give tokens (batch, tokens, channels); it gives "
        "shape (1, 8, 7, 7).",
    ),
    (
        "reshape_without_layer",
        "gradcam_reshape: class_token\n",
        "'gradcam_reshape' class_token needs the layer",
    ),
]


@pytest.mark.parametrize("name, text, message", CARD_ERRORS, ids=[c[0] for c in CARD_ERRORS])
def test_card_errors_of_these_kinds(token_model, tmp_path, capsys, name, text, message):
    card = token_model / f"{name}.yaml"
    card.write_text("file: tokens.pt2\ninput_size: 56\n" + text)
    with pytest.raises(ValueError) as err:
        sc.load_model(card)
    assert message in str(err.value) and str(err.value).startswith(f"{name}.yaml")
    # the command line prints the same message and fails
    code = main(
        ["explain", _photos()[0], "--method", "gradient", "--model", str(card), "--out", str(tmp_path)]
    )
    printed = " ".join(capsys.readouterr().err.split())
    assert code == 1 and f"error: {name}.yaml" in printed and " ".join(message.split()) in printed, printed


def test_token_model_from_its_card(token_model):
    """The tiny token model's Grad-CAM layer is found only when stated; stated, it works."""
    card = token_model / "plain.yaml"
    card.write_text("file: tokens.pt2\ninput_size: 56\n")
    model = sc.load_model(card)
    assert model.gradcam_layer is None  # tokens after the last feature map: not guessed
    assert "tokens after its last convolution" in sc.available_methods(model)["gradcam"]
    card.write_text("file: tokens.pt2\ninput_size: 56\ngradcam_layer: norm\n")
    model = sc.load_model(card)  # the class token is found from the shape (50 = 1 + 7 x 7)
    assert model.gradcam_reshape == "class_token" and sc.available_methods(model)["gradcam"] is None
    exp = sc.explain(model, _photos()[0], method="gradcam")
    assert exp.saliency.shape == (56, 56) and exp.params["reshape"] == "class_token"


def test_one_channel_card_on_a_colour_state_dict(tmp_path):
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), tmp_path / "colour.pth")
    (tmp_path / "colour.yaml").write_text(
        "file: colour.pth\narchitecture: resnet18\nchannels: 1\ninput_size: 32\n"
    )
    with pytest.raises(
        ValueError,
        match=r"'channels: 1', but the state dict has no first convolution taking 1 "
        r"channel .*conv1.weight in the file: 64x3x7x7",
    ):
        sc.load_model(tmp_path / "colour.yaml")


def test_colour_card_on_a_one_channel_state_dict(grey, tmp_path):
    _, net = grey
    torch.save(net.state_dict(), tmp_path / "g.pth")
    (tmp_path / "g.yaml").write_text("file: g.pth\narchitecture: resnet18\ninput_size: 32\n")
    with pytest.raises(
        ValueError, match=r"first convolution \(conv1.weight\) takes 1 channel: set 'channels: 1'"
    ):
        sc.load_model(tmp_path / "g.yaml")


def test_one_logit_sigmoid_model(tmp_path):
    """With output: sigmoid, one score is one class (present or not)."""
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=1).state_dict(), tmp_path / "one.pth")
    (tmp_path / "one.yaml").write_text(
        "file: one.pth\narchitecture: resnet18\noutput: sigmoid\ninput_size: 32\nlabels: [defect]\n"
    )
    model = sc.load_model(tmp_path / "one.yaml")
    ((index, label, p),) = model.predict(_photos()[0])
    assert (index, label) == (0, "defect") and 0 < p < 1
    assert model.predicted_set(_photos()[0]) == ([(0, "defect", p)] if p > 0.5 else [])
    assert math.isfinite(float(sc.explain(model, _photos()[0], method="gradient").saliency.sum()))
