"""Reading TFLite flatbuffers with Vela's generated schema classes (pure Python, no Vela core).

The worker checks every model here before Vela sees it: Vela's C++ core trusts indices and
offsets in the file and can crash on a corrupt one.  ``inspect_model`` also collects what the
plugin and the advisor need from the input model.  ``modelgen.py`` writes models with the same
schema classes, re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

# The schema classes modelgen.py writes models with, re-exported so that only this package
# imports Vela.
from ethosu.vela.tflite import (
    AddOptions,
    Buffer,
    Conv2DOptions,
    DepthwiseConv2DOptions,
    FullyConnectedOptions,
    Model,
    Operator,
    OperatorCode,
    Pool2DOptions,
    QuantizationParameters,
    ReshapeOptions,
    SubGraph,
    Tensor,
)
from ethosu.vela.tflite.ActivationFunctionType import ActivationFunctionType
from ethosu.vela.tflite.BuiltinOperator import BuiltinOperator
from ethosu.vela.tflite.BuiltinOptions import BuiltinOptions
from ethosu.vela.tflite.Padding import Padding
from ethosu.vela.tflite.TensorType import TensorType

from . import ModelFacts

__all__ = [
    "ActivationFunctionType",
    "AddOptions",
    "Buffer",
    "BuiltinOperator",
    "BuiltinOptions",
    "Conv2DOptions",
    "DepthwiseConv2DOptions",
    "FullyConnectedOptions",
    "Model",
    "ModelCheckError",
    "Operator",
    "OperatorCode",
    "Padding",
    "Pool2DOptions",
    "QuantizationParameters",
    "ReshapeOptions",
    "SubGraph",
    "Tensor",
    "TensorType",
    "inspect_model",
    "model_operators",
    "parse_model",
]


class ModelCheckError(Exception):
    """The model is inconsistent; the message says where."""


def parse_model(data: bytes) -> Any:
    """The root table of a TFLite flatbuffer (Vela's generated schema classes)."""
    return Model.Model.GetRootAsModel(data, 0)


def walk_operators(model: Any) -> Iterator[tuple[Any, Any, str]]:
    """Every operator of every subgraph, in order: (subgraph, operator, name).

    Builtin operators are named as in TFLite's schema (``CONV_2D``), custom ones by their code.
    """

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            codes.append(code.CustomCode().decode("utf-8", "replace"))
        else:
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            codes.append(names.get(builtin, str(builtin)))
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            yield graph, op, codes[op.OpcodeIndex()]


def model_operators(model: Any) -> list[str]:
    """Operator names, in order, of every subgraph of a parsed model."""
    return [name for _, _, name in walk_operators(model)]


def check_buffers(model: Any, size: int) -> None:
    """Refuse a model whose weight buffers point past the end of the file (a truncated file).

    Vela's C++ core does not check this and can crash on it.
    """
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        field = buffer._tab.Offset(4)  # the 'data' vector
        if field:
            start = buffer._tab.Vector(field)
            end = start + buffer._tab.VectorLen(field)
            if end > size:
                raise ModelCheckError(f"truncated or corrupt: buffer {i} ends at byte {end}, past the "
                                   f"end of the file ({size} bytes)")
        offset, length = buffer.Offset(), buffer.Size()
        if offset > 1 and offset + length > size:
            raise ModelCheckError(f"truncated or corrupt: buffer {i} ends at byte {offset + length}, "
                               f"past the end of the file ({size} bytes)")


def _check_quantization(tensor: Any, shape: list[int], where: str) -> None:
    import numpy as np

    quant = tensor.Quantization()
    if quant is None:
        return
    # the numpy views read whole vectors at once: per-element calls cost ~25 us each
    scales = quant.ScaleAsNumpy() if quant.ScaleLength() else None
    points = quant.ZeroPointAsNumpy() if quant.ZeroPointLength() else None
    count = 0 if scales is None else len(scales)
    zeros = 0 if points is None else len(points)
    if scales is not None and not (np.isfinite(scales).all() and (scales > 0).all() and (scales <= 1e30).all()):
        raise ModelCheckError(f"corrupt: {where} has a quantisation scale that is not a positive number")
    # per-channel scales must match a dimension; converters write bias tensors with an axis
    # beyond their rank, which Vela accepts, so the axis itself is not checked
    if count > 1 and count not in shape:
        raise ModelCheckError(f"corrupt: {where} has {count} quantisation scales for shape {shape}")
    # TFLite's quantisation spec: per-axis zero points are all 0, one per scale
    if count > 1 and (zeros != count or (points is not None and points.any())):
        raise ModelCheckError(f"corrupt: {where} has per-channel zero points that are not one 0 per channel")
    low, high = {TensorType.INT8: (-128, 127), TensorType.UINT8: (0, 255)}.get(tensor.Type(), (None, None))
    if low is not None and points is not None and ((points < low).any() or (points > high).any()):
        raise ModelCheckError(f"corrupt: {where} has a zero point outside its type's range")


def check_structure(model: Any) -> None:
    """Refuse indices and values that point outside the model: Vela's C++ core trusts them.

    Checks operator codes, every tensor's buffer, type, shape and name, and every operator's
    opcode and tensor indices.  Each message says where the model is inconsistent.
    """

    max_builtin = max(v for k, v in vars(BuiltinOperator).items() if not k.startswith("_"))
    max_type = max(v for k, v in vars(TensorType).items() if not k.startswith("_"))
    codes, buffers = model.OperatorCodesLength(), model.BuffersLength()
    for i in range(codes):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if not 0 <= builtin <= max_builtin:
            raise ModelCheckError(f"corrupt: operator code {i} names unknown builtin operator {builtin}")
        if code.CustomCode():
            code.CustomCode().decode("utf-8")
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        tensors = graph.TensorsLength()
        for t in range(tensors):
            tensor = graph.Tensors(t)
            if not 0 <= tensor.Buffer() < max(buffers, 1):
                raise ModelCheckError(f"corrupt: tensor {t} of subgraph {s} uses buffer {tensor.Buffer()}, "
                                   f"but the model has {buffers} buffers")
            if not 0 <= tensor.Type() <= max_type:
                raise ModelCheckError(f"corrupt: tensor {t} of subgraph {s} has unknown type {tensor.Type()}")
            shape = tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []
            if any(d < -1 or d > 1 << 24 for d in shape) or math.prod(max(d, 1) for d in shape) > 1 << 31:
                raise ModelCheckError(f"corrupt: tensor {t} of subgraph {s} has shape {shape}")
            if tensor.Name():
                tensor.Name().decode("utf-8")
            _check_quantization(tensor, shape, f"tensor {t} of subgraph {s}")
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            if not 0 <= op.OpcodeIndex() < codes:
                raise ModelCheckError(f"corrupt: operator {o} of subgraph {s} uses operator code "
                                   f"{op.OpcodeIndex()}, but the model has {codes}")
            used = [op.Inputs(i) for i in range(op.InputsLength())]
            used += [op.Outputs(i) for i in range(op.OutputsLength())]
            bad = [i for i in used if not -1 <= i < tensors]
            if bad:
                raise ModelCheckError(f"corrupt: operator {o} of subgraph {s} refers to tensor {bad[0]}, "
                                   f"but the subgraph has {tensors}")
        ends = [graph.Inputs(i) for i in range(graph.InputsLength())]
        ends += [graph.Outputs(i) for i in range(graph.OutputsLength())]
        if any(not 0 <= i < tensors for i in ends):
            raise ModelCheckError(f"corrupt: subgraph {s} lists an input or output tensor that does not exist")


def inspect_model(data: bytes) -> ModelFacts:
    """Check a model's structure and collect, in one walk, what the plugin and the advisor need:
    the operators, how many compute in float, and the shapes of every convolution."""

    model = parse_model(data)
    check_buffers(model, len(data))
    check_structure(model)
    float_types = {TensorType.FLOAT32, TensorType.FLOAT16}
    operators: list[str] = []
    float_ops = 0
    convs: dict[str, dict[str, Any]] = {}
    for graph, op, name in walk_operators(model):
        operators.append(name)
        outputs = [op.Outputs(i) for i in range(op.OutputsLength())]
        if name not in ("QUANTIZE", "DEQUANTIZE") and any(
                t >= 0 and graph.Tensors(t).Type() in float_types for t in outputs):
            float_ops += 1
        if name == "CONV_2D":
            conv = convolution(graph, op)
            if conv is not None:
                convs[conv.pop("output")] = conv
    return ModelFacts(tuple(operators), float_ops, convs)


def convolution(graph: Any, op: Any) -> dict[str, Any] | None:
    """Shape details of a CONV_2D, with its output tensor's name (Vela's per-layer "Name")."""

    if op.InputsLength() < 2 or op.BuiltinOptionsType() != BuiltinOptions.Conv2DOptions:
        return None
    table = op.BuiltinOptions()
    options = Conv2DOptions.Conv2DOptions()
    options.Init(table.Bytes, table.Pos)
    ifm, weights, ofm = graph.Tensors(op.Inputs(0)), graph.Tensors(op.Inputs(1)), graph.Tensors(op.Outputs(0))
    types = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}
    return {
        "output": (ofm.Name() or b"").decode("utf-8", "replace"),
        "input_shape": ifm.ShapeAsNumpy().tolist(),
        "output_shape": ofm.ShapeAsNumpy().tolist(),
        "kernel": weights.ShapeAsNumpy().tolist()[1:3],
        "stride": [options.StrideH(), options.StrideW()],
        "dilation": [options.DilationHFactor(), options.DilationWFactor()],
        "padding": "same" if options.Padding() == Padding.SAME else "valid",
        "dtype": types.get(ifm.Type(), str(ifm.Type())).lower(),
    }


