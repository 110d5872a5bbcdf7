"""Bring your own model: TorchScript, state dict + card and torch.export programs load, agree with
each other and with the original network, and every bad input gives a plain message."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import relative_error
from torch import nn

import saliency_core as sc
from saliency_core.cli import main
from saliency_core.engine import _fast
from saliency_core.engine.cards import card_rows, find_models, store_upload
from saliency_core.engine.classifier import Normalize
from saliency_core.engine.models import source_signature

RESNET_CLASSES = ["anchor", "bolt", "crack", "dent", "edge"]


class TinyNet(nn.Module):
    """A small conv net: 2 conv layers with ReLU, global pooling, ``classes`` logits."""

    def __init__(self, classes: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv2(self.relu(self.conv1(x))))).flatten(1))


class FeatureMapNet(nn.Module):
    """Returns a feature map (B, 2, h, w), not one score per class."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, stride=4, padding=1)

    def forward(self, x):
        return self.conv(x)


class TupleNet(TinyNet):
    def forward(self, x):
        logits = self.fc(self.pool(self.relu(self.conv2(self.relu(self.conv1(x))))).flatten(1))
        return logits, logits.softmax(1)


class OneLogitNet(TinyNet):
    def __init__(self):
        super().__init__(classes=1)


class Payload:
    """Unpickling this would create ``path``: the test asserts it never exists."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _script(net: nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(net.eval()), str(path))
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- ResNet-18 saved three ways ------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resnet")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=len(RESNET_CLASSES)).eval()
    (folder / "labels.txt").write_text("\n".join(RESNET_CLASSES) + "\n")
    torch.jit.save(torch.jit.script(net), str(folder / "resnet_ts.pt"))
    torch.save(net.state_dict(), folder / "resnet_sd.pth")
    example = torch.rand(2, 3, 224, 224)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, folder / "resnet_ep.pt2")
    _write(
        folder / "resnet_sd.yaml",
        "name: ResNet-18 state dict\nfile: resnet_sd.pth\narchitecture: resnet18\nlabels: labels.txt\n",
    )
    json.dump(
        {"name": "ResNet-18 TorchScript", "file": "resnet_ts.pt", "labels": "labels.txt"},
        open(folder / "resnet_ts.json", "w"),
    )
    json.dump(
        {"name": "ResNet-18 exported", "file": "resnet_ep.pt2", "labels": "labels.txt"},
        open(folder / "resnet_ep.json", "w"),
    )
    return folder, net


@pytest.fixture(scope="module")
def resnets(resnet_dir):
    folder, _ = resnet_dir
    return {
        kind: sc.load_model(folder / f"resnet_{kind}.{ext}")
        for kind, ext in (("sd", "yaml"), ("ts", "json"), ("ep", "json"))
    }


def _reference_gradient(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """d logit / d pixel through the original eager network, normalisation written out."""
    x = x.clone().requires_grad_(True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    score = net((x - mean) / std)[0, target]
    (grad,) = torch.autograd.grad(score, x)
    return grad


def test_resnet18_three_formats_agree(resnet_dir, resnets, chelsea_path, record, monkeypatch):
    monkeypatch.setitem(_fast.OPTIONS, "fold", False)  # TorchScript is never folded: compare like with like
    _, net = resnet_dir
    base = resnets["sd"]
    x = base.preprocess(chelsea_path)
    p_base = base.probabilities(x)
    top = base.predict(x, k=5)
    target = top[0][0]
    reference = _reference_gradient(net, x, target)
    g_base = torch.from_numpy(sc.explain(base, chelsea_path, method="gradient", target=target).attribution)
    assert record("state dict gradient vs eager ResNet-18", relative_error(g_base, reference[0])) < 1e-5
    for kind in ("ts", "ep"):
        model = resnets[kind]
        assert torch.equal(model.preprocess(chelsea_path), x)
        assert model.labels == RESNET_CLASSES
        got = model.predict(x, k=5)
        assert [(i, label) for i, label, _ in got] == [(i, label) for i, label, _ in top]
        assert [p for _, _, p in got] == pytest.approx([p for _, _, p in top], abs=1e-5)
        p_err = float((model.probabilities(x) - p_base).abs().max())
        assert record(f"{kind} probabilities vs state dict (max abs)", p_err) < 1e-5
        grad = torch.from_numpy(sc.explain(model, chelsea_path, method="gradient", target=target).attribution)
        assert record(f"{kind} gradient map vs state dict", relative_error(grad, g_base)) < 1e-5


def test_gradcam_state_dict_and_exported_agree(resnets, chelsea_path, record):
    a = sc.explain(resnets["sd"], chelsea_path, method="gradcam")
    b = sc.explain(resnets["ep"], chelsea_path, method="gradcam")
    assert resnets["sd"].gradcam_layer == resnets["ep"].gradcam_layer == "1.layer4"
    assert record("exported Grad-CAM vs state dict", relative_error(b.saliency, a.saliency)) < 1e-5


def test_card_fingerprint_and_format_recorded(resnet_dir, resnets):
    folder, _ = resnet_dir
    for kind, fmt, file in (
        ("sd", "state_dict", "resnet_sd.pth"),
        ("ts", "torchscript", "resnet_ts.pt"),
        ("ep", "exported_program", "resnet_ep.pt2"),
    ):
        model = resnets[kind]
        assert model.fingerprint == hashlib.sha256((folder / file).read_bytes()).hexdigest()
        card = model.describe()["card"]
        assert card["format"] == fmt and card["file"] == file and card["classes"] == 5
        assert card["labels"] == "labels.txt" and card["batch"] == "any size"
        assert {"input_size", "resize", "mean", "std", "interpolation"} <= set(card["defaults"])
        assert (card["input_size"], card["resize"], card["interpolation"]) == (224, 256, "bilinear")
        assert card["mean"] == pytest.approx([0.485, 0.456, 0.406])
        json.dumps(model.describe())  # JSON-ready, as the CLI and pages record it
    assert resnets["sd"].card["architecture"] == "resnet18"
    digests = {m.card["digest"] for m in resnets.values()}
    assert len(digests) == 3
    rows = {k: (v, d) for k, v, d in card_rows(resnets["sd"].card)}
    assert rows["architecture"] == ("resnet18", False) and rows["input_size"] == ("224", True)
    assert rows["labels"][0] == "labels.txt (5 classes)"


def test_methods_disabled_with_reason(resnets, demo):
    ts, ep, sd = (sc.available_methods(resnets[k]) for k in ("ts", "ep", "sd"))
    convolutional = [n for n, m in sc.METHODS.items() if "attention" not in m.needs]  # rollout: transformers
    assert all(sd[n] is None for n in convolutional)
    assert all(sc.available_methods(demo)[n] is None for n in convolutional)
    assert "multi-head attention" in sd["attention_rollout"]
    for name in ("gradcam", "guided_backprop", "guided_gradcam"):
        assert ts[name] and "TorchScript" in ts[name], name
    assert "feature map" in ts["gradcam"] and "ReLU" in ts["guided_backprop"]
    assert ep["gradcam"] is None and "torch.export" in ep["guided_backprop"]
    assert ts["gradient"] is ts["smoothgrad"] is ts["integrated_gradients"] is None


def test_state_dict_for_another_architecture(resnet_dir, tmp_path):
    folder, _ = resnet_dir
    (tmp_path / "w.pth").write_bytes((folder / "resnet_sd.pth").read_bytes())
    card = _write(tmp_path / "w.yaml", "architecture: resnet34\n")
    with pytest.raises(ValueError) as err:
        sc.load_model(card)
    text = str(err.value)
    assert "does not fit torchvision's resnet34" in text and "missing key(s)" in text
    assert "layer1.2.conv1.weight" in text and "Is 'architecture' right?" in text
    _write(card, "architecture: alexnet\n")
    with pytest.raises(ValueError, match=r"unexpected key\(s\): conv1.weight") as err:
        sc.load_model(card)
    assert "missing key(s): features.0.weight" in str(err.value)
    _write(card, "architecture: resnet19\n")
    with pytest.raises(ValueError, match="not a torchvision classification model. Did you mean resnet18"):
        sc.load_model(card)


def test_bare_state_dict_needs_a_card(resnet_dir, tmp_path):
    folder, _ = resnet_dir
    bare = tmp_path / "weights.pth"
    bare.write_bytes((folder / "resnet_sd.pth").read_bytes())
    with pytest.raises(
        ValueError,
        match=r"is a state dict \(weights only\): a model card must name its "
        r"torchvision 'architecture'.*weights.yaml",
    ):
        sc.load_model(bare)


# ---- a small model for everything else -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    _script(TinyNet(), folder / "tiny.pt")
    return folder


def test_bare_torchscript_gets_stated_defaults(tiny_dir):
    model = sc.load_model(tiny_dir / "tiny.pt")
    assert model.labels == ["class 0", "class 1"] and model.name == "tiny.pt"
    assert (model.input_size, model.resize, model.interpolation) == (224, 256, "bilinear")
    assert model.card["card_file"] is None and model.card["labels"].startswith("default")
    assert set(model.card["defaults"]) >= {"name", "labels", "input_size", "resize", "mean", "std"}
    assert model.network[0].__class__ is Normalize  # pixels in [0, 1] -> logits


def test_sidecar_card_is_used(tmp_path):
    _script(TinyNet(), tmp_path / "welds.pt")
    _write(
        tmp_path / "welds.yaml",
        "name: Welds\nlabels: [ok, defect]\ninput_size: 64\n"
        "interpolation: bicubic\nmean: [0.5, 0.5, 0.5]\nstd: [0.25, 0.25, 0.25]\n",
    )
    model = sc.load_model(tmp_path / "welds.pt")
    assert model.name == "Welds" and model.labels == ["ok", "defect"]
    assert (model.input_size, model.resize, model.interpolation) == (64, 73, "bicubic")
    assert model.mean == (0.5, 0.5, 0.5) and model.card["card_file"] == "welds.yaml"
    x = torch.rand(1, 3, 64, 64)
    assert model.network[0](x).sub((x - 0.5) / 0.25).abs().max() < 1e-6


def test_fixed_batch_export_runs_image_by_image(tmp_path, chelsea_path, record):
    torch.manual_seed(0)
    net = TinyNet().eval()
    program = torch.export.export(net, (torch.rand(1, 3, 64, 64),))  # batch fixed at 1
    torch.export.save(program, tmp_path / "fixed.pt2")
    _write(tmp_path / "fixed.json", json.dumps({"file": "fixed.pt2", "input_size": 64, "labels": ["a", "b"]}))
    model = sc.load_model(tmp_path / "fixed.json")
    assert model.card["batch"] == "one image per call" and model.gradcam_layer == "1.net.relu"
    exp = sc.explain(model, chelsea_path, method="smoothgrad", samples=12, seed=1, target=0)
    eager = nn.Sequential(Normalize(model.mean, model.std), net)
    x = model.preprocess(chelsea_path)
    reference = sc.METHODS["smoothgrad"].attribute(eager, x, torch.tensor([0]), samples=12, seed=1)
    error = relative_error(exp.attribution, reference[0])
    assert record("fixed-batch export SmoothGrad vs eager", error) < 1e-5
    assert sc.explain(model, chelsea_path, method="gradcam").saliency.max() >= 0


# ---- bad inputs ----------------------------------------------------------------------------------


def test_pickle_with_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "MARKER"
    zipped = tmp_path / "payload.pth"
    torch.save({"weight": Payload(str(marker))}, zipped)
    raw = tmp_path / "payload_raw.pt"
    raw.write_bytes(pickle.dumps({"weight": Payload(str(marker))}, protocol=4))
    _write(tmp_path / "payload.yaml", "architecture: resnet18\n")  # card next to the zipped one
    for source in (zipped, tmp_path / "payload.yaml", raw):
        with pytest.raises(ValueError) as err:
            sc.load_model(source)
        text = str(err.value)
        assert "this file is a pickle that needs code to load" in text, text
        assert "save a state_dict or TorchScript instead" in text and "open" in text
        assert not marker.exists()
    whole = tmp_path / "whole.pt"
    torch.save(TinyNet(), whole)
    with pytest.raises(ValueError, match=r"needs code to load \(it refers to .*TinyNet.*whole model saved"):
        sc.load_model(whole)


def test_damaged_files(tmp_path, tiny_dir):
    data = (tiny_dir / "tiny.pt").read_bytes()
    cases = {
        "empty.pt": (b"", "is empty"),
        "noise.pt": (bytes(range(256)) * 8, "not a PyTorch model file, or it is damaged"),
        "cut.pt": (data[: len(data) // 2], "damaged or incomplete"),
        "notes.pt2": (b"model weights go here\n", "not a PyTorch model file"),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/readme.txt", "hello")
    cases["other.pt"] = (buf.getvalue(), "zip archive but not a PyTorch model")
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message) as err:
            sc.load_model(tmp_path / name)
        assert name in str(err.value)
    with pytest.raises(ValueError, match="No such model file or card"):
        sc.load_model(tmp_path / "missing.pt")


@pytest.mark.parametrize(
    "net, message",
    [
        (
            FeatureMapNet(),
            r"one score per class, a float tensor of shape \(batch, classes\); for 1 image\(s\) "
            r"it returned a tensor of shape \(1, 2, 56, 56\)",
        ),
        (TupleNet(), "it returned a tuple of 2 items"),
        (OneLogitNet(), "gives 1 score per image"),
    ],
    ids=["feature_map", "tuple", "one_logit"],
)
def test_output_not_one_score_per_class(tmp_path, net, message):
    with pytest.raises(ValueError, match=message):
        sc.load_model(_script(net, tmp_path / "net.pt"))


def test_class_names_must_match_outputs(tiny_dir, tmp_path):
    _script(TinyNet(), tmp_path / "m.pt")
    (tmp_path / "names.txt").write_text("ok\ncrack\nporosity\n")
    card = _write(tmp_path / "m.yaml", "labels: names.txt\n")
    with pytest.raises(
        ValueError, match=r"3 class names \(names.txt\) but the model gives 2 scores per image"
    ):
        sc.load_model(card)


@pytest.fixture(scope="module")
def tiny_export_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_ep")
    torch.manual_seed(0)
    program = torch.export.export(
        TinyNet().eval(), (torch.rand(2, 3, 64, 64),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, folder / "m.pt2")
    return folder


CARD_ERRORS = [
    ("inputsize: 64\n", "unknown field 'inputsize' (did you mean 'input_size'?)"),
    ("mean: [0.5, 0.5]\n", "'mean' must be three numbers"),
    ("mean: [124, 116, 104]\n", "divided by 255"),
    ("std: [0.2, 0, 0.2]\n", "'std' must be positive"),
    ("input_size: [224, 224]\n", "one number: the input is square"),
    ("input_size: 64\nresize: 32\n", "'resize' must be a whole number of pixels between 64 and 4096"),
    ("crop: random\n", "'crop' can only be 'centre'"),
    ("interpolation: lanczos\n", "'interpolation' must be one of bilinear, bicubic, nearest"),
    ("labels: [yes, no]\n", "class name 0 is True, not text"),
    ("labels: missing.txt\n", "the labels file missing.txt does not exist"),
    ("file: ../m.pt2\n", "'file' must be a file name inside the card's folder"),
    ("file: other.pt\n", "the model file 'other.pt' does not exist"),
    ("architecture: resnet18\n", "'architecture' is only for state dicts"),
    (
        "input_size: 64\ngradcam_layer: layer4\n",
        "'gradcam_layer' 'layer4' is not a layer of this model; "
        "layers with a spatial feature map: relu, conv2, conv1",
    ),
    ("input_size: 64\ngradcam_layer: fc\n", "'gradcam_layer' 'fc' does not give a spatial feature map"),
    ("input_size: 96\n", "the model fails on a test image of 3 x 96 x 96 pixels (input_size 96)"),
    ("name: [1, 2\n", "is not valid YAML (line 2"),
    ("- a\n- b\n", "a model card must be a mapping of fields"),
]


@pytest.mark.parametrize("text, message", CARD_ERRORS, ids=[m[:28] for _, m in CARD_ERRORS])
def test_card_with_a_wrong_field(tiny_export_dir, text, message):
    card = _write(tiny_export_dir / "m.yaml", text)
    try:
        with pytest.raises(ValueError) as err:
            sc.load_model(card)
        assert message in str(err.value)
        assert "m.yaml" in str(err.value)  # says which card
    finally:
        card.unlink()


def test_gradcam_layer_on_torchscript_is_refused(tmp_path):
    _script(TinyNet(), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="'gradcam_layer' cannot be used with a TorchScript model"):
        sc.load_model(_write(tmp_path / "m.json", json.dumps({"gradcam_layer": "conv2"})))


def test_json_card_errors(tmp_path):
    _script(TinyNet(), tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"m.json is not valid JSON \(line 1, column 14"):
        sc.load_model(_write(tmp_path / "m.json", '{"name": "x",}'))
    (tmp_path / "idx.json").write_text(json.dumps({"0": ["n01", "ok"], "1": ["n02", "crack"]}))
    model = sc.load_model(_write(tmp_path / "m.json", json.dumps({"labels": "idx.json", "input_size": 32})))
    assert model.labels == ["ok", "crack"] and model.card["labels"] == "idx.json"


def _rewrite_pt2(source: Path, target: Path, change) -> Path:
    """Copy a .pt2 archive, passing each member's (name, bytes) through ``change``."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, change(info.filename, src.read(info.filename)))
    return target


def test_exported_program_with_code_is_refused(tiny_export_dir, tmp_path):
    marker = tmp_path / "MARKER"
    code = f"__import__('os').system('touch {marker}')"

    def guard(name, data):
        if name.endswith("models/model.json"):
            program = json.loads(data)
            program["guards_code"] = [code]
            return json.dumps(program).encode()
        return data

    def sample_inputs(name, data):
        if name.endswith("sample_inputs/model.pt"):
            buf = io.BytesIO()
            torch.save({"x": Payload(str(marker))}, buf)
            return buf.getvalue()
        return data

    def opaque(name, data):
        if name.endswith("model_constants_config.json"):
            return json.dumps({"config": {"obj": {"path_name": "opaque_obj_0", "use_pickle": True}}}).encode()
        return data

    source = tiny_export_dir / "m.pt2"
    for change, message in (
        (guard, "not plain arithmetic"),
        (sample_inputs, "pickle that needs code"),
        (opaque, "pickled Python objects"),
    ):
        bad = _rewrite_pt2(source, tmp_path / f"{change.__name__}.pt2", change)
        with pytest.raises(ValueError, match=message):
            sc.load_model(bad)
        assert not marker.exists()


# ---- folder, uploads, cache key, command line ------------------------------------------------------


def test_find_models_lists_cards_and_loose_files(tmp_path):
    _script(TinyNet(), tmp_path / "welds.pt")
    _write(tmp_path / "welds.yaml", "name: Welds\nlabels: labels.json\n")
    (tmp_path / "labels.json").write_text('["ok", "defect"]')
    _script(TinyNet(), tmp_path / "loose.pt")
    _write(tmp_path / "broken.yaml", "name: [\n")
    (tmp_path / "notes.txt").write_text("not a model")
    entries = dict(find_models(tmp_path))
    assert entries == {
        str(tmp_path / "welds.yaml"): "Welds (welds.yaml)",
        str(tmp_path / "loose.pt"): "loose.pt",
        str(tmp_path / "broken.yaml"): "broken.yaml (unreadable card)",
    }
    assert find_models(tmp_path / "nowhere") == []


def test_store_upload(tmp_path, tiny_dir):
    weights = (tiny_dir / "tiny.pt").read_bytes()
    card = b"name: Uploaded\nfile: tiny.pt\nlabels: [a, b]\n"
    first = store_upload([("tiny.pt", weights), ("tiny.yaml", card)], tmp_path)
    again = store_upload([("tiny.pt", weights), ("tiny.yaml", card)], tmp_path)
    assert first == again and first.name == "tiny.yaml"
    assert sc.load_model(first).labels == ["a", "b"]
    assert store_upload([("tiny.pt", weights)], tmp_path).name == "tiny.pt"
    with pytest.raises(ValueError, match="with plain file names"):
        store_upload([("../../etc/evil.sh", b"x")], tmp_path)
    with pytest.raises(ValueError, match="exactly one model file"):
        store_upload([("a.pt", weights), ("b.pt", weights)], tmp_path)


def test_safetensors_weights_load_like_the_state_dict(resnet_dir, resnets, chelsea_path, tmp_path):
    """safetensors sorts its keys: the class count is read from the architecture's last layer."""
    from safetensors.torch import save_file

    folder, net = resnet_dir
    weights = tmp_path / "resnet.safetensors"
    save_file(net.state_dict(), str(weights))
    (tmp_path / "labels.txt").write_text((folder / "labels.txt").read_text())
    card = _write(tmp_path / "resnet.yaml", "architecture: resnet18\nlabels: labels.txt\n")
    model = sc.load_model(card)
    assert (
        model.card["format"] == "safetensors"
        and model.card["format_label"] == "safetensors weights + torchvision architecture"
    )
    assert model.fingerprint == hashlib.sha256(weights.read_bytes()).hexdigest()
    x = model.preprocess(chelsea_path)
    assert torch.equal(model.probabilities(x), resnets["sd"].probabilities(x))
    card.unlink()
    with pytest.raises(
        ValueError,
        match=r"resnet.safetensors is a safetensors file \(weights only\): a model "
        r"card must name its torchvision 'architecture'",
    ):
        sc.load_model(weights)


def test_uploads_take_weights_only_unless_code_is_allowed(resnet_dir, tiny_dir, tmp_path, monkeypatch):
    from saliency_core.engine.models import check_upload

    folder, _ = resnet_dir
    monkeypatch.delenv("SALIENCY_ALLOW_CODE_MODELS", raising=False)
    assert check_upload(folder / "resnet_sd.yaml") == "checkpoint"
    for code in (tiny_dir / "tiny.pt", folder / "resnet_ts.json", folder / "resnet_ep.pt2"):
        with pytest.raises(ValueError, match="a format that holds code, and uploads may only hold weights"):
            check_upload(code)
    monkeypatch.setenv("SALIENCY_ALLOW_CODE_MODELS", "1")
    assert check_upload(tiny_dir / "tiny.pt") == "torchscript"
    assert check_upload(folder / "resnet_ep.pt2") == "exported_program"


def test_source_signature_follows_the_files(tmp_path):
    _script(TinyNet(), tmp_path / "m.pt")
    card = _write(tmp_path / "m.yaml", "labels: [a, b]\n")
    before = source_signature(card)
    assert source_signature(card) == before and source_signature("demo") == "demo"
    _script(TinyNet(classes=2), tmp_path / "m.pt")  # replaced weights
    os.utime(tmp_path / "m.pt", ns=(1, 1))
    assert source_signature(card) != before


def test_cli_model_card(tmp_path, tiny_dir, chelsea_path, capsys):
    _script(TinyNet(), tmp_path / "m.pt")
    card = _write(tmp_path / "m.yaml", "name: Two classes\nlabels: [ok, defect]\ninput_size: 64\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                "explain",
                chelsea_path,
                "--method",
                "all",
                "--samples",
                "2",
                "--steps",
                "4",
                "--out",
                str(out),
                "--model",
                str(card),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "model Two classes loaded" in err and "TorchScript" in err
    assert "skipping gradcam: needs a convolutional feature map" in err
    record = json.loads((out / "chelsea.json").read_text())
    assert record["model"]["card"]["format"] == "torchscript"
    assert record["model"]["card"]["card_file"] == "m.yaml"
    assert record["model"]["fingerprint"] == hashlib.sha256((tmp_path / "m.pt").read_bytes()).hexdigest()
    assert record["prediction"][0]["label"] in ("ok", "defect") and len(record["prediction"]) == 2
    methods = [m["method"] for m in record["maps"]]
    assert "gradient" in methods and "gradcam" not in methods

    marker = tmp_path / "MARKER"
    torch.save({"w": Payload(str(marker))}, tmp_path / "evil.pt")
    assert (
        main(
            [
                "explain",
                chelsea_path,
                "--method",
                "gradient",
                "--out",
                str(out),
                "--model",
                str(tmp_path / "evil.pt"),
            ]
        )
        == 1
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: evil.pt: this file is a pickle that needs code")
    assert not marker.exists()


def test_pt2_expression_screen():
    from saliency_core.engine.code_models import _plain_expression

    plain = [
        "Symbol('s77', positive=True, integer=True)",
        "Add(FloorDiv(Add(Symbol('s0', positive=True, integer=True), Integer(-1)), Integer(4)), Integer(1))",
        "Mul(Integer(3), Symbol('s0', integer=True), Symbol('s53', integer=True))",
        "s0 + 2*s1 <= 64",
    ]
    for text in plain:
        assert _plain_expression(text, guard=False), text
    assert _plain_expression("L['x'].size()[0] == 2", guard=True)
    code = [
        "__import__('os').system('id')",
        "Symbol('x').__class__",
        "(lambda: 1)()",
        "open('f')",
        "Symbol('__import__')",
        "s0.__class__",
        "L['x'].size()[0] == 2",
    ]
    for text in code:
        assert not _plain_expression(text, guard=False), text
    assert not _plain_expression("L['x'].__class__", guard=True)
    assert not _plain_expression("print(L['x'].size())", guard=True)
