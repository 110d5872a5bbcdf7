"""The load-time test run of a code model (TorchScript, torch.export), in a process of its own.

``code_models.timed_trial`` starts this file with the same Python (``python -I _trial.py FILE KIND
SETTINGS``) and stops the process when the run takes longer than the time limit: a model that
loops inside one compiled operator cannot be stopped any other way. It imports only torch and
does exactly what ``probe.probe_network`` will do next in the server process: one test image with an
input gradient, then a batch of three. It prints ``loaded`` once the file is loaded (loading is
timed separately from the run) and ``done`` or ``failed`` at the end; the server process then
runs its own probe, which says what went wrong.
"""

import json
import sys


def main() -> int:
    path, kind, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    import torch

    torch.set_num_threads(int(settings["threads"]))
    try:
        if kind == "torchscript":
            net = torch.jit.load(path, map_location="cpu")
        else:
            with open(path, "rb") as f:
                net = torch.export.load(f).module()
    except Exception:  # the server process reports the failure in words
        print("failed", flush=True)
        return 0
    print("loaded", flush=True)
    size = int(settings["size"])
    mean = torch.tensor(settings["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(settings["std"], dtype=torch.float32).view(1, -1, 1, 1)
    channels = int(settings.get("channels", 3))
    x = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(0))  # probe.probe_batch
    try:
        one = x[:1].clone().requires_grad_(True)
        out = net((one - mean) / std)
        if isinstance(out, torch.Tensor) and out.dim() == 2 and out.is_floating_point():
            torch.autograd.grad(out[0].max(), one)
        with torch.no_grad():
            net((x - mean) / std)
    except Exception:
        print("failed", flush=True)
        return 0
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
