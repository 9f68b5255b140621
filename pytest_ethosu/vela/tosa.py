"""Reading TOSA flatbuffers in pure Python: the structural check before Vela sees a ``.tosa`` file.

Vela (5.x) dispatches on the file identifier at bytes 4-8 (``TOSA``), not the file name, and
hands TOSA files to its C++ core, which trusts the offsets in the file: a truncated or corrupt
one is refused with "Buffer contents inconsistent with generated schema" at best, and a TOSA
file whose identifier was flipped to ``TFL3`` crashes it (SIGSEGV).  ``inspect_tosa`` walks every
table, vector and string reachable from the root and checks its bounds, so a truncated file
(flatbuffers writers put early-built objects, the constant data, at the *end*) gets a precise
message here.  It needs neither Vela nor tosa-tools.

Layout (schema ``tosa.fbs`` of TOSA 1.0, ``file_identifier "TOSA"``), little endian::

    [0:4] uoffset of the root table TosaGraph; [4:8] b"TOSA"
    table: int32 soffset to its vtable; vtable: u16 vtable bytes, u16 table bytes, u16 offsets
    TosaGraph      {0 version: Version (required), 1 regions: [TosaRegion], 2 software_version}
    Version        {0 _major: int32, 1 _minor, 2 _patch, 3 _draft: bool}
    TosaRegion     {0 name, 1 blocks: [TosaBasicBlock]}
    TosaBasicBlock {0 name, 1 operators: [TosaOperator], 2 tensors: [TosaTensor],
                    3 inputs: [string], 4 outputs: [string], 5 shapes: [TosaShape]}
    TosaOperator   {0 op: uint32, 1 attribute_type: u8, 2 attribute: table, 3 inputs: [string],
                    4 outputs: [string], 5 location: OpLocation {0 text}}
    TosaTensor     {0 name, 1 shape: [int32], 2 type: uint32, 3 data: [ubyte], ...}
    TosaShape      {0 name, 1 rank, 2 data: [ubyte]}
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from . import ModelFacts

IDENTIFIER = b"TOSA"

#: TOSA 1.0 operator names by number (``enum Op`` of tosa.fbs, as tosa-tools 2026.5 generates it).
OP_NAMES = (
    "UNKNOWN", "ARGMAX", "AVG_POOL2D", "CONV2D", "CONV3D", "DEPTHWISE_CONV2D", "FFT2D", "MATMUL",
    "MAX_POOL2D", "RFFT2D", "TRANSPOSE_CONV2D", "CLAMP", "ERF", "SIGMOID", "TANH", "ADD",
    "ARITHMETIC_RIGHT_SHIFT", "BITWISE_AND", "BITWISE_OR", "BITWISE_XOR", "INTDIV", "LOGICAL_AND",
    "LOGICAL_LEFT_SHIFT", "LOGICAL_RIGHT_SHIFT", "LOGICAL_OR", "LOGICAL_XOR", "MAXIMUM", "MINIMUM",
    "MUL", "POW", "SUB", "TABLE", "ABS", "BITWISE_NOT", "CEIL", "CLZ", "COS", "EXP", "FLOOR", "LOG",
    "LOGICAL_NOT", "NEGATE", "RECIPROCAL", "RSQRT", "SIN", "SELECT", "EQUAL", "GREATER",
    "GREATER_EQUAL", "REDUCE_ALL", "REDUCE_ANY", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PRODUCT",
    "REDUCE_SUM", "CONCAT", "PAD", "RESHAPE", "REVERSE", "SLICE", "TILE", "TRANSPOSE", "GATHER",
    "SCATTER", "RESIZE", "CAST", "RESCALE", "CONST", "IDENTITY", "CUSTOM", "COND_IF", "WHILE_LOOP",
    "VARIABLE", "VARIABLE_WRITE", "VARIABLE_READ", "CONST_SHAPE", "MATMUL_T_BLOCK_SCALED",
    "CAST_FROM_BLOCK_SCALED", "CAST_TO_BLOCK_SCALED", "DIM", "CONCAT_SHAPE", "ADD_SHAPE", "SUB_SHAPE",
    "MUL_SHAPE", "SLICE_SHAPE", "EXP2_SHAPE", "LOG2_CEIL_SHAPE", "LOG2_FLOOR_SHAPE", "MAX_SHAPE",
    "MIN_SHAPE", "MOD_SHAPE", "DIV_CEIL_SHAPE", "DIV_FLOOR_SHAPE", "ASSERT_EQUAL_SHAPE",
    "CONV2D_BLOCK_SCALED", "MAX_POOL2D_ADAPTIVE", "AVG_POOL2D_ADAPTIVE", "RESHAPE_BLOCK_SCALED",
    "ROW_GATHER_BLOCK_SCALED",
)
#: TOSA ``DType`` numbers of the types that compute in float.
FLOAT_TYPES = {7: "fp32", 8: "fp16", 9: "bf16"}
DTYPES = {1: "bool", 2: "int4", 3: "int8", 4: "int16", 5: "int32", 6: "int48", 7: "fp32", 8: "fp16", 9: "bf16"}
#: operators that carry no computation of their own (constants, shapes)
NOT_COMPUTING = frozenset({"CONST", "CONST_SHAPE", "IDENTITY"})
#: operators Vela fuses into the operator before them; its per-layer row takes their name
FUSED_AFTER = frozenset({"RESCALE", "CLAMP", "RESHAPE"})


class TosaCheckError(Exception):
    """The file is not a consistent TOSA flatbuffer; the message says where."""


@dataclass
class Operator:
    op: str
    inputs: list[str]
    outputs: list[str]
    attribute: int | None = None  # absolute position of the attribute table


@dataclass
class Graph:
    version: tuple[int, int, int]
    operators: list[Operator] = field(default_factory=list)
    tensors: dict[str, tuple[list[int], int]] = field(default_factory=dict)  # name -> (shape, dtype)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def scalar(self, fmt: str, pos: int, what: str) -> Any:
        width = struct.calcsize(fmt)
        if pos < 0 or pos + width > self.size:
            raise TosaCheckError(f"truncated or corrupt: {what} at byte {pos} lies past the end of the file "
                                 f"({self.size} bytes)")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int, what: str) -> list[int]:
        vtable = pos - self.scalar("<i", pos, what)
        vsize = self.scalar("<H", vtable, f"the field table of {what}")
        tsize = self.scalar("<H", vtable + 2, f"the field table of {what}")
        if vsize < 4 or vsize % 2 or vtable + vsize > self.size or pos + tsize > self.size:
            raise TosaCheckError(f"truncated or corrupt: {what} at byte {pos} runs past the end of the file "
                                 f"({self.size} bytes)")
        offsets = [self.scalar("<H", vtable + 4 + 2 * k, what) for k in range((vsize - 4) // 2)]
        if any(o >= tsize for o in offsets if o):
            raise TosaCheckError(f"corrupt: {what} at byte {pos} has a field outside the table")
        return offsets

    def ref(self, pos: int, offsets: list[int], k: int, what: str) -> int | None:
        if k >= len(offsets) or not offsets[k]:
            return None
        at = pos + offsets[k]
        return at + int(self.scalar("<I", at, what))

    def vector(self, pos: int, width: int, what: str) -> int:
        count = int(self.scalar("<I", pos, what))
        end = pos + 4 + count * width
        if end > self.size:
            raise TosaCheckError(f"truncated or corrupt: {what} ({count} x {width} bytes from byte {pos}) ends at "
                                 f"byte {end}, past the end of the file ({self.size} bytes)")
        return count

    def string(self, pos: int, what: str) -> str:
        length = self.vector(pos, 1, what)
        end = pos + 4 + length
        if end >= self.size or self.data[end] != 0:
            raise TosaCheckError(f"truncated or corrupt: {what} at byte {pos} is not terminated")
        try:
            return self.data[pos + 4:end].decode("utf-8")
        except UnicodeDecodeError:
            raise TosaCheckError(f"corrupt: {what} at byte {pos} is not UTF-8 text") from None

    def elements(self, pos: int | None, what: str) -> list[int]:
        if pos is None:
            return []
        count = self.vector(pos, 4, what)
        return [pos + 4 + 4 * i + int(self.scalar("<I", pos + 4 + 4 * i, what)) for i in range(count)]

    def strings(self, pos: int | None, what: str) -> list[str]:
        return [self.string(p, what) for p in self.elements(pos, what)]

    def ints(self, pos: int | None, what: str) -> list[int]:
        if pos is None:
            return []
        count = self.vector(pos, 4, what)
        return list(struct.unpack_from(f"<{count}i", self.data, pos + 4))


def read_graph(data: bytes) -> Graph:
    """Walk and bounds-check the whole file; the operators and tensors of its blocks."""
    size = len(data)
    if size < 16:
        raise TosaCheckError(f"truncated: {size} bytes cannot hold a TOSA graph")
    if data[4:8] != IDENTIFIER:
        raise TosaCheckError(f"not a TOSA flatbuffer (identifier {data[4:8]!r}, expected b'TOSA')")
    r = _Reader(data)
    root = int(r.scalar("<I", 0, "the root offset"))
    graph = r.table(root, "the graph table")
    version_at = r.ref(root, graph, 0, "the version")
    if version_at is None:
        raise TosaCheckError("corrupt: the graph has no TOSA version (a required field)")
    vf = r.table(version_at, "the version table")
    version = tuple(int(r.scalar("<i", version_at + vf[k], "the version")) if k < len(vf) and vf[k] else -1
                    for k in range(3))
    result = Graph((version[0], version[1], version[2]))
    shapes: set[str] = set()
    regions = r.elements(r.ref(root, graph, 1, "the region list"), "the region list")
    if not regions:
        raise TosaCheckError("corrupt: the graph has no regions")
    for i, region in enumerate(regions):
        rf = r.table(region, f"region {i}")
        name = r.ref(region, rf, 0, f"region {i}'s name")
        if name is not None:
            r.string(name, f"region {i}'s name")
        for j, block in enumerate(r.elements(r.ref(region, rf, 1, f"region {i}'s blocks"), f"region {i}'s blocks")):
            where = f"block {j} of region {i}"
            bf = r.table(block, where)
            name = r.ref(block, bf, 0, f"{where}'s name")
            if name is not None:
                r.string(name, f"{where}'s name")
            r.strings(r.ref(block, bf, 3, f"{where}'s inputs"), f"{where}'s inputs")
            r.strings(r.ref(block, bf, 4, f"{where}'s outputs"), f"{where}'s outputs")
            ops = r.elements(r.ref(block, bf, 1, f"{where}'s operators"), f"{where}'s operators")
            for k, op in enumerate(ops):
                what = f"operator {k} of {where}"
                of = r.table(op, what)
                number = int(r.scalar("<I", op + of[0], what)) if of and of[0] else 0
                if number >= len(OP_NAMES):
                    raise TosaCheckError(f"corrupt: {what} has unknown operator number {number}")
                attribute = r.ref(op, of, 2, f"{what}'s attribute")
                if attribute is not None:
                    r.table(attribute, f"{what}'s attribute")
                inputs = r.strings(r.ref(op, of, 3, f"{what}'s inputs"), f"{what}'s inputs")
                outputs = r.strings(r.ref(op, of, 4, f"{what}'s outputs"), f"{what}'s outputs")
                location = r.ref(op, of, 5, f"{what}'s location")
                if location is not None:
                    lf = r.table(location, f"{what}'s location")
                    text = r.ref(location, lf, 0, f"{what}'s location")
                    if text is not None:
                        r.string(text, f"{what}'s location")
                result.operators.append(Operator(OP_NAMES[number], inputs, outputs, attribute))
            tensors = r.elements(r.ref(block, bf, 2, f"{where}'s tensors"), f"{where}'s tensors")
            for k, tensor in enumerate(tensors):
                what = f"tensor {k} of {where}"
                tf = r.table(tensor, what)
                name_at = r.ref(tensor, tf, 0, f"{what}'s name")
                if name_at is None:
                    raise TosaCheckError(f"corrupt: {what} has no name")
                tname = r.string(name_at, f"{what}'s name")
                shape = r.ints(r.ref(tensor, tf, 1, f"{what}'s shape"), f"{what}'s shape")
                if any(d < -1 or d > 1 << 24 for d in shape):
                    raise TosaCheckError(f"corrupt: {what} ({tname}) has shape {shape}")
                dtype = int(r.scalar("<I", tensor + tf[2], what)) if len(tf) > 2 and tf[2] else 0
                data_at = r.ref(tensor, tf, 3, f"{what}'s data")
                if data_at is not None:
                    r.vector(data_at, 1, f"the constant data of {what} ({tname})")
                result.tensors[tname] = (shape, dtype)
            for k, shape_table in enumerate(r.elements(r.ref(block, bf, 5, f"{where}'s shapes"),
                                                       f"{where}'s shapes")):
                sf = r.table(shape_table, f"shape {k} of {where}")
                name_at = r.ref(shape_table, sf, 0, f"shape {k} of {where}")
                if name_at is not None:
                    shapes.add(r.string(name_at, f"the name of shape {k} of {where}"))
                data_at = r.ref(shape_table, sf, 2, f"shape {k} of {where}")
                if data_at is not None:
                    r.vector(data_at, 1, f"the data of shape {k} of {where}")
    if not result.operators:
        raise TosaCheckError("corrupt: the graph has no operators")
    for operator in result.operators:
        missing = [n for n in operator.inputs + operator.outputs if n not in result.tensors and n not in shapes]
        if missing:
            raise TosaCheckError(f"corrupt: a {operator.op} operator uses tensor {missing[0]!r}, which the graph "
                                 "does not define")
    return result


def _conv_attribute(data: bytes, pos: int) -> tuple[list[int], list[int], list[int]]:
    """``Conv2dAttribute {pad: [int32], stride: [int32], dilation: [int32], ...}``."""
    r = _Reader(data)
    offsets = r.table(pos, "a convolution's attribute")
    return (r.ints(r.ref(pos, offsets, 0, "pad"), "pad"), r.ints(r.ref(pos, offsets, 1, "stride"), "stride"),
            r.ints(r.ref(pos, offsets, 2, "dilation"), "dilation"))


def convolutions(data: bytes, graph: Graph) -> dict[str, dict[str, Any]]:
    """Shape details of every CONV2D, keyed by each name Vela's per-layer row may carry for it:
    the convolution's output and the outputs of the RESCALE / CLAMP / RESHAPE that Vela fuses
    into it (the row takes the last fused name).  Same fields as ``tflite.convolution``."""
    consumers: dict[str, list[Operator]] = {}
    for op in graph.operators:
        for name in op.inputs:
            consumers.setdefault(name, []).append(op)
    found: dict[str, dict[str, Any]] = {}
    for op in graph.operators:
        if op.op != "CONV2D" or op.attribute is None or len(op.inputs) < 2 or not op.outputs:
            continue
        pad, stride, dilation = _conv_attribute(data, op.attribute)
        (ifm, ifm_type), (weights, _), (ofm, _) = (graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]],
                                                   graph.tensors[op.outputs[0]])
        if len(ifm) != 4 or len(ofm) != 4 or len(weights) != 4 or len(stride) != 2 or len(pad) != 4:
            continue
        if not any(pad):
            padding = "valid"
        elif all(-(-ifm[1 + i] // stride[i]) == ofm[1 + i] for i in range(2)):
            padding = "same"
        else:
            continue  # an explicit padding that TFLite's SAME/VALID cannot express
        conv = {"input_shape": ifm, "output_shape": ofm, "kernel": weights[1:3], "stride": stride,
                "dilation": dilation or [1, 1], "padding": padding, "dtype": DTYPES.get(ifm_type, str(ifm_type))}
        name = op.outputs[0]
        found[name] = conv
        while len(consumers.get(name, [])) == 1 and consumers[name][0].op in FUSED_AFTER:
            name = consumers[name][0].outputs[0]
            found[name] = conv
    return found


def inspect_tosa(data: bytes) -> ModelFacts:
    """Check a TOSA file's structure and collect what the plugin and the advisor need."""
    graph = read_graph(data)
    operators = tuple(op.op for op in graph.operators if op.op not in NOT_COMPUTING)
    float_ops = sum(1 for op in graph.operators if op.op not in NOT_COMPUTING and any(
        graph.tensors[o][1] in FLOAT_TYPES for o in op.outputs))
    return ModelFacts(operators, float_ops, convolutions(data, graph))
