"""Hand-built hostile ONNX graphs (take (batch, 3, 224, 224), give 3 scores): one whose test run
never finishes, one whose shapes ask for tens of GB, one that multiplies its scores by a constant."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _pooled():
    return [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"])]


def times(constant: float) -> onnx.ModelProto:
    """Mean colour x ``constant``: NaN scores for ``constant`` NaN."""
    return _model(
        [*_pooled(), helper.make_node("Mul", ["f", "c"], ["y"])],
        [numpy_helper.from_array(np.array([constant], np.float32), "c")],
    )


def looping() -> onnx.ModelProto:
    """A ``Loop`` of 10**15 iterations (adding 1 to a number) before the scores."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["c_in"], ["c_out"]),
            helper.make_node("Add", ["v_in", "one"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        [numpy_helper.from_array(np.array([1.0], np.float32), "one")],
    )
    nodes = [
        *_pooled(),
        helper.make_node("Loop", ["m", "cond", "v0"], ["v"], body=body),
        helper.make_node("Mul", ["v", "zero"], ["v2"]),
        helper.make_node("Add", ["f", "v2"], ["y"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(10**15, np.int64), "m"),
        numpy_helper.from_array(np.array(True), "cond"),
        numpy_helper.from_array(np.array([0.0], np.float32), "v0"),
        numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
    ]
    return _model(nodes, initializers)


def huge() -> onnx.ModelProto:
    """A tensor of ones of shape (batch, 3, 44800, 44800): 24 GB per image, summed into the scores."""
    nodes = [
        *_pooled(),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Mul", ["s", "k"], ["s2"]),
        helper.make_node(
            "ConstantOfShape", ["s2"], ["big"], value=numpy_helper.from_array(np.array([1.0], np.float32))
        ),
        helper.make_node("ReduceSum", ["big"], ["t"], keepdims=0),
        helper.make_node("Mul", ["t", "zero"], ["t2"]),
        helper.make_node("Add", ["f", "t2"], ["y"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1, 1, 200, 200], np.int64), "k"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    return _model(nodes, initializers)
