"""The record of one estimate, as the session reports it: a frozen, typed value.

A record is made once per estimate (``report.make_record``, from the ``EstimateResult``, the
gate's verdict and its comparison) and gets its final status when the test has ended
(``with_status``).  It crosses processes only as JSON, as pytest's reports do: ``to_json`` in an
xdist worker, ``from_json`` on the controller.  ``to_json`` is also the dict that the
``pytest_ethosu_result`` and ``pytest_ethosu_summary_row`` hooks see; the keys a hook adds come
back as ``extra``.  A merged JSON report's entries become records through
``report.record_from_entry``, which derives what they do not hold the way ``make_record`` does.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .baseline import Identity
from .budget import Use
from .compare import Change, Comparison
from .gate import Status
from .result import Finding, Layer

Number = int | float


@dataclass(frozen=True)
class TopLayer:
    """One of the estimate's costliest layers, for the summary's table."""

    index: int
    name: str  # the layer's label (its module path and source line for a PyTorch model)
    op: str
    cycles: Number
    share: float  # percent of the network's cycles
    mac_utilization: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TopLayer:
        return cls(int(data["index"]), str(data["name"]), str(data["op"]), data["cycles"], float(data["share"]),
                   float(data["mac_utilization"]))


@dataclass(frozen=True)
class Detail:
    """What the reports show of an estimate beyond its summary: the resolved target, what
    produced it, every total, every layer and the whole comparison.  Records carry it when a
    report needs it (``--ethosu-json``, ``--ethosu-html``, pytest-html, ``--ethosu-layers``)."""

    target: Mapping[str, Any]
    estimator: Identity
    totals: Mapping[str, Number]
    layers: tuple[Layer, ...]
    comparison: Comparison | None

    def to_json(self) -> dict[str, Any]:
        """The JSON report entry's ``target``, ``estimator``, ``totals``, ``layers`` and ``comparison``."""
        return {"target": copy.deepcopy(dict(self.target)), "estimator": self.estimator.to_json(),
                "totals": dict(self.totals), "layers": [layer.to_dict() for layer in self.layers],
                "comparison": self.comparison.to_dict() if self.comparison is not None else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Detail:
        estimator = data["estimator"]
        return cls(data["target"], Identity(estimator["vela_version"], estimator["core"], estimator.get("target", {}),
                                            estimator.get("frameworks", {})),
                   data["totals"], tuple(Layer.from_json(layer, f"layers[{i}]") for i, layer in enumerate(data["layers"])),
                   None if data["comparison"] is None else Comparison.from_json(data["comparison"]))


@dataclass(frozen=True)
class Record:
    test: str  # node id
    file: str
    line: int  # 0 when not known (a record rebuilt from a JSON report)
    name: str  # the check's name; "" for a plain estimate()
    model: str
    model_sha256: str
    accelerator: str
    system_config: str | None
    memory_mode: str | None
    vela_version: str
    core: str
    total_cycles: Number
    inference_ms: float
    mac_utilization: float
    npu_ops: int
    cpu_ops: int
    sram_used: int
    status: Status
    delta_percent: float | None  # change of total cycles against the baseline
    baseline: str | None  # the baseline file, relative to the rootdir
    drift: tuple[str, ...]
    regressions: tuple[Change, ...]  # the worst changes beyond tolerance, worst first
    headline: str  # what failed, in one sentence ("" when nothing did)
    change: str  # the headline change, short: "npu_cycles +126.4%", "layer 4 cycles +259.7%"
    advice: tuple[Finding, ...]
    top_layers: tuple[TopLayer, ...]
    source: str  # "vela", "cache" or "memo": who answered this time ("" when not known)
    detail: Detail | None  # for the reports that show every layer (see ``Detail``)
    extra: Mapping[str, Any] = field(default_factory=dict)  # what pytest_ethosu_result hooks added
    unrecorded: tuple[str, ...] = ()  # figures its baseline lacks (written before they were recorded)
    budget: tuple[Use, ...] = ()  # each budget of the check and how much of it the estimate uses
    totals: Mapping[str, Number] = field(default_factory=dict)  # the network figures (``result.TOTAL_METRICS``)
    #: a PyTorch model built or calibrated differently from its baseline's (``report.model_change_note``)
    unpinned: str = ""

    @property
    def flash_used(self) -> int | None:
        """Bytes of on-chip and off-chip flash; None for a JSON report written before them."""
        if "on_chip_flash_used" not in self.totals or "off_chip_flash_used" not in self.totals:
            return None
        return int(self.totals["on_chip_flash_used"]) + int(self.totals["off_chip_flash_used"])

    @property
    def over_budget(self) -> tuple[Use, ...]:
        return tuple(use for use in self.budget if use.over)

    @property
    def label(self) -> str:
        """The test id, with the check's name unless it is the default one."""
        return self.test + (f" [{self.name}]" if self.name not in ("", "default") else "")

    def with_status(self, status: Status) -> Record:
        return dataclasses.replace(self, status=status)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types; the keys hooks added sit beside the plugin's, as hooks set them."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        data.update(status=self.status.value, drift=list(self.drift), unrecorded=list(self.unrecorded),
                    budget=[use.to_json() for use in self.budget], totals=dict(self.totals),
                    regressions=[c.to_dict() for c in self.regressions],
                    advice=[f.to_dict() for f in self.advice], top_layers=[t.to_json() for t in self.top_layers],
                    detail=self.detail.to_json() if self.detail is not None else None)
        return {**self.extra, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        values = {key: data[key] for key in RECORD_KEYS}
        values.update(status=Status(data["status"]), drift=tuple(data["drift"]), unrecorded=tuple(data["unrecorded"]),
                      budget=tuple(Use.from_json(use) for use in data["budget"]),
                      regressions=tuple(Change.from_json(c) for c in data["regressions"]),
                      advice=tuple(Finding(**f) for f in data["advice"]),
                      top_layers=tuple(TopLayer.from_json(t) for t in data["top_layers"]),
                      detail=None if data["detail"] is None else Detail.from_json(data["detail"]),
                      extra={key: value for key, value in data.items() if key not in RECORD_KEYS})
        return cls(**values)



#: The keys the plugin puts in a record's JSON; any other key was added by a hook.
RECORD_KEYS = frozenset(f.name for f in dataclasses.fields(Record) if f.name != "extra")
