"""Comparing an estimate with its baseline: tolerances, layer matching and the verdict.

Gated metrics
-------------
By default a check gates what slows a device or stops a model fitting it: total cycles (the
network's and each layer's), peak SRAM and DRAM use, the flash the model takes, each layer's
staging SRAM, and the CPU operator count.  A metric regresses when ``now - baseline > atol +
rtol * |baseline|`` (numpy's ``isclose`` naming; defaults ``rtol=0.01``, ``atol=0``); it
improves when it drops by more than that.  The other recorded figures (NPU cycles, each memory
area's access cycles, MACs, weight bytes, bytes moved per memory area) are compared only when
``tolerances`` names them: work that moves from one memory area to another while inference gets
faster is no slow-down, nor are more MACs in the same cycles (the seed's 96-channel convolution).

Vela does not estimate CPU time, so an operator that falls back to the CPU makes NPU cycles go
*down*.  Such a move is always a regression, whatever the tolerances: a higher ``cpu_ops``, a
matched layer whose placement went from NPU to CPU, or a new layer placed on the CPU.

Layers are matched by position while the operator sequence is unchanged, and otherwise by
aligning the operator sequences (``difflib``), so an inserted layer reads "layer added" instead
of a cascade of mismatches.  Layer names help the alignment only while most of them agree:
re-exporting the same Keras model renames every layer.  A PyTorch model's layers are named by
their module path and source line (``module``, ``source``), which survive a re-export.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .result import FIGURES, Layer
from .vela import operator_key

if TYPE_CHECKING:
    from .baseline import Baseline, Identity

#: The network figures every check compares (``result.FIGURES``).
GATED_TOTALS = tuple(f.name for f in FIGURES if f.gated)
#: The recorded figures a check compares only when ``tolerances`` names them (the operator
#: counts have rules of their own: a CPU operator more always fails).
NAMED_TOTALS = tuple(f.name for f in FIGURES if f.recorded and not f.gated and f.name not in ("cpu_ops", "npu_ops"))
#: The per-layer figures every check compares, and those it compares when ``tolerances`` names
#: them (the same names as the network's figures: naming one gates both).
GATED_LAYER_METRICS = ("cycles", "staging_usage")
NAMED_LAYER_METRICS = (
    "npu_cycles",
    "sram_access_cycles",
    "dram_access_cycles",
    "on_chip_flash_access_cycles",
    "off_chip_flash_access_cycles",
)
DEFAULT_RTOL = 0.01
DEFAULT_ATOL = 0.0


@dataclass(frozen=True)
class Tolerance:
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL

    def allowed(self, baseline: float) -> float:
        return self.atol + self.rtol * abs(baseline)

    def describe(self) -> str:
        text = f"rtol={self.rtol:g}"
        return text + (f", atol={self.atol:g}" if self.atol else "")


@dataclass(frozen=True)
class Tolerances:
    """A default tolerance and per-metric overrides (metric names as in ``result.py``)."""

    default: Tolerance = Tolerance()
    per_metric: Mapping[str, Tolerance] = field(default_factory=dict)

    def get(self, metric: str) -> Tolerance:
        return self.per_metric.get(metric, self.default)

    @classmethod
    def merge(cls, sources: Sequence[Mapping[str, Any]]) -> Tolerances:
        """Most specific source first; each may set ``rtol``, ``atol`` and ``tolerances``.

        Raises ``ValueError`` naming the parameter for anything but finite numbers >= 0, an
        unknown metric or a per-metric setting other than ``rtol`` and ``atol``.
        """
        known = set(GATED_TOTALS) | set(NAMED_TOTALS) | set(GATED_LAYER_METRICS) | set(NAMED_LAYER_METRICS)
        rtol = next((tolerance_value("rtol", s["rtol"]) for s in sources if s.get("rtol") is not None),
                    DEFAULT_RTOL)
        atol = next((tolerance_value("atol", s["atol"]) for s in sources if s.get("atol") is not None),
                    DEFAULT_ATOL)
        default = Tolerance(rtol, atol)
        per_metric: dict[str, Tolerance] = {}
        for source in reversed(sources):
            specs = source.get("tolerances") or {}
            if not isinstance(specs, Mapping):
                raise ValueError(f"tolerances must map metric names to {{'rtol': ..., 'atol': ...}}, "
                                 f"not {specs!r}")
            for metric, spec in specs.items():
                if metric not in known:
                    raise ValueError(f"unknown metric {metric!r} in tolerances; gated metrics are: "
                                     + ", ".join(sorted(known)))
                if not isinstance(spec, Mapping) or not spec or set(spec) - {"rtol", "atol"}:
                    raise ValueError(f"tolerances[{metric!r}] must be a dict with 'rtol' and/or 'atol', "
                                     f"not {spec!r}")
                base = per_metric.get(metric, default)
                per_metric[metric] = Tolerance(
                    tolerance_value(f"tolerances[{metric!r}]['rtol']", spec.get("rtol", base.rtol)),
                    tolerance_value(f"tolerances[{metric!r}]['atol']", spec.get("atol", base.atol)))
        return cls(default, per_metric)


def tolerance_value(name: str, value: Any) -> float:
    """A tolerance as a float: finite and not negative, or ``ValueError`` naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    return number


@dataclass(frozen=True)
class Change:
    """One difference between baseline and estimate.

    ``kind`` is ``regressed``, ``improved``, ``to_cpu`` (always a regression), ``added``,
    ``removed`` or ``renamed``.  ``layer`` is the layer's index in the new estimate (or in the
    baseline for a removed layer); None for a network total.
    """

    kind: str
    metric: str
    baseline: float | None
    now: float | None
    layer: int | None = None
    name: str = ""
    op: str = ""
    tolerance: str = ""

    @property
    def delta(self) -> float:
        return float(self.now or 0) - float(self.baseline or 0)

    @property
    def percent(self) -> float | None:
        if not self.baseline:
            return None
        return 100.0 * self.delta / abs(float(self.baseline))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "metric": self.metric, "baseline": self.baseline, "now": self.now,
                "layer": self.layer, "name": self.name, "op": self.op, "delta": self.delta,
                "percent": self.percent, "tolerance": self.tolerance}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        """A change from its ``to_dict`` (``delta`` and ``percent`` follow from the rest)."""
        return cls(data["kind"], data["metric"], data["baseline"], data["now"], data["layer"], data["name"],
                   data["op"], data["tolerance"])


@dataclass(frozen=True)
class Comparison:
    """``changes`` holds what exceeded a tolerance (plus every gated total, kind ``same`` when
    within it); ``layer_deltas`` pairs every baseline layer with its match, with both cycle
    counts: ``(baseline index, new index, baseline cycles, new cycles)``, None where unmatched."""

    changes: tuple[Change, ...]
    drift: tuple[str, ...]
    model_changed: bool
    layer_deltas: tuple[tuple[int | None, int | None, float | None, float | None], ...] = ()
    #: figures the estimate has and the baseline does not (written before they were recorded);
    #: not compared, and not in ``to_dict``: the record carries them to the summary
    unrecorded: tuple[str, ...] = ()
    #: a PyTorch model's parts that differ from the baseline's (graph, weights, calibration);
    #: empty when either side does not record them
    parts_changed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status(), "drift": list(self.drift), "model_changed": self.model_changed,
                "changes": [c.to_dict() for c in self.changes],
                "layer_deltas": [{"baseline_layer": b, "layer": n, "baseline_cycles": bc, "cycles": nc}
                                 for b, n, bc, nc in self.layer_deltas]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Comparison:
        """A comparison from its ``to_dict`` (``status`` follows from the changes)."""
        return cls(tuple(Change.from_json(c) for c in data["changes"]), tuple(data["drift"]), bool(data["model_changed"]),
                   tuple((d["baseline_layer"], d["layer"], d["baseline_cycles"], d["cycles"])
                         for d in data.get("layer_deltas", [])))

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.kind in REGRESSIONS]

    @property
    def improvements(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "improved"]

    @property
    def structural(self) -> list[Change]:
        return [c for c in self.changes if c.kind in ("added", "removed", "renamed")]

    def status(self) -> str:
        if self.regressions:
            return "regressed"
        if self.improvements:
            return "improved"
        if self.structural:
            return "changed"
        return "ok"

    def failed(self, strict: bool) -> bool:
        if self.regressions:
            return True
        return strict and bool(self.improvements or
                               [c for c in self.structural if c.kind != "renamed"])

    def total_delta(self, metric: str = "total_cycles") -> Change | None:
        return next((c for c in self.changes if c.layer is None and c.metric == metric), None)

    def headline_change(self) -> Change | None:
        """The change a person should read first: a move to the CPU, else the network's cycles
        if they regressed, else the worst regression; under strict mode, failing without a
        regression, the largest improvement or layer change."""
        for changes in (self.regressions, self.improvements):
            if not changes:
                continue
            to_cpu = [c for c in changes if c.kind == "to_cpu"]
            totals = [c for c in changes if c.layer is None]
            cycles = [c for c in totals if c.metric == "total_cycles"]
            return (to_cpu or cycles or worst_first(totals) or worst_first(changes))[0]
        structural = [c for c in self.structural if c.kind != "renamed"]
        return structural[0] if structural else None


#: the kinds of change that are regressions (a move to the CPU always is one)
REGRESSIONS = ("regressed", "to_cpu")


def worst_first(changes: Sequence[Change]) -> list[Change]:
    """Changes in the order people should read them, in the terminal, the JSON report and the
    HTML report alike: moves to the CPU, then other regressions, then the rest; within each,
    cycles before other metrics, then the largest relative change (new layers count as
    infinitely large), then the largest absolute one."""
    def size(change: Change) -> float:
        percent = change.percent
        return abs(percent) if percent is not None else math.inf
    return sorted(changes, key=lambda c: (c.kind != "to_cpu", c.kind not in REGRESSIONS,
                                          c.metric not in ("cycles", "total_cycles"),
                                          -size(c), -abs(c.delta), c.layer if c.layer is not None else -1))


def _verdict(metric: str, base: float, now: float, tol: Tolerance) -> str | None:
    allowed = tol.allowed(base)
    if now - base > allowed:
        return "regressed"
    if base - now > allowed:
        return "improved"
    return None


def _identity(layer: Layer) -> str:
    """What names a layer across re-exports: a PyTorch model's module path and source line
    (TOSA tensor names such as ``tosa_rescale_default_3`` shift when a layer is added), else
    Vela's name."""
    if layer.module:
        return f"{layer.module}@{layer.source}"
    return layer.name


_T = TypeVar("_T")
_Pairs = list[tuple[Layer | None, Layer | None]]


def _align(base: Sequence[Layer], now: Sequence[Layer], key_base: Sequence[_T], key_now: Sequence[_T]
           ) -> tuple[int, _Pairs]:
    """Pair the layers along an alignment of their keys; the number of equal keys, and the pairs."""
    pairs: _Pairs = []
    equal = 0
    matcher = difflib.SequenceMatcher(None, key_base, key_now, autojunk=False)
    for tag, b0, b1, n0, n1 in matcher.get_opcodes():
        if tag == "equal":
            equal += b1 - b0
        if tag == "equal" or (tag == "replace" and b1 - b0 == n1 - n0):
            pairs.extend(zip(base[b0:b1], now[n0:n1], strict=False))
        else:
            pairs.extend((layer, None) for layer in base[b0:b1])
            pairs.extend((None, layer) for layer in now[n0:n1])
    return equal, pairs


def match_layers(base: Sequence[Layer], now: Sequence[Layer]) -> _Pairs:
    """Pair baseline layers with new ones; None on one side marks an added or removed layer.

    Operator names are compared in a spelling both cores share (``operator_key``).  Same
    operator sequence: pair by position.  Otherwise align on operator and name, which places an
    inserted layer exactly; when most names changed (a re-export), align on the operators alone.
    """
    def ops(layers: Sequence[Layer]) -> list[tuple[str, str]]:
        return [(layer.operator, operator_key(layer.npu_op)) for layer in layers]

    ops_base, ops_now = ops(base), ops(now)
    if ops_base == ops_now:
        return list(zip(base, now, strict=True))
    named, pairs = _align(base, now, [(*o, _identity(la)) for o, la in zip(ops_base, base, strict=True)],
                          [(*o, _identity(la)) for o, la in zip(ops_now, now, strict=True)])
    if 2 * named >= min(len(base), len(now)):
        return pairs
    return _align(base, now, ops_base, ops_now)[1]


def _cycles(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def drift(before: Identity, now: Identity, total_cycles: tuple[float, float] | None = None) -> list[str]:
    """Plain-language differences between the estimator that made the baseline and this one;
    a Vela version change names how far the network's cycles moved (``total_cycles``: the
    baseline's, now)."""
    notes = []
    if before.vela_version != now.vela_version:
        moved = ""
        if total_cycles is not None:
            old, new = total_cycles
            percent = f", {100.0 * (new - old) / old:+.2f}%" if old else ""
            moved = f" (total cycles {_cycles(old)} -> {_cycles(new)}{percent})"
        notes.append(f"baseline made with Vela {before.vela_version}, now {now.vela_version}{moved}; estimates "
                     "change between Vela releases")
    if before.core != now.core:
        notes.append(f"baseline made with the {before.core} core, now the {now.core} core; the cores "
                     "estimate differently")
    old_f, new_f = before.frameworks, now.frameworks
    for name in sorted(set(old_f) | set(new_f)):
        if old_f.get(name) != new_f.get(name):
            made = f"{name} {old_f[name]}" if name in old_f else f"no recorded {name} release"
            notes.append(f"baseline made with {made}, now {new_f.get(name, 'none')}; lowering a PyTorch model "
                         "changes between releases")
    old_t, new_t = before.target, now.target
    for key in sorted(set(old_t) | set(new_t)):
        if old_t.get(key) != new_t.get(key):
            notes.append(f"{key} was {old_t.get(key)!r} for the baseline, now {new_t.get(key)!r}")
    return notes


def compare(baseline: Baseline, now: Baseline, tolerances: Tolerances) -> Comparison:
    """Compare a stored baseline with a new estimate (``baseline.Baseline.of``).  A total the
    baseline does not record (an older plugin wrote it) is not compared."""
    changes: list[Change] = []
    old_totals, new_totals = baseline.totals, now.totals
    old_cpu, new_cpu = old_totals.get("cpu_ops", 0), new_totals.get("cpu_ops", 0)
    if new_cpu > old_cpu:
        changes.append(Change("to_cpu", "cpu_ops", old_cpu, new_cpu, tolerance="always fails"))
    for metric in (*GATED_TOTALS, *(m for m in NAMED_TOTALS if m in tolerances.per_metric)):
        if metric not in old_totals:
            continue
        tol = tolerances.get(metric)
        kind = _verdict(metric, old_totals[metric], new_totals[metric], tol)
        changes.append(Change(kind or "same", metric, old_totals[metric], new_totals[metric],
                              tolerance=tol.describe()))
    changed_model = baseline.model_sha256 != now.model_sha256
    unrecorded = tuple(m for m in now.totals if m not in old_totals)
    parts = tuple(p for p, digest in now.model_parts.items()
                  if p in baseline.model_parts and baseline.model_parts[p] != digest)
    if baseline.estimator.core != now.estimator.core:
        # the cores split and name layers differently: only the network's figures compare
        notes = [*drift(baseline.estimator, now.estimator),
                 "layers are not compared across cores; the network's totals are"]
        return Comparison(tuple(changes), tuple(notes), changed_model, (), unrecorded, parts)
    pairs = match_layers(baseline.layers, now.layers)
    deltas = tuple((None if old is None else old.index, None if new is None else new.index,
                    None if old is None else old.cycles, None if new is None else new.cycles)
                   for old, new in pairs)
    for old, new in pairs:
        if new is None:
            assert old is not None
            changes.append(Change("removed", "cycles", old.cycles, None, old.index, old.label, old.op))
            continue
        if old is None:
            kind = "to_cpu" if new.placement == "CPU" else "added"
            changes.append(Change(kind, "placement" if kind == "to_cpu" else "cycles",
                                  None, new.cycles, new.index, new.label, new.op))
            continue
        where: dict[str, Any] = dict(layer=new.index, name=new.label, op=new.op)
        if old.placement == "NPU" and new.placement == "CPU":
            changes.append(Change("to_cpu", "placement", None, None, tolerance="always fails", **where))
        if _identity(old) != _identity(new):
            changes.append(Change("renamed", "name", None, None, **where))
        for metric in (*GATED_LAYER_METRICS, *(m for m in NAMED_LAYER_METRICS if m in tolerances.per_metric)):
            tol = tolerances.get(metric)
            before, after = getattr(old, metric), getattr(new, metric)
            kind = _verdict(metric, before, after, tol)
            if kind:
                changes.append(Change(kind, metric, before, after, tolerance=tol.describe(), **where))
    cycles = (old_totals["total_cycles"], new_totals["total_cycles"])
    return Comparison(tuple(changes), tuple(drift(baseline.estimator, now.estimator, cycles)),
                      changed_model, deltas, unrecorded, parts)
