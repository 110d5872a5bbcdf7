"""Execution plans (saliency_core/engine/plans.py): a plan is chosen only where it is faster than
float32 and moves the map by less than a tenth of a change of seed; bfloat16 only where the CPU
has bfloat16 units; the plan is recorded, and a bfloat16 map replays on a machine without them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _records import validate_record
from torch import nn

import saliency_core as sc
from saliency_core import pipeline
from saliency_core import report as rp
from saliency_core.engine import plans
from saliency_core.engine.classifier import Classifier

NO_UNITS = {"amx_bf16": False, "avx512_bf16": False, "capability": "AVX2"}
AMX = {"amx_bf16": True, "avx512_bf16": True, "capability": "AVX512"}


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """No plan measured yet, a cache directory of this test's own."""
    monkeypatch.setenv("SALIENCY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SALIENCY_PLANS", raising=False)
    monkeypatch.setattr(plans, "_MEMORY", {})
    return tmp_path / "cache"


def fake_timings(monkeypatch, seconds: dict) -> list:
    """time_plans replaced: ``seconds`` per plan name; returns the plan lists it was asked to time."""
    asked = []

    def timer(network, shape, device, candidates):
        asked.append([p.name for p in candidates])
        return {p.name: seconds[p.name] for p in candidates}

    monkeypatch.setattr(plans, "time_plans", timer)
    return asked


def fake_movement(monkeypatch, moved: dict, seed_moved: float = 0.05) -> list:
    """check_map replaced: plan name -> movement of its map; returns the plans it checked."""
    checked = []

    def check(model, method, plan):
        checked.append(plan.name)
        return plans.judge(moved[plan.name], seed_moved, 4.0)

    monkeypatch.setattr(plans, "check_map", check)
    return checked


def test_detection_reads_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert plans.cpu_units(info)["amx_bf16"] and plans.cpu_units(info)["avx512_bf16"]
    info.write_text("processor : 0\nflags : fpu sse2 avx2\n")
    assert not plans.cpu_units(info)["amx_bf16"] and not plans.cpu_units(info)["avx512_bf16"]
    assert plans.cpu_units(tmp_path / "absent")["amx_bf16"] is False
    with open("/proc/cpuinfo") as f:  # this machine: what its own flags say
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    assert plans.cpu_units()["amx_bf16"] == ("amx_bf16" in flags)
    assert plans.cpu_units()["capability"] == torch.backends.cpu.get_cpu_capability()


def test_float32_where_no_bf16_unit(monkeypatch, fresh, demo):
    monkeypatch.setattr(plans, "cpu_units", lambda: NO_UNITS)
    asked = fake_timings(
        monkeypatch,
        {"float32": 1.0, "float32-channels-last": 1.2, "bfloat16": 0.3, "bfloat16-channels-last": 0.2},
    )
    checked = fake_movement(monkeypatch, {})
    record = plans.choose(demo, "smoothgrad", {})
    assert asked == [["float32", "float32-channels-last"]]  # bfloat16 never even timed
    assert checked == []
    assert record["plan"] == "float32" and record["dtype"] == "float32" and record["units"] is None


def test_slower_plan_is_never_chosen(monkeypatch, fresh, demo):
    monkeypatch.setattr(plans, "cpu_units", lambda: AMX)
    fake_timings(
        monkeypatch,
        {"float32": 1.0, "float32-channels-last": 0.97, "bfloat16": 1.3, "bfloat16-channels-last": 1.1},
    )
    checked = fake_movement(monkeypatch, {n: 0.0 for n in plans.PLANS})
    record = plans.choose(demo, "smoothgrad", {})
    assert checked == []  # within the 10 % margin or slower: not even checked
    assert record["plan"] == "float32"


def test_plan_that_moves_the_map_is_never_chosen(monkeypatch, fresh, demo):
    monkeypatch.setattr(plans, "cpu_units", lambda: AMX)
    fake_timings(
        monkeypatch,
        {"float32": 1.0, "float32-channels-last": 0.8, "bfloat16": 0.5, "bfloat16-channels-last": 0.3},
    )
    # bfloat16 moves the map 0.2 and 0.12 of a seed change: past the rule
    checked = fake_movement(
        monkeypatch,
        {"bfloat16-channels-last": 0.01, "bfloat16": 0.006, "float32-channels-last": 0.0},
        seed_moved=0.05,
    )
    record = plans.choose(demo, "vargrad", {})
    assert checked == ["bfloat16-channels-last", "bfloat16", "float32-channels-last"]  # fastest first
    assert record["plan"] == "float32-channels-last" and record["ratio"] == 0.0
    assert plans.choose(demo, "vargrad", {})["plan"] == "float32-channels-last"
    assert checked == ["bfloat16-channels-last", "bfloat16", "float32-channels-last"]  # cached: no re-check


def test_accepted_plan_is_chosen_cached_on_disk_and_retimed_when_stale(monkeypatch, fresh, demo):
    monkeypatch.setattr(plans, "cpu_units", lambda: AMX)
    seconds = {"float32": 1.0, "float32-channels-last": 0.8, "bfloat16": 0.5, "bfloat16-channels-last": 0.25}
    asked = fake_timings(monkeypatch, seconds)
    fake_movement(monkeypatch, {"bfloat16-channels-last": 0.002}, seed_moved=0.05)
    record = plans.choose(demo, "smoothgrad", {})
    assert record["plan"] == "bfloat16-channels-last" and record["ratio"] == pytest.approx(0.04)
    assert record["speedup"] == pytest.approx(4.0) and record["units"] == "this CPU's matrix units (AMX)"
    assert record["tolerance"]["max_movement"] == pytest.approx(0.005)
    [saved] = list((fresh / "plans").glob("*.json"))
    assert demo.fingerprint in saved.name and torch.__version__ in saved.name
    monkeypatch.setattr(plans, "_MEMORY", {})  # a new process: read from disk, nothing timed
    assert plans.choose(demo, "smoothgrad", {})["plan"] == "bfloat16-channels-last" and len(asked) == 1
    entry = json.loads(saved.read_text())
    entry["timed_at"] -= plans.MAX_AGE_S + 1  # stale: timed again
    saved.write_text(json.dumps(entry))
    monkeypatch.setattr(plans, "_MEMORY", {})
    plans.choose(demo, "smoothgrad", {})
    assert len(asked) == 2
    entry = json.loads(saved.read_text())
    entry["timings"]["float32"] = "fast"  # a damaged number: the file is not believed
    saved.write_text(json.dumps(entry))
    monkeypatch.setattr(plans, "_MEMORY", {})
    plans.choose(demo, "smoothgrad", {})
    assert len(asked) == 3


def test_single_pass_methods_and_occlusion_get_no_plan(monkeypatch, fresh, demo):
    fake_timings(monkeypatch, {n: 1.0 for n in plans.PLANS})
    for name in ("gradient", "integrated_gradients", "gradcam", "guided_backprop", "occlusion"):
        assert plans.choose(demo, name, {}) is None
    assert plans.choose(demo, "smoothgrad", {"base": "guided_backprop"}) is None
    assert plans.active() is None  # nothing set outside an averaging method
    with plans.using("bfloat16"):
        assert plans.active() is None  # set, but not inside an averaging method: float32


def test_movement_is_one_minus_spearman_at_the_detail():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64)).astype("float32")
    assert plans.movement(a, a, 4.0) == pytest.approx(0.0, abs=1e-12)
    assert plans.movement(a, 2 * a + 1, 0.0) == pytest.approx(0.0, abs=1e-12)  # ranks only
    assert plans.movement(a, -a, 0.0) == pytest.approx(2.0)
    y, x = np.mgrid[0:64, 0:64] / 64.0
    signal = (np.sin(3 * x) + np.cos(2 * y)).astype("float32")  # smooth: pixel noise hides it, blur shows it
    noisy = signal + rng.normal(0, 1, (64, 64)).astype("float32")
    assert plans.movement(signal, noisy, 4.0) < 0.5 * plans.movement(signal, noisy, 0.0)
    assert plans.judge(0.0049, 0.05, 4)["accepted"] and not plans.judge(0.0051, 0.05, 4)["accepted"]
    assert not plans.judge(0.01, 0.0, 4)["accepted"]


@pytest.fixture
def bf16_plan(monkeypatch, fresh):
    """A machine with bfloat16 units where bfloat16-channels-last is fastest and passes the rule
    (the timing and the probe check faked; the maps themselves computed in bfloat16)."""
    monkeypatch.setattr(plans, "cpu_units", lambda: AMX)
    fake_timings(
        monkeypatch,
        {"float32": 1.0, "float32-channels-last": 1.0, "bfloat16": 0.6, "bfloat16-channels-last": 0.4},
    )
    fake_movement(monkeypatch, {"bfloat16-channels-last": 0.001}, seed_moved=0.05)


@pytest.fixture
def small() -> Classifier:
    """A small convolutional classifier (64 px, 10 classes): bfloat16 is emulated, and slow, on a
    CPU without bfloat16 units, so the maps computed in bfloat16 here use a small network."""
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
    for p in network.parameters():
        p.requires_grad_(False)
    labels = [f"class {i}" for i in range(10)]
    return Classifier("small test network", network, labels, "5" * 64, input_size=64, resize=72)


def test_same_seed_same_plan_same_map_and_the_plan_is_recorded(bf16_plan, small, chelsea_path):
    params = {"samples": 4, "seed": 3}
    first = sc.explain(small, chelsea_path, method="smoothgrad", **params)
    again = sc.explain(small, chelsea_path, method="smoothgrad", **params)
    assert first.diagnostics["plan"]["plan"] == "bfloat16-channels-last"
    assert np.array_equal(first.saliency, again.saliency)
    direct = sc.METHODS["smoothgrad"].attribute(  # called without explain: float32, another map
        small.network, small.preprocess(chelsea_path), torch.tensor([first.target]), **first.params
    )
    assert not np.array_equal(direct[0].abs().amax(0).numpy(), first.saliency)
    result = pipeline.explain_image(small, chelsea_path, "chelsea.png", ["smoothgrad", "gradient"], params)
    record = result.record()
    validate_record(record)
    maps = {m["method"]: m for m in record["maps"]}
    assert maps["smoothgrad"]["diagnostics"]["plan"]["plan"] == "bfloat16-channels-last"
    assert maps["smoothgrad"]["diagnostics"]["plan"]["rule"] == plans.RULE
    assert "plan" not in maps["gradient"]["diagnostics"]


def test_bf16_map_replays_on_a_machine_without_bf16_units(bf16_plan, monkeypatch, small, chelsea_path):
    report = rp.build_report(small, [chelsea_path], ["smoothgrad"], params={"samples": 8})
    record = json.loads(json.dumps(report.replay_record(embed_maps=True)))
    made = record["images"][0]["maps"][0]["diagnostics"]["plan"]
    assert made["plan"] == "bfloat16-channels-last" and made["tolerance"]["max_movement"] > 0
    # the replaying machine has no bfloat16 units: its plan is float32, its map another one
    monkeypatch.setattr(plans, "cpu_units", lambda: NO_UNITS)
    monkeypatch.setattr(plans, "_MEMORY", {})
    [result] = rp.replay(record, model=small)
    assert result.ok, result.line()
    assert "made under plan 'bfloat16-channels-last'" in result.detail
    assert result.max_abs_diff > 0  # not the same bytes: passed within the plan's tolerance
    # a float32 record gets no such tolerance: the same difference is a mismatch
    record["images"][0]["maps"][0]["diagnostics"].pop("plan")
    [strict] = rp.replay(record, model=small)
    assert not strict.ok


def test_describe_in_words(monkeypatch, fresh, demo):
    monkeypatch.setattr(plans, "cpu_units", lambda: AMX)
    assert "measured when first used" in plans.describe_model(demo)
    fake_timings(
        monkeypatch,
        {"float32": 1.0, "float32-channels-last": 1.0, "bfloat16": 0.6, "bfloat16-channels-last": 0.4},
    )
    fake_movement(monkeypatch, {"bfloat16-channels-last": 0.001}, seed_moved=0.05)
    record = plans.choose(demo, "smoothgrad", {})
    assert plans.describe_model(demo) == (
        "Averaging methods: computed in bfloat16 on this CPU's matrix units (AMX); maps checked to move "
        "less than a tenth of a seed change."
    )
    assert "0.020x as much as a change of seed" in plans.describe(record)
    assert plans.time_share(demo, "smoothgrad") == pytest.approx(0.4)
    assert plans.time_share(demo, "rise") == 1.0  # not yet chosen: no claim
