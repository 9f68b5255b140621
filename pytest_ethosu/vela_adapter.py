"""The one module that knows how Vela is driven and what its output files look like.

Everything here runs inside the worker process (see ``worker.py``), never in pytest's own
process: Vela's C++ core can crash the process that runs it.  ``ethosu.vela.vela.main`` is an
undocumented entry point; should a Vela release move it, this is the only file to change.

The adapter runs Vela exactly as the ``vela`` command does (same argument parser, same
defaults), with ``--verbose-performance`` and a private output directory, then reads the two CSV
files Vela writes there and the operator list of the compiled model.  The per-layer figures are
therefore the numbers ``vela --verbose-performance`` writes, byte for byte, for either core.
"""

from __future__ import annotations

import configparser
import csv
import functools
import importlib.metadata
import importlib.util
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: The compiled-model custom operator that stands for work placed on the NPU.
ETHOSU_CUSTOM_OP = "ethos-u"

# Vela's per-layer CSV columns, by core, mapped to the names of ``result.Layer``.
# The regor (default) core and the legacy Python core use different headers; the legacy one
# repeats "Network%" for cycles and MACs, so columns are taken by position, not by name.
REGOR_COLUMNS = (
    ("Original Operator", "op"),
    ("NNG Operator", "npu_op"),
    ("Target", "placement"),
    ("Staging Usage", "staging_usage"),
    ("Peak% (Staging)", None),
    ("Op Cycles", "cycles"),
    ("Network% (cycles)", None),
    ("NPU", "npu_cycles"),
    ("SRAM AC", "sram_access_cycles"),
    ("DRAM AC", "dram_access_cycles"),
    ("OnFlash AC", "on_chip_flash_access_cycles"),
    ("OffFlash AC", "off_chip_flash_access_cycles"),
    ("MAC Count", "macs"),
    ("Network% (MAC)", None),
    ("Util% (MAC)", "mac_utilization"),
    ("Name", "name"),
)
LEGACY_COLUMNS = (
    ("TFLite_operator", "op"),
    ("NNG Operator", "npu_op"),
    ("SRAM Usage", "staging_usage"),
    ("Peak%", None),
    ("Op Cycles", "cycles"),
    ("Network%", None),
    ("NPU", "npu_cycles"),
    ("SRAM AC", "sram_access_cycles"),
    ("DRAM AC", "dram_access_cycles"),
    ("OnFlash AC", "on_chip_flash_access_cycles"),
    ("OffFlash AC", "off_chip_flash_access_cycles"),
    ("MAC Count", "macs"),
    ("Network%", None),
    ("Util%", "mac_utilization"),
    ("Name", "name"),
)
TEXT_FIELDS = frozenset({"op", "npu_op", "placement", "name"})

LEGACY_FLAG = "--debug-force-legacy-core"


class AdapterError(Exception):
    """Vela refused the request; the message is meant for the user."""


@functools.cache
def vela_version() -> str:
    """The installed ethos-u-vela version, read without importing Vela (once per process)."""
    return importlib.metadata.version("ethos-u-vela")


def bundled_config_dir() -> Path:
    """Vela's ``config_files`` directory, found without importing Vela."""
    spec = importlib.util.find_spec("ethosu")
    if spec is None or not spec.submodule_search_locations:
        raise AdapterError("ethos-u-vela is not installed: pip install ethos-u-vela")
    return Path(next(iter(spec.submodule_search_locations))) / "config_files"


def core_for(accelerator: str, vela_args: tuple[str, ...] | list[str]) -> str:
    """Which compilation core Vela will use: the legacy one only when forced, and never on U85."""
    if LEGACY_FLAG in vela_args and not accelerator.startswith("ethos-u85"):
        return "legacy"
    return "regor"


def accelerators() -> list[str]:
    from ethosu.vela.architecture_features import Accelerator

    return list(Accelerator.member_list())


def config_sections(ini_files: list[str]) -> tuple[list[str], list[str]]:
    """System config and memory mode names defined by the given Vela ``.ini`` files."""
    stamps = tuple((name, os.stat(name).st_mtime_ns) for name in ini_files)
    return _config_sections(stamps)


@functools.lru_cache(maxsize=32)
def _config_sections(stamps: tuple[tuple[str, int], ...]) -> tuple[list[str], list[str]]:
    """Parsed once per file version: a session checks the same .ini for every estimate."""
    parser = configparser.ConfigParser()
    for name, _ in stamps:
        with open(name, encoding="utf-8") as f:
            parser.read_file(f, source=name)
    systems = [s.split(".", 1)[1] for s in parser.sections() if s.startswith("System_Config.")]
    modes = [s.split(".", 1)[1] for s in parser.sections() if s.startswith("Memory_Mode.")]
    return systems, modes


def check_target(accelerator: str, system_config: str | None, memory_mode: str | None,
                 ini_files: list[str]) -> None:
    """Refuse names Vela does not know, listing the ones it does."""
    ini_files = ini_files or [str(bundled_config_dir() / "Arm" / "vela.ini")]
    valid = accelerators()
    if accelerator not in valid:
        raise AdapterError(f"unknown accelerator {accelerator!r}; Vela {vela_version()} knows: "
                           + ", ".join(valid))
    try:
        systems, modes = config_sections(ini_files)
    except (OSError, configparser.Error) as exc:
        raise AdapterError(f"cannot read Vela config file: {exc}") from None
    where = ", ".join(ini_files)
    if system_config is not None and system_config not in systems:
        raise AdapterError(f"unknown system config {system_config!r} in {where}; valid: "
                           + ", ".join(sorted(systems)))
    if memory_mode is not None and memory_mode not in modes:
        raise AdapterError(f"unknown memory mode {memory_mode!r} in {where}; valid: "
                           + ", ".join(sorted(modes)))


def _number(text: str) -> int | float:
    value = float(text)
    if not math.isfinite(value):  # Vela writes NaN for percentages of an all-CPU network
        return 0
    return int(value) if value.is_integer() else value


def read_per_layer_csv(path: Path, core: str) -> list[dict[str, Any]]:
    """Rows of Vela's per-layer CSV, keyed by ``Layer`` field names, in Vela's order.

    Vela joins fields with commas without quoting, so a layer name that holds a comma would
    break a CSV reader: the name is the last column and takes the rest of the line.  The legacy
    core writes one header per NPU subgraph into the same file; repeated headers are skipped.
    """
    columns = LEGACY_COLUMNS if core == "legacy" else REGOR_COLUMNS
    header = ",".join(c for c, _ in columns)
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0] != header:
        raise AdapterError(f"Vela {vela_version()} wrote a per-layer CSV header this plugin does "
                           f"not know for the {core} core: {lines[0][:300]!r}")
    rows: list[dict[str, Any]] = []
    for line in lines:
        if not line or line == header:
            continue
        fields = line.split(",", len(columns) - 1)
        if len(fields) != len(columns):
            raise AdapterError(f"unexpected per-layer CSV line from Vela: {line[:200]!r}")
        row: dict[str, Any] = {}
        for (_, key), text in zip(columns, fields, strict=False):
            if key is None:
                continue
            row[key] = text if key in TEXT_FIELDS else _number(text)
        row.setdefault("placement", "NPU")  # the legacy core only reports NPU subgraphs
        rows.append(row)
    return rows


SUMMARY_TEXT_FIELDS = frozenset({"experiment", "network", "accelerator_configuration", "system_config",
                                 "memory_mode", "weights_storage_area", "feature_map_storage_area"})


def read_summary_csv(path: Path) -> dict[str, Any]:
    """Vela's network summary; numeric columns become numbers."""
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    if len(table) < 2:
        raise AdapterError(f"Vela wrote an empty summary: {path.name}")
    summary: dict[str, Any] = {}
    for key, text in zip(table[0], table[1], strict=False):
        try:
            summary[key] = text if key in SUMMARY_TEXT_FIELDS else _number(text)
        except ValueError:
            summary[key] = text
    return summary


def parse_model(data: bytes) -> Any:
    """The root table of a TFLite flatbuffer (Vela's generated schema classes)."""
    from ethosu.vela.tflite.Model import Model

    return Model.GetRootAsModel(data, 0)


def walk_operators(model: Any) -> Iterator[tuple[Any, Any, str]]:
    """Every operator of every subgraph, in order: (subgraph, operator, name).

    Builtin operators are named as in TFLite's schema (``CONV_2D``), custom ones by their code.
    """
    from ethosu.vela.tflite.BuiltinOperator import BuiltinOperator

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
                raise AdapterError(f"truncated or corrupt: buffer {i} ends at byte {end}, past the "
                                   f"end of the file ({size} bytes)")
        offset, length = buffer.Offset(), buffer.Size()
        if offset > 1 and offset + length > size:
            raise AdapterError(f"truncated or corrupt: buffer {i} ends at byte {offset + length}, "
                               f"past the end of the file ({size} bytes)")


def _check_quantization(tensor: Any, shape: list[int], where: str) -> None:
    import numpy as np
    from ethosu.vela.tflite.TensorType import TensorType

    quant = tensor.Quantization()
    if quant is None:
        return
    # the numpy views read whole vectors at once: per-element calls cost ~25 us each
    scales = quant.ScaleAsNumpy() if quant.ScaleLength() else None
    points = quant.ZeroPointAsNumpy() if quant.ZeroPointLength() else None
    count = 0 if scales is None else len(scales)
    zeros = 0 if points is None else len(points)
    if scales is not None and not (np.isfinite(scales).all() and (scales > 0).all() and (scales <= 1e30).all()):
        raise AdapterError(f"corrupt: {where} has a quantisation scale that is not a positive number")
    # per-channel scales must match a dimension; converters write bias tensors with an axis
    # beyond their rank, which Vela accepts, so the axis itself is not checked
    if count > 1 and count not in shape:
        raise AdapterError(f"corrupt: {where} has {count} quantisation scales for shape {shape}")
    # TFLite's quantisation spec: per-axis zero points are all 0, one per scale
    if count > 1 and (zeros != count or (points is not None and points.any())):
        raise AdapterError(f"corrupt: {where} has per-channel zero points that are not one 0 per channel")
    low, high = {TensorType.INT8: (-128, 127), TensorType.UINT8: (0, 255)}.get(tensor.Type(), (None, None))
    if low is not None and points is not None and ((points < low).any() or (points > high).any()):
        raise AdapterError(f"corrupt: {where} has a zero point outside its type's range")


def check_structure(model: Any) -> None:
    """Refuse indices and values that point outside the model: Vela's C++ core trusts them.

    Checks operator codes, every tensor's buffer, type, shape and name, and every operator's
    opcode and tensor indices.  Each message says where the model is inconsistent.
    """
    from ethosu.vela.tflite.BuiltinOperator import BuiltinOperator
    from ethosu.vela.tflite.TensorType import TensorType

    max_builtin = max(v for k, v in vars(BuiltinOperator).items() if not k.startswith("_"))
    max_type = max(v for k, v in vars(TensorType).items() if not k.startswith("_"))
    codes, buffers = model.OperatorCodesLength(), model.BuffersLength()
    for i in range(codes):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if not 0 <= builtin <= max_builtin:
            raise AdapterError(f"corrupt: operator code {i} names unknown builtin operator {builtin}")
        if code.CustomCode():
            code.CustomCode().decode("utf-8")
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        tensors = graph.TensorsLength()
        for t in range(tensors):
            tensor = graph.Tensors(t)
            if not 0 <= tensor.Buffer() < max(buffers, 1):
                raise AdapterError(f"corrupt: tensor {t} of subgraph {s} uses buffer {tensor.Buffer()}, "
                                   f"but the model has {buffers} buffers")
            if not 0 <= tensor.Type() <= max_type:
                raise AdapterError(f"corrupt: tensor {t} of subgraph {s} has unknown type {tensor.Type()}")
            shape = tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []
            if any(d < -1 or d > 1 << 24 for d in shape) or math.prod(max(d, 1) for d in shape) > 1 << 31:
                raise AdapterError(f"corrupt: tensor {t} of subgraph {s} has shape {shape}")
            if tensor.Name():
                tensor.Name().decode("utf-8")
            _check_quantization(tensor, shape, f"tensor {t} of subgraph {s}")
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            if not 0 <= op.OpcodeIndex() < codes:
                raise AdapterError(f"corrupt: operator {o} of subgraph {s} uses operator code "
                                   f"{op.OpcodeIndex()}, but the model has {codes}")
            used = [op.Inputs(i) for i in range(op.InputsLength())]
            used += [op.Outputs(i) for i in range(op.OutputsLength())]
            bad = [i for i in used if not -1 <= i < tensors]
            if bad:
                raise AdapterError(f"corrupt: operator {o} of subgraph {s} refers to tensor {bad[0]}, "
                                   f"but the subgraph has {tensors}")
        ends = [graph.Inputs(i) for i in range(graph.InputsLength())]
        ends += [graph.Outputs(i) for i in range(graph.OutputsLength())]
        if any(not 0 <= i < tensors for i in ends):
            raise AdapterError(f"corrupt: subgraph {s} lists an input or output tensor that does not exist")


def inspect_model(path: Path) -> dict[str, Any]:
    """What the plugin checks before compiling and what the advisor needs, in one walk: the
    operators, how many compute in float, and the shapes of every convolution."""
    from ethosu.vela.tflite.TensorType import TensorType

    data = path.read_bytes()
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
    return {"operators": operators, "float_ops": float_ops, "convolutions": convs}


def convolution(graph: Any, op: Any) -> dict[str, Any] | None:
    """Shape details of a CONV_2D, with its output tensor's name (Vela's per-layer "Name")."""
    from ethosu.vela.tflite.BuiltinOptions import BuiltinOptions
    from ethosu.vela.tflite.Conv2DOptions import Conv2DOptions
    from ethosu.vela.tflite.Padding import Padding
    from ethosu.vela.tflite.TensorType import TensorType

    if op.InputsLength() < 2 or op.BuiltinOptionsType() != BuiltinOptions.Conv2DOptions:
        return None
    table = op.BuiltinOptions()
    options = Conv2DOptions()
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


def run_vela(model: Path, out_dir: Path, accelerator: str, system_config: str | None,
             memory_mode: str | None, ini_files: list[str], vela_args: list[str]) -> dict[str, Any]:
    """Compile ``model`` with Vela and return its per-layer rows, summary and compiled operators.

    Vela's console output goes wherever file descriptors 1 and 2 point; the caller captures them.
    """
    from ethosu.vela import vela

    argv = [str(model), "--accelerator-config", accelerator, "--verbose-performance",
            "--output-dir", str(out_dir)]
    for ini in ini_files:
        argv += ["--config", ini]
    if system_config is not None:
        argv += ["--system-config", system_config]
    if memory_mode is not None:
        argv += ["--memory-mode", memory_mode]
    argv += vela_args
    try:
        code = vela.main(argv)
    except SystemExit as exc:  # argparse rejects an option: its message is on stderr
        code = exc.code if isinstance(exc.code, int) else 2
    if code:
        raise AdapterError(f"Vela exited with status {code}")

    stem = model.stem
    summaries = sorted(out_dir.glob(f"{stem}_summary_*.csv"))
    per_layer = out_dir / f"{stem}_per-layer.csv"
    if not summaries:
        raise AdapterError("Vela finished but wrote no performance summary")
    core = core_for(accelerator, vela_args)
    rows = read_per_layer_csv(per_layer, core) if per_layer.exists() else []
    compiled = out_dir / f"{stem}_vela.tflite"
    return {
        "core": core,
        "rows": rows,
        "summary": read_summary_csv(summaries[0]),
        "compiled_operators": model_operators(parse_model(compiled.read_bytes())) if compiled.exists() else [],
        "depth_granularity": depth_granularity(accelerator),
    }


def depth_granularity(accelerator: str) -> int | None:
    """Output depth that an accelerator processes in one go, from Vela's architecture data.

    Ethos-U55/U65: the OFM micro-block depth times the number of cores (8 on U65-256, 16 on
    U65-512, 4 on U55-32).  Vela's Python architecture data has no U85 figures (its U85 model
    lives in the C++ core), so for U85 the answer is None.
    """
    from ethosu.vela.architecture_features import Accelerator, ArchitectureFeatures

    config = ArchitectureFeatures.accelerator_configs.get(Accelerator(accelerator))
    if config is None:
        return None
    return int(config.ofm_ublock.depth * config.cores)


# How Vela announces an operator left on the CPU, per core.  Each pattern names the operator
# and its output tensor; the reason follows ("Reason: ..." lines for regor, indented " - ..."
# lines for the legacy core), or is fixed by the pattern itself.
_CPU_NOTICES = (
    (re.compile(r"^Warning \(supported operators\) operator: (?P<op>[^,]+), ofm: '(?P<ofm>.*)'$"), None),
    (re.compile(r"^Warning: Unsupported TensorFlow Lite semantics for (?P<op>\S+) '(?P<ofm>.*)'\. "
                r"Placing on CPU instead$"), None),
    (re.compile(r"^Warning: (?P<op>\S+) '(?P<ofm>.*)' is not supported on the NPU\. Placing on CPU instead$"),
     None),
    (re.compile(r"^Info: (?P<op>\S+) '(?P<ofm>.*)' is a CPU only op$"), "a CPU-only operator"),
)


def _cpu_notice(line: str) -> tuple[re.Match[str], str | None] | None:
    for pattern, fixed in _CPU_NOTICES:
        match = pattern.match(line)
        if match:
            return match, fixed
    return None


def cpu_reasons(log: str) -> list[dict[str, str]]:
    """Vela's stated reasons for leaving operators on the CPU, from its console output.

    Vela gives them only on the console, in formats that differ between its cores (see
    ``_CPU_NOTICES``); each notice becomes ``{"op", "ofm", "reason"}`` in Vela's order.
    """
    reasons = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        notice = _cpu_notice(line)
        if notice is None:
            continue
        match, fixed = notice
        detail = []
        for following in lines[i + 1:i + 4]:
            if fixed or not following.strip() or _cpu_notice(following) or following[:1] in ("#", "W", "I"):
                break
            detail.append(following.removeprefix("Reason: ").strip().removeprefix("- "))
        reasons.append({"op": match["op"], "ofm": match["ofm"], "reason": fixed or " ".join(detail)})
    return reasons
