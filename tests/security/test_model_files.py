"""Hostile model files: TorchScript that reads or writes files (in forward or while loading), that
calls operators outside the allow-list, that loops forever; the same through the sidebar upload.
Each gives its message, nothing in it runs, and no marker file appears."""

from __future__ import annotations

import os
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import shown
from streamlit.testing.v1 import AppTest
from torch import nn

import saliency_core as sc

ROOT = Path(__file__).resolve().parents[2]
REFUSED = "it was not loaded. Nothing in it was run."


def _save(module: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))
    return path


class WritesFile(nn.Module):
    """forward() maps ``path`` with shared=True: creates (and could overwrite) a server file."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        t = torch.from_file(self.path, shared=True, size=64, dtype=torch.uint8)
        return x.mean(dim=(2, 3)) + t[:3].float().sum() * 0


class ReadsHostname(nn.Module):
    """Its logits are the first bytes of /etc/hostname."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x):
        t = torch.from_file("/etc/hostname", shared=False, size=self.size, dtype=torch.uint8)
        return x.mean(dim=(2, 3))[:, :2] * 0 + t[:2].float().unsqueeze(0)


class WritesWhileLoading(nn.Module):
    """__setstate__ runs inside torch.jit.load: it maps ``path`` before any forward pass."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.buf = torch.zeros(8, dtype=torch.uint8)

    def forward(self, x):
        return x.mean(dim=(2, 3)) + self.buf[:3].float().sum() * 0

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        self.buf = torch.from_file(self.path, shared=True, size=8, dtype=torch.uint8)


class Plain(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


class LoopsForever(nn.Module):
    def forward(self, x):
        y = x.mean(dim=(2, 3))
        while True:
            y = y * 1.0
        return y


def test_torchscript_that_writes_a_file_is_refused_and_leaves_no_marker(tmp_path):
    marker = tmp_path / "MARKER"
    model = _save(WritesFile(str(marker)), tmp_path / "welds.pt")
    with pytest.raises(ValueError) as err:
        sc.load_model(model)
    assert str(err.value) == (
        "welds.pt: this TorchScript model calls torch.from_file, which reads or writes "
        f"files on the server; {REFUSED}"
    )
    assert not marker.exists()


def test_torchscript_that_reads_etc_hostname_is_refused(tmp_path):
    if not os.path.isfile("/etc/hostname") or os.path.getsize("/etc/hostname") < 2:
        pytest.skip("no /etc/hostname to read")
    model = _save(ReadsHostname(os.path.getsize("/etc/hostname")), tmp_path / "host.pt")
    with pytest.raises(ValueError) as err:
        sc.load_model(model)
    assert str(err.value) == (
        "host.pt: this TorchScript model calls torch.from_file, which reads or writes "
        f"files on the server; {REFUSED}"
    )


def test_torchscript_setstate_that_writes_while_loading_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    model = _save(WritesWhileLoading(str(marker)), tmp_path / "state.pt")
    marker.unlink(missing_ok=True)  # scripting does not create it; loading would
    with pytest.raises(ValueError) as err:
        sc.load_model(model)
    assert str(err.value) == (
        "state.pt: this TorchScript model's class WritesWhileLoading has a __setstate__ method that does "
        "more than store its saved values (it calls torch.from_file); it would run while the file loads, so "
        "it was not loaded. Nothing in it was run."
    )
    assert not marker.exists()


def _rewrite_forward(tmp_path: Path, name: str, body: str) -> Path:
    """A saved TorchScript archive whose forward() source is replaced by ``body`` (as an attacker
    would edit the zip); the debug pickles are dropped so the edited source is what loads."""
    base = _save(Plain(), tmp_path / "base.pt")
    out = tmp_path / f"{name}.pt"
    edited = False
    with zipfile.ZipFile(base) as z, zipfile.ZipFile(out, "w") as w:
        for info in z.infolist():
            if info.filename.endswith(".debug_pkl"):
                continue
            data = z.read(info.filename)
            if info.filename.endswith(".py") and b"  def forward(" in data:
                head, rest = data.decode().split("  def forward(")
                signature = rest.split("-> Tensor:\n")[0] + "-> Tensor:\n"
                data = (
                    head
                    + "  def forward("
                    + signature
                    + "".join(f"    {line}\n" for line in body.splitlines())
                ).encode()
                edited = True
            w.writestr(info.filename, data)
    assert edited
    return out


@pytest.mark.parametrize(
    "body, message",
    [
        (
            '_0 = torch.from_file\nt = _0("/tmp/x", True, 8)\nreturn torch.mean(x, [2, 3])',
            "calls torch.from_file, which reads or writes files on the server",
        ),
        (
            't = ops.aten.from_file("/tmp/x", True, 8)\nreturn torch.mean(x, [2, 3])',
            "calls ops.aten.from_file, which reads or writes files on the server",
        ),
        (
            't = ops.mylib.fetch("http://example.invalid")\nreturn torch.mean(x, [2, 3])',
            "calls ops.mylib.fetch, which is a custom operator from a compiled library, not a tensor "
            "operation this app knows",
        ),
        ('print("hi")\nreturn torch.mean(x, [2, 3])', "calls print, which writes to the server's output"),
        (
            't = torch.load("/etc/passwd")\nreturn torch.mean(x, [2, 3])',
            "calls torch.load, which reads or writes files on the server",
        ),
    ],
    ids=["alias", "ops_aten", "custom_op", "print", "torch_load"],
)
def test_torchscript_operators_outside_the_allow_list_are_named(tmp_path, body, message):
    model = _rewrite_forward(tmp_path, "edited", body)
    with pytest.raises(ValueError) as err:
        sc.load_model(model)
    assert str(err.value) == f"edited.pt: this TorchScript model {message}; {REFUSED}"


def test_looping_model_is_stopped_within_the_time_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_LOAD_TIMEOUT", "2")
    model = _save(LoopsForever(), tmp_path / "loop.pt")
    start = time.monotonic()
    with pytest.raises(ValueError) as err:
        sc.load_model(model)
    elapsed = time.monotonic() - start
    assert str(err.value) == (
        "loop.pt: the model did not finish its test run on one image within 2 seconds (the limit set by "
        "SALIENCY_LOAD_TIMEOUT); it may loop forever or be far too slow for this server. The run was stopped "
        "and the model was not loaded."
    )
    # 2 s of running plus starting Python and torch in the test process; never minutes
    assert elapsed < 45, elapsed
    running = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    for proc in running:
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        assert str(model).encode() not in cmdline, "the test process was left running"


def test_bad_load_timeout_setting_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_LOAD_TIMEOUT", "1e400")
    model = _save(Plain(), tmp_path / "p.pt")
    with pytest.raises(
        ValueError,
        match=r"SALIENCY_LOAD_TIMEOUT must be a number of seconds above 0 and at "
        r"most 3600; got '1e400'",
    ):
        sc.load_model(model)


# ---- the same through the sidebar upload ----------------------------------------------------


def _upload_app(monkeypatch, tmp_path) -> AppTest:
    monkeypatch.setenv("SALIENCY_ALLOW_MODEL_UPLOAD", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("SALIENCY_MODELS_DIR", str(tmp_path / "models"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["methods"] = []
    at = at.run()
    assert not at.exception, at.exception
    return at


def _upload(at, files):
    uploader = next(u for u in at.get("file_uploader") if u.key == "model_upload")
    uploader.set_value(files)
    at = at.run()
    assert not at.exception, at.exception
    return at, [shown(e.value) for e in at.sidebar.error]


def test_uploaded_torchscript_is_refused_without_the_opt_in_and_screened_with_it(monkeypatch, tmp_path):
    marker = tmp_path / "MARKER"
    data = _save(WritesFile(str(marker)), tmp_path / "built.pt").read_bytes()
    at = _upload_app(monkeypatch, tmp_path)

    at, errors = _upload(at, ("welds.pt", data, "application/octet-stream"))
    assert errors == [
        "Upload: welds.pt: this is TorchScript (torch.jit.save), a format that holds code, and uploads may "
        "only hold weights: a state dict (.pth, torch.save(model.state_dict())) or a .safetensors file, "
        "with a card naming its torchvision architecture. Nothing in it was run. (The operator can allow "
        "code formats with SALIENCY_ALLOW_CODE_MODELS=1.)"
    ]
    assert not marker.exists()

    monkeypatch.setenv("SALIENCY_ALLOW_CODE_MODELS", "1")
    at, errors = _upload(at, ("welds2.pt", data, "application/octet-stream"))
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        "This model cannot be used. welds2.pt: this TorchScript model calls "
        "torch.from_file, which reads or writes files on the server; " + REFUSED
    )
    assert not marker.exists()
