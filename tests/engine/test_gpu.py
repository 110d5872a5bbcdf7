"""GPU paths of saliency_core/engine/_fast.py: CUDA graphs, their invalidation, bad targets, threads.

Skipped without a CUDA device. On a GPU machine that has PyTorch but not the dashboard's
packages: ``python -m pytest tests/engine/test_gpu.py --noconftest``.
"""

import copy
import threading

import pytest
import torch

import saliency_core as sc
from saliency_core.engine import _fast
from saliency_core.engine.samples import sample_images

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture(scope="module")
def gpu():
    model = sc.load_model("demo")
    network = copy.deepcopy(model.network).cuda()
    images = [model.preprocess(i).cuda() for i in list(sample_images().values())[:4]]
    with torch.no_grad():
        targets = [network(x).argmax(1) for x in images]
    return network, images, targets


def _sg(network, x, t, **kw):
    return sc.METHODS["smoothgrad"].attribute(network, x, t, samples=20, **kw)


def test_graph_replay_equals_eager(gpu):
    network, images, targets = gpu
    x, t = images[0], targets[0]
    runs = [_sg(network, x, t) for _ in range(3)]  # eager, capture, replay
    assert any(isinstance(v, _fast._Graphed) for g in _fast._GRAPHS.values() for v in g.values())
    with _fast.switched(cuda_graphs=False):
        eager = _sg(network, x, t)
    for out in runs:
        assert _rel(out, eager) < 1e-4


def test_graph_follows_weight_changes(gpu):
    network, images, targets = gpu
    net = copy.deepcopy(network)
    x, t = images[1], targets[1]
    for _ in range(3):
        before = sc.METHODS["gradient"].attribute(net, x, t)
    with torch.no_grad():
        net[1]._fc.weight.mul_(-1)
    after = sc.METHODS["gradient"].attribute(net, x, t)
    with _fast.switched(cuda_graphs=False, fold=False):
        reference = sc.METHODS["gradient"].attribute(net, x, t)
    assert _rel(after, reference) < 2e-2 and _rel(after, before) > 0.5


def test_bad_target_is_an_error_not_a_device_assert(gpu):
    network, images, targets = gpu
    x = images[2]
    for _ in range(3):
        sc.METHODS["gradient"].attribute(network, x, targets[2])
    with pytest.raises(ValueError, match="between 0 and 999"):
        sc.METHODS["gradient"].attribute(network, x, torch.tensor([1000], device="cuda"))
    assert torch.isfinite(sc.METHODS["gradient"].attribute(network, x, targets[2])).all()


def test_concurrent_sessions_get_their_own_maps(gpu):
    network, images, targets = gpu
    alone = [_sg(network, x, t) for x, t in zip(images, targets)]
    together = [None] * len(images)

    def work(i):
        for _ in range(3):
            together[i] = _sg(network, images[i], targets[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for a, b in zip(together, alone):
        assert _rel(a, b) < 1e-4


def test_guided_backprop_on_gpu_matches_cpu(gpu):
    network, images, targets = gpu
    x, t = images[3], targets[3]
    on_gpu = sc.METHODS["guided_backprop"].attribute(network, x, t).cpu()
    cpu_net = copy.deepcopy(network).cpu()
    on_cpu = sc.METHODS["guided_backprop"].attribute(cpu_net, x.cpu(), t.cpu())
    assert _rel(on_gpu, on_cpu) < 1e-3


def test_same_seed_same_smoothgrad_map_on_cpu_and_gpu(record):
    """The noise is drawn on the CPU, so the GPU map differs from the CPU map only by float
    arithmetic (TF32 inside averaging methods): less than a tenth of a change of seed."""
    cpu = sc.load_model("demo", device="cpu")
    gpu = sc.load_model("demo", device="cuda")
    path = list(sample_images().values())[0]
    a = torch.from_numpy(sc.explain(gpu, path, method="smoothgrad", samples=50).attribution)
    b = torch.from_numpy(sc.explain(cpu, path, method="smoothgrad", samples=50).attribution)
    other = torch.from_numpy(sc.explain(cpu, path, method="smoothgrad", samples=50, seed=1).attribution)
    record("smoothgrad-50 GPU vs CPU, same seed (relative)", _rel(a, b))
    record("smoothgrad-50 seed 0 vs seed 1 on the CPU (relative)", _rel(other, b))
    assert _fast.precision_tolerated(a.unsqueeze(0), b.unsqueeze(0), other.unsqueeze(0))
    g = torch.from_numpy(sc.explain(gpu, path, method="gradient").attribution)
    c = torch.from_numpy(sc.explain(cpu, path, method="gradient").attribution)
    record("gradient GPU vs CPU (relative)", _rel(g, c))
    assert _rel(g, c) < 2e-2


def test_gpu_made_report_replays_on_the_cpu():
    from saliency_core import report as rp

    gpu = sc.load_model("demo", device="cuda")
    path = list(sample_images().values())[0]
    record = rp.build_report(
        gpu, [path], ["gradient", "smoothgrad", "gradcam"], params={"samples": 20}
    ).replay_record(embed_maps=True)
    assert record["environment"]["device"].startswith("cuda")
    results = rp.replay(record, sc.load_model("demo", device="cpu"))
    assert [r.status for r in results] == ["match"] * 3, [r.line() for r in results]
