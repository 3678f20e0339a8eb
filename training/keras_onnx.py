"""Keras functional models -> ONNX graphs, layer by layer, with ``onnx.helper`` (no tf2onnx).

The emotion CNNs (:func:`pipeline.emotion.build_cnn`, and the seed ensembles that average
several of them) use a dozen layer types; each is written here as the ONNX operators that
compute the same thing in inference mode. tf2onnx (what ``keras.Model.export(format="onnx")``
calls) pins protobuf 3 and numpy 1 and does not install beside the project's TensorFlow
2.21 / numpy 2.4; a direct translation of these few layers has no such dependency and fails
loudly on any layer it does not know.

Layout: every tensor keeps Keras's channels-last layout; a ``Conv1D`` is wrapped in two
transposes (ONNX convolutions are channels-first), which ONNX Runtime's optimiser folds away.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class UnsupportedLayer(ValueError):
    """A layer (or a layer setting) this translator does not know."""


class _Graph:
    """Nodes and initializers being collected, with unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _activation(g: _Graph, x: str, activation: str, hint: str) -> str:
    if activation in ("linear", None):
        return x
    if activation == "relu":
        return g.op("Relu", [x], hint + "_relu")
    if activation == "softmax":
        return g.op("Softmax", [x], hint + "_softmax", axis=-1)
    raise UnsupportedLayer(f"activation {activation!r} in {hint}")


def _same_pads(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``padding="same"``: ``(left, right)`` for an input of ``length`` steps."""
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


def _layer(g: _Graph, layer: Any, inputs: list[str], input_shapes: list[tuple]) -> list[str]:
    """ONNX nodes for one Keras layer applied to ``inputs``; the output names."""
    kind = type(layer).__name__
    config = layer.get_config()
    hint = layer.name
    weights = [np.asarray(w) for w in layer.get_weights()]
    if kind == "Functional":
        return _model(g, layer, inputs)
    if kind == "Dropout":
        return inputs
    if kind == "Reshape":
        shape = np.array([0, *config["target_shape"]], np.int64)
        return [g.op("Reshape", [inputs[0], g.const(shape, hint + "_shape")], hint)]
    if kind == "Flatten":
        return [g.op("Flatten", inputs, hint, axis=1)]
    if kind == "Permute":
        return [g.op("Transpose", inputs, hint, perm=[0, *config["dims"]])]
    if kind == "ReLU":
        if config.get("max_value") is not None or config.get("negative_slope") or config.get("threshold"):
            raise UnsupportedLayer(f"ReLU with settings {config} in {hint}")
        return [g.op("Relu", inputs, hint)]
    if kind == "Concatenate":
        return [g.op("Concat", inputs, hint, axis=int(config["axis"]))]
    if kind == "Average":
        return [g.op("Mean", inputs, hint)]
    if kind == "Dense":
        kernel = weights[0].astype(np.float32)
        x = g.op("MatMul", [inputs[0], g.const(kernel, hint + "_kernel")], hint + "_matmul")
        if config["use_bias"]:
            x = g.op("Add", [x, g.const(weights[1].astype(np.float32), hint + "_bias")], hint + "_bias")
        return [_activation(g, x, config["activation"], hint)]
    if kind == "BatchNormalization":
        if config["axis"] not in (-1, len(input_shapes[0]) - 1):
            raise UnsupportedLayer(f"BatchNormalization over axis {config['axis']} in {hint}")
        names = [w.name for w in layer.weights]
        values = dict(zip(names, weights))
        gamma = values.get("gamma", np.ones_like(values["moving_mean"]))
        beta = values.get("beta", np.zeros_like(values["moving_mean"]))
        scale = (gamma / np.sqrt(values["moving_variance"] + config["epsilon"])).astype(np.float32)
        shift = (beta - values["moving_mean"] * scale).astype(np.float32)
        x = g.op("Mul", [inputs[0], g.const(scale, hint + "_scale")], hint + "_mul")
        return [g.op("Add", [x, g.const(shift, hint + "_shift")], hint)]
    if kind == "Conv1D":
        if config["data_format"] != "channels_last" or tuple(config["dilation_rate"]) != (1,) or config["groups"] != 1:
            raise UnsupportedLayer(f"Conv1D with settings {config} in {hint}")
        kernel = weights[0]  # [k, in, out]
        k, stride = kernel.shape[0], int(config["strides"][0])
        if config["padding"] == "same":
            pads = _same_pads(int(input_shapes[0][1]), k, stride)
        elif config["padding"] == "valid":
            pads = (0, 0)
        else:
            raise UnsupportedLayer(f"Conv1D padding {config['padding']!r} in {hint}")
        x = g.op("Transpose", inputs, hint + "_to_ncl", perm=[0, 2, 1])
        conv_inputs = [x, g.const(np.transpose(kernel, (2, 1, 0)).astype(np.float32), hint + "_kernel")]
        if config["use_bias"]:
            conv_inputs.append(g.const(weights[1].astype(np.float32), hint + "_bias"))
        x = g.op("Conv", conv_inputs, hint + "_conv", kernel_shape=[k], strides=[stride], pads=list(pads))
        x = g.op("Transpose", [x], hint + "_to_nlc", perm=[0, 2, 1])
        return [_activation(g, x, config["activation"], hint)]
    raise UnsupportedLayer(f"layer type {kind} ({hint}) has no ONNX translation here")


def _model(g: _Graph, model: Any, inputs: list[str]) -> list[str]:
    """Translate a functional model whose inputs are the ONNX tensors ``inputs``; its output names."""
    names = {id(t): name for t, name in zip(model.inputs, inputs)}
    for depth in sorted(model._nodes_by_depth, reverse=True):  # deepest first = inputs first
        for node in model._nodes_by_depth[depth]:
            layer = node.operation
            if type(layer).__name__ == "InputLayer":
                continue
            ins = [names[id(t)] for t in node.input_tensors]
            outs = _layer(g, layer, ins, [tuple(t.shape) for t in node.input_tensors])
            for tensor, name in zip(node.output_tensors, outs):
                names[id(tensor)] = name
    return [names[id(t)] for t in model.outputs]


def keras_to_onnx(model: Any, *, opset: int = 17, output_name: str = "probabilities") -> Any:
    """An ``onnx.ModelProto`` computing ``model`` in inference mode; inputs keep the Keras input names.

    Every input is float32 ``[batch, width]`` with a dynamic batch axis; the one output is named
    ``output_name``. Raises :class:`UnsupportedLayer` for a layer it cannot translate.
    """
    import onnx
    from onnx import TensorProto, helper

    g = _Graph()
    input_names = [t.name for t in model.inputs]
    outputs = _model(g, model, input_names)
    if len(outputs) != 1:
        raise UnsupportedLayer(f"expected one output, the model has {len(outputs)}")
    g.nodes.append(helper.make_node("Identity", outputs, [output_name], name=output_name))
    graph = helper.make_graph(
        g.nodes, model.name,
        [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, ["batch", *t.shape[1:]]) for t in model.inputs],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", model.outputs[0].shape[-1]])],
        g.initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="training.keras_onnx")
    proto.ir_version = min(proto.ir_version, 9)
    onnx.checker.check_model(proto)
    return proto
