"""The HTML report: one self-contained page drawn from the session's records.

``render_records(records, vela_version)`` returns the page; ``render(document)`` draws an
``--ethosu-json`` document (schema 1) through the records ``report.record_from_entry`` rebuilds,
as ``python -m pytest_ethosu merge --html`` does.  It works offline: Chart.js (vendored, MIT, in
``html_assets/vendor``) and the page's own script are inlined, and the layer data travels once,
as column-wise JSON inside the page; the browser draws the charts and the sortable tables when an
estimate is opened.  Jinja2 (the ``html`` extra) does the templating.

Also here, for the other places a picture helps:

- ``mermaid_chart(record)``: a Mermaid ``xychart-beta`` of the layers that moved, for the
  Markdown summary that GitHub renders;
- ``extras_for_pytest_html(records)``: pytest-html ``extras`` with a static SVG chart per estimate
  (pytest-html inserts extras with ``insertAdjacentHTML``, so scripts would not run there).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from . import escape
from .compare import REGRESSIONS, Change, worst_first
from .gate import Status
from .record import Detail, Record
from .report import STATUS_TEXT, record_from_entry
from .result import Finding, compression

if TYPE_CHECKING:
    import jinja2

ASSETS = "html_assets"
INSTALL_HINT = 'pip install "pytest-ethosu[html]"'

# Memory areas in the order of the JSON report's layer fields: (key in the page data, field, label)
AREAS = (
    ("sram", "sram_access_cycles", "SRAM access"),
    ("dram", "dram_access_cycles", "DRAM access"),
    ("onflash", "on_chip_flash_access_cycles", "on-chip flash access"),
    ("offflash", "off_chip_flash_access_cycles", "off-chip flash access"),
)
# Regressions first, then what needs a look, then the rest; the document's (test, name) order within.
#: the footprint figures an estimate's card shows, in KiB
FOOTPRINT = (("on_chip_flash_used", "on-chip flash"), ("off_chip_flash_used", "off-chip flash"),
             ("original_weights", "weights"), ("encoded_weights", "encoded weights"),
             ("optimised_model_size", "optimised model"))
STATUS_RANK = {"over_budget": 0, "regressed": 0, "missing": 1, "drift": 2, "changed": 2, "improved": 3}
MOVED_KINDS = {"regressed": 1, "to_cpu": 1, "added": 2, "improved": -1}
OPEN_ALL_UP_TO = 6  # sessions with at most this many estimates open every estimate


class HtmlReportError(RuntimeError):
    """The HTML report cannot be made (for example, Jinja2 is not installed)."""


def _environment() -> jinja2.Environment:
    try:
        import jinja2
    except ImportError as exc:  # the optional extra is missing
        raise HtmlReportError(f"the HTML report needs Jinja2: {INSTALL_HINT}") from exc
    env = jinja2.Environment(loader=jinja2.PackageLoader("pytest_ethosu", ASSETS),
                             autoescape=jinja2.select_autoescape(["html", "j2", "svg"]),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.filters["pct"] = _signed_pct
    return env


def _asset(name: str) -> str:
    path = resources.files("pytest_ethosu").joinpath(ASSETS)
    for part in name.split("/"):
        path = path.joinpath(part)
    return path.read_text(encoding="utf-8")


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{float(value):,.{digits}f}"


def _signed_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def script_json(data: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``<`` can end the element."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


# ---------------------------------------------------------------------------------------------
# What the page shows, worked out from the records.

@dataclass(frozen=True)
class Shown:
    """An estimate on the page: its record (with every layer: ``record.Detail``) and its page id."""

    id: str
    record: Record
    detail: Detail


def records(document: Mapping[str, Any]) -> list[Record]:
    """The records of an ``--ethosu-json`` document (one the session wrote or ``merge`` made)."""
    if document.get("schema") != 1:
        raise HtmlReportError(f"unsupported report schema {document.get('schema')!r} (this version reads 1)")
    return [record_from_entry(entry) for entry in document["estimates"]]


def _detail(record: Record) -> Detail:
    if record.detail is None:
        raise HtmlReportError(f"{record.label}: its record has no layers (made without a report that needs them)")
    return record.detail


def label(record: Record) -> str:
    """``test[id] [name]``, as the summary table names an estimate."""
    text = record.test.split("::", 1)[-1]
    return text + (f" [{record.name}]" if record.name not in ("", "default") else "")


def total_change(record: Record) -> float | None:
    """The change in total cycles against the baseline, in percent (None without one)."""
    comparison = _detail(record).comparison
    change = comparison.total_delta() if comparison is not None else None
    return change.percent if change is not None else None


def _changes(record: Record) -> tuple[Change, ...]:
    comparison = _detail(record).comparison
    return comparison.changes if comparison is not None else ()


def layer_changes(record: Record) -> list[dict[str, Any]]:
    """The comparison's per-layer changes beyond tolerance, in the gate's order (``worst_first``)."""
    return [c.to_dict() for c in worst_first([c for c in _changes(record) if c.layer is not None and c.kind != "same"])]


def regressions(record: Record) -> list[dict[str, Any]]:
    """The comparison's regressions, worst first, as the terminal lists them."""
    return [c.to_dict() for c in worst_first([c for c in _changes(record) if c.kind in REGRESSIONS])]


def chart_data(record: Record) -> dict[str, Any]:
    """One estimate's per-layer series, column-wise (the page's charts and tables use these).

    ``baseline`` holds each layer's baseline cycles (null where the layer has no match) and
    ``moved`` marks the layers that changed beyond tolerance: 1 slower (or to the CPU), -1 faster,
    2 added.  ``removed`` lists baseline layers with no match now.  ``util`` is null for layers
    that do no MACs (fused activations), so the utilisation line skips them.
    """
    detail = _detail(record)
    layers = detail.layers
    position = {layer.index: i for i, layer in enumerate(layers)}
    data: dict[str, Any] = {
        "index": [layer.index for layer in layers],
        "name": [layer.name for layer in layers],
        "op": [layer.op for layer in layers],
        "npu_op": [layer.npu_op for layer in layers],
        "placement": [layer.placement.value for layer in layers],
        "cycles": [layer.cycles for layer in layers],
        "npu": [layer.npu_cycles for layer in layers],
        "macs": [layer.macs for layer in layers],
        "util": [round(float(layer.mac_utilization), 3) if layer.macs else None for layer in layers],
        "staging": [layer.staging_usage for layer in layers],
        "total": detail.totals["total_cycles"],
    }
    # only the memory areas this estimate uses get a series
    used = [(key, field, text) for key, field, text in AREAS if any(getattr(layer, field) for layer in layers)]
    data["areas"] = [[key, text] for key, _field, text in used]
    for key, field, _text in used:
        data[key] = [getattr(layer, field) for layer in layers]
    comparison = detail.comparison
    data["has_baseline"] = comparison is not None
    if comparison is not None:
        baseline: list[float | None] = [None] * len(layers)
        removed = []
        for old, new, old_cycles, _cycles in comparison.layer_deltas:
            if new is not None and new in position:
                baseline[position[new]] = old_cycles
            elif old is not None:
                removed.append({"layer": old, "cycles": old_cycles})
        moved = [0] * len(layers)
        for change in comparison.changes:
            where = position.get(change.layer) if change.layer is not None else None
            if where is not None and change.kind in MOVED_KINDS and change.kind != "removed":
                if moved[where] != 1:  # a slow-down wins over any other mark
                    moved[where] = MOVED_KINDS[change.kind]
        data.update(baseline=baseline, moved=moved, removed=removed)
    findings: dict[str, list[dict[str, str]]] = defaultdict(list)
    for finding in record.advice:
        if finding.layer is not None and finding.layer in position:
            findings[str(position[finding.layer])].append(
                {"kind": finding.kind.replace("_", " "), "text": finding.suggestion})
    data["findings"] = dict(findings)
    return data


def _aligned(members: Sequence[Shown]) -> bool:
    """Whether the estimates' layers pair by position (the same operator sequence)."""
    ops = [[layer.op for layer in m.detail.layers] for m in members]
    return all(o == ops[0] for o in ops[1:]) and bool(ops[0])


def _comparison_metrics(members: Sequence[Shown]) -> list[dict[str, Any]]:
    """Rows of a side-by-side table: one metric, one cell per estimate, with a bar scaled to the row."""
    def total(field: str, scale: float = 1.0) -> Callable[[Shown], float]:
        return lambda m: float(m.detail.totals[field]) / scale

    metrics: list[tuple[str, Callable[[Shown], float], int]] = [
        ("total cycles", total("total_cycles"), 0),
        ("inference ms", lambda m: float(m.record.inference_ms), 3),
        ("MAC utilisation %", lambda m: float(m.record.mac_utilization), 1),
        ("NPU cycles", total("npu_cycles"), 0)]
    metrics += [(text + " cycles", total(field), 0) for _key, field, text in AREAS
                if any(m.detail.totals.get(field) for m in members)]
    metrics += [("SRAM used KiB", total("sram_used", 1024), 1), ("DRAM used KiB", total("dram_used", 1024), 1)]
    metrics += [(text + " used KiB", total(field, 1024), 1)
                for field, text in (("on_chip_flash_used", "on-chip flash"), ("off_chip_flash_used", "off-chip flash"))
                if all(field in m.detail.totals for m in members) and any(m.detail.totals[field] for m in members)]
    metrics += [(text, total(field, 1024), 1) for field, text in (
                    ("encoded_weights", "weights KiB (encoded)"), ("sram_traffic", "SRAM traffic KiB"),
                    ("dram_traffic", "DRAM traffic KiB"), ("on_chip_flash_traffic", "on-chip flash traffic KiB"),
                    ("off_chip_flash_traffic", "off-chip flash traffic KiB"))
                if all(field in m.detail.totals for m in members) and any(m.detail.totals[field] for m in members)]
    metrics += [("NPU ops", total("npu_ops"), 0), ("CPU ops", total("cpu_ops"), 0),
                ("layers", lambda m: float(len(m.detail.layers)), 0)]
    rows = []
    for text, get, digits in metrics:
        values = [float(get(m)) for m in members]
        top = max(values) or 1.0
        rows.append({"metric": text, "cells": [{"text": _num(v, digits), "width": round(100 * v / top, 1)}
                                               for v in values]})
    return rows


def groups(shown: Sequence[Shown]) -> list[dict[str, Any]]:
    """Side-by-side comparisons: the same model on several accelerators, and several estimates of
    one test (such as the example's 90- and 96-channel models)."""
    result: list[dict[str, Any]] = []
    by_model: dict[str, list[Shown]] = defaultdict(list)
    for m in shown:
        by_model[m.record.model_sha256].append(m)
    for members in by_model.values():
        accelerators = {m.record.accelerator for m in members}
        if len(accelerators) > 1:
            result.append({"title": f"{members[0].record.model.rsplit('/', 1)[-1]} on {len(accelerators)} accelerators",
                           "members": members, "heads": [m.record.accelerator for m in members]})
    by_test: dict[str, list[Shown]] = defaultdict(list)
    for m in shown:
        by_test[m.record.test].append(m)
    for test, members in by_test.items():
        if len(members) > 1 and len({m.record.model_sha256 for m in members}) > 1:
            result.append({"title": test.split("::", 1)[-1], "members": members,
                           "heads": [m.record.name or m.record.model.rsplit("/", 1)[-1] for m in members]})
    for number, group in enumerate(result):
        group["id"] = f"g{number}"
        group["rows"] = _comparison_metrics(group["members"])
        group["aligned"] = _aligned(group["members"])
        group["member_ids"] = [m.id for m in group["members"]]
    return result


def _view(shown: Shown) -> dict[str, Any]:
    record, detail = shown.record, shown.detail
    totals, comparison = detail.totals, detail.comparison
    changes = layer_changes(record)
    return {
        "id": shown.id, "label": label(record), "test": record.test, "name": record.name,
        "model": record.model, "model_short": record.model.rsplit("/", 1)[-1],
        "accelerator": record.accelerator, "status": record.status.value,
        "status_text": STATUS_TEXT.get(record.status.value, record.status.value),
        "change": total_change(record), "cycles": totals["total_cycles"], "ms": record.inference_ms,
        "util": record.mac_utilization, "sram_kib": totals["sram_used"] / 1024, "cpu_ops": totals["cpu_ops"],
        "npu_ops": totals["npu_ops"], "layers": len(detail.layers),
        "system_config": detail.target.get("system_config"), "memory_mode": detail.target.get("memory_mode"),
        "core": detail.estimator.core, "baseline": record.baseline,
        "drift": list(comparison.drift) if comparison else [],
        "model_changed": comparison.model_changed if comparison else False,
        "regressions": regressions(record), "layer_changes": changes[:20],
        "more_changes": max(0, len(changes) - 20),
        "findings": [f.to_dict() for f in record.advice],
        "finding_groups": finding_groups(record.advice),
        "budget": [{"text": use.headroom(), "over": use.over, "layers": list(use.layers)} for use in record.budget],
        # footprint: absent from a JSON report written before these figures were recorded
        "footprint": [(label, totals[key] / 1024) for key, label in FOOTPRINT if key in totals],
        "compression": None if (ratio := compression(totals)) is None else 100.0 * ratio,
    }


CPU_FALLBACK_RANK = 1.5  # after failures and missing baselines, before changes: work the NPU does not do


def _rank(record: Record) -> float:
    rank = float(STATUS_RANK.get(record.status.value, 9))
    return min(rank, CPU_FALLBACK_RANK) if record.cpu_ops else rank


def finding_groups(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """The advisor's findings with one suggestion each: those of one kind that suggest the same
    thing (17 memory-bound layers of an LSTM) are one item listing each layer's evidence, as the
    terminal groups them."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault((finding.kind, finding.suggestion), []).append(finding)
    return [{"kind": kind, "suggestion": suggestion, "members": [f.to_dict() for f in items]}
            for (kind, suggestion), items in groups.items()]


def ordered(records: Sequence[Record]) -> list[Shown]:
    """The estimates, regressions and budget failures first, then missing baselines, then
    estimates with operators on the CPU (never shown as plainly "ok"), each with a page id;
    their (test, name) order within."""
    shown = [Shown(f"e{i}", record, _detail(record)) for i, record in enumerate(records)]
    return sorted(shown, key=lambda m: _rank(m.record))


def render(document: Mapping[str, Any]) -> str:
    """The whole page for one JSON report document (``render_records`` of its records)."""
    return render_records(records(document), document.get("vela_version"))


def render_records(estimates: Sequence[Record], vela_version: str | None) -> str:
    """The whole page for the session's records (or a merged report's)."""
    shown = ordered(estimates)
    views = [_view(m) for m in shown]
    data = {"estimates": {m.id: chart_data(m.record) for m in shown},
            "labels": {m.id: label(m.record) for m in shown}}
    counts: dict[str, int] = defaultdict(int)
    for m in shown:
        counts[STATUS_TEXT.get(m.record.status.value, m.record.status.value)] += 1
    open_ids = {v["id"] for v in views if v["status"] in ("regressed", "over_budget", "missing") or v["cpu_ops"]}
    if len(views) <= OPEN_ALL_UP_TO:
        open_ids = {v["id"] for v in views}
    elif not open_ids and views:
        open_ids = {views[0]["id"]}
    return _environment().get_template("report.html.j2").render(
        vela_version=vela_version, estimates=views, groups=groups(shown),
        counts=dict(counts), regressed=[v for v in views if v["status"] == "regressed"], open_ids=open_ids,
        data_json=script_json(data), chart_js=_asset("vendor/chart.umd.min.js"), page_js=_asset("report.js"),
        page_css=_asset("report.css"))


def embedded_data(page: str) -> dict[str, Any]:
    """The chart data a rendered page carries (for tests and tools)."""
    start = page.index('<script type="application/json" id="ethosu-data">')
    start = page.index(">", start) + 1
    end = page.index("</script>", start)
    result: dict[str, Any] = json.loads(page[start:end])
    return result


# ---------------------------------------------------------------------------------------------
# Mermaid, for the Markdown summary.

MERMAID_LAYERS = 10


def mermaid_chart(record: Record, count: int = MERMAID_LAYERS) -> str:
    """A fenced Mermaid ``xychart-beta``: the ``count`` layers whose cycles moved most against the
    baseline, baseline as a line and now as bars.  "" when the estimate has no moved layer."""
    detail = _detail(record)
    ops = {layer.index: layer.op for layer in detail.layers}
    deltas = [(new, float(old_cycles), float(cycles))
              for old, new, old_cycles, cycles in (detail.comparison.layer_deltas if detail.comparison else ())
              if new is not None and old is not None and cycles is not None and old_cycles is not None
              and cycles != old_cycles]
    if not deltas:
        return ""
    top = sorted(deltas, key=lambda d: (-abs(d[2] - d[1]), d[0]))[:count]
    top.sort(key=lambda d: d[0])  # network order
    high = max(max(cycles, old_cycles) for _layer, old_cycles, cycles in top)
    names = ", ".join(escape.mermaid(f"{layer} {ops.get(layer, '')}".strip()) for layer, _old, _now in top)
    title = f"{label(record)} on {record.accelerator}: layers that moved (bars now, line baseline)"
    return "\n".join([
        "```mermaid",
        "xychart-beta",
        f"    title {escape.mermaid(title)}",
        f"    x-axis [{names}]",
        f'    y-axis "cycles" 0 --> {math.ceil(high * 1.05)}',
        f"    bar [{', '.join(str(round(cycles)) for _layer, _old, cycles in top)}]",
        f"    line [{', '.join(str(round(old)) for _layer, old, _now in top)}]",
        "```",
    ]) + "\n"


def markdown_charts(estimates: Sequence[Record]) -> str:
    """Mermaid charts of the regressed estimates, for appending to the Markdown summary."""
    parts = []
    for record in estimates:
        if record.status is not Status.REGRESSED or record.detail is None:
            continue
        chart = mermaid_chart(record)
        if chart:
            parts.append(f"**{escape.markdown(label(record))}** ({escape.markdown(record.model.rsplit('/', 1)[-1])} "
                         f"on {escape.markdown(record.accelerator)})"
                         f"\n\n{chart}")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# pytest-html: a static chart per estimate in the test's row.

SVG_WIDTH, SVG_HEIGHT, SVG_PAD = 720, 140, 4


def svg_chart(record: Record) -> str:
    """A small static SVG of op cycles per layer (compute part dark, memory-bound part light;
    moved layers red; baseline as ticks), from the Jinja2 template ``layers.svg.j2``."""
    layers = _detail(record).layers
    data = chart_data(record)
    high = max([float(c) for c in data["cycles"]] + [float(b or 0) for b in data.get("baseline", [])] + [1.0])
    slot = (SVG_WIDTH - 2 * SVG_PAD) / max(1, len(layers))
    scale = (SVG_HEIGHT - 2 * SVG_PAD) / high
    bars = []
    for i, layer in enumerate(layers):
        cycles, npu = float(layer.cycles), min(float(layer.npu_cycles), float(layer.cycles))
        base = data.get("baseline", [None] * len(layers))[i]
        bars.append({
            "x": round(SVG_PAD + i * slot, 2), "w": round(max(slot * 0.8, 0.5), 2),
            "y": round(SVG_HEIGHT - SVG_PAD - cycles * scale, 2), "h": round(cycles * scale, 2),
            "cy": round(SVG_HEIGHT - SVG_PAD - npu * scale, 2), "ch": round(npu * scale, 2),
            "by": round(SVG_HEIGHT - SVG_PAD - float(base) * scale, 2) if base is not None else None,
            "moved": data.get("moved", [0] * len(layers))[i],
            "title": f"layer {layer.index} {layer.op}: {_num(cycles)} cycles "
                     f"({_num(npu)} compute), util {float(layer.mac_utilization):.1f}%"
                     + (f", baseline {_num(base)}" if base is not None else "") + f" - {layer.name}",
        })
    return _environment().get_template("layers.svg.j2").render(
        width=SVG_WIDTH, height=SVG_HEIGHT, bars=bars, title=f"{label(record)} on {record.accelerator}")


def extras_for_pytest_html(estimates: Sequence[Record]) -> list[dict[str, Any]]:
    """pytest-html ``extras`` for one test's estimates (records with their detail): per estimate a
    headline and a static SVG chart, as ``pytest_html.extras.html``.  Append them to
    ``report.extras`` in a ``pytest_runtest_makereport`` wrapper (pytest-html 4)."""
    from pytest_html import extras  # type: ignore[import-untyped,import-not-found,unused-ignore]

    env = _environment()
    result: list[dict[str, Any]] = []
    for record in estimates:
        fragment = env.get_template("pytest_html_extra.html.j2").render(
            view=_view(Shown("x", record, _detail(record))), svg=svg_chart(record))
        result.append(extras.html(fragment))
    return result
