"""Bring your own model on the Explain page, driven with AppTest: a two-class TorchScript model
with its own labels from SALIENCY_MODELS_DIR, a broken model that leaves the previous one in use,
and an upload when the operator enables it (TorchScript only with SALIENCY_ALLOW_CODE_MODELS=1)."""

import os
import re
import tempfile

import pytest
import torch
from conftest import models_app, select_model
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABELS = ("sound weld", "porosity")
CARD = "name: Weld inspector\nfile: welds.pt\nlabels: [sound weld, porosity]\ninput_size: 64\nresize: 72\n"


class TwoClassNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.relu(self.conv2(self.relu(self.conv1(x)))).mean(dim=(2, 3)))


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _shown(text: str) -> str:
    """What a reader sees of Markdown source: pages escape user text (file names, labels,
    messages) with backslashes, which the Markdown renderer removes."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("weights") / "welds.pt"
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(TwoClassNet().eval()), str(path))
    return path.read_bytes()


@pytest.fixture
def models_dir(tmp_path, weights):
    (tmp_path / "welds.pt").write_bytes(weights)
    (tmp_path / "welds.yaml").write_text(CARD)
    (tmp_path / "broken.pt").write_bytes(bytes(range(200)))
    return tmp_path


def _apply(at, methods, samples=4):
    at.sidebar.multiselect(key="methods").set_value(methods)
    at.sidebar.slider(key="samples").set_value(samples)
    next(b for b in at.sidebar.button if b.label == "Apply").click()
    return at.run()


def _captions(at):
    return [c for el in at.get("image") for c in el.captions]


def _sidebar_text(at):
    return " ".join(
        [_shown(c.value) for c in at.sidebar.caption] + [_shown(m.value) for m in at.sidebar.markdown]
    )


def test_two_class_model_end_to_end(monkeypatch, models_dir):
    at = models_app(monkeypatch, models_dir)
    choice = at.sidebar.selectbox(key="model_choice")
    assert "Weld inspector (welds.pt)" in choice.options and "broken.pt" in choice.options
    assert not [u for u in at.get("file_uploader") if u.key == "model_upload"]  # upload is off by default

    at = select_model(at, models_dir / "welds.yaml")
    assert not at.exception and not at.error, [_shown(e.value) for e in at.error]
    sidebar = _sidebar_text(at)
    assert "2 classes · input 64 px" in sidebar
    assert "**format**: TorchScript" in sidebar and "**labels**: inline (2 classes)" in sidebar
    assert "**mean**: 0.485, 0.456, 0.406 *(default)*" in sidebar and "**resize**: 72" in sidebar
    # methods the model cannot run are not offered, and the reason is shown
    offered = at.sidebar.multiselect(key="methods").options
    assert "Gradient" in offered and "Grad-CAM" not in offered and "Guided backprop" not in offered
    assert (
        "Not available for this model" in sidebar and "TorchScript model runs its layers compiled" in sidebar
    )

    at = _apply(at, ["gradient", "smoothgrad", "integrated_gradients"])  # on the default sample photo
    assert not at.exception, at.exception
    assert not at.error, [_shown(e.value) for e in at.error]
    captions = _captions(at)
    for label in ("What the model sees", "Gradient", "SmoothGrad", "Integrated Gradients"):
        assert label in captions, captions
    prediction = " ".join(_shown(m.value) for m in at.markdown if m.value.startswith("**Prediction:**"))
    assert any(f"**Prediction:** {label} (" in prediction for label in LABELS), prediction
    assert any(f"Maps explain **{label}**" in _shown(c.value) for c in at.caption for label in LABELS)
    assert not any(
        "tabby" in _shown(c.value) or "tiger cat" in _shown(c.value) for c in at.caption
    )  # not the demo


def test_bad_model_keeps_the_previous_one(monkeypatch, models_dir):
    at = models_app(monkeypatch, models_dir)
    at = select_model(at, models_dir / "welds.yaml")
    at = _apply(at, ["gradient"], samples=2)
    assert any(m.value.startswith("**Prediction:** ") for m in at.markdown)

    at = select_model(at, models_dir / "broken.pt")
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.sidebar.error]
    assert len(errors) == 1 and "broken.pt" in errors[0] and "not a PyTorch model file" in errors[0], errors
    assert len(at.error) == 1  # nothing on the page itself
    assert "Still using **Weld inspector (welds.pt)**" in _sidebar_text(at)
    prediction = " ".join(_shown(m.value) for m in at.markdown if m.value.startswith("**Prediction:**"))
    assert any(label in prediction for label in LABELS), prediction
    assert "Gradient" in _captions(at)


def test_upload_when_enabled(monkeypatch, tmp_path, weights):
    monkeypatch.setenv("SALIENCY_ALLOW_MODEL_UPLOAD", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # uploads are stored under the temp dir
    empty = tmp_path / "models"
    empty.mkdir()
    at = models_app(monkeypatch, empty)
    uploader = next(u for u in at.get("file_uploader") if u.key == "model_upload")

    marker = tmp_path / "MARKER"
    torch.save({"w": Payload(str(marker))}, tmp_path / "evil.pt")
    uploader.set_value(("evil.pt", (tmp_path / "evil.pt").read_bytes(), "application/octet-stream"))
    at = at.run()
    assert not at.exception, at.exception
    errors = [_shown(e.value) for e in at.sidebar.error]
    assert len(errors) == 1 and "this file is a pickle that needs code to load" in errors[0], errors
    assert not marker.exists()
    assert "Still using **EfficientNet-Lite0, ImageNet (demo)**" in _sidebar_text(at)

    # TorchScript holds code: refused unless the operator opts in to code formats
    upload = [
        ("welds.pt", weights, "application/octet-stream"),
        ("welds.yaml", CARD.encode(), "application/x-yaml"),
    ]
    uploader = next(u for u in at.get("file_uploader") if u.key == "model_upload")
    uploader.set_value(upload)
    at = at.run()
    assert not at.exception, at.exception
    errors = [
        _shown(e.value) for e in at.sidebar.error if e.value.startswith("Upload:")
    ]  # evil.pt is still chosen
    assert (
        len(errors) == 1
        and "welds.pt: this is TorchScript (torch.jit.save), a format that holds code" in errors[0]
    )
    assert "SALIENCY_ALLOW_CODE_MODELS=1" in errors[0]
    assert not (tmp_path / "saliency_lens_uploads").exists() or not list(
        (tmp_path / "saliency_lens_uploads").glob("*/welds.pt")
    )  # removed, never loaded

    monkeypatch.setenv("SALIENCY_ALLOW_CODE_MODELS", "1")
    uploader = next(u for u in at.get("file_uploader") if u.key == "model_upload")
    uploader.set_value(upload[::-1])  # another value, so the uploader reports a change
    at = at.run()
    assert not at.exception and not at.sidebar.error, [_shown(e.value) for e in at.sidebar.error]
    chosen = at.sidebar.selectbox(key="model_choice").value
    assert chosen.endswith("welds.yaml") and chosen.startswith(str(tmp_path / "saliency_lens_uploads"))
    assert "2 classes · input 64 px" in _sidebar_text(at)
    at = _apply(at, ["gradient"], samples=2)
    assert not at.exception and not at.error, [_shown(e.value) for e in at.error]
    prediction = " ".join(_shown(m.value) for m in at.markdown if m.value.startswith("**Prediction:**"))
    assert any(label in prediction for label in LABELS), prediction
