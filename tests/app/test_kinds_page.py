"""The Explain page with a one-channel ResNet-18 and a multi-label ResNet-18 (sigmoid, 4 classes),
each a state dict + card in SALIENCY_MODELS_DIR, driven end to end with AppTest; and each card
error of these kinds (three-value mean on a one-channel model, a threshold outside (0, 1), a
Grad-CAM reshape that gives no square grid) shown in the sidebar, with the previous model kept."""

import os

import pytest
import torch
import torchvision
from conftest import models_app, select_model, shown
from torch import nn

import saliency_core as sc
from saliency_core.engine.samples import sample_images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GREY = ["sound", "porosity", "crack"]
DEFECTS = ["crack", "dent", "rust", "scratch"]


class Tokens(nn.Module):
    """7 x 7 patch tokens of a 56-pixel image and a class token in front: 50 tokens."""

    def __init__(self):
        super().__init__()
        self.patches = nn.Conv2d(3, 8, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        t = self.patches(x).flatten(2).transpose(1, 2)
        t = self.norm(torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1))
        return self.head(t.mean(dim=1))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    grey = torchvision.models.resnet18(num_classes=len(GREY))
    grey.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    torch.save(grey.eval().state_dict(), folder / "radiograph.pth")
    (folder / "radiograph.yaml").write_text(
        "name: Weld radiograph\nfile: radiograph.pth\narchitecture: resnet18\nchannels: 1\nmean: [0.5]\n"
        f"std: [0.25]\ninput_size: 64\nresize: 72\nlabels: [{', '.join(GREY)}]\n"
    )
    torch.manual_seed(1)
    defects = torchvision.models.resnet18(num_classes=len(DEFECTS)).eval()
    with torch.no_grad():
        defects.fc.weight.mul_(8)
    torch.save(defects.state_dict(), folder / "defects.pth")
    card = (
        "name: Surface defects\nfile: defects.pth\narchitecture: resnet18\noutput: sigmoid\n"
        f"input_size: 64\nresize: 72\nlabels: [{', '.join(DEFECTS)}]\n"
    )
    (folder / "defects.yaml").write_text(card)
    p = sc.load_model(folder / "defects.yaml").predict(_photo(), k=4)
    (folder / "defects.yaml").write_text(
        card + f"threshold: {round((p[1][2] + p[2][2]) / 2, 4)}\n"
    )  # a set of two
    # cards that must be refused, each with its own message
    (folder / "grey_rgb_mean.yaml").write_text(
        "name: Grey, colour mean\nfile: radiograph.pth\narchitecture: resnet18\n"
        "channels: 1\nmean: [0.485, 0.456, 0.406]\ninput_size: 64\n"
    )
    (folder / "threshold.yaml").write_text(
        "name: Threshold 1.5\nfile: defects.pth\narchitecture: resnet18\n"
        "output: sigmoid\nthreshold: 1.5\ninput_size: 64\n"
    )
    torch.manual_seed(0)
    program = torch.export.export(
        Tokens().eval(), (torch.rand(2, 3, 56, 56),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, folder / "tokens.pt2")
    (folder / "tokens.yaml").write_text(
        "name: Token grid\nfile: tokens.pt2\ninput_size: 56\ngradcam_layer: norm\ngradcam_reshape: tokens\n"
    )
    return folder


def _photo() -> str:
    return next(iter(sample_images().values()))  # the page's default sample photo


def _apply(at, methods):
    at.sidebar.multiselect(key="methods").set_value(methods)
    next(b for b in at.sidebar.button if b.label == "Apply").click()
    return at.run()


def _sidebar_text(at):
    return " ".join(
        [shown(c.value) for c in at.sidebar.caption] + [shown(m.value) for m in at.sidebar.markdown]
    )


def _no_errors(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _maps(at):
    return [c for el in at.get("image") for c in el.captions]


def test_one_channel_model_end_to_end(monkeypatch, models_dir):
    at = select_model(models_app(monkeypatch, models_dir), models_dir / "radiograph.yaml")
    _no_errors(at)
    sidebar = _sidebar_text(at)
    assert "3 classes · input 64 px · greyscale (1 channel)" in sidebar
    assert "**channels**: 1" in sidebar and "**mean**: 0.5" in sidebar
    assert "Guided backprop" in at.sidebar.multiselect(key="methods").options  # a ReLU network

    at = _apply(at, ["gradient", "gradcam", "guided_backprop"])
    _no_errors(at)
    assert {"What the model sees", "Gradient", "Grad-CAM", "Guided backprop"} <= set(_maps(at))
    ((index, label, p),) = sc.load_model(models_dir / "radiograph.yaml").predicted_set(_photo())
    assert f"**Prediction:** {label} ({p:.1%})" in [m.value for m in at.markdown]
    assert any(f"Maps explain **{label}**." in c.value for c in at.caption)


def test_multilabel_model_shows_the_predicted_set(monkeypatch, models_dir):
    model = sc.load_model(models_dir / "defects.yaml")
    predicted = model.predicted_set(_photo())
    assert len(predicted) == 2
    at = select_model(models_app(monkeypatch, models_dir), models_dir / "defects.yaml")
    _no_errors(at)
    assert f"multi-label (every class above {model.threshold:.0%})" in _sidebar_text(at)
    assert "**output**: sigmoid (multi-label: every class above the threshold)" in _sidebar_text(at)

    at = _apply(at, ["gradient", "gradcam"])
    _no_errors(at)
    assert {"What the model sees", "Gradient", "Grad-CAM"} <= set(_maps(at))
    words = [m.value for m in at.markdown if m.value.startswith("**Predicted classes**")]
    assert words == [
        f"**Predicted classes** (multi-label: every class above {model.threshold:.0%}): "
        + ", ".join(f"{label} ({p:.1%})" for _, label, p in predicted)
    ], words
    assert any(
        f"Maps explain **{predicted[0][1]}**." in c.value and "need not add up to 100 %" in c.value
        for c in at.caption
    )

    # any class can be explained, predicted or not
    other = next(i for i in range(len(DEFECTS)) if i not in {j for j, _, _ in predicted})
    at.radio[0].set_value("Class by name")
    at = at.run()
    next(s for s in at.selectbox if s.label == "Class").set_value(other)
    at = at.run()
    _no_errors(at)
    assert any(f"Maps explain **{DEFECTS[other]}**." in c.value for c in at.caption)
    assert {"Gradient", "Grad-CAM"} <= set(_maps(at))


@pytest.mark.parametrize(
    "card, message",
    [
        (
            "grey_rgb_mean.yaml",
            "grey_rgb_mean.yaml: 'mean' has three values (R, G, B), but the model takes one channel "
            "('channels: 1', greyscale): give one value, e.g. mean: [0.449]",
        ),
        ("threshold.yaml", "threshold.yaml: 'threshold' must be a probability strictly between 0 and 1"),
        (
            "tokens.yaml",
            "tokens.yaml: 'gradcam_layer' 'norm' with 'gradcam_reshape' tokens: Grad-CAM reshape 'tokens': "
            "the layer gives 50 tokens (shape (1, 50, 8)), which do not form a square grid (side x side). "
            "Reshape 'class_token' would give a square grid.",
        ),
    ],
    ids=["three_value_mean", "threshold", "reshape_not_square"],
)
def test_card_errors_in_the_sidebar(monkeypatch, models_dir, card, message):
    at = select_model(models_app(monkeypatch, models_dir), models_dir / "radiograph.yaml")
    at = select_model(at, models_dir / card)
    assert not at.exception, at.exception
    errors = [shown(e.value) for e in at.sidebar.error]
    assert len(errors) == 1 and message in errors[0], errors
    assert errors[0].startswith("This model cannot be used.")
    assert "Still using **Weld radiograph (radiograph.pth)**" in _sidebar_text(at)
