"""The load-time test run of a model file that can order unbounded work (TorchScript, torch.export,
ONNX), in a process of its own, with a memory limit.

``code_models.timed_trial`` starts this file with the same Python (``python -I _trial.py FILE KIND
SETTINGS``) and stops the process when the run takes longer than the time limit: a model that
loops inside one compiled operator (or an ONNX ``Loop`` with a huge trip count) cannot be stopped
any other way. Once the file is loaded, the process's address space is limited to what it uses
plus ``settings["memory"]`` bytes, so a model whose shapes ask for tens of GB fails here instead
of exhausting the server. It does what the server process will do next: one test image (with an
input gradient for torch models), then a batch of three. It prints ``loaded`` once the file is
loaded (loading is timed separately from the run) and then ``done``, ``memory`` (an allocation
past the limit failed) or ``failed``; after ``failed`` the server process runs its own check,
which says what went wrong.
"""

import json
import os
import sys

_MEMORY_WORDS = ("allocate", "out of memory", "bad_alloc", "memoryerror")


def _limit_memory(extra: int) -> None:
    """Limit this process's address space to its current size plus ``extra`` bytes (Linux)."""
    try:
        import resource

        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))
    except (ImportError, OSError, StopIteration, ValueError):
        pass  # no /proc or no rlimits: the time limit still applies


def _outcome(err: BaseException) -> str:
    text = f"{type(err).__name__} {err}".lower()
    return "memory" if isinstance(err, MemoryError) or any(w in text for w in _MEMORY_WORDS) else "failed"


def _onnx(path: str, settings: dict) -> int:
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = int(settings["threads"])
    options.inter_op_num_threads = 1
    # building the session folds constants, which can already ask for any amount of memory
    _limit_memory(int(settings["memory"]) + 4 * os.path.getsize(path))
    try:
        session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
    except Exception as err:  # noqa: BLE001  the server process reports the failure in words
        print(_outcome(err), flush=True)
        return 0
    print("loaded", flush=True)
    size = int(settings["size"])
    x = np.random.default_rng(0).random((3, 3, size, size), dtype=np.float32)
    try:
        session.run(None, {name: x[:1]})
        session.run(None, {name: x})
    except Exception as err:  # noqa: BLE001
        print(_outcome(err), flush=True)
        return 0
    print("done", flush=True)
    return 0


def _torch(path: str, kind: str, settings: dict) -> int:
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
    _limit_memory(int(settings["memory"]))
    size = int(settings["size"])
    mean = torch.tensor(settings["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(settings["std"], dtype=torch.float32).view(1, -1, 1, 1)
    channels = int(settings.get("channels", 3))
    x = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(0))  # probe's test batch
    try:
        one = x[:1].clone().requires_grad_(True)
        out = net((one - mean) / std)
        if isinstance(out, torch.Tensor) and out.dim() == 2 and out.is_floating_point():
            torch.autograd.grad(out[0].max(), one)
        with torch.no_grad():
            net((x - mean) / std)
    except Exception as err:
        print(_outcome(err), flush=True)
        return 0
    print("done", flush=True)
    return 0


def main() -> int:
    path, kind, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if kind == "onnx":
        return _onnx(path, settings)
    return _torch(path, kind, settings)


if __name__ == "__main__":
    sys.exit(main())
