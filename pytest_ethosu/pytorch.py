"""PyTorch models: ExecuTorch's Arm Ethos-U flow up to TOSA, then Vela on every partition.

This is the only module that imports ``torch``, ``executorch`` or ``torchao``, and it does so
inside functions: the plugin imports this module only when a test passes a PyTorch model (or a
``.pt2`` path), so it works without PyTorch installed.  Private ExecuTorch APIs are used here
and nowhere else; they are pinned by the ``pytorch`` extra (executorch==1.5.1).

The flow for one (program, target):

1. ``torch.export`` the module in eval mode (or ``torch.export.load`` a ``.pt2``);
2. the lowering key: a stable hash of the exported program's serialised bytes with its stack
   traces (``program_digests``), the calibration data, ``quantize``, the resolved target and
   the versions of torch, executorch and tosa-tools.  The model's identity (``model_sha256``)
   is the program's digest without the stack traces, which hold absolute paths.  The session
   memo and the disk cache answer a key seen before, so a warm session neither quantises,
   lowers nor runs Vela;
3. otherwise quantise with ``EthosUQuantizer`` (``prepare_pt2e`` / calibration /
   ``convert_pt2e``, as ExecuTorch's Arm examples do) and lower with a partitioner that decides
   exactly as ``EthosUPartitioner`` for the target's TOSA profile but delegates to a backend that
   stops at TOSA: ExecuTorch would otherwise run Vela itself, in-process and with options the
   plugin does not control;
4. every delegated partition's TOSA flatbuffer goes through the plugin's own path (structural
   check, worker, cache) like a ``.tosa`` file; ``merge`` joins the partitions' estimates into
   one result.  The operators ExecuTorch leaves out of the delegate become CPU layers, with
   ExecuTorch's reason, so that a move to the CPU fails the gate as a TFLite fallback does.

Each TOSA operator's origin (module path, module class and the user's ``file:line``) comes from
ExecuTorch's per-operator debug events (``DebugMode.JSON``); Vela names a per-layer row after the
TOSA tensor its (fused) operator writes, which is the event's TOSA name.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ArgumentError, ModelError
from .result import FIGURES, CpuFallback, EstimateResult, Evidence, Layer
from .vela import DEFAULT_CONFIG, Placement, is_generated_name, row_tensor_names

if TYPE_CHECKING:
    from .target import Target

EXTRA = 'pip install "pytest-ethosu[pytorch]"'
PINS = "torch==2.13.0, executorch==1.5.1, tosa-tools==2026.5.0, ml_dtypes==0.5.1"
FORMAT = 3  # the lowering cache entry's layout (3: the program's digest without stack traces)

_QDQ = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel", "dequantize_per_channel")
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_LIBRARY = ("/site-packages/", "/dist-packages/", "/lib/python3")
_GRAPH_ID = re.compile(rb'(graph_id\\*"\s*:\s*)-?\d+')


# ---------------------------------------------------------------------------------------------
# What a lowering produces (plain data: cached on disk as JSON)


@dataclass(frozen=True)
class Origin:
    """Where a TOSA operator came from in the user's model."""

    module: str  # module path (``features.2``), or the root module's class for top-level code
    source: str  # ``file:line`` of the user's code, relative to the rootdir when inside it
    layout: bool = False  # an NCHW <-> NHWC transpose the Arm backend inserted


@dataclass(frozen=True)
class CpuOp:
    """An operator ExecuTorch left out of the delegate: it runs on the CPU."""

    name: str  # FX node name
    target: str  # ``aten.where.self``
    reason: str
    module: str
    source: str
    after: int  # delegated partitions before it in the graph


@dataclass(frozen=True)
class Partition:
    tosa: bytes
    origins: Mapping[str, Origin]  # TOSA tensor name -> origin


@dataclass(frozen=True)
class Lowered:
    display: str
    key: str  # the lowering's: the program, calibration, target and releases (the cache's business)
    program: str  # the exported program's own digest (``program_identity``): the model's identity
    profile: str  # the TOSA profile, e.g. TOSA-1.0+INT+int16+int4+u55
    partitions: tuple[Partition, ...]
    cpu_ops: tuple[CpuOp, ...]
    seconds: float = 0.0
    #: digests of what the model is made of (``model_parts``), set for each estimate, not cached
    parts: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "key": self.key, "program": self.program, "profile": self.profile,
                "seconds": self.seconds,
                "partitions": [{"tosa": base64.b64encode(p.tosa).decode(),
                                "origins": {k: [o.module, o.source, o.layout] for k, o in p.origins.items()}}
                               for p in self.partitions],
                "cpu_ops": [dataclasses.asdict(c) for c in self.cpu_ops]}

    @classmethod
    def from_json(cls, data: Any, key: str, display: str) -> Lowered:
        """Rebuild a cached lowering; ``ValueError`` for anything this plugin did not write."""
        try:
            if data["format"] != FORMAT or data["key"] != key:
                raise ValueError("not an entry for this key")
            parts = tuple(Partition(base64.b64decode(p["tosa"], validate=True),
                                    {str(k): Origin(str(m), str(s), bool(t)) for k, (m, s, t) in p["origins"].items()})
                          for p in data["partitions"])
            cpu = tuple(CpuOp(str(c["name"]), str(c["target"]), str(c["reason"]), str(c["module"]),
                              str(c["source"]), int(c["after"])) for c in data["cpu_ops"])
            return cls(display, key, str(data["program"]), str(data["profile"]), parts, cpu, float(data["seconds"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed lowering ({exc})") from None


# ---------------------------------------------------------------------------------------------
# Recognising a PyTorch model without importing torch


def is_pytorch_model(model: Any) -> bool:
    """A ``torch.nn.Module``, a ``torch.export.ExportedProgram`` or the path of a ``.pt2``."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model).endswith(".pt2")
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return isinstance(model, (torch.nn.Module, torch.export.ExportedProgram))


#: the loggers of the PyTorch stack: what they say while the plugin imports, quantises and lowers
#: is kept with the test's Vela console (shown when the test fails), as Vela's output is
STACK_LOGGERS = ("torch", "torchao", "executorch")


@contextlib.contextmanager
def captured(into: list[str] | None, title: str) -> Iterator[None]:
    """Keep the PyTorch stack's log records (INFO and above) and the warnings raised in the block
    out of the terminal and pytest's warnings summary; append them to ``into`` under ``title``
    (nothing when there were none; dropped when ``into`` is None)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage().strip()
            if text:
                lines.append(f"{record.levelname} {record.name}: {text}")

    def from_the_stack(record: logging.LogRecord) -> bool:
        # ExecuTorch also logs on the root logger (backend_api.py): known by the file that logged
        return record.name.split(".", 1)[0] in STACK_LOGGERS or any(
            f"{os.sep}{package}{os.sep}" in record.pathname for package in STACK_LOGGERS)

    def not_from_the_stack(record: logging.LogRecord) -> bool:
        return not from_the_stack(record)

    # the stack's records go to ``Keep``, neither to the root's other handlers (pytest's log
    # capture) nor to the handlers the stack gave its own loggers (torch writes to stderr); the
    # loggers' propagation is left as the stack configures it, since importing torch in the
    # block changes it
    root = logging.getLogger()
    stack = [logging.getLogger(name) for name in STACK_LOGGERS]
    handler = Keep(logging.INFO)
    handler.addFilter(from_the_stack)
    others = [*root.handlers, *(h for logger in stack for h in logger.handlers)]
    for other in others:
        other.addFilter(not_from_the_stack)
    for logger in (root, *stack):
        logger.addHandler(handler)
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:  # also when the block fails: what the stack said belongs with the failure
        for logger in (root, *stack):
            logger.removeHandler(handler)
        for other in others:
            other.removeFilter(not_from_the_stack)
        lines += [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
        if into is not None and lines:
            into.append(f"--- {title} ---\n" + "\n".join(dict.fromkeys(lines)))


def require() -> None:
    """Import the PyTorch stack, or fail naming the extra that installs it."""
    try:
        with captured(None, "importing torch"):
            import torch  # first: the handlers it gives its loggers are then silenced for the rest
        with captured(None, "importing the PyTorch stack"):
            import executorch.backends.arm.ethosu
            import executorch.backends.arm.quantizer  # noqa: F401
            import torch  # noqa: F401
            import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    except ImportError as exc:
        raise ModelError(f"estimating a PyTorch model needs ExecuTorch's Arm backend, which is not installed "
                         f"({exc}). Install it with: {EXTRA}  (pins {PINS})") from None


def preload() -> None:
    """Import every module the flow uses.  Only for harnesses that run sessions in-process and
    restore ``sys.modules`` afterwards (pytester): torch's C extension cannot be imported twice
    in one process, and the backend class must stay the one ExecuTorch finds."""
    require()
    import executorch.backends.arm.common.arm_compile_spec
    import executorch.backends.arm.tosa.backend
    import executorch.backends.arm.tosa.compile_spec
    import executorch.backends.arm.tosa.partitioner
    import executorch.exir
    import executorch.exir.backend.backend_details
    import executorch.exir.backend.partitioner
    import executorch.exir.lowered_backend_module  # noqa: F401


def versions() -> dict[str, str]:
    found = {}
    for name in ("torch", "executorch", "tosa-tools"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# ---------------------------------------------------------------------------------------------
# Keys


def program_digests(program: Any) -> tuple[str, str]:
    """``(identity, key)``: sha256 digests of ``torch.export.save(program)`` with what differs
    between runs removed.

    A fresh float export saves byte-identical; a quantised one does not: the ``from_node``
    provenance in ``model.json`` holds ``graph_id`` values (Python ``id()`` of FX graphs) and
    ``serialization_id`` follows from it.  Both are dropped from both digests.

    - ``identity`` (the model's: ``model_sha256``) also leaves out every node's ``stack_trace``,
      which holds absolute paths (the checkout's, site-packages'): the same module in another
      checkout or venv is the same model;
    - ``key`` (the lowering cache's) keeps the stack traces, since the results carry the
      user's ``file:line``.
    """
    identity, key, _parts = _digests(program)
    return identity, key


#: where ``torch.export.save`` puts each part of a program (``model_parts``)
_PART_OF = (("/data/weights/", "weights"), ("/data/constants/", "weights"), ("/data/sample_inputs/", "inputs"),
            ("/models/", "graph"))


def _digests(program: Any) -> tuple[str, str, dict[str, str]]:
    """``program_digests`` and the ``graph``, ``weights`` and ``inputs`` parts of
    ``model_parts``, from one serialisation of the program."""
    import torch

    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    identity, key = hashlib.sha256(), hashlib.sha256()
    parts = {part: hashlib.sha256() for _, part in _PART_OF}
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        for name in sorted(archive.namelist()):
            if name.endswith("serialization_id"):
                continue
            data = archive.read(name)
            if name.endswith(".json"):
                data = _GRAPH_ID.sub(rb"\g<1>0", data)
            key.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
            if name.endswith(".json") and b"stack_trace" in data:
                data = _without_traces(data)
            framed = name.encode() + b"\0" + len(data).to_bytes(8, "little") + data
            identity.update(framed)
            part = next((part for where, part in _PART_OF if where in f"/{name}"), None)
            if part is not None:
                parts[part].update(framed)
    return identity.hexdigest(), key.hexdigest(), {part: digest.hexdigest() for part, digest in parts.items()}


def model_parts(program_parts: Mapping[str, str], calibration: Sequence[tuple[Any, ...]],
                quantize: bool) -> dict[str, str]:
    """Digests of what a PyTorch model is made of, so that a changed model can be told apart from
    one built differently each run: ``graph`` (the program's graph without its stack traces),
    ``weights`` (its parameters, buffers and constants), ``inputs`` (the example inputs it was
    exported with; these three from ``_digests``) and ``calibration`` (the quantisation's inputs;
    absent with ``quantize=False``)."""
    parts = dict(program_parts)
    if quantize:
        digest = hashlib.sha256()
        _tensor_digest(list(calibration), digest)
        parts["calibration"] = digest.hexdigest()
    return parts


def program_identity(program: Any) -> str:
    """The exported program's own digest (``program_digests``): what a PyTorch model's
    ``model_sha256`` is."""
    return program_digests(program)[0]


def _without_traces(data: bytes) -> bytes:
    """A serialised JSON document with every ``stack_trace`` entry removed (also inside
    strings that hold JSON themselves); unchanged when it is not JSON."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "stack_trace"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str) and "stack_trace" in value and value[:1] in "[{":
            try:
                return json.dumps(strip(json.loads(value)), sort_keys=True)
            except ValueError:
                return value
        return value

    try:
        document = json.loads(data)
    except ValueError:
        return data
    return json.dumps(strip(document), sort_keys=True).encode()


def _tensor_digest(value: Any, digest: Any) -> None:
    import torch

    if isinstance(value, torch.Tensor):
        tensor = value.detach().contiguous().cpu()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(value, (tuple, list)):
        digest.update(f"S{len(value)}".encode())
        for item in value:
            _tensor_digest(item, digest)
    elif isinstance(value, dict):
        for k in sorted(value):
            digest.update(repr(k).encode())
            _tensor_digest(value[k], digest)
    else:
        digest.update(repr(value).encode())


def lowering_key(program: str, calibration: Sequence[tuple[Any, ...]], quantize: bool, profile: str,
                 target: Target) -> str:
    digest = hashlib.sha256()
    _tensor_digest(list(calibration), digest)
    parts = {"format": FORMAT, "program": program, "calibration": digest.hexdigest(), "quantize": quantize,
             "profile": profile, "accelerator": target.accelerator, "system_config": target.system_config,
             "memory_mode": target.memory_mode, "config_names": list(target.config_names),
             "vela_args": list(target.vela_args), "versions": versions()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Export, quantisation, lowering


def _as_inputs(value: Any, what: str) -> tuple[Any, ...]:
    import torch

    if isinstance(value, torch.Tensor):
        return (value,)
    if isinstance(value, (tuple, list)) and value:
        return tuple(value)
    raise ArgumentError(f"{what} must be a tensor or a tuple of tensors, not {type(value).__name__}")


def load_program(model: Any, example_inputs: Any, rootdir: Path) -> tuple[Any, tuple[Any, ...], str]:
    """The exported program, its example inputs and the name messages show for it."""
    import torch

    if isinstance(model, (str, os.PathLike)):
        given = Path(os.fspath(model)).expanduser()
        path = given if given.is_absolute() else rootdir / given
        display = str(path.relative_to(rootdir)) if path.is_relative_to(rootdir) else str(path)
        if not path.is_file():
            raise ModelError(f"{display}: no such .pt2 file (looked at {path}). Relative paths are resolved "
                             f"from pytest's rootdir, {rootdir}.")
        try:
            program = torch.export.load(path)
        except Exception as exc:
            raise ModelError(f"{display}: torch.export.load cannot read it ({type(exc).__name__}: {exc}). "
                             "Save it with torch.export.save.") from None
        stored = getattr(program, "example_inputs", None)
        if example_inputs is None and stored:
            example_inputs = stored[0]
        if example_inputs is None:
            raise ArgumentError(f"{display} holds no example inputs: pass example_inputs=")
        return program, _as_inputs(example_inputs, "example_inputs"), display
    if example_inputs is None:
        raise ArgumentError("a PyTorch model needs its example inputs: ethosu_perf(model, (tensor, ...))")
    inputs = _as_inputs(example_inputs, "example_inputs")
    if isinstance(model, torch.export.ExportedProgram):
        return model, inputs, "ExportedProgram"
    training = model.training
    try:
        program = torch.export.export(model.eval(), inputs)
    except Exception as exc:
        raise ModelError(f"{type(model).__name__}: torch.export.export failed ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
    finally:
        model.train(training)
    return program, inputs, type(model).__name__


def _root_class(program: Any) -> str:
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if isinstance(stack, dict) and stack:
            return str(next(iter(stack.values()))[1]).rsplit(".", 1)[-1]
    return "program"


def compile_spec(target: Target) -> Any:
    from executorch.backends.arm.ethosu import EthosUCompileSpec

    try:
        return EthosUCompileSpec(target.accelerator, system_config=target.system_config,
                                 memory_mode=target.memory_mode, extra_flags=list(target.vela_args),
                                 config_ini=target.config_files[0] if target.config_files else DEFAULT_CONFIG)
    except Exception as exc:
        from .errors import TargetError

        raise TargetError(f"ExecuTorch's Ethos-U backend refuses the target {target.describe()}: {exc}") from None


def lowering_target(target: Target) -> Target:
    """The target a PyTorch model is estimated on: the system config and memory mode that
    ExecuTorch's compile spec builds for it.  Given only an accelerator (and no ``.ini``),
    ``EthosUCompileSpec`` picks its own defaults (ethos-u65-256: Ethos_U65_High_End with
    Dedicated_Sram_384KB), which are not Vela's (Ethos_U65_Client_Server); estimating with Vela's
    would give another system's cycles than the one the lowered program is built for."""
    if target.system_config is not None and target.memory_mode is not None:
        return target
    require()
    flags = {key: value for key, _, value in (flag.partition("=") for flag in compile_spec(target).compiler_flags)}
    system, memory = flags.get("--system-config"), flags.get("--memory-mode")
    if not system or not memory:  # an ExecuTorch that no longer names them: Vela's defaults, as before
        return target
    return dataclasses.replace(target, system_config=system, memory_mode=memory)


def quantize_program(program: Any, example_inputs: tuple[Any, ...], calibration: Sequence[tuple[Any, ...]],
                     spec: Any) -> Any:
    import torch
    from executorch.backends.arm.quantizer import EthosUQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = EthosUQuantizer(spec)
    quantizer.set_global(get_symmetric_quantization_config())
    # check_guards=False: a module whose export carries guards otherwise gets a _guards_fn
    # call_module node that the Arm passes refuse ("call_module is not supported")
    graph = prepare_pt2e(program.module(check_guards=False), quantizer)
    with torch.no_grad():
        for inputs in calibration:
            graph(*inputs)
    return torch.export.export(convert_pt2e(graph), example_inputs)


def _tosa_only_partitioner(spec: Any, events: dict[str, list[dict[str, Any]]]) -> Any:
    """A partitioner that decides as ``EthosUPartitioner(spec)`` but delegates to a backend
    that returns the TOSA flatbuffer instead of running Vela, and records ExecuTorch's reasons
    for every operator it rejects.  Private ExecuTorch 1.5.1 APIs: ``TOSABackend._preprocess``,
    ``TosaCompileSpec._from_list``, ``ArmCompileSpec._to_list``,
    ``TOSABackend.filter_tosa_compile_specs``, ``_requires_resolved_tensor_shapes`` and the
    module-level ``WhyNoPartitionReporter`` of the TOSA partitioner."""
    import executorch.backends.arm.tosa.partitioner as tosa_partitioner
    from executorch.backends.arm.common.arm_compile_spec import ArmCompileSpec
    from executorch.backends.arm.tosa.backend import TOSABackend
    from executorch.backends.arm.tosa.compile_spec import TosaCompileSpec
    from executorch.exir.backend.backend_details import BackendDetails, PreprocessResult
    from executorch.exir.backend.partitioner import DelegationSpec

    backend = _backend_class(BackendDetails, PreprocessResult, TOSABackend, TosaCompileSpec, ArmCompileSpec)

    class Partitioner(tosa_partitioner.TOSAPartitioner):  # type: ignore[misc]
        def __init__(self) -> None:
            tosa_spec = TOSABackend.filter_tosa_compile_specs(spec)  # keeps the pass-pipeline config
            super().__init__(tosa_spec)
            self.delegation_spec = DelegationSpec(backend.__name__, tosa_spec._to_list())
            self._requires_resolved_tensor_shapes = True  # as EthosUPartitioner
            self.rejections: dict[str, str] = {}

        def partition(self, exported_program: Any) -> Any:
            original = tosa_partitioner.WhyNoPartitionReporter
            reporters: list[Any] = []

            class Recorder(original):  # type: ignore[misc, valid-type]
                def __init__(self) -> None:
                    super().__init__()
                    reporters.append(self)

            tosa_partitioner.WhyNoPartitionReporter = Recorder
            try:
                found = super().partition(exported_program)
            finally:
                tosa_partitioner.WhyNoPartitionReporter = original
            for reporter in reporters:
                for node, reason in reporter._rejected_nodes.items():
                    self.rejections.setdefault(node.name, str(reason))
            return found

    _EVENTS_SINK[0] = events
    return Partitioner()


_EVENTS_SINK: list[dict[str, list[dict[str, Any]]]] = [{}]
_BACKEND: list[Any] = []


def _backend_class(details: Any, preprocess_result: Any, tosa_backend: Any, tosa_spec: Any,
                   arm_spec: Any) -> Any:
    """ExecuTorch finds a backend by its class name among ``BackendDetails`` subclasses: define
    it once per process."""
    if _BACKEND:
        return _BACKEND[0]

    class PytestEthosUTosaBackend(details):  # type: ignore[misc]
        @staticmethod
        def preprocess(edge_program: Any, compile_specs: Any) -> Any:
            spec = tosa_spec._from_list(compile_specs)
            with tempfile.TemporaryDirectory(prefix="ethosu-tosa-") as directory:
                spec.dump_intermediate_artifacts_to(directory).dump_debug_info(arm_spec.DebugMode.JSON)
                result = tosa_backend._preprocess(edge_program, spec)
                debug = Path(directory) / "debug.json"
                events = json.loads(debug.read_text()) if debug.exists() else []
            _EVENTS_SINK[0][hashlib.sha256(result.processed_bytes).hexdigest()] = events
            return result

    _BACKEND.append(PytestEthosUTosaBackend)
    return PytestEthosUTosaBackend


def _user_frame(stack_trace: Any, rootdir: Path) -> str:
    """The innermost frame of the user's code: ExecuTorch's passes append their own frames and
    torch.nn's to the nodes they create, so the last frame is not the user's line."""
    if not stack_trace:
        return ""
    text = "\n".join(stack_trace) if isinstance(stack_trace, list) else str(stack_trace)
    frames = [f for f in _FRAME.findall(text) if not any(m in f[0] for m in _LIBRARY)]
    if not frames:
        return ""
    file, line, _ = frames[-1]
    path = Path(file)
    try:
        shown = path.relative_to(rootdir).as_posix()
    except ValueError:
        shown = path.name
    return f"{shown}:{line}"


def _module(stack: Any, root: str) -> str:
    if not isinstance(stack, dict) or not stack:
        return root
    path, _ = list(stack.values())[-1]
    return str(path) or root


def lower(program: Any, spec: Any, rootdir: Path, display: str, key: str, identity: str, root: str) -> Lowered:
    """Lower a quantised program for the spec's TOSA profile: partitions and CPU operators."""
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.lowered_backend_module import get_lowered_submodules

    started = time.perf_counter()
    events: dict[str, list[dict[str, Any]]] = {}
    partitioner = _tosa_only_partitioner(spec, events)
    try:
        edge = to_edge_transform_and_lower(program, partitioner=[partitioner])
    except Exception as exc:
        message = str(exc).strip().splitlines()
        raise ModelError(f"{display}: ExecuTorch's Ethos-U lowering failed ({type(exc).__name__}: "
                         f"{message[0] if message else ''})") from None
    graph = edge.exported_program().graph_module
    partitions = []
    for _, lowered, _ in get_lowered_submodules(graph):
        tosa = bytes(lowered.processed_bytes)
        origins: dict[str, Origin] = {}
        # constants that Vela copies into place keep the name of the node they were folded from
        for node in [*lowered.original_module.graph.nodes, *graph.graph.nodes]:
            origin = Origin(_module(node.meta.get("nn_module_stack"), root),
                            _user_frame(node.meta.get("stack_trace"), rootdir))
            for name in (node.name, f"{node.name}_pre_computed", f"{node.name}_fused_const"):
                origins.setdefault(name, origin)
        for event in events.get(hashlib.sha256(tosa).hexdigest(), []):
            info, torch_info = event.get("tosa_info") or {}, event.get("torch_info") or {}
            if "node_name" not in info:
                continue
            fx_name = str((event.get("aten_info") or {}).get("node_name", ""))
            origins[str(info["node_name"])] = Origin(
                _module(torch_info.get("nn_module_stack"), root), _user_frame(torch_info.get("stack_trace"), rootdir),
                # the Arm backend's NCHW <-> NHWC transposes; a user's permute lowers from aten_permute_copy
                fx_name.startswith("tosa_transpose_default"))
        partitions.append(Partition(tosa, origins))
    cpu: list[CpuOp] = []
    seen = 0
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if name == "executorch_call_delegate":
            seen += 1
            continue
        target = str(node.target).replace("<EdgeOpOverload: ", "").split(">")[0]
        if name == "getitem" or any(q in target for q in _QDQ):
            continue  # bookkeeping, and the quantise/dequantise at the delegate's edges
        cpu.append(CpuOp(node.name, target, partitioner.rejections.get(node.name, "not delegated"),
                         _module(node.meta.get("nn_module_stack"), root),
                         _user_frame(node.meta.get("stack_trace"), rootdir), seen))
    if not partitions:
        raise ModelError(f"{display}: ExecuTorch delegated nothing to the NPU for {spec.tosa_spec}: "
                         + "; ".join(f"{c.target}: {c.reason}" for c in cpu[:5]))
    return Lowered(display, key, identity, str(spec.tosa_spec), tuple(partitions), tuple(cpu),
                   time.perf_counter() - started)


def _calibration(calibration: Iterable[Any] | None, example_inputs: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if calibration is None:
        return [example_inputs]
    if isinstance(calibration, (str, bytes)) or not isinstance(calibration, Iterable):
        raise ArgumentError("calibration must be an iterable of example inputs (tensors or tuples of tensors)")
    batches = [_as_inputs(batch, "each calibration batch") for batch in calibration]
    if not batches:
        raise ArgumentError("calibration is empty: give at least one batch of inputs")
    return batches


Store = Callable[[str], Any]


@dataclass
class Lowerer:
    """Lowers programs for a session: memo, disk cache (``get``/``put`` on the estimate cache
    directory), and the counts the summary reports."""

    rootdir: Path
    get: Callable[[str], Any] | None = None
    put: Callable[[str, dict[str, Any]], None] | None = None
    runs: int = 0
    hits: int = 0
    seconds: float = 0.0
    memo: dict[str, Lowered] = field(default_factory=dict)

    def prepare(self, model: Any, example_inputs: Any, calibration: Iterable[Any] | None, quantize: bool,
                target: Target, logs: list[str] | None = None) -> Lowered:
        """The lowered program; what the PyTorch stack logs and warns meanwhile goes to ``logs``
        (``captured``)."""
        require()
        with captured(logs, "torch.export"):
            program, inputs, display = load_program(model, example_inputs, self.rootdir)
        batches = _calibration(calibration, inputs)
        spec = compile_spec(target)
        identity, program_key, program_parts = _digests(program)
        key = lowering_key(program_key, batches, quantize, str(spec.tosa_spec), target)
        parts = model_parts(program_parts, batches, quantize)
        if key in self.memo:
            return dataclasses.replace(self.memo[key], display=display, parts=parts)
        cached = self.get(key) if self.get is not None else None
        if cached is not None:
            try:
                found = Lowered.from_json(cached, key, display)
            except ValueError:
                found = None
            if found is not None:
                self.hits += 1
                self.memo[key] = found
                return dataclasses.replace(found, parts=parts)
        started = time.perf_counter()
        try:
            with captured(logs, f"ExecuTorch quantising {display}"):
                quantised = quantize_program(program, inputs, batches, spec) if quantize else program
        except (ModelError, ArgumentError):
            raise
        except Exception as exc:
            raise ModelError(f"{display}: quantisation with EthosUQuantizer failed ({type(exc).__name__}: {exc}). "
                             "Pass quantize=False for a program that is already quantised.") from None
        with captured(logs, f"ExecuTorch lowering {display} to TOSA"):
            lowered = lower(quantised, spec, self.rootdir, display, key, identity, _root_class(program))
        lowered = dataclasses.replace(lowered, seconds=time.perf_counter() - started, parts=parts)
        self.runs += 1
        self.seconds += lowered.seconds
        self.memo[key] = lowered
        if self.put is not None:
            self.put(key, lowered.to_json())
        return lowered


# ---------------------------------------------------------------------------------------------
# One result from the partitions' estimates


def _origin(name: str, origins: Mapping[str, Origin]) -> Origin | None:
    return next((origins[tensor] for tensor in row_tensor_names(name) if tensor in origins), None)


def merge(lowered: Lowered, results: Sequence[EstimateResult]) -> EstimateResult:
    """The partitions' estimates as one result: layers in graph order (each with its module and
    source), the CPU operators as CPU layers, totals summed (peak memory: the largest), and
    the partitions' evidence for the advisor, by the merged layers' indices."""
    layers: list[Layer] = []
    convolutions: dict[int, Mapping[str, Any]] = {}
    cpu: list[CpuFallback] = []
    layout: list[int] = []  # indices of the layout transposes

    def add_cpu(after: int) -> None:
        for op in (c for c in lowered.cpu_ops if c.after == after):
            cpu.append(CpuFallback(len(layers), op.name, op.target, op.reason, "executorch"))
            layers.append(Layer(index=len(layers), name=op.name, op=op.target, npu_op="CPU", placement=Placement.CPU,
                                cycles=0, npu_cycles=0, sram_access_cycles=0, dram_access_cycles=0,
                                on_chip_flash_access_cycles=0, off_chip_flash_access_cycles=0, macs=0,
                                mac_utilization=0.0, staging_usage=0, module=op.module, source=op.source,
                                partition=None))

    add_cpu(0)
    for number, (partition, result) in enumerate(zip(lowered.partitions, results, strict=True)):
        offset = len(layers)
        rows = list(result.layers)
        origins = [_origin(row.name, partition.origins) for row in rows]
        for i, row in enumerate(rows):  # Vela's own '#N' operators: from the neighbour they were split from
            if origins[i] is None and is_generated_name(row.name):
                near = [j for j in (i + 1, i - 1) if 0 <= j < len(rows) and rows[j].npu_op == row.npu_op]
                origins[i] = next((origins[j] for j in near if origins[j] is not None), None)
        for row, origin in zip(rows, origins, strict=True):
            if origin is not None and origin.layout:
                layout.append(len(layers))
            layers.append(dataclasses.replace(row, index=len(layers), module=origin.module if origin else "",
                                              source=origin.source if origin else "", partition=number))
        convolutions.update((index + offset, conv) for index, conv in result.evidence.convolutions.items())
        cpu += [dataclasses.replace(c, layer=None if c.layer is None else c.layer + offset)
                for c in result.evidence.cpu]
        add_cpu(number + 1)
    first = results[0]
    figures: dict[str, Any] = {  # the partitions run one after another: work adds up, memory use peaks
        f.name: (max if f.peak else sum)(getattr(r, f.name) for r in results) for f in FIGURES if f.name != "cpu_ops"}
    return dataclasses.replace(
        first, model=lowered.display, model_sha256=lowered.program, model_parts=dict(lowered.parts),
        layers=tuple(layers), **figures,
        cpu_ops=len(lowered.cpu_ops), cpu_operators=tuple(c.target for c in lowered.cpu_ops),
        warnings=tuple(w for r in results for w in r.warnings),
        target={**first.target, "tosa_profile": lowered.profile, "partitions": len(results)},
        frameworks=versions(), findings=(),
        evidence=Evidence(first.evidence.depth_granularity, convolutions, tuple(cpu), tuple(layout)))
