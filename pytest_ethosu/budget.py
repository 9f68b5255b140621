"""Budgets: absolute limits on an estimate's figures, checked next to the relative gate.

A budget says what the device has: ``{"sram_used": "256 KiB", "off_chip_flash_used": "1 MiB",
"inference_time": "5 ms", "cpu_ops": 0}``.  It comes from the call's ``budget=``, the
marker's ``budget=`` and the session's ``--ethosu-budget`` / ``ethosu_budget`` (most specific
first, figure by figure; ``None`` in a call or marker lifts a wider budget on that figure).  Each
limit is read once, before Vela runs, in the unit of its figure (``result.FIGURES``):

- bytes: a bare number, or with ``B``, ``KiB``, ``MiB``, ``GiB`` (1024) or ``kB``, ``MB``,
  ``GB`` (1000), in any letter case;
- seconds (``inference_time``): ``s``, ``ms``, ``us`` (or ``µs``); a bare number is refused,
  as ``5`` could mean seconds or milliseconds;
- cycles and counts: a whole number (cycles may say ``cycles``).

A check is over budget when a figure exceeds its limit (equal fits); that fails whether or not
a baseline exists, under ``--ethosu-update`` too (an update accepts changes, not a model that
no longer fits), and the baseline is kept.  ``check`` is a pure function of the estimate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .result import FIGURE, EstimateResult, Number
from .vela import Placement

#: each unit a limit may be written in, by the kind of figure, as a factor to the figure's own unit
UNITS: dict[str, dict[str, float]] = {
    "bytes": {"": 1, "b": 1, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "kb": 1000, "mb": 1000 ** 2,
              "gb": 1000 ** 3},
    "seconds": {"s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6},  # micro sign and Greek mu
    "cycles": {"": 1, "cycles": 1},
    "count": {"": 1},
}
#: how each unit is written back, for the headroom ("212.4 of 256 KiB")
_SPELLING = {"b": "B", "kib": "KiB", "mib": "MiB", "gib": "GiB", "kb": "kB", "mb": "MB", "gb": "GB", "s": "s",
             "ms": "ms", "us": "us", "µs": "us", "μs": "us", "cycles": "cycles", "": ""}
_NUMBER = re.compile(r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([A-Za-zµμ]*)\s*")
#: how many layers a budget's failure names
NAMED_LAYERS = 3
BUDGETED = tuple(FIGURE)


class BudgetError(ValueError):
    """A budget that cannot be read: names the figure and what it takes."""


@dataclass(frozen=True)
class Limit:
    """One figure's limit, in the figure's own unit, and the unit it was written in."""

    figure: str
    value: float
    unit: str  # as written back ("KiB", "ms", ""), the unit the headroom is shown in

    @property
    def factor(self) -> float:
        kind = FIGURE[self.figure].unit
        return UNITS[kind][self.unit.lower()] if self.unit.lower() in UNITS[kind] else 1.0

    def show(self, value: float) -> str:
        """A figure's value in this limit's unit, with the unit ("72.7 KiB", "1.204 ms", "3")."""
        scaled = value / self.factor
        if FIGURE[self.figure].unit == "seconds":
            text = f"{scaled:.4g}"
        elif float(scaled).is_integer():
            text = f"{scaled:,.0f}"
        elif abs(scaled) >= 1:
            text = f"{scaled:,.1f}"
        else:  # a small part of a large unit: "0.0286 MiB", not "0.0 MiB"
            text = f"{scaled:.3g}"
        return f"{text} {self.unit}" if self.unit and self.unit != "cycles" else text

    def to_json(self) -> dict[str, Any]:
        return {"figure": self.figure, "limit": self.value, "unit": self.unit}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Limit:
        figure, unit = str(data["figure"]), str(data["unit"])
        if figure not in FIGURE or unit.lower() not in UNITS[FIGURE[figure].unit]:
            raise BudgetError(f"budget of {figure!r} in {unit!r} is not one this plugin writes")
        value = data["limit"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise BudgetError(f"budget of {figure} is {value!r}, not a number >= 0")
        return cls(figure, float(value), unit)


def parse_limit(figure: str, value: Any) -> Limit:
    """``value`` (a number, or text with a unit) as the limit of ``figure``; ``BudgetError``
    naming both otherwise."""
    if figure not in FIGURE:
        raise BudgetError(f"unknown figure {figure!r} in budget; figures: {', '.join(BUDGETED)}")
    kind = FIGURE[figure].unit
    units = UNITS[kind]
    written = ", ".join(_SPELLING[u] for u in units if u and u not in ("µs", "μs")) or "none"
    example = {"bytes": "'256 KiB'", "seconds": "'5 ms'", "cycles": "500000", "count": "0"}[kind]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BudgetError(f"budget of {figure} must be a number or text such as {example}, not {value!r}")
    if isinstance(value, str):
        match = _NUMBER.fullmatch(value)
        if match is None:
            raise BudgetError(f"budget of {figure}: cannot read {value!r}; write e.g. {example} (units: {written})")
        number, unit = float(match.group(1)), match.group(2)
    else:
        try:
            number, unit = float(value), ""
        except OverflowError:
            raise BudgetError(f"budget of {figure} must be a finite number >= 0, not {str(value)[:24]}… "
                              f"({len(str(value))} digits)") from None
    if unit.lower() not in units:
        need = "needs a unit" if not unit else f"does not take {unit!r}"
        raise BudgetError(f"budget of {figure} {need}: {value!r}; write e.g. {example} (units: {written})")
    if not math.isfinite(number) or number < 0:
        raise BudgetError(f"budget of {figure} must be a finite number >= 0, not {value!r}")
    number *= units[unit.lower()]
    if kind != "seconds" and number != round(number) and math.isclose(number, round(number), rel_tol=1e-12):
        number = float(round(number))  # 4.35 kB is 4,350 bytes, not 4,349.999999999999
    if kind in ("count", "cycles") and not number.is_integer():
        raise BudgetError(f"budget of {figure} is a whole number: {value!r} is not")
    return Limit(figure, number, _SPELLING.get(unit.lower(), unit))


def parse(spec: Any, where: str) -> dict[str, Limit | None]:
    """A budget as the call or the marker gives it (a dict of figure -> limit or None), or as
    the command line and the ini file write it (``"sram_used=256 KiB, cpu_ops=0"``, or one
    ``figure = limit`` per line).  ``BudgetError`` naming ``where``."""
    if spec is None:
        return {}
    items: list[tuple[str, Any]]
    if isinstance(spec, Mapping):
        items = [(str(key), value) for key, value in spec.items()]
    elif isinstance(spec, (str, list, tuple)):
        text = spec if isinstance(spec, str) else ",".join(map(str, spec))
        items = []
        for part in (p.strip() for p in re.split(r"[,\n]", text)):
            if not part:
                continue
            key, eq, value = part.partition("=")
            if not eq or not key.strip() or not value.strip():
                raise BudgetError(f"{where}: {part!r} is not figure=limit, e.g. sram_used=256KiB")
            items.append((key.strip(), value.strip()))
    else:
        raise BudgetError(f"{where} must map figures to limits, e.g. {{'sram_used': '256 KiB'}}, not {spec!r}")
    limits: dict[str, Limit | None] = {}
    twice = sorted({figure for figure, _ in items if [f for f, _ in items].count(figure) > 1})
    if twice:
        raise BudgetError(f"{where}: {', '.join(twice)} given more than once")
    for figure, value in items:
        try:
            limits[figure] = None if value is None else parse_limit(figure, value)
        except BudgetError as exc:
            raise BudgetError(f"{where}: {exc}") from None
    return limits


def merge(sources: Sequence[Mapping[str, Limit | None]]) -> tuple[Limit, ...]:
    """Most specific source first, figure by figure; a ``None`` lifts the wider ones'."""
    chosen: dict[str, Limit | None] = {}
    for source in sources:
        for figure, limit in source.items():
            chosen.setdefault(figure, limit)
    return tuple(limit for figure in BUDGETED if (limit := chosen.get(figure)) is not None)


@dataclass(frozen=True)
class Use:
    """How much of one budget an estimate uses, and (over budget) which layers use most of it."""

    limit: Limit
    used: Number
    layers: tuple[str, ...] = ()  # over budget: "layer 4 Conv2D conv_1 (staging_usage 40,960)"

    @property
    def over(self) -> bool:
        """Above the limit; equal fits.  A time is compared to within a relative 1e-9, as its
        unit can make the limit inexact in binary (81.878 us against Vela's 8.1878e-05 s); bytes,
        cycles and counts exactly (``parse_limit`` makes a limit like 4.35 kB whole)."""
        used = float(self.used)
        if FIGURE[self.limit.figure].unit == "seconds":
            return used > self.limit.value and not math.isclose(used, self.limit.value, rel_tol=1e-9)
        return used > self.limit.value

    @property
    def percent(self) -> float | None:
        return 100.0 * float(self.used) / self.limit.value if self.limit.value else None

    def headroom(self) -> str:
        """ "sram_used 72.7 of 256 KiB (28%)" """
        share = f" ({self.percent:,.0f}%)" if self.percent is not None else ""
        return f"{self.limit.figure} {self.limit.show(float(self.used))} of {self.limit.show(self.limit.value)}{share}"

    def to_json(self) -> dict[str, Any]:
        return {**self.limit.to_json(), "used": self.used, "over": self.over, "layers": list(self.layers)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Use:
        used = data["used"]
        if isinstance(used, bool) or not isinstance(used, (int, float)) or not math.isfinite(used):
            raise BudgetError(f"budget use of {data.get('figure')!r} is {used!r}, not a number")
        return cls(Limit.from_json(data), used, tuple(str(layer) for layer in data.get("layers", ())))


def _spenders(result: EstimateResult, figure: str) -> tuple[str, ...]:
    """The layers that spend most of ``figure``, as a failure names them."""
    if figure == "cpu_ops":
        cpu = [f"layer {layer.index} {layer.op} {layer.label}" for layer in result.layers
               if layer.placement is Placement.CPU] or list(result.cpu_operators)
        shown = NAMED_LAYERS * 2
        return tuple(cpu[:shown]) + ((f"and {len(cpu) - shown} more",) if len(cpu) > shown else ())
    by = FIGURE[figure].spent_by
    if not by:
        return ()
    ranked = sorted((layer for layer in result.layers if float(getattr(layer, by)) > 0),
                    key=lambda layer: (-float(getattr(layer, by)), layer.index))[:NAMED_LAYERS]
    return tuple(f"layer {layer.index} {layer.op} {layer.label} ({by} {float(getattr(layer, by)):,.0f})"
                 for layer in ranked)


def check(result: EstimateResult, limits: Sequence[Limit]) -> tuple[Use, ...]:
    """Each budget's use by ``result``; a budget it exceeds names the layers that spend most."""
    uses = []
    for limit in limits:
        use = Use(limit, getattr(result, limit.figure))
        uses.append(Use(limit, use.used, _spenders(result, limit.figure)) if use.over else use)
    return tuple(uses)


def over(uses: Sequence[Use]) -> tuple[Use, ...]:
    return tuple(use for use in uses if use.over)
