"""What an estimate returns: per-layer figures and network totals, as Vela reported them.

Units
-----
- ``cycles``, ``npu_cycles`` and the ``*_access_cycles``: NPU clock cycles.  A layer's
  ``cycles`` (Vela's "Op Cycles") is the estimate for the whole operation; ``npu_cycles`` is
  the compute part and the access cycles are the memory traffic of each memory area.  The
  per-layer ``cycles`` sum to ``total_cycles``.
- ``macs``: multiply-accumulate operations.  ``mac_utilization``: percent (0-100) of the MACs
  the accelerator could have done in that layer's cycles.
- ``staging_usage``: bytes of SRAM the layer needs for staging (Vela's "Staging Usage", or
  "SRAM Usage" with the legacy core).
- ``inference_time``: seconds at the configured NPU clock (``target["core_clock"]``, Hz).
- ``sram_used`` / ``dram_used``: bytes, peak over the network.
- ``on_chip_flash_used`` / ``off_chip_flash_used``: bytes of flash the compiled model takes in
  that memory area (its weights, and the feature maps of a memory mode that keeps them there).
- ``original_weights`` / ``encoded_weights``: bytes of weights in the input model and after
  Vela's weight encoding (Vela's ``total_original_weights`` and ``total_npu_encoded_weights``).
- ``sram_traffic``, ``dram_traffic``, ``on_chip_flash_traffic``, ``off_chip_flash_traffic``:
  bytes read and written in that memory area per inference, feature maps and weights together
  (Vela's ``*_total_bytes``).
- ``optimised_model_size``: bytes of the optimised model Vela writes (``<model>_vela.tflite``,
  what gets flashed); for a PyTorch model, the sum over its delegated partitions.
- ``compression`` (derived, not recorded): ``encoded_weights / original_weights``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from .vela import LAYER_HEADINGS, TOTAL_NUMBERS, Placement, Row, VelaRun, macs_per_cycle, operator_key

Number = int | float



@dataclass(frozen=True)
class Figure:
    """A network figure of ``EstimateResult`` (a field of that name): how a baseline records it,
    whether every check gates it, and how a PyTorch model's delegated partitions add up to it.
    Vela's own figures are read at the Vela boundary (``vela.SUMMARY_COLUMNS``)."""

    name: str
    gated: bool = True  # compared by every check; any other recorded figure when a tolerance names it
    whole: bool = False  # a count: a baseline holding 1.5 is refused
    recorded: bool = True  # in the baseline's totals
    peak: bool = False  # a PyTorch model's is its largest partition's (memory use), not their sum
    unit: str = "cycles"  # what a budget on it is written in: cycles, bytes, seconds or count
    spent_by: str = ""  # the per-layer figure that shows which layers spend it (a budget's failure names them)


#: Every network figure, in the order changes are listed.  A new one: its entry here and its
#: field in ``EstimateResult`` (and, for one Vela reports, its column in ``vela.SUMMARY_COLUMNS``).
FIGURES = (
    Figure("total_cycles", spent_by="cycles"),
    # where the cycles go: recorded and reported, gated when a tolerance names them
    Figure("npu_cycles", gated=False, spent_by="npu_cycles"),
    Figure("sram_access_cycles", gated=False, spent_by="sram_access_cycles"),
    Figure("dram_access_cycles", gated=False, spent_by="dram_access_cycles"),
    Figure("on_chip_flash_access_cycles", gated=False, spent_by="on_chip_flash_access_cycles"),
    Figure("off_chip_flash_access_cycles", gated=False, spent_by="off_chip_flash_access_cycles"),
    # more MACs in the same cycles is not a slow-down
    Figure("macs", gated=False, unit="count", spent_by="macs"),
    Figure("sram_used", peak=True, unit="bytes", spent_by="staging_usage"),
    Figure("dram_used", peak=True, unit="bytes", spent_by="dram_access_cycles"),
    # each partition's weights are stored: they add up; the layers that read flash the most spend it
    Figure("on_chip_flash_used", unit="bytes", spent_by="on_chip_flash_access_cycles"),
    Figure("off_chip_flash_used", unit="bytes", spent_by="off_chip_flash_access_cycles"),
    # recorded and reported; gated when a tolerance names them
    Figure("original_weights", gated=False, unit="bytes"),
    Figure("encoded_weights", gated=False, unit="bytes"),
    Figure("sram_traffic", gated=False, unit="bytes", spent_by="sram_access_cycles"),
    Figure("dram_traffic", gated=False, unit="bytes", spent_by="dram_access_cycles"),
    Figure("on_chip_flash_traffic", gated=False, unit="bytes", spent_by="on_chip_flash_access_cycles"),
    Figure("off_chip_flash_traffic", gated=False, unit="bytes", spent_by="off_chip_flash_access_cycles"),
    Figure("optimised_model_size", gated=False, unit="bytes"),  # the flash footprint is gated as *_flash_used
    # total_cycles at the core clock
    Figure("inference_time", gated=False, recorded=False, unit="seconds", spent_by="cycles"),
    Figure("cpu_ops", gated=False, whole=True, unit="count"),  # any rise fails on its own rule (compare.py)
    Figure("npu_ops", gated=False, whole=True, unit="count"),
)
FIGURE = {f.name: f for f in FIGURES}
#: Network totals that a baseline records.
TOTAL_METRICS = tuple(f.name for f in FIGURES if f.recorded)


def compression(totals: Mapping[str, Number]) -> float | None:
    """Vela's encoded weights over the model's original weights (0.95: 5% smaller), from a
    result's, baseline's or report's totals; None without weights, or in totals written before
    the weight figures were recorded."""
    if not totals.get("original_weights") or "encoded_weights" not in totals:
        return None
    return float(totals["encoded_weights"]) / float(totals["original_weights"])


@dataclass(frozen=True)
class Layer(Row):
    """One row of Vela's per-layer report (``vela.Row``'s fields, as Vela wrote them) in the
    result, with its position.  Names are not unique; ``index`` is."""

    index: int
    # PyTorch models (``pytorch.py``): where the layer came from, and its delegated partition
    module: str = ""  # module path, e.g. "features.2"
    source: str = ""  # the user's file:line
    partition: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.placement, Placement):  # given as text (from_dict, a test)
            object.__setattr__(self, "placement", Placement(self.placement))

    @classmethod
    def from_row(cls, index: int, row: Row) -> Layer:
        """The ``index``-th row of Vela's per-layer report as a layer of the result."""
        return cls(index=index, **{f.name: getattr(row, f.name) for f in dataclasses.fields(Row)})

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str = "layer") -> Layer:
        """A layer from its ``to_dict``, its Vela figures checked as ``vela.Row.from_json`` checks
        them (``vela.InvalidRun`` naming the field); keys it does not know (a later release's) are
        left out."""
        row = Row.from_json({f.name: raw[f.name] for f in dataclasses.fields(Row) if f.name in raw}, where)
        return cls(index=int(raw["index"]), **{f.name: getattr(row, f.name) for f in dataclasses.fields(Row)},
                   **{key: raw[key] for key in _ORIGIN if key in raw and key != "index"})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; the PyTorch fields only when set, so TFLite and TOSA baselines keep their form."""
        data = dataclasses.asdict(self) | {"placement": self.placement.value}
        if not self.module and not self.source and self.partition is None:
            for key in ("module", "source", "partition"):
                del data[key]
        return data

    @property
    def label(self) -> str:
        """How messages name the layer: module path and source line (PyTorch models), then
        Vela's name."""
        return layer_label({"module": self.module, "source": self.source, "name": self.name})


#: what a ``Layer`` holds beyond Vela's row
_ORIGIN = ("index", "module", "source", "partition")


def layer_label(layer: Any) -> str:
    """A layer (a ``Layer.to_dict`` or a baseline's layer) as messages name it."""
    module, source, name = layer.get("module") or "", layer.get("source") or "", str(layer.get("name", ""))
    if not module:
        return name
    return f"{module} ({source}) {name}" if source else f"{module} {name}"


@dataclass(frozen=True)
class Finding:
    """One piece of advice about an estimate (see ``advisor.py``).

    ``kind`` is ``channel_padding``, ``memory_bound``, ``weight_traffic``, ``cpu_fallback``,
    ``layout_transposes`` or ``hot_spot`` (hooks
    may add their own); ``layer`` is the layer's index, or None when Vela reports no row for it.
    """

    kind: str
    layer: int | None
    name: str
    op: str
    evidence: str
    suggestion: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        where = f"layer {self.layer} {self.op}" if self.layer is not None else self.op
        return f"{self.kind.replace('_', ' ')}: {where} {self.name}: {self.evidence}; {self.suggestion}"


@dataclass(frozen=True)
class CpuFallback:
    """An operator left to the CPU, with the reason given for it."""

    layer: int | None  # its CPU layer's index; None when Vela reports no row for it (the legacy core)
    name: str
    op: str
    reason: str  # "" when none was given
    by: str  # who left it there: "vela", or "executorch" (it was never delegated to the NPU)


@dataclass(frozen=True)
class Evidence:
    """What the advisor's rules read besides the figures, by layer index: facts the worker read
    from the model and from Vela's output (``VelaRun``), and for a PyTorch model from the
    lowering.  Not part of a result's value or its JSON."""

    depth_granularity: int | None = None  # output depth the accelerator computes at a time
    convolutions: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # CONV_2D geometry
    cpu: tuple[CpuFallback, ...] = ()
    layout: tuple[int, ...] = ()  # NCHW <-> NHWC transposes ExecuTorch's Arm backend inserted


@dataclass(frozen=True)
class EstimateResult:
    """Vela's estimate of one model on one target.

    ``target`` is fully resolved: ``accelerator``, ``system_config``, ``memory_mode``,
    ``core_clock`` (Hz), ``config_files`` and ``vela_args`` as Vela applied them.
    """

    model: str
    model_sha256: str
    vela_version: str
    core: str
    target: dict[str, Any]
    layers: tuple[Layer, ...]
    total_cycles: Number
    npu_cycles: Number
    sram_access_cycles: Number
    dram_access_cycles: Number
    on_chip_flash_access_cycles: Number
    off_chip_flash_access_cycles: Number
    macs: int
    inference_time: float
    npu_ops: int
    cpu_ops: int
    sram_used: int
    dram_used: int
    on_chip_flash_used: int
    off_chip_flash_used: int
    original_weights: Number
    encoded_weights: Number
    sram_traffic: Number
    dram_traffic: Number
    on_chip_flash_traffic: Number
    off_chip_flash_traffic: Number
    optimised_model_size: int
    cpu_operators: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())
    findings: tuple[Finding, ...] = field(default=())
    precompiled: bool = False  # the input was already compiled by Vela: no NPU work to estimate
    #: the releases that lowered a PyTorch model before Vela (torch, executorch, tosa-tools);
    #: empty for a model file, which Vela reads as it is
    frameworks: dict[str, str] = field(default_factory=dict)
    #: a PyTorch model's parts (``pytorch.model_parts``: graph, weights, calibration digests), so
    #: that a failure can say which of them differs from the baseline's; empty for a model file
    model_parts: dict[str, str] = field(default_factory=dict)
    #: where the figures came from this time: "vela", "cache", or "memo" (an earlier estimate
    #: of this session); not part of the result's value
    source: str = field(default="vela", compare=False)
    #: what the advisor's rules read (``advisor.py``)
    evidence: Evidence = field(default_factory=Evidence, compare=False, repr=False)

    def advice(self) -> list[Finding]:
        """The advisor's findings (empty when advice is turned off with --ethosu-no-advice)."""
        return list(self.findings)

    @property
    def accelerator(self) -> str:
        return str(self.target["accelerator"])

    @property
    def mac_utilization(self) -> float:
        """Network MAC utilisation, percent: MACs done over MACs possible in ``total_cycles``."""
        per_cycle = macs_per_cycle(self.accelerator)
        if not per_cycle or not self.total_cycles:
            return 0.0
        return 100.0 * self.macs / (per_cycle * float(self.total_cycles))

    @property
    def compression(self) -> float | None:
        """Vela's encoded weights over the model's original weights (``compression``)."""
        return compression(self.totals())

    def totals(self) -> dict[str, Number]:
        return {name: getattr(self, name) for name in TOTAL_METRICS}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (``source`` and ``evidence`` are not part of the value)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("source", "evidence")}
        data["target"], data["frameworks"] = copy.deepcopy(self.target), dict(self.frameworks)
        data["model_parts"] = dict(self.model_parts)
        data["layers"] = [layer.to_dict() for layer in self.layers]
        data["cpu_operators"] = list(self.cpu_operators)
        data["warnings"] = list(self.warnings)
        data["findings"] = [finding.to_dict() for finding in self.findings]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EstimateResult:
        values = dict(data)
        values["layers"] = tuple(Layer(**layer) for layer in data["layers"])
        values["cpu_operators"] = tuple(data.get("cpu_operators", ()))
        values["warnings"] = tuple(data.get("warnings", ()))
        values["findings"] = tuple(Finding(**f) for f in data.get("findings", ()))
        values.pop("source", None)
        values.pop("evidence", None)
        return cls(**values)

    def table(self, tablefmt: str = "simple") -> str:
        """The per-layer table, in the columns and order of ``vela --verbose-performance``."""
        head = (f"{self.model} on {self.accelerator} ({self.target.get('system_config')}, "
                f"{self.target.get('memory_mode')}), Vela {self.vela_version} {self.core} core\n"
                f"total {self.total_cycles} cycles = {1000.0 * self.inference_time:.3f} ms, "
                f"{self.macs} MACs, {self.npu_ops} NPU ops, {self.cpu_ops} CPU ops\n")
        return head + layer_table([layer.to_dict() for layer in self.layers], self.total_cycles, tablefmt)

    def __repr__(self) -> str:
        return (f"EstimateResult(model={self.model!r}, accelerator={self.accelerator!r}, "
                f"total_cycles={self.total_cycles}, layers={len(self.layers)}, "
                f"cpu_ops={self.cpu_ops})")


def layer_table(layers: Sequence[Mapping[str, Any]], total_cycles: Number, tablefmt: str = "simple") -> str:
    """Layers (``Layer.to_dict()`` or a baseline's) as Vela's per-layer report shows them, with
    the PyTorch module and source line when the layers have them."""
    total = float(total_cycles) or 1.0
    headings = [heading for _, heading in LAYER_HEADINGS]
    rows = []
    for layer in layers:
        values = {**layer, "share": f"{100.0 * float(layer['cycles']) / total:.2f}",
                  "mac_utilization": f"{float(layer['mac_utilization']):.2f}"}
        rows.append([values[key] for key, _ in LAYER_HEADINGS])
    if any(layer.get("module") or layer.get("partition") is not None for layer in layers):  # a PyTorch model
        headings += ["Partition", "Module", "Source"]
        for row, layer in zip(rows, layers, strict=True):
            partition = layer.get("partition")
            row += ["CPU" if partition is None else partition, layer.get("module", ""), layer.get("source", "")]
    return tabulate(rows, headers=headings, tablefmt=tablefmt, disable_numparse=True)


def build_result(model: str, sha256: str, vela_version: str, config_names: tuple[str, ...],
                 vela_args: tuple[str, ...], accelerator: str, run: VelaRun) -> EstimateResult:
    """Assemble the public result from a Vela run."""
    layers = tuple(Layer.from_row(i, row) for i, row in enumerate(run.layers))
    source, precompiled, cpu_operators = run.facts.operators, run.precompiled, run.cpu_operators
    target = {
        "accelerator": accelerator,
        "system_config": run.system_config,
        "memory_mode": run.memory_mode,
        "core_clock": run.core_clock,
        "config_files": list(config_names),
        "vela_args": list(vela_args),
    }
    figures: dict[str, Any] = {name: run.totals[name] for name in TOTAL_NUMBERS}  # as Vela reported them
    figures["inference_time"] = float(figures["inference_time"])  # seconds, 0.0 for an all-CPU network
    return EstimateResult(
        model=model,
        model_sha256=sha256,
        vela_version=vela_version,
        core=run.core,
        target=target,
        layers=layers,
        **figures,
        npu_ops=max(len(source) - len(cpu_operators), 0),
        cpu_ops=len(cpu_operators),
        cpu_operators=cpu_operators,
        precompiled=bool(precompiled),
        evidence=evidence(layers, cpu_operators, run),
    )


def evidence(layers: Sequence[Layer], cpu_operators: Sequence[str], run: VelaRun) -> Evidence:
    """The advisor's evidence from one Vela run: each convolution's geometry by its layer, and
    each CPU operator with the reason Vela gave (matched by operator; the legacy core reports no
    CPU rows, so then the compiled model's CPU operators stand in)."""
    convolutions = {layer.index: run.facts.convolutions[layer.name] for layer in layers
                    if layer.name in run.facts.convolutions}
    reasons = list(run.cpu_reasons)
    entries: list[tuple[int | None, str, str]] = [
        (layer.index, layer.name, layer.op) for layer in layers if layer.placement is Placement.CPU]
    if not entries:
        entries = [(None, "", op) for op in cpu_operators]
    cpu = []
    for index, name, op in entries:
        match = next((r for r in reasons if operator_key(r.op) == operator_key(op)), None)
        if match is not None:
            reasons.remove(match)
        cpu.append(CpuFallback(index, name, op, match.reason if match else "", "vela"))
    return Evidence(run.depth_granularity, convolutions, tuple(cpu))
