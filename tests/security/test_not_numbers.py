"""Numbers that are not numbers: floating-point images holding NaN or infinity, and models whose
scores are not finite (TorchScript, state dict, safetensors, ONNX; at load time and only on some
images). Each is refused in words; a batch goes on past the image; no JSON written holds NaN."""

from __future__ import annotations

import io
import json
import warnings

import _hostile_onnx as hostile_onnx
import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from torch import nn

import saliency_core as sc
from saliency_core.engine.safe_text import json_text
from saliency_core.pipeline import dumps, explain_images

NOT_NUMBERS = "not numbers (NaN) or are infinite"


def _strict(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as strict parsers do."""

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _float_tiff(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(values.astype(np.float32), mode="F").save(buf, format="TIFF")
    return buf.getvalue()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_a_non_finite_pixel_is_refused_in_words(bad):
    values = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    values[3, 5] = bad
    with pytest.raises(ValueError, match="1 of its 1,024 pixel values are not numbers"):
        sc.load_image(_float_tiff(values), name="scan.tif")


def test_float_tiff_with_a_huge_finite_range_is_scaled_not_wrapped():
    """-3e38 .. 3e38: the range overflows float32 arithmetic; the picture still runs black to white."""
    values = np.zeros((16, 16))
    values[:, :8], values[:, 8:] = -3e38, 3e38
    rgb = np.asarray(sc.load_image(_float_tiff(values)))
    assert rgb[:, :8].max() == 0 and rgb[:, 8:].min() == 255


def test_float_mask_with_nan_is_refused_in_words():
    from saliency_core.evaluation.annotations.readers import read_annotation_file

    values = np.ones((16, 16))
    values[0, 0] = np.nan
    annotations, skipped = read_annotation_file("cat_mask.tif", _float_tiff(values))
    assert not annotations and "not numbers (NaN)" in skipped[0].reason


class NanScores(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)) * float("nan")


def _nan_resnet():
    from torchvision.models import resnet18

    net = resnet18(num_classes=3)
    with torch.no_grad():
        net.fc.bias.fill_(float("inf"))
    return net


CARD = "name: nan\nfile: {file}\narchitecture: resnet18\nlabels: [a, b, c]\ninput_size: 64\nresize: 72\n"


def test_torchscript_with_nan_scores_is_refused_at_load(tmp_path):
    path = tmp_path / "nan.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(NanScores()), str(path))
    with pytest.raises(ValueError, match=r"scores on a test image are not numbers \(NaN\)"):
        sc.load_model(path)


def test_state_dict_with_infinite_scores_is_refused_at_load(tmp_path):
    torch.save(_nan_resnet().state_dict(), tmp_path / "nan.pth")
    (tmp_path / "nan.yaml").write_text(CARD.format(file="nan.pth"))
    with pytest.raises(ValueError, match="not numbers"):
        sc.load_model(tmp_path / "nan.yaml")


def test_safetensors_with_infinite_scores_is_refused_at_load(tmp_path):
    from safetensors.torch import save_file

    save_file(_nan_resnet().state_dict(), str(tmp_path / "nan.safetensors"))
    (tmp_path / "nan.yaml").write_text(CARD.format(file="nan.safetensors"))
    with pytest.raises(ValueError, match="not numbers"):
        sc.load_model(tmp_path / "nan.yaml")


def test_onnx_with_nan_scores_is_refused_at_load(tmp_path):
    onnx.save_model(hostile_onnx.times(float("nan")), str(tmp_path / "nan.onnx"))
    with pytest.raises(ValueError, match="scores on test images are not numbers"):
        sc.load_model(tmp_path / "nan.onnx")


class NanOnWhite(nn.Module):
    """Finite scores, except on an image that is almost all white: there every score is NaN."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, x):
        scores = x.mean(dim=(2, 3)) * self.w
        white = (x.mean(dim=(1, 2, 3)) > 0.95).view(-1, 1)
        return torch.where(white, torch.full_like(scores, float("nan")), scores)


def _nan_on_white_model():
    return sc.Classifier(
        name="nan on white", network=NanOnWhite().eval(), labels=["a", "b", "c"], fingerprint="0" * 64
    )


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_nan_scores_at_explain_time_fail_that_image_and_the_batch_goes_on():
    model = _nan_on_white_model()
    sources = [("white.png", _png((255, 255, 255))), ("grey.png", _png((90, 120, 60)))]
    results = list(explain_images(model, sources, ["gradient"]))
    white, grey = results
    assert white.failed and NOT_NUMBERS in white.failed and white.failed.startswith("white.png")
    assert grey.ok and "gradient" in grey.maps and np.isfinite(grey.maps["gradient"].saliency).all()
    for result in results:
        _strict(dumps(result.record()))


def test_nan_map_is_that_methods_error_in_words():
    """Finite scores but a NaN gradient: the map is refused, the prediction stays."""

    class NanGradient(nn.Module):
        def forward(self, x):
            return torch.sqrt(x.mean(dim=(2, 3)) - x.mean(dim=(2, 3)).detach())  # d sqrt(0) = inf

    model = sc.Classifier(
        name="g", network=NanGradient().eval(), labels=["a", "b", "c"], fingerprint="0" * 64
    )
    (result,) = explain_images(model, [("grey.png", _png((90, 120, 60)))], ["gradient"])
    assert result.ok and "not numbers (NaN) or are infinite" in result.errors["gradient"]


def test_json_text_never_writes_nan_or_infinity():
    record = {
        "p": float("nan"),
        "q": np.float32("inf"),
        "a": np.array([1.0, -np.inf]),
        "t": torch.tensor(np.nan),
    }
    assert _strict(json_text(record)) == {"p": None, "q": None, "a": [1.0, None], "t": None}
    assert _strict(dumps(record))["a"] == [1.0, None]


def test_ray_results_log_writes_strict_json_lines(tmp_path):
    from saliency_core.distributed import ResultsLog

    log = ResultsLog(tmp_path / "run.jsonl", {"model": "m", "noise": float("nan")}, resume=False)
    log.append([{"index": 0, "iou": float("nan"), "auc": np.float32("-inf"), "ok": 0.5}])
    lines = [_strict(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert lines[0]["run"]["noise"] is None and lines[1] == {"index": 0, "iou": None, "auc": None, "ok": 0.5}
