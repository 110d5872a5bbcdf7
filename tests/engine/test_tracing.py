"""torch.fx tracing leaves other threads alone: torch.fx patches nn.Module for the whole process
while it traces, so a model run by another thread at that moment must run as usual and stay out
of the traced graph. The other thread is started from inside the traced forward, so the overlap
is certain, not a race."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import fx, nn

from saliency_core.engine.tracing import ConvLeafTracer


class Net(nn.Module):
    """Conv -> BN -> ReLU; while traced (its input a Proxy) it runs ``other`` on a real tensor in
    a second thread and keeps what that thread got."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.hidden: list = []  # models outside the traced tree (a list hides them from nn.Module)
        self.got: dict = {}

    def forward(self, x):
        if isinstance(x, fx.Proxy) and self.hidden:
            thread = threading.Thread(target=self._other)
            thread.start()
            thread.join()
        return torch.relu(self.bn(self.conv(x)))

    def _other(self):
        try:
            with torch.no_grad():
                self.got["y"] = self.hidden[0](torch.ones(1, 3, 8, 8))
        except Exception as err:  # kept for the assertion
            self.got["error"] = err


def _nodes(graph):
    return [(n.op, str(n.target)) for n in graph.nodes]


@pytest.mark.parametrize("same", [False, True], ids=["another model", "the traced model itself"])
def test_a_model_run_by_another_thread_while_tracing_runs_as_usual(same):
    torch.manual_seed(0)
    net, other = Net().eval(), Net().eval()
    alone = _nodes(ConvLeafTracer().trace(net))
    target = net if same else other
    with torch.no_grad():
        expected = target(torch.ones(1, 3, 8, 8))
    net.hidden.append(target)
    graph = ConvLeafTracer().trace(net)
    assert "error" not in net.got, net.got
    assert torch.equal(net.got["y"], expected)
    assert _nodes(graph) == alone  # the other thread's calls are not in the graph
    assert ("call_module", "conv") in alone and ("call_module", "bn") in alone


def test_plain_fx_tracing_breaks_the_other_thread():
    """Why ConvLeafTracer exists: with torch.fx's own tracer the same overlap fails."""
    net, other = Net().eval(), Net().eval()
    net.hidden.append(other)
    fx.Tracer().trace(net)
    assert isinstance(net.got.get("error"), NameError), net.got
