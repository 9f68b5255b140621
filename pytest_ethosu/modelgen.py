"""Build small int8 TensorFlow Lite models in code, without TensorFlow.

For tests, examples and single-layer experiments: the models are real TFLite flatbuffers
(identifier ``TFL3``, schema version 3) that Vela compiles like any converter output.  Weights
are seeded random int8, so the same calls give the same bytes.

    m = ModelBuilder((1, 32, 32, 3))
    x = m.conv2d(m.input, filters=16, kernel=3, stride=2, activation="relu")
    x = m.depthwise_conv2d(x, kernel=3)
    x = m.fully_connected(m.reshape(x, (1, -1)), units=10)
    data = m.build(x)          # bytes, or m.save(path, x)

Built on the ``flatbuffers`` package and the TFLite schema classes that Vela ships
(re-exported by ``vela/tflite.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

from .vela.tflite import (
    ActivationFunctionType,
    AddOptions,
    Buffer,
    BuiltinOperator,
    BuiltinOptions,
    Conv2DOptions,
    DepthwiseConv2DOptions,
    FullyConnectedOptions,
    Model,
    Operator,
    OperatorCode,
    Padding,
    Pool2DOptions,
    QuantizationParameters,
    ReshapeOptions,
    SubGraph,
    Tensor,
    TensorType,
)

ACTIVATIONS = {None: ActivationFunctionType.NONE, "relu": ActivationFunctionType.RELU,
               "relu6": ActivationFunctionType.RELU6}
PADDINGS = {"same": Padding.SAME, "valid": Padding.VALID}


@dataclass(frozen=True)
class TensorRef:
    index: int
    shape: tuple[int, ...]


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: int
    scale: list[float]
    zero_point: list[int]
    data: bytes | None
    axis: int = 0


@dataclass
class _Op:
    code: tuple[int, str | None]
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: dict[str, Any]


def _out_size(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


class ModelBuilder:
    """A single-subgraph int8 model, built layer by layer."""

    def __init__(self, input_shape: tuple[int, ...], seed: int = 0, dtype: str = "int8") -> None:
        self._rng = np.random.default_rng(seed)
        self._tensors: list[_Tensor] = []
        self._ops: list[_Op] = []
        self._float = dtype == "float32"
        self.input = self._add_activation("input", tuple(input_shape))

    # -- tensors ----------------------------------------------------------------------------

    def _add(self, tensor: _Tensor) -> TensorRef:
        self._tensors.append(tensor)
        return TensorRef(len(self._tensors) - 1, tensor.shape)

    def _add_activation(self, name: str, shape: tuple[int, ...]) -> TensorRef:
        if self._float:
            return self._add(_Tensor(name, shape, TensorType.FLOAT32, [], [], None))
        return self._add(_Tensor(name, shape, TensorType.INT8, [0.05], [-3], None))

    def _weights(self, name: str, shape: tuple[int, ...], axis: int) -> TensorRef:
        if self._float:
            values = self._rng.normal(0, 0.1, size=shape).astype(np.float32)
            return self._add(_Tensor(name, shape, TensorType.FLOAT32, [], [], values.tobytes()))
        ints = self._rng.integers(-127, 128, size=shape, dtype=np.int8)
        channels = shape[axis]
        scales = [float(s) for s in self._rng.uniform(0.002, 0.01, size=channels)]
        return self._add(_Tensor(name, shape, TensorType.INT8, scales, [0] * channels,
                                 ints.tobytes(), axis))

    def _bias(self, name: str, channels: int, weight_scales: list[float]) -> TensorRef:
        if self._float:
            values = np.zeros(channels, dtype=np.float32)
            return self._add(_Tensor(name, (channels,), TensorType.FLOAT32, [], [], values.tobytes()))
        ints = self._rng.integers(-1000, 1000, size=channels, dtype=np.int32)
        scales = [0.05 * s for s in weight_scales]
        return self._add(_Tensor(name, (channels,), TensorType.INT32, scales, [0] * channels,
                                 ints.tobytes()))

    def _op(self, code: int | str, inputs: list[TensorRef], out_shape: tuple[int, ...], name: str,
            options_type: int = 0, **options: Any) -> TensorRef:
        out = self._add_activation(name, out_shape)
        key = (code, None) if isinstance(code, int) else (BuiltinOperator.CUSTOM, code)
        self._ops.append(_Op(key, [t.index for t in inputs], [out.index], options_type, options))
        return out

    def _name(self, kind: str) -> str:
        return f"{kind}_{len(self._ops)}"

    # -- layers -----------------------------------------------------------------------------

    def conv2d(self, x: TensorRef, filters: int, kernel: int = 3, stride: int = 1,
               padding: str = "same", activation: str | None = "relu", name: str | None = None
               ) -> TensorRef:
        n, h, w, c = x.shape
        name = name or self._name("conv2d")
        weights = self._weights(f"{name}/weights", (filters, kernel, kernel, c), 0)
        bias = self._bias(f"{name}/bias", filters, self._tensors[weights.index].scale)
        out = (n, _out_size(h, kernel, stride, padding), _out_size(w, kernel, stride, padding), filters)
        return self._op(BuiltinOperator.CONV_2D, [x, weights, bias], out, name,
                        BuiltinOptions.Conv2DOptions, padding=PADDINGS[padding], stride=stride,
                        activation=ACTIVATIONS[activation])

    def depthwise_conv2d(self, x: TensorRef, kernel: int = 3, stride: int = 1, padding: str = "same",
                         activation: str | None = "relu", name: str | None = None) -> TensorRef:
        n, h, w, c = x.shape
        name = name or self._name("depthwise")
        weights = self._weights(f"{name}/weights", (1, kernel, kernel, c), 3)
        bias = self._bias(f"{name}/bias", c, self._tensors[weights.index].scale)
        out = (n, _out_size(h, kernel, stride, padding), _out_size(w, kernel, stride, padding), c)
        return self._op(BuiltinOperator.DEPTHWISE_CONV_2D, [x, weights, bias], out, name,
                        BuiltinOptions.DepthwiseConv2DOptions, padding=PADDINGS[padding],
                        stride=stride, activation=ACTIVATIONS[activation])

    def _pool(self, code: int, kind: str, x: TensorRef, size: int, stride: int | None,
              padding: str, name: str | None) -> TensorRef:
        n, h, w, c = x.shape
        stride = stride or size
        out = (n, _out_size(h, size, stride, padding), _out_size(w, size, stride, padding), c)
        return self._op(code, [x], out, name or self._name(kind), BuiltinOptions.Pool2DOptions,
                        padding=PADDINGS[padding], stride=stride, size=size,
                        activation=ActivationFunctionType.NONE)

    def max_pool(self, x: TensorRef, size: int = 2, stride: int | None = None, padding: str = "valid",
                 name: str | None = None) -> TensorRef:
        return self._pool(BuiltinOperator.MAX_POOL_2D, "maxpool", x, size, stride, padding, name)

    def avg_pool(self, x: TensorRef, size: int = 2, stride: int | None = None, padding: str = "valid",
                 name: str | None = None) -> TensorRef:
        return self._pool(BuiltinOperator.AVERAGE_POOL_2D, "avgpool", x, size, stride, padding, name)

    def add(self, a: TensorRef, b: TensorRef, name: str | None = None) -> TensorRef:
        return self._op(BuiltinOperator.ADD, [a, b], a.shape, name or self._name("add"),
                        BuiltinOptions.AddOptions, activation=ActivationFunctionType.NONE)

    def reshape(self, x: TensorRef, shape: tuple[int, ...], name: str | None = None) -> TensorRef:
        size = math.prod(x.shape)
        known = math.prod(d for d in shape if d != -1)
        resolved = tuple(size // known if d == -1 else d for d in shape)
        return self._op(BuiltinOperator.RESHAPE, [x], resolved, name or self._name("reshape"),
                        BuiltinOptions.ReshapeOptions, new_shape=list(resolved))

    def fully_connected(self, x: TensorRef, units: int, activation: str | None = None,
                        name: str | None = None) -> TensorRef:
        name = name or self._name("dense")
        depth = x.shape[-1]
        weights = self._weights(f"{name}/weights", (units, depth), 0)
        # a per-tensor weight scale, as the converter writes for fully connected layers
        self._tensors[weights.index].scale = [0.005]
        self._tensors[weights.index].zero_point = [0]
        bias = self._bias(f"{name}/bias", units, [0.005] * units)
        self._tensors[bias.index].scale = [0.05 * 0.005]
        self._tensors[bias.index].zero_point = [0]
        return self._op(BuiltinOperator.FULLY_CONNECTED, [x, weights, bias], (x.shape[0], units),
                        name, BuiltinOptions.FullyConnectedOptions, activation=ACTIVATIONS[activation])

    def custom(self, x: TensorRef, code: str, name: str | None = None) -> TensorRef:
        """A custom operator: Vela cannot map it, so it stays on the CPU."""
        return self._op(code, [x], x.shape, name or self._name(code))

    # -- serialisation ----------------------------------------------------------------------

    def build(self, *outputs: TensorRef) -> bytes:
        outputs = outputs or (TensorRef(self._ops[-1].outputs[0], ()),)
        b = flatbuffers.Builder(1024)
        codes: list[tuple[int, str | None]] = []
        for op in self._ops:
            if op.code not in codes:
                codes.append(op.code)
        # buffer 0 is the empty sentinel; each constant tensor gets its own buffer
        buffers = [b""]
        tensor_buffer = []
        for t in self._tensors:
            if t.data is None:
                tensor_buffer.append(0)
            else:
                tensor_buffer.append(len(buffers))
                buffers.append(t.data)

        def vector(start: Any, values: list[int], prepend: Any) -> int:
            start(b, len(values))
            for v in reversed(values):
                prepend(v)
            return int(b.EndVector())

        buffer_offsets = []
        for data in buffers:
            data_vec = b.CreateByteVector(data) if data else None
            Buffer.BufferStart(b)
            if data_vec is not None:
                Buffer.BufferAddData(b, data_vec)
            buffer_offsets.append(Buffer.BufferEnd(b))
        tensor_offsets = []
        for i, t in enumerate(self._tensors):
            name = b.CreateString(t.name)
            shape = vector(Tensor.TensorStartShapeVector, list(t.shape), b.PrependInt32)
            quant = None
            if t.scale:
                scale = vector(QuantizationParameters.QuantizationParametersStartScaleVector,
                               t.scale, b.PrependFloat32)  # type: ignore[arg-type]
                zero = vector(QuantizationParameters.QuantizationParametersStartZeroPointVector,
                              t.zero_point, b.PrependInt64)
                QuantizationParameters.QuantizationParametersStart(b)
                QuantizationParameters.QuantizationParametersAddScale(b, scale)
                QuantizationParameters.QuantizationParametersAddZeroPoint(b, zero)
                QuantizationParameters.QuantizationParametersAddQuantizedDimension(b, t.axis)
                quant = QuantizationParameters.QuantizationParametersEnd(b)
            Tensor.TensorStart(b)
            Tensor.TensorAddShape(b, shape)
            Tensor.TensorAddType(b, t.dtype)
            Tensor.TensorAddBuffer(b, tensor_buffer[i])
            Tensor.TensorAddName(b, name)
            if quant is not None:
                Tensor.TensorAddQuantization(b, quant)
            tensor_offsets.append(Tensor.TensorEnd(b))
        op_offsets = [self._serialise_op(b, op, codes, vector) for op in self._ops]
        graph_name = b.CreateString("main")
        tensors = self._offsets(b, SubGraph.SubGraphStartTensorsVector, tensor_offsets)
        inputs = vector(SubGraph.SubGraphStartInputsVector, [self.input.index], b.PrependInt32)
        outs = vector(SubGraph.SubGraphStartOutputsVector, [o.index for o in outputs], b.PrependInt32)
        ops = self._offsets(b, SubGraph.SubGraphStartOperatorsVector, op_offsets)
        SubGraph.SubGraphStart(b)
        SubGraph.SubGraphAddTensors(b, tensors)
        SubGraph.SubGraphAddInputs(b, inputs)
        SubGraph.SubGraphAddOutputs(b, outs)
        SubGraph.SubGraphAddOperators(b, ops)
        SubGraph.SubGraphAddName(b, graph_name)
        graph = SubGraph.SubGraphEnd(b)
        code_offsets = []
        for builtin, custom in codes:
            custom_name = b.CreateString(custom) if custom else None
            OperatorCode.OperatorCodeStart(b)
            OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
            OperatorCode.OperatorCodeAddBuiltinCode(b, builtin)
            OperatorCode.OperatorCodeAddVersion(b, 1)
            if custom_name is not None:
                OperatorCode.OperatorCodeAddCustomCode(b, custom_name)
            code_offsets.append(OperatorCode.OperatorCodeEnd(b))
        description = b.CreateString("pytest_ethosu.modelgen")
        code_vec = self._offsets(b, Model.ModelStartOperatorCodesVector, code_offsets)
        graphs = self._offsets(b, Model.ModelStartSubgraphsVector, [graph])
        buffer_vec = self._offsets(b, Model.ModelStartBuffersVector, buffer_offsets)
        Model.ModelStart(b)
        Model.ModelAddVersion(b, 3)
        Model.ModelAddOperatorCodes(b, code_vec)
        Model.ModelAddSubgraphs(b, graphs)
        Model.ModelAddDescription(b, description)
        Model.ModelAddBuffers(b, buffer_vec)
        b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def save(self, path: str | Path, *outputs: TensorRef) -> Path:
        path = Path(path)
        path.write_bytes(self.build(*outputs))
        return path

    @staticmethod
    def _offsets(b: flatbuffers.Builder, start: Any, offsets: list[int]) -> int:
        start(b, len(offsets))
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return int(b.EndVector())

    @staticmethod
    def _serialise_op(b: flatbuffers.Builder, op: _Op, codes: list[tuple[int, str | None]],
                      vector: Any) -> int:
        o = op.options
        options = None
        if op.options_type == BuiltinOptions.Conv2DOptions:
            Conv2DOptions.Conv2DOptionsStart(b)
            Conv2DOptions.Conv2DOptionsAddPadding(b, o["padding"])
            Conv2DOptions.Conv2DOptionsAddStrideW(b, o["stride"])
            Conv2DOptions.Conv2DOptionsAddStrideH(b, o["stride"])
            Conv2DOptions.Conv2DOptionsAddFusedActivationFunction(b, o["activation"])
            Conv2DOptions.Conv2DOptionsAddDilationWFactor(b, 1)
            Conv2DOptions.Conv2DOptionsAddDilationHFactor(b, 1)
            options = Conv2DOptions.Conv2DOptionsEnd(b)
        elif op.options_type == BuiltinOptions.DepthwiseConv2DOptions:
            D = DepthwiseConv2DOptions
            D.DepthwiseConv2DOptionsStart(b)
            D.DepthwiseConv2DOptionsAddPadding(b, o["padding"])
            D.DepthwiseConv2DOptionsAddStrideW(b, o["stride"])
            D.DepthwiseConv2DOptionsAddStrideH(b, o["stride"])
            D.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
            D.DepthwiseConv2DOptionsAddFusedActivationFunction(b, o["activation"])
            D.DepthwiseConv2DOptionsAddDilationWFactor(b, 1)
            D.DepthwiseConv2DOptionsAddDilationHFactor(b, 1)
            options = D.DepthwiseConv2DOptionsEnd(b)
        elif op.options_type == BuiltinOptions.Pool2DOptions:
            Pool2DOptions.Pool2DOptionsStart(b)
            Pool2DOptions.Pool2DOptionsAddPadding(b, o["padding"])
            Pool2DOptions.Pool2DOptionsAddStrideW(b, o["stride"])
            Pool2DOptions.Pool2DOptionsAddStrideH(b, o["stride"])
            Pool2DOptions.Pool2DOptionsAddFilterWidth(b, o["size"])
            Pool2DOptions.Pool2DOptionsAddFilterHeight(b, o["size"])
            Pool2DOptions.Pool2DOptionsAddFusedActivationFunction(b, o["activation"])
            options = Pool2DOptions.Pool2DOptionsEnd(b)
        elif op.options_type == BuiltinOptions.FullyConnectedOptions:
            FullyConnectedOptions.FullyConnectedOptionsStart(b)
            FullyConnectedOptions.FullyConnectedOptionsAddFusedActivationFunction(b, o["activation"])
            options = FullyConnectedOptions.FullyConnectedOptionsEnd(b)
        elif op.options_type == BuiltinOptions.AddOptions:
            AddOptions.AddOptionsStart(b)
            AddOptions.AddOptionsAddFusedActivationFunction(b, o["activation"])
            options = AddOptions.AddOptionsEnd(b)
        elif op.options_type == BuiltinOptions.ReshapeOptions:
            shape = vector(ReshapeOptions.ReshapeOptionsStartNewShapeVector, o["new_shape"],
                           b.PrependInt32)
            ReshapeOptions.ReshapeOptionsStart(b)
            ReshapeOptions.ReshapeOptionsAddNewShape(b, shape)
            options = ReshapeOptions.ReshapeOptionsEnd(b)
        inputs = vector(Operator.OperatorStartInputsVector, op.inputs, b.PrependInt32)
        outputs = vector(Operator.OperatorStartOutputsVector, op.outputs, b.PrependInt32)
        # custom operators carry (here empty) custom options, as the converter writes them
        custom = b.CreateByteVector(b"") if op.code[1] is not None else None
        Operator.OperatorStart(b)
        if custom is not None:
            Operator.OperatorAddCustomOptions(b, custom)
        Operator.OperatorAddOpcodeIndex(b, codes.index(op.code))
        Operator.OperatorAddInputs(b, inputs)
        Operator.OperatorAddOutputs(b, outputs)
        if options is not None:
            Operator.OperatorAddBuiltinOptionsType(b, op.options_type)
            Operator.OperatorAddBuiltinOptions(b, options)
        return int(Operator.OperatorEnd(b))
