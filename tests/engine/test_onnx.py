"""ONNX models through onnxruntime: an ONNX export of a torchvision ResNet-18 gives the PyTorch
model's predictions and occlusion map; gradient methods are unavailable with the reason; hostile
ONNX files get a plain message. TorchScript models get occlusion and RISE too."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
import torchvision
from conftest import relative_error
from onnx import TensorProto, helper, numpy_helper

import saliency_core as sc
from saliency_core.engine.cards import MODEL_SUFFIXES, card_rows, find_models, store_upload
from saliency_core.engine.explain import check_methods
from saliency_core.engine.samples import sample_images

TOL = 1e-4


def export_onnx(net: torch.nn.Module, path, size: int = 224, dynamic: bool = True) -> None:
    """The legacy (TorchScript-based) exporter: it needs only the onnx package, no network."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.rand(1, 3, size, size),),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            opset_version=17,
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None,
        )


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """A random-weight ResNet-18 as an ONNX file and as a state dict with its card."""
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    export_onnx(net, folder / "r18.onnx")
    torch.save(net.state_dict(), folder / "r18_weights.pth")
    (folder / "r18_weights.yaml").write_text("file: r18_weights.pth\narchitecture: resnet18\n")
    return {
        "onnx": sc.load_model(folder / "r18.onnx"),
        "torch": sc.load_model(folder / "r18_weights.yaml"),
        "folder": folder,
    }


def test_loaded_from_the_models_folder_with_a_card(resnet):
    model = resnet["onnx"]
    assert ".onnx" in MODEL_SUFFIXES
    assert model.card["format"] == "onnx" and model.card["batch"] == "any size"
    assert (
        model.card["runtime"].startswith("onnxruntime ") and "CPUExecutionProvider" in model.card["runtime"]
    )
    assert len(model.labels) == 1000 and model.gradcam_layer is None
    rows = {k: v for k, v, _ in card_rows(model.card)}
    assert rows["format"] == "ONNX (onnxruntime)" and rows["runtime"] == model.card["runtime"]
    assert any(path.endswith("r18.onnx") for path, _ in find_models(resnet["folder"]))
    card = resnet["folder"] / "named.yaml"
    card.write_text(
        "name: Parts classifier\nfile: r18.onnx\nlabels: [" + ", ".join(f"c{i}" for i in range(1000)) + "]\n"
    )
    named = sc.load_model(card)
    assert named.name == "Parts classifier" and named.labels[3] == "c3"
    assert named.card["digest"] != model.card["digest"]


def test_predictions_equal_pytorch(resnet, record):
    worst = 0.0
    for label, path in sample_images().items():
        x = resnet["torch"].preprocess(path)
        assert torch.equal(x, resnet["onnx"].preprocess(path))
        with torch.no_grad():
            ours, reference = resnet["onnx"].network(x), resnet["torch"].network(x)
        worst = max(worst, relative_error(ours, reference))
        top_onnx, top_torch = resnet["onnx"].predict(path), resnet["torch"].predict(path)
        assert [i for i, _, _ in top_onnx] == [i for i, _, _ in top_torch], label
        assert np.allclose([p for *_, p in top_onnx], [p for *_, p in top_torch], rtol=TOL, atol=0)
    assert record(f"ONNX vs PyTorch logits, ResNet-18, worst of {len(sample_images())} photos", worst) < TOL


def test_occlusion_map_equals_pytorch(resnet, chelsea_path, record):
    torch_exp = sc.explain(resnet["torch"], chelsea_path, method="occlusion")
    onnx_exp = sc.explain(resnet["onnx"], chelsea_path, method="occlusion")
    assert onnx_exp.target == torch_exp.target and onnx_exp.params == torch_exp.params
    err = record(
        "ONNX vs PyTorch occlusion map, ResNet-18",
        relative_error(torch.from_numpy(onnx_exp.attribution), torch.from_numpy(torch_exp.attribution)),
    )
    assert err < TOL


def test_rise_runs_on_onnx(resnet, chelsea_path, record):
    onnx_exp = sc.explain(resnet["onnx"], chelsea_path, method="rise", masks=24)
    torch_exp = sc.explain(resnet["torch"], chelsea_path, method="rise", masks=24)
    err = record(
        "ONNX vs PyTorch RISE (24 masks), ResNet-18",
        relative_error(torch.from_numpy(onnx_exp.attribution), torch.from_numpy(torch_exp.attribution)),
    )
    assert err < TOL


def test_gradient_methods_unavailable_with_reason(resnet, chelsea_path):
    usable = sc.available_methods(resnet["onnx"])
    assert usable["occlusion"] is None and usable["rise"] is None
    for name, method in sc.METHODS.items():
        if "gradient" in method.needs:
            assert "ONNX" in usable[name] and "gradients" in usable[name], name
    assert "gradient" in sc.METHODS["gradcam"].needs and "gradient" in sc.METHODS["smoothgrad"].needs
    with pytest.raises(ValueError, match="cannot run on this model"):
        check_methods(resnet["onnx"], ["occlusion", "gradient"])
    with pytest.raises(ValueError, match="no gradients"):
        sc.explain(resnet["onnx"], chelsea_path, method="gradient")
    # a CNN runs every method but attention rollout (a vision transformer's)
    assert all(
        reason is None
        for name, reason in sc.available_methods(resnet["torch"]).items()
        if "attention" not in sc.METHODS[name].needs
    )


def test_torchscript_gets_occlusion_and_rise(tmp_path, chelsea_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(net), str(tmp_path / "r.pt"))
    model = sc.load_model(tmp_path / "r.pt")
    usable = sc.available_methods(model)
    assert usable["gradcam"] and usable["occlusion"] is None and usable["rise"] is None
    for name, params in (("occlusion", {"window": 56, "stride": 56}), ("rise", {"masks": 8})):
        exp = sc.explain(model, chelsea_path, method=name, **params)
        assert exp.saliency.shape == (224, 224) and np.isfinite(exp.saliency).all()


# ---------------------------------------------------------------- hostile files


def _graph_model(inputs, initializers=(), nodes=None, opset=17, domain_opsets=()):
    nodes = nodes or [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(initializers)
    )
    opsets = [helper.make_opsetid("", opset), *[helper.make_opsetid(d, 1) for d in domain_opsets]]
    return helper.make_model(graph, opset_imports=opsets)


def _image_input(name="x", shape=("batch", 3, 224, 224), elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, list(shape))


def test_a_minimal_onnx_model_loads(tmp_path):
    """A 3-class model built by hand (GlobalAveragePool + Flatten): the screen lets good files in."""
    onnx.save_model(_graph_model([_image_input()]), str(tmp_path / "ok.onnx"))
    model = sc.load_model(tmp_path / "ok.onnx")
    assert model.labels == ["class 0", "class 1", "class 2"]


@pytest.mark.parametrize(
    "case,message",
    [
        ("empty", "empty"),
        ("garbage", "not an ONNX model"),
        ("external", "external data"),
        ("two_inputs", "takes 2 inputs"),
        ("int_input", "float32"),
        ("size", "input_size"),
        ("channels", "channels"),
        ("batch", "batches of exactly 4"),
        ("custom_op", "onnxruntime cannot load"),
        ("one_output", "one score per class"),
        ("gradcam_layer", "gradcam_layer"),
    ],
)
def test_hostile_onnx_files(tmp_path, case, message):
    path = tmp_path / "m.onnx"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(b"\x08\x07this is not a protobuf of an ONNX model" * 10)
    elif case == "external":
        weight = numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
        model = _graph_model(
            [_image_input()],
            [weight],
            nodes=[
                helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                helper.make_node("Flatten", ["p"], ["f"]),
                helper.make_node("MatMul", ["f", "w"], ["y"]),
            ],
        )
        onnx.save_model(
            model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0
        )
        assert (tmp_path / "weights.bin").exists()
    elif case == "two_inputs":
        onnx.save_model(_graph_model([_image_input(), _image_input("z")]), str(path))
    elif case == "int_input":
        onnx.save_model(
            _graph_model(
                [_image_input(elem=TensorProto.INT64)],
                nodes=[
                    helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT),
                    helper.make_node("GlobalAveragePool", ["c"], ["p"]),
                    helper.make_node("Flatten", ["p"], ["y"]),
                ],
            ),
            str(path),
        )
    elif case == "size":
        onnx.save_model(_graph_model([_image_input(shape=(1, 3, 32, 32))]), str(path))
    elif case == "channels":
        onnx.save_model(_graph_model([_image_input(shape=("b", 1, 224, 224))]), str(path))
    elif case == "batch":
        onnx.save_model(_graph_model([_image_input(shape=(4, 3, 224, 224))]), str(path))
    elif case == "custom_op":
        onnx.save_model(
            _graph_model(
                [_image_input()],
                nodes=[helper.make_node("Evil", ["x"], ["y"], domain="com.example.evil")],
                domain_opsets=["com.example.evil"],
            ),
            str(path),
        )
    elif case == "one_output":
        onnx.save_model(
            _graph_model(
                [_image_input()], nodes=[helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0)], opset=13
            ),
            str(path),
        )
    elif case == "gradcam_layer":
        onnx.save_model(_graph_model([_image_input()]), str(path))
        (tmp_path / "m.yaml").write_text("file: m.onnx\ngradcam_layer: layer4\n")
    with pytest.raises(ValueError, match=message) as err:
        sc.load_model(path)
    assert "Traceback" not in str(err.value) and ("m.onnx" in str(err.value) or "m.yaml" in str(err.value))


def test_fixed_batch_of_one_runs_image_by_image(tmp_path, chelsea_path, record):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    export_onnx(net, tmp_path / "one.onnx", dynamic=False)
    model = sc.load_model(tmp_path / "one.onnx")
    assert model.card["batch"] == "one image per call"
    x = torch.cat([model.preprocess(chelsea_path)] * 3)
    with torch.no_grad():
        ours, reference = model.network(x), torch.nn.Sequential(model.network[0], net)(x)
    assert record("ONNX fixed batch 1 vs PyTorch", relative_error(ours, reference)) < TOL


def test_upload_accepts_onnx(tmp_path):
    data = _graph_model([_image_input()]).SerializeToString()
    stored = store_upload([("parts.onnx", data)], tmp_path)
    assert stored.suffix == ".onnx" and sc.load_model(stored).labels == ["class 0", "class 1", "class 2"]
