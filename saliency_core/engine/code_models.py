"""Models that are code (TorchScript, torch.export) or a graph that can loop (ONNX): the load-time
test run in a process of its own with a time and a memory limit, and the checks a .pt2 program
passes before it is loaded."""

from __future__ import annotations

import ast
import io
import json
import math
import os
import re
import selectors
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from .cards import ModelCard
from .model_files import load_weights_only
from .untrusted import quote, short

# ---- the load-time test run of a code model, with a time limit --------------------------------
# A compiled operator cannot be interrupted from Python (a signal handler runs only between
# bytecodes, a thread cannot be stopped), so the first run happens in a process of its own
# (_trial.py) that is killed when it takes too long.

LOAD_TIMEOUT_ENV = "SALIENCY_LOAD_TIMEOUT"
DEFAULT_LOAD_TIMEOUT = 60.0
_TRIAL_LOADING = 120.0  # seconds for the test process to start Python, import torch and load the file


TRIAL_MEMORY_ENV = "SALIENCY_TRIAL_MEMORY_GB"
DEFAULT_TRIAL_MEMORY_GB = 8.0


def trial_memory() -> int:
    """Bytes the load-time test run may allocate beyond the loaded model (``SALIENCY_TRIAL_MEMORY_GB``,
    default 8 GiB)."""
    raw = os.environ.get(TRIAL_MEMORY_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_TRIAL_MEMORY_GB
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.1 <= value <= 4096):
        raise ValueError(f"{TRIAL_MEMORY_ENV} must be a number of GiB from 0.1 to 4096; got {quote(raw)}.")
    return int(value * 2**30)


def load_timeout() -> float:
    """Seconds a code model's load-time test run may take (``SALIENCY_LOAD_TIMEOUT``, default 60)."""
    raw = os.environ.get(LOAD_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_LOAD_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise ValueError(
            f"{LOAD_TIMEOUT_ENV} must be a number of seconds above 0 and at most 3600; got {quote(raw)}."
        )
    return value


class _Lines:
    """Lines a child process prints, read with a deadline (a blocking read could wait forever)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.buffer = proc, b""

    def next(self, deadline: float) -> str | None:
        """The next line, "" when the process ends first, None when ``deadline`` passes."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if not selector.select(timeout=left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 256)
                if not chunk or len(self.buffer) > 4096:
                    return ""
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode("ascii", "replace").strip()


def timed_trial(path: Path, kind: str, card: ModelCard, where: str) -> None:
    """Run the load-time test of a model that can order unbounded work (``kind``: torchscript,
    exported_program or onnx) in a separate process; stop it and refuse the model when the run
    takes longer than ``load_timeout()`` seconds, allocates more than ``trial_memory()`` bytes or
    the process dies.

    Raises:
        ValueError: the model was refused, in words naming the limit it ran into.
    """
    limit, memory = load_timeout(), trial_memory()
    settings = json.dumps(
        {
            "memory": memory,
            "size": card.input_size,
            "channels": card.channels,
            "mean": list(card.mean),
            "std": list(card.std),
            "threads": torch.get_num_threads(),
        }
    )
    script = Path(__file__).with_name("_trial.py")
    proc = subprocess.Popen(
        [sys.executable, "-I", str(script), str(path), kind, settings],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    lines = _Lines(proc)
    try:
        loaded = lines.next(time.monotonic() + max(_TRIAL_LOADING, limit))
        if loaded is None:
            raise ValueError(
                f"{where}: a test process could not even load the model within "
                f"{max(_TRIAL_LOADING, limit):g} seconds; it was stopped and the model was not loaded."
            )
        if loaded == "failed":
            return  # the probe in this process says what is wrong
        if loaded == "memory":
            raise ValueError(
                f"{where}: loading the model asked for more than {memory / 2**30:g} GiB of memory (the limit "
                f"set by {TRIAL_MEMORY_ENV}); it was stopped and the model was not loaded."
            )
        if loaded != "loaded":
            raise ValueError(
                f"{where}: loading the model crashed a test process"
                f"{_exit_words(proc)}; the model was not loaded."
            )
        started = time.monotonic()
        result = lines.next(started + limit)
        if result is None:
            raise ValueError(
                f"{where}: the model did not finish its test run on one image within {limit:g} "
                f"seconds (the limit set by {LOAD_TIMEOUT_ENV}); it may loop forever or be far "
                "too slow for this server. The run was stopped and the model was not loaded."
            )
        if result == "memory":
            raise ValueError(
                f"{where}: the model's test run on one image asked for more than {memory / 2**30:g} GiB of "
                f"memory (the limit set by {TRIAL_MEMORY_ENV}); the run was stopped and the model was "
                "not loaded."
            )
        if result not in ("done", "failed"):
            raise ValueError(
                f"{where}: the model crashed a test process during its test run"
                f"{_exit_words(proc)}; the model was not loaded."
            )
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def _exit_words(proc: subprocess.Popen) -> str:
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return ""
    if code < 0:
        return f" (stopped by signal {-code}, e.g. out of memory or a crash)"
    return f" (exit status {code})"


# ---- torch.export programs: checked before loading --------------------------------------------
# torch.export.load unpickles some parts without weights_only, evaluates shape expressions with
# sympy and turns "guards" into Python code. A .pt2 is loaded only when every such part is plain:
# pickles load weights-only, expressions and guards are arithmetic on sizes, no compiled code.

_SYMPY_NAMES = {
    "Symbol",
    "Integer",
    "Rational",
    "Float",
    "Add",
    "Mul",
    "Pow",
    "Max",
    "Min",
    "Abs",
    "Eq",
    "Ne",
    "Lt",
    "Le",
    "Gt",
    "Ge",
    "And",
    "Or",
    "Not",
    "True",
    "False",
    "None",
    "true",
    "false",
    "oo",
    "floor",
    "ceiling",
    "Piecewise",
    "FloorDiv",
    "ModularIndexing",
    "Where",
    "PythonMod",
    "Mod",
    "CleanDiv",
    "CeilToInt",
    "FloorToInt",
    "CeilDiv",
    "LShift",
    "RShift",
    "PowByNatural",
    "FloatPow",
    "FloatTrueDiv",
    "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat",
    "TruncToInt",
    "RoundToInt",
    "RoundDecimal",
    "ToFloat",
    "Identity",
}
_SIZE_METHODS = {"size", "stride", "dim", "storage_offset", "numel"}
_PLAIN_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.Load,
    ast.Tuple,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.USub,
    ast.UAdd,
    ast.Not,
    ast.And,
    ast.Or,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.BitAnd,
    ast.BitOr,
    ast.LShift,
    ast.RShift,
)
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,40}")


def _plain_expression(text: str, guard: bool) -> bool:
    """True if ``text`` is arithmetic / comparisons on numbers, size symbols (s0, u3 ...) and the
    sympy / torch size functions; guards may also read ``L['x'].size()[0]``."""
    if not isinstance(text, str) or len(text) > 20_000:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, _PLAIN_NODES):
            continue
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, str) and not _IDENT.fullmatch(v):
                return False
            if not isinstance(v, (int, float, str, bool, type(None))):
                return False
        elif isinstance(node, ast.Name):
            if not (
                node.id in _SYMPY_NAMES
                or re.fullmatch(r"[a-z]{1,8}\d+", node.id)
                or (guard and node.id == "L")
            ):
                return False
        elif isinstance(node, ast.keyword):
            if node.arg is None or not _IDENT.fullmatch(node.arg):
                return False
        elif isinstance(node, ast.Call):
            f = node.func
            if not (
                (isinstance(f, ast.Name) and f.id in _SYMPY_NAMES)
                or (guard and isinstance(f, ast.Attribute) and f.attr in _SIZE_METHODS)
            ):
                return False
        elif guard and isinstance(node, ast.Attribute):
            if node.attr not in _SIZE_METHODS:
                return False
        elif guard and isinstance(node, ast.Subscript):
            continue
        else:
            return False
    return True


def _unsafe_graph_parts(data) -> list[str]:
    """Shape expressions, range names and guards of a serialized program that are not plain."""
    bad: list[str] = []

    def walk(obj, key=None):
        if isinstance(obj, dict):
            if key == "range_constraints":
                bad.extend(k for k in obj if not re.fullmatch(r"[a-z]{1,8}\d+", str(k)))
            for k, v in obj.items():
                walk(v, k)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, key)
        elif isinstance(obj, str):
            if key == "expr_str" and not _plain_expression(obj, guard=False):
                bad.append(obj)
            elif key == "guards_code" and not _plain_expression(obj, guard=True):
                bad.append(obj)

    walk(data)
    return bad


def _check_pt2(path: Path, where: str) -> None:
    """Refuse a .pt2 whose loading could run code (see the comment above)."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{where}: the exported program is damaged ({short(err)}).") from None
    with z:
        names = z.namelist()
        roots = {n.split("/", 1)[0] for n in names if "/" in n}
        root = next(iter(roots)) + "/" if len(roots) == 1 else ""
        for name in names:
            rel = name[len(root) :]
            if rel.startswith(
                ("data/aotinductor/", "data/executorch/", "data/mtia", "xl_model_weights/")
            ) or rel.endswith((".so", ".dll", ".dylib", ".cubin", ".cpp")):
                raise ValueError(
                    f"{where}: the exported program contains compiled code or a storage "
                    f"layout this app does not load ({rel}); save it with "
                    "torch.export.save(torch.export.export(model, ...)) and no compilation."
                )
        for name in names:
            rel = name[len(root) :]
            if rel.endswith(".pt"):
                data = z.read(name)
                load_weights_only(io.BytesIO(data), f"{where} ({rel})", raw=_inner_pickle(data))
            elif rel.startswith(("data/weights/", "data/constants/")) and rel.endswith("_config.json"):
                folder = rel.rsplit("/", 1)[0] + "/"
                try:
                    config = json.loads(z.read(name)).get("config", {})
                except (ValueError, AttributeError) as err:
                    raise ValueError(f"{where}: {rel} is damaged ({short(err)}).") from None
                for fqn, meta in config.items():
                    file = str(meta.get("path_name", ""))
                    if file.startswith(("custom_obj_", "opaque_obj_")):
                        raise ValueError(
                            f"{where}: the exported program holds pickled Python objects "
                            f"({fqn}), which would run code when loaded; export a model "
                            "that holds only tensors."
                        )
                    if meta.get("use_pickle"):
                        data = z.read(root + folder + file)
                        load_weights_only(io.BytesIO(data), f"{where} ({fqn})", raw=_inner_pickle(data))
            elif rel.startswith("models/") and rel.endswith(".json"):
                try:
                    bad = _unsafe_graph_parts(json.loads(z.read(name)))
                except ValueError as err:
                    raise ValueError(f"{where}: {rel} is damaged ({short(err)}).") from None
                if bad:
                    raise ValueError(
                        f"{where}: the exported program has shape expressions or guards "
                        f"that are not plain arithmetic (e.g. {bad[0][:80]!r}); they would "
                        "run as Python code, so it is not loaded."
                    )


def _inner_pickle(data: bytes) -> bytes | None:
    """The data.pkl inside torch.save bytes, for diagnosing a refused pickle."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.read(name) if name else None
    except zipfile.BadZipFile:
        return data


def load_exported(path: Path, where: str) -> nn.Module:
    """A checked .pt2 as a module; unflattened, so its layers can be hooked (Grad-CAM)."""
    _check_pt2(path, where)
    try:
        with warnings.catch_warnings(), open(path, "rb") as f:
            warnings.simplefilter("ignore")
            program = torch.export.load(f)
    except Exception as err:
        raise ValueError(
            f"{where}: the exported program cannot be loaded: it is damaged or was saved "
            f"by an incompatible PyTorch ({short(err)})."
        ) from None
    try:
        return torch.export.unflatten(program)
    except Exception:  # some programs cannot be unflattened: flat, no hooks
        return program.module()
