"""The convergence readout (saliency_core/engine/convergence.py), SmoothGrad's sampling schemes and
stop-when-settled (methods/smoothgrad.py), on tiny models whose gradient under noise is known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import saliency_core as sc
from saliency_core.engine.convergence import Readout, describe, extrapolate, spearman, top_overlap
from saliency_core.engine.methods.smoothgrad import (
    SAMPLING,
    QuasiNormal,
    checkpoints,
    noise_draws,
    smoothgrad,
)
from saliency_core.evaluation import similarity

D = torch.float64


class WeightedSquare(nn.Module):
    """score = sum(w * x^2) / 2: gradient w * x, linear in the noise. Under x + sigma e the
    SmoothGrad mean over n samples is w * x + w * sigma * mean(e): known mean and variance."""

    def __init__(self, w: torch.Tensor, classes: int = 2):
        super().__init__()
        self.w, self.classes = w, classes

    def forward(self, x):
        s = (self.w * x.square()).flatten(1).sum(1) / 2
        return s.unsqueeze(1).expand(-1, self.classes)


class WeightedCube(nn.Module):
    """score = sum(w * x^3) / 3: gradient w * x^2, even in the noise too (antithetic pairs keep it)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = w

    def forward(self, x):
        return (self.w * x**3).flatten(1).sum(1, keepdim=True).expand(-1, 2) / 3


class Linear(nn.Module):
    """score = sum(w * x): gradient w everywhere, so noise changes nothing."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = w

    def forward(self, x):
        return (self.w * x).flatten(1).sum(1, keepdim=True).expand(-1, 2)


class Quartic(nn.Module):
    """score = sum(x^4) / 4: gradient x^3, with E[(x + sigma e)^3] = x^3 + 3 sigma^2 x (e ~ N(0, 1))."""

    def forward(self, x):
        return (x**4).flatten(1).sum(1, keepdim=True).expand(-1, 2) / 4


def _image(size: int, seed: int = 0, channels: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, channels, size, size, generator=g, dtype=D)
    x.view(-1)[:2] = torch.tensor([0.0, 1.0], dtype=D)  # value range exactly 1: sigma = noise
    return x


def _weights(size: int, seed: int = 1, channels: int = 1, spread: float = 1.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.exp(spread * torch.randn(1, channels, size, size, generator=g, dtype=D))  # heavy-tailed map


# ---------------------------------------------------------------- the measures


def test_torch_measures_match_metrics_similarity():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 20, 20, generator=g, dtype=D)
    b = a + torch.randn(3, 20, 20, generator=g, dtype=D)
    a[0, :5] = 0.0  # ties share their average rank
    b[1] = b[1].round()
    b[2] = 1.0  # one constant map
    sp, top = spearman(a, b), top_overlap(a, b)
    for i in range(3):
        assert sp[i].item() == pytest.approx(similarity.spearman(a[i].numpy(), b[i].numpy()), abs=1e-12)
        assert top[i].item() == pytest.approx(
            similarity.top_k_overlap(a[i].numpy(), b[i].numpy(), 0.1), abs=1e-12
        )
    assert spearman(b[2:], b[2:]).item() == 1.0  # both constant
    # without ties (one sort, topk): the same numbers
    c, d = torch.randn(2, 64, 64, generator=g, dtype=D).unbind(0)
    d = c + 2 * d
    assert spearman(c[None], d[None]).item() == pytest.approx(
        similarity.spearman(c.numpy(), d.numpy()), abs=1e-12
    )
    assert top_overlap(c[None], d[None]).item() == similarity.top_k_overlap(c.numpy(), d.numpy(), 0.1)


def test_extrapolation_is_spearman_brown_for_additive_noise():
    # Pearson agreement of averages of k terms with additive noise: a(k) = k r / (1 + (k - 1) r)
    r1 = 0.05
    a = lambda k: k * r1 / (1 + (k - 1) * r1)  # noqa: E731
    full, beta = extrapolate(a(10), a(20))
    assert beta == pytest.approx(1.0) and full == pytest.approx(a(40), abs=1e-12)
    assert full == pytest.approx(2 * a(20) / (1 + a(20)), abs=1e-12)  # Spearman-Brown from the halves
    # no gain from quarters to halves: none is assumed to the full count
    assert extrapolate(0.5, 0.5) == (0.5, 0.0)
    # above chance for top-k overlap: chance stays chance
    assert extrapolate(0.1, 0.1, chance=0.1)[0] == pytest.approx(0.1)
    assert extrapolate(0.3, 1.0)[0] == 1.0


# ---------------------------------------------------------------- the readout against the truth


def _true_rerun(w, x, noise, n, draws=6, seed=123):
    """Spearman and top-10 % overlap of two independent n-sample maps of WeightedSquare, drawn
    from the known distribution: |w x + w sigma e_bar|, e_bar ~ N(0, 1/n), averaged over draws."""
    g = torch.Generator().manual_seed(seed)
    sp, top = [], []
    for _ in range(draws):
        m1, m2 = [
            (w * x + w * noise * torch.randn(x.shape, generator=g, dtype=D) / math.sqrt(n)).abs()[:, 0]
            for _ in range(2)
        ]
        sp.append(spearman(m1, m2).item())
        top.append(top_overlap(m1, m2).item())
    return float(np.mean(sp)), float(np.mean(top))


@pytest.mark.parametrize("seed", [5, 7])
@pytest.mark.parametrize("n", [16, 64, 256])
def test_readout_matches_the_true_rerun_agreement(n, seed):
    """Stated tolerance (convergence.py): 0.05 for Spearman, 0.08 for the top-10 % overlap
    (410 of 4096 pixels here) of the true re-run agreement, which spans 0.64-0.96 here."""
    size, noise = 64, 1.0
    x, w = _image(size), _weights(size, spread=0.5)
    net = WeightedSquare(w)
    readout = Readout()
    mine = smoothgrad(
        net, x, torch.tensor([0]), samples=n, noise=noise, seed=seed, readout=readout, chunk_size=64
    )
    est = readout.last[0]
    true_sp, true_top = _true_rerun(w, x, noise, n)
    assert est["samples"] == n
    assert abs(est["rerun_spearman"] - true_sp) < 0.05, (est, true_sp)
    assert abs(est["rerun_top10"] - true_top) < 0.08, (est, true_top)
    # the map's agreement with its many-sample limit |w x| is at least the re-run agreement
    limit = (w * x).abs()[:, 0]
    assert spearman(mine.abs()[:, 0], limit).item() >= true_sp - 0.02


def test_readout_spans_the_range():
    """The same model reads "still changing" with few samples and "settled" with many."""
    size, noise = 48, 0.6
    x, w = _image(size), _weights(size)
    few, many = Readout(), Readout()
    smoothgrad(WeightedSquare(w), x, torch.tensor([0]), samples=8, noise=noise, readout=few)
    smoothgrad(
        WeightedSquare(w), x, torch.tensor([0]), samples=2000, noise=noise, readout=many, chunk_size=500
    )
    assert few.last[0]["verdict"] == "still changing"
    assert few.last[0]["rerun_spearman"] < many.last[0]["rerun_spearman"] - 0.1
    assert many.last[0]["verdict"] == "settled", many.last[0]
    true_sp, true_top = _true_rerun(w, x, noise, 2000)
    assert abs(many.last[0]["rerun_spearman"] - true_sp) < 0.05
    assert abs(many.last[0]["rerun_top10"] - true_top) < 0.05


def test_readout_needs_four_draws():
    r = Readout()
    smoothgrad(Linear(_weights(8)), _image(8), torch.tensor([0]), samples=3, readout=r)
    assert r.last[0]["verdict"] == "unknown" and "at least 4" in r.last[0]["reason"]
    r = Readout()
    smoothgrad(Linear(_weights(8)), _image(8), torch.tensor([0]), samples=6, sampling="antithetic", readout=r)
    assert r.last[0]["verdict"] == "unknown"  # 3 pairs: one quarter is empty
    assert describe(r.last[0])[0].startswith("Convergence unknown")


# ---------------------------------------------------------------- sampling schemes


@pytest.mark.parametrize("sampling", ["antithetic", "quasi"])
def test_draws_are_standard_normal_noise(sampling):
    """Each sample is N(0, 1) noise: over 32 seeds x 8 samples, per-coordinate mean 0 and variance 1."""
    like = torch.zeros(1, 3, 16, 16)
    eps = torch.cat(
        [noise_draws(like, seed, 0, 8, sampling) for seed in range(32)]
    ).double()  # (256, 3, 16, 16)
    assert abs(eps.mean().item()) < 0.01  # standard error 1/sqrt(196608) = 0.0023
    assert abs(eps.var().item() - 1) < 0.02
    assert eps.mean(0).abs().max() < 5 / math.sqrt(256)
    if sampling == "antithetic":
        assert torch.equal(eps[1], -eps[0])  # pairs (x + e, x - e)
    else:
        # four replicates of a shifted Sobol sequence: replicate r holds samples r, r + 4, ...
        # and its first two points lie in opposite halves of every coordinate's range
        u = torch.special.ndtr(eps[:8])
        assert torch.equal((u[0] < 0.5), (u[4] >= 0.5))


@pytest.mark.parametrize("sampling", SAMPLING)
def test_schemes_are_unbiased(sampling):
    """Mean over seeds of SmoothGrad(8) of x^3 equals the many-sample limit x^3 + 3 sigma^2 x."""
    x, noise, seeds = _image(6, channels=3), 0.5, 400
    maps = torch.stack(
        [
            smoothgrad(
                Quartic(),
                x,
                torch.tensor([0]),
                samples=8,
                noise=noise,
                seed=s,
                sampling=sampling,
                chunk_size=8,
            )
            for s in range(seeds)
        ]
    )
    limit = x**3 + 3 * noise**2 * x
    standard_error = maps.std(0) / math.sqrt(seeds)
    exact = standard_error == 0  # antithetic pairs at x = 0: (sigma e)^3 cancels in every pair
    assert torch.allclose(maps.mean(0)[exact], limit[exact], atol=1e-15)
    z = (maps.mean(0) - limit)[~exact] / standard_error[~exact]
    assert z.abs().max() < 4.5, (sampling, z.abs().max())
    assert abs(z.mean().item()) < 4.5 / math.sqrt(z.numel())  # no bias on average either


@pytest.mark.parametrize("sampling", SAMPLING)
def test_same_seed_same_map_whatever_the_chunks(sampling):
    net, x, t = WeightedSquare(_weights(12, channels=3)), _image(12, channels=3), torch.tensor([0])
    whole = smoothgrad(net, x, t, samples=13, noise=0.3, seed=4, sampling=sampling, chunk_size=1000)
    for chunk in (1, 3, 7):
        part = smoothgrad(net, x, t, samples=13, noise=0.3, seed=4, sampling=sampling, chunk_size=chunk)
        assert torch.allclose(part, whole, rtol=1e-10, atol=1e-13), (sampling, chunk)
    other = smoothgrad(net, x, t, samples=13, noise=0.3, seed=5, sampling=sampling)
    assert (other - whole).norm() > 1e-3 * whole.norm()


def test_quasi_draws_out_of_order_are_the_same_numbers():
    q = QuasiNormal((2, 5, 5), seed=9)
    forward = torch.cat([q.draw(0, 6), q.draw(6, 5)])
    again = QuasiNormal((2, 5, 5), seed=9)
    assert torch.equal(again.draw(6, 5), forward[6:])  # fast-forwards
    assert torch.equal(again.draw(0, 6), forward[:6])  # restarts
    assert torch.equal(again.draw(3, 8), forward[3:])


@pytest.fixture
def caught(monkeypatch):
    """Tensors moved to the meta device by ``.to``, as they were on the CPU just before
    (the trick of tests/engine/test_devices.py: without a GPU, "another device" is meta)."""
    moved = []
    to = torch.Tensor.to

    def spy(self, *args, **kwargs):
        device = kwargs.get("device", args[0] if args else None)
        if str(device) == "meta":
            moved.append(self.detach().clone())
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    return moved


@pytest.mark.parametrize("sampling", SAMPLING)
def test_draws_are_the_cpu_draws_on_any_device(caught, sampling):
    cpu, meta = torch.zeros(1, 3, 8, 8), torch.empty(1, 3, 8, 8, device="meta")
    for start, n in ((0, 5), (5, 3)):
        expected = noise_draws(cpu, 7, start, n, sampling)
        out = noise_draws(meta, 7, start, n, sampling)
        assert out.device.type == "meta" and out.shape == expected.shape
        assert torch.equal(caught[-1], expected)  # bit-identical: drawn on the CPU, then moved


def test_sampling_is_checked():
    with pytest.raises(ValueError, match="sampling must be one of independent, antithetic, quasi"):
        smoothgrad(Linear(_weights(4)), _image(4), torch.tensor([0]), sampling="sobol")
    with pytest.raises(ValueError, match="maximum samples .* at least the samples"):
        smoothgrad(
            Linear(_weights(4)), _image(4), torch.tensor([0]), samples=20, until_settled=True, max_samples=10
        )
    with pytest.raises(ValueError, match="until_settled must be true or false"):
        smoothgrad(Linear(_weights(4)), _image(4), torch.tensor([0]), until_settled="yes")


# ---------------------------------------------------------------- stop when settled


def test_checkpoints_are_fixed_in_advance():
    assert checkpoints(50, 1000, False) == [50]
    points = checkpoints(8, 100, True)
    assert points == [8, 16, 24, 32, 40, 56, 72, 96, 100]


def test_stops_at_the_first_check_on_a_converged_model():
    """Gradient constant under noise: every quarter agrees, settled at ``samples``."""
    net, x = Linear(_weights(16, channels=3)), _image(16, channels=3)
    readout = Readout()
    out = smoothgrad(
        net, x, torch.tensor([0]), samples=8, noise=0.2, until_settled=True, max_samples=400, readout=readout
    )
    entry = readout.last[0]
    assert entry["samples"] == 8 and entry["stopped"] == "settled" and entry["verdict"] == "settled"
    assert torch.allclose(out, net.w.expand_as(x), rtol=1e-12)


def test_runs_to_the_maximum_on_a_noisy_model():
    """Gradient = a constant plus noise: the map is noise at any count and never settles."""
    x = torch.full((1, 1, 24, 24), 0.5, dtype=D)
    x.view(-1)[:2] = torch.tensor([0.0, 1.0], dtype=D)
    net = WeightedSquare(torch.ones_like(x))
    readout, seen = Readout(), []
    out = smoothgrad(
        net,
        x,
        torch.tensor([0]),
        samples=8,
        noise=0.5,
        until_settled=True,
        max_samples=60,
        readout=readout,
        progress=lambda done, total: seen.append((done, total)),
    )
    entry = readout.last[0]
    assert (
        entry["samples"] == 60
        and entry["stopped"] == "at the maximum"
        and entry["verdict"] == "still changing"
    )
    assert seen[-1] == (60, 60)
    plain = smoothgrad(net, x, torch.tensor([0]), samples=60, noise=0.5)
    assert torch.allclose(out, plain, rtol=1e-12, atol=1e-15)  # the same map as asking for 60


@pytest.mark.parametrize("sampling", SAMPLING)
def test_where_it_stops_does_not_depend_on_chunks(sampling):
    size, noise = 32, 0.6
    x, w = _image(size), _weights(size)
    runs = []
    for chunk in (3, 16, 1000):
        readout = Readout(threshold=0.8)
        out = smoothgrad(
            WeightedCube(w),
            x,
            torch.tensor([0]),
            samples=8,
            noise=noise,
            sampling=sampling,
            until_settled=True,
            max_samples=400,
            readout=readout,
            chunk_size=chunk,
            settled_at=0,  # the raw pixels: a white-noise-like map gains little from smoothing
        )
        runs.append((out, readout.last[0]["samples"]))
    assert 8 < runs[0][1] < 400, runs[0][1]  # stopped in between: the test says something
    for out, used in runs[1:]:
        assert used == runs[0][1] and torch.allclose(out, runs[0][0], rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------- through explain, JSON, Integrated Gradients


def _classifier(net: nn.Module) -> sc.Classifier:
    return sc.Classifier(name="tiny", network=net, labels=["a", "b"], fingerprint="0" * 64)


def test_attribute_records_the_readout_per_image():
    size = 16
    x = torch.cat([_image(size, seed=s, channels=3) for s in range(2)])
    net = WeightedSquare(_weights(size, channels=3))
    _, used, diagnostics = sc.attribute(
        _classifier(net),
        x,
        torch.tensor([0, 1]),
        "vargrad",
        samples=8,
        until_settled=True,
        max_samples=16,
        settled_at=0,
    )
    assert used["until_settled"] is True and used["max_samples"] == 16 and used["sampling"] == "independent"
    readouts = diagnostics["convergence"]
    assert len(readouts) == 2 and {r["samples"] for r in readouts} == {16}
    json.dumps(diagnostics)  # JSON-ready


def test_explain_records_the_readout(demo, chelsea_path):
    exp = sc.explain(demo, chelsea_path, method="smoothgrad", samples=8, seed=1)
    readout = exp.diagnostics["convergence"]
    assert readout["verdict"] in ("settled", "still changing") and readout["samples"] == 8
    assert 0 < readout["rerun_spearman"] < 0.9  # 8 samples on the demo model: far from settled
    record = json.loads(json.dumps(exp.record()))
    assert record["diagnostics"]["convergence"]["samples"] == 8
    assert record["params"]["sampling"] == "independent" and record["params"]["until_settled"] is False
    assert [row["px"] for row in readout["levels"]] == [0, 1, 2, 4, 8, 16]
    assert readout["levels"][0]["rerun_spearman"] == readout["rerun_spearman"]
    words, details = describe(readout)
    px = readout["reproducible_px"]
    if px is None:
        assert words.startswith("Not settled even at 16-pixel detail") and "Sample until settled" in words
    else:
        assert words.startswith(f"Shown at {px:g}-pixel detail, the finest that a re-run")
    assert "Spearman" in details and "16 px" in details
    # a readout recorded before the detail levels (record schema 1) keeps its words
    old = {k: v for k, v in readout.items() if k not in ("levels", "reproducible_px", "settled_at_px")}
    assert describe({**old, "verdict": "still changing"})[0].startswith("Still changing")
    # the full-detail switch: the same readout, drawn at 0 px
    if px:
        assert describe(readout, shown_px=0)[0].startswith(f"Shown at full detail: finer than {px:g}-pixel")


class Smooth(nn.Module):
    """score = sum(w * x^2) / 2: the path integrand is linear in alpha."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x):
        return (self.w * x.square()).flatten(1).sum(1, keepdim=True).expand(-1, 2) / 2


class Kinked(nn.Module):
    """A ReLU layer with many kinks along the path: few steps leave the integral rough."""

    def __init__(self, size, units=64, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.randn(units, size * size, generator=g, dtype=D) * 4
        self.b = torch.rand(units, generator=g, dtype=D) * 8 - 4
        self.c = torch.randn(units, generator=g, dtype=D)

    def forward(self, x):
        h = torch.relu(x.flatten(1) @ self.a.T - self.b)
        return (h @ self.c).unsqueeze(1).expand(-1, 2)


def test_integrated_gradients_readout():
    size = 12
    x = _image(size)
    readout = Readout()
    ig = sc.METHODS["integrated_gradients"].attribute
    ig(Smooth(_weights(size)), x, torch.tensor([0]), steps=16, readout=readout)
    assert readout.last[0]["verdict"] == "settled" and readout.last[0]["steps"] == 16
    rough, fine = Readout(), Readout()
    ig(Kinked(size), x, torch.tensor([0]), steps=8, readout=rough)
    ig(Kinked(size), x, torch.tensor([0]), steps=400, readout=fine, chunk_size=400)
    assert rough.last[0]["rerun_spearman"] < fine.last[0]["rerun_spearman"]
    assert rough.last[0]["verdict"] == "still changing" and fine.last[0]["verdict"] == "settled"
    few = Readout()
    ig(Kinked(size), x, torch.tensor([0]), steps=3, readout=few)
    assert few.last[0]["verdict"] == "unknown"


def test_command_line_until_settled_records_where_it_stopped(demo, chelsea_path, tmp_path):
    """explain --until-settled: the same run as sc.explain(until_settled=True), the count used in
    the JSON; without the flag the fixed count (the command line's default)."""
    from saliency_core import cli

    for flags, folder in ((["--until-settled", "--max-samples", "24"], "settle"), ([], "fixed")):
        code = cli.main(
            [
                "explain",
                chelsea_path,
                "--method",
                "smoothgrad",
                "--samples",
                "8",
                "--seed",
                "3",
                *flags,
                "--out",
                str(tmp_path / folder),
            ]
        )
        assert code == 0
    settled = json.loads((tmp_path / "settle" / "chelsea.json").read_text())["maps"][0]
    fixed = json.loads((tmp_path / "fixed" / "chelsea.json").read_text())["maps"][0]
    assert settled["params"]["until_settled"] is True and fixed["params"]["until_settled"] is False
    readout = settled["diagnostics"]["convergence"]
    assert readout["stopped"] in ("settled", "at the maximum") and 8 <= readout["samples"] <= 24
    assert readout["samples"] == 24 or readout["verdict"] == "settled"
    assert fixed["diagnostics"]["convergence"]["samples"] == 8
    same = sc.explain(demo, chelsea_path, "smoothgrad", samples=8, seed=3, until_settled=True, max_samples=24)
    assert same.diagnostics["convergence"]["samples"] == readout["samples"]
    assert same.diagnostics["convergence"]["rerun_spearman"] == pytest.approx(
        readout["rerun_spearman"], abs=1e-12
    )


def test_what_smoothgrad_can_wrap_is_a_method_flag(demo, chelsea_path):
    """Method.smoothable says it once: the SmoothGrad family and path methods are not wrapped."""
    assert {m for m, meta in sc.METHODS.items() if not meta.smoothable} == {
        "smoothgrad",
        "smoothgrad_squared",
        "vargrad",
        "integrated_gradients",
    }
    for base in ("vargrad", "integrated_gradients", "no_such_method"):
        with pytest.raises(ValueError, match=f"SmoothGrad cannot wrap '{base}'"):
            sc.explain(demo, chelsea_path, "smoothgrad", samples=4, base=base)
    assert (
        sc.explain(demo, chelsea_path, "smoothgrad", samples=4, base="gradient_x_input").params["base"]
        == "gradient_x_input"
    )
