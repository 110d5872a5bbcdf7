"""The device setting and device-independent seeds (saliency_core/engine/devices.py).

A seed is one map on any device: every random draw is made by a CPU generator and then moved.
Without a GPU here, "another device" is PyTorch's ``meta`` device: the test catches the tensor
on its way there and checks it is the CPU draw, bit for bit. The real CPU-vs-GPU comparison is
in tests/engine/test_gpu.py (skipped without CUDA).
"""

from __future__ import annotations

import base64
import copy
import json
import zlib

import numpy as np
import pytest
import torch

import saliency_core as sc
from saliency_core import cli
from saliency_core import report as rp
from saliency_core.engine.devices import resolve_device
from saliency_core.engine.methods.integrated import make_baseline
from saliency_core.engine.methods.smoothgrad import sample_noise


@pytest.fixture
def caught(monkeypatch):
    """Tensors moved to the meta device by ``.to``, as they were on the CPU just before."""
    moved = []
    to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        device = kwargs.get("device", args[0] if args else None)
        if str(device) == "meta":
            moved.append(self.detach().clone())
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    return moved


def test_smoothgrad_noise_is_the_cpu_draw_on_any_device(caught):
    cpu = torch.zeros(1, 3, 16, 16)
    meta = torch.empty(1, 3, 16, 16, device="meta")
    for index in range(3):
        expected = sample_noise(cpu, seed=7, index=index)
        out = sample_noise(meta, seed=7, index=index)
        assert out.device.type == "meta" and out.shape == expected.shape
        assert torch.equal(caught[-1], expected)  # bit-identical
    assert not torch.equal(sample_noise(cpu, 7, 0), sample_noise(cpu, 8, 0))  # the seed matters


def test_uniform_baseline_is_the_cpu_draw_on_any_device(caught):
    expected = make_baseline(torch.zeros(2, 3, 8, 8), "uniform", seed=3)
    out = make_baseline(torch.empty(2, 3, 8, 8, device="meta"), "uniform", seed=3)
    assert out.device.type == "meta" and out.shape == expected.shape
    assert torch.equal(caught[-1], expected[0])


def test_sanity_check_weights_depend_on_the_seed_only(demo):
    """Re-initialised weights come from the seeded CPU generator whatever the device; the global
    CUDA generator is never touched (nothing drawn there)."""
    from saliency_core.evaluation import sanity as randomisation

    blocks = randomisation.layer_blocks(demo)
    net_a, net_b = copy.deepcopy(demo.network), copy.deepcopy(demo.network)
    randomisation.reinitialise(net_a, blocks[0], seed=5)
    torch.manual_seed(123)  # the global state must not matter
    randomisation.reinitialise(net_b, blocks[0], seed=5)
    same = [torch.equal(a, b) for a, b in zip(net_a.parameters(), net_b.parameters())]
    assert all(same)
    changed = [not torch.equal(a, b) for a, b in zip(net_a.parameters(), demo.network.parameters())]
    assert any(changed)


@pytest.mark.parametrize("value", ["tpu", "gpu", "cuda:x", "", "CPU "])
def test_device_values(value, monkeypatch):
    if value.strip().lower() in ("cpu",):
        assert resolve_device(value) == torch.device("cpu")
        return
    if value == "":
        monkeypatch.delenv("SALIENCY_DEVICE", raising=False)
        assert resolve_device(None).type in ("cpu", "cuda")  # auto
        return
    with pytest.raises(ValueError, match="Unknown device .*use one of auto, cpu, cuda"):
        resolve_device(value)


def test_unknown_device_from_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("SALIENCY_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"Unknown device 'tpu' \(from SALIENCY_DEVICE\)"):
        sc.load_model("demo")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="PyTorch sees none on this machine"):
        sc.load_model("demo", device="cuda")


def test_cpu_forces_the_cpu_and_is_recorded(monkeypatch, chelsea_path):
    monkeypatch.setenv("SALIENCY_DEVICE", "cpu")
    model = sc.load_model("demo")
    assert model.device == torch.device("cpu") and model.describe()["device"] == "cpu"
    exp = sc.explain(model, chelsea_path, method="gradient")
    assert exp.record()["device"] == "cpu"


def test_cli_device_flag_and_json(tmp_path, chelsea_path, capsys):
    assert (
        cli.main(["explain", chelsea_path, "--method", "gradient", "--device", "cpu", "--out", str(tmp_path)])
        == 0
    )
    record = json.loads((tmp_path / "chelsea.json").read_text())
    assert record["model"]["device"] == "cpu"
    assert [m["device"] for m in record["maps"]] == ["cpu"]
    with pytest.raises(SystemExit):
        cli.main(["explain", chelsea_path, "--method", "gradient", "--device", "tpu", "--out", str(tmp_path)])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err


def _restore(summary: dict, saliency: np.ndarray) -> None:
    summary["data"] = base64.b64encode(zlib.compress(saliency.astype("<f4").tobytes())).decode()
    summary["sha256"] = rp.map_summary(saliency)["sha256"]


def _stored(summary: dict) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(summary["data"])), "<f4").reshape(summary["shape"])


@pytest.fixture(scope="module")
def gpu_like_report(demo, chelsea_path):
    """A report as a GPU would record it: device cuda, each map moved a little (as float
    arithmetic on another device moves it)."""
    report = rp.build_report(demo, [chelsea_path], ["gradient", "smoothgrad"], params={"samples": 4})
    return report.replay_record(embed_maps=True)


def _moved(record: dict, method: str, share: float, device: str = "cuda:0 (NVIDIA H200)") -> dict:
    record = json.loads(json.dumps(record))
    record["environment"]["device"] = device
    for m in record["images"][0]["maps"]:
        s = _stored(m["saliency"])
        noise = np.random.default_rng(0).standard_normal(s.shape).astype(np.float32)
        if m["method"] == method:
            _restore(m["saliency"], s + share * np.linalg.norm(s) / np.linalg.norm(noise) * noise)
    return record


def test_gpu_made_report_replays_on_the_cpu_within_the_stated_tolerance(demo, gpu_like_report):
    small = rp.replay(_moved(gpu_like_report, "gradient", 1e-3), demo)
    assert [r.status for r in small] == ["match", "match"]
    assert "made on cuda, replayed on cpu" in small[0].detail and "allowed 0.02" in small[0].detail
    large = rp.replay(_moved(gpu_like_report, "gradient", 0.2), demo)
    assert [r.status for r in large] == ["mismatch", "match"]
    # averaging methods: a tenth of what changing the seed moves the map
    sg_small = rp.replay(_moved(gpu_like_report, "smoothgrad", 0.01), demo)[1]
    assert sg_small.status == "match" and "what a change of seed moves it" in sg_small.detail
    sg_large = rp.replay(_moved(gpu_like_report, "smoothgrad", 0.9), demo)[1]
    assert sg_large.status == "mismatch"


def test_same_device_keeps_the_exact_rule(demo, gpu_like_report):
    """Made on the CPU, replayed on the CPU: a moved map is a mismatch, whatever its size."""
    results = rp.replay(_moved(gpu_like_report, "gradient", 1e-3, device="cpu"), demo)
    assert [r.status for r in results] == ["mismatch", "match"]
