"""The HTML report: one self-contained page drawn from an ``--ethosu-json`` document (schema 1).

``render(document)`` returns the page.  It works offline: Chart.js (vendored, MIT, in
``html_assets/vendor``) and the page's own script are inlined, and the layer data travels once,
as column-wise JSON inside the page; the browser draws the charts and the sortable tables when an
estimate is opened.  Jinja2 (the ``html`` extra) does the templating.

Also here, for the other places a picture helps:

- ``mermaid_chart(entry)``: a Mermaid ``xychart-beta`` of the layers that moved, for the
  Markdown summary that GitHub renders;
- ``extras_for_pytest_html(entries)``: pytest-html ``extras`` with a static SVG chart per estimate
  (pytest-html inserts extras with ``insertAdjacentHTML``, so scripts would not run there).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from . import escape
from .compare import REGRESSIONS, Change, worst_first
from .record import change_from_json
from .report import STATUS_TEXT

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
STATUS_RANK = {"regressed": 0, "missing": 1, "drift": 2, "changed": 2, "improved": 3}
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
# What the page shows, worked out from the document.

def label(entry: Mapping[str, Any]) -> str:
    """``test_file.py::test[id] [name]``, as the summary table names an estimate."""
    text = str(entry["test"]).split("::", 1)[-1]
    return text + (f" [{entry['name']}]" if entry["name"] not in ("", "default") else "")


def total_change(entry: Mapping[str, Any]) -> float | None:
    """The change in total cycles against the baseline, in percent (None without one)."""
    comparison = entry.get("comparison")
    for change in (comparison or {}).get("changes", []):
        if change["layer"] is None and change["metric"] == "total_cycles":
            return float(change["percent"]) if change["percent"] is not None else None
    return None


def _changes(entry: Mapping[str, Any]) -> list[Change]:
    comparison = entry.get("comparison") or {}
    return [change_from_json(c) for c in comparison.get("changes", [])]


def layer_changes(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The comparison's per-layer changes beyond tolerance, in the gate's order (``worst_first``)."""
    return [c.to_dict() for c in worst_first([c for c in _changes(entry) if c.layer is not None and c.kind != "same"])]


def regressions(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The comparison's regressions, worst first, as the terminal lists them."""
    return [c.to_dict() for c in worst_first([c for c in _changes(entry) if c.kind in REGRESSIONS])]


def chart_data(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One estimate's per-layer series, column-wise (the page's charts and tables use these).

    ``baseline`` holds each layer's baseline cycles (null where the layer has no match) and
    ``moved`` marks the layers that changed beyond tolerance: 1 slower (or to the CPU), -1 faster,
    2 added.  ``removed`` lists baseline layers with no match now.  ``util`` is null for layers
    that do no MACs (fused activations), so the utilisation line skips them.
    """
    layers = entry["layers"]
    position = {layer["index"]: i for i, layer in enumerate(layers)}
    data: dict[str, Any] = {
        "index": [layer["index"] for layer in layers],
        "name": [layer["name"] for layer in layers],
        "op": [layer["op"] for layer in layers],
        "npu_op": [layer["npu_op"] for layer in layers],
        "placement": [layer["placement"] for layer in layers],
        "cycles": [layer["cycles"] for layer in layers],
        "npu": [layer["npu_cycles"] for layer in layers],
        "macs": [layer["macs"] for layer in layers],
        "util": [round(float(layer["mac_utilization"]), 3) if layer["macs"] else None for layer in layers],
        "staging": [layer["staging_usage"] for layer in layers],
        "total": entry["totals"]["total_cycles"],
    }
    # only the memory areas this estimate uses get a series
    used = [(key, field, text) for key, field, text in AREAS if any(layer[field] for layer in layers)]
    data["areas"] = [[key, text] for key, _field, text in used]
    for key, field, _text in used:
        data[key] = [layer[field] for layer in layers]
    comparison = entry.get("comparison")
    data["has_baseline"] = comparison is not None
    if comparison is not None:
        baseline: list[float | None] = [None] * len(layers)
        removed = []
        for delta in comparison.get("layer_deltas", []):
            if delta["layer"] is not None and delta["layer"] in position:
                baseline[position[delta["layer"]]] = delta["baseline_cycles"]
            elif delta["baseline_layer"] is not None:
                removed.append({"layer": delta["baseline_layer"], "cycles": delta["baseline_cycles"]})
        moved = [0] * len(layers)
        for change in comparison.get("changes", []):
            where = position.get(change["layer"]) if change["layer"] is not None else None
            if where is not None and change["kind"] in MOVED_KINDS and change["kind"] != "removed":
                if moved[where] != 1:  # a slow-down wins over any other mark
                    moved[where] = MOVED_KINDS[change["kind"]]
        data.update(baseline=baseline, moved=moved, removed=removed)
    findings: dict[str, list[dict[str, str]]] = defaultdict(list)
    for finding in entry.get("findings", []):
        if finding["layer"] is not None and finding["layer"] in position:
            findings[str(position[finding["layer"]])].append(
                {"kind": finding["kind"].replace("_", " "), "text": finding["suggestion"]})
    data["findings"] = dict(findings)
    return data


def _aligned(entries: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the estimates' layers pair by position (the same operator sequence)."""
    ops = [[layer["op"] for layer in e["layers"]] for e in entries]
    return all(o == ops[0] for o in ops[1:]) and bool(ops[0])


def _comparison_metrics(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a side-by-side table: one metric, one cell per estimate, with a bar scaled to the row."""
    def total(field: str, scale: float = 1.0) -> Callable[[Mapping[str, Any]], float]:
        return lambda e: float(e["totals"][field]) / scale

    metrics: list[tuple[str, Callable[[Mapping[str, Any]], float], int]] = [
        ("total cycles", total("total_cycles"), 0),
        ("inference ms", lambda e: float(e["inference_ms"]), 3),
        ("MAC utilisation %", lambda e: float(e["mac_utilization"]), 1),
        ("NPU cycles", total("npu_cycles"), 0)]
    metrics += [(text + " cycles", total(field), 0) for _key, field, text in AREAS
                if any(e["totals"].get(field) for e in entries)]
    metrics += [("SRAM used KiB", total("sram_used", 1024), 1), ("DRAM used KiB", total("dram_used", 1024), 1)]
    metrics += [(text + " used KiB", total(field, 1024), 1)
                for field, text in (("on_chip_flash_used", "on-chip flash"), ("off_chip_flash_used", "off-chip flash"))
                if any(e["totals"].get(field) for e in entries)]
    metrics += [("NPU ops", total("npu_ops"), 0), ("CPU ops", total("cpu_ops"), 0),
                ("layers", lambda e: float(len(e["layers"])), 0)]
    rows = []
    for text, get, digits in metrics:
        values = [float(get(e)) for e in entries]
        top = max(values) or 1.0
        rows.append({"metric": text, "cells": [{"text": _num(v, digits), "width": round(100 * v / top, 1)}
                                               for v in values]})
    return rows


def groups(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Side-by-side comparisons: the same model on several accelerators, and several estimates of
    one test (such as the example's 90- and 96-channel models)."""
    result: list[dict[str, Any]] = []
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        by_model[e["model_sha256"]].append(e)
    for members in by_model.values():
        if len({m["accelerator"] for m in members}) > 1:
            result.append({"title": f"{members[0]['model'].rsplit('/', 1)[-1]} on "
                                    f"{len({m['accelerator'] for m in members})} accelerators",
                           "members": members, "heads": [m["accelerator"] for m in members]})
    by_test: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        by_test[e["test"]].append(e)
    for test, members in by_test.items():
        if len(members) > 1 and len({m["model_sha256"] for m in members}) > 1:
            result.append({"title": test.split("::", 1)[-1], "members": members,
                           "heads": [m["name"] or m["model"].rsplit("/", 1)[-1] for m in members]})
    for number, group in enumerate(result):
        group["id"] = f"g{number}"
        group["rows"] = _comparison_metrics(group["members"])
        group["aligned"] = _aligned(group["members"])
        group["member_ids"] = [m["_id"] for m in group["members"]]
    return result


def _view(entry: dict[str, Any]) -> dict[str, Any]:
    totals = entry["totals"]
    return {
        "id": entry["_id"], "label": label(entry), "test": entry["test"], "name": entry["name"],
        "model": entry["model"], "model_short": entry["model"].rsplit("/", 1)[-1],
        "accelerator": entry["accelerator"], "status": entry["status"],
        "status_text": STATUS_TEXT.get(entry["status"], entry["status"]),
        "change": total_change(entry), "cycles": totals["total_cycles"], "ms": entry["inference_ms"],
        "util": entry["mac_utilization"], "sram_kib": totals["sram_used"] / 1024, "cpu_ops": totals["cpu_ops"],
        "npu_ops": totals["npu_ops"], "layers": len(entry["layers"]),
        "system_config": entry["target"].get("system_config"), "memory_mode": entry["target"].get("memory_mode"),
        "core": entry["estimator"].get("core"), "baseline": entry["baseline"],
        "drift": (entry.get("comparison") or {}).get("drift", []),
        "model_changed": (entry.get("comparison") or {}).get("model_changed", False),
        "regressions": regressions(entry), "layer_changes": layer_changes(entry)[:20],
        "more_changes": max(0, len(layer_changes(entry)) - 20),
        "findings": entry.get("findings", []),
    }


def ordered(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The document's estimates, regressions first, each with a page id ``_id``."""
    entries = [dict(e, _id=f"e{i}") for i, e in enumerate(document["estimates"])]
    return sorted(entries, key=lambda e: STATUS_RANK.get(e["status"], 9))  # stable: (test, name) within


def render(document: Mapping[str, Any]) -> str:
    """The whole page for one JSON report document."""
    if document.get("schema") != 1:
        raise HtmlReportError(f"unsupported report schema {document.get('schema')!r} (this version reads 1)")
    entries = ordered(document)
    views = [_view(e) for e in entries]
    data = {"estimates": {e["_id"]: chart_data(e) for e in entries},
            "labels": {e["_id"]: label(e) for e in entries}}
    counts: dict[str, int] = defaultdict(int)
    for e in entries:
        counts[STATUS_TEXT.get(e["status"], e["status"])] += 1
    open_ids = {v["id"] for v in views if v["status"] in ("regressed", "missing")}
    if len(views) <= OPEN_ALL_UP_TO:
        open_ids = {v["id"] for v in views}
    elif not open_ids and views:
        open_ids = {views[0]["id"]}
    return _environment().get_template("report.html.j2").render(
        vela_version=document.get("vela_version"), estimates=views, groups=groups(entries),
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


def mermaid_chart(entry: Mapping[str, Any], count: int = MERMAID_LAYERS) -> str:
    """A fenced Mermaid ``xychart-beta``: the ``count`` layers whose cycles moved most against the
    baseline, baseline as a line and now as bars.  "" when the estimate has no moved layer."""
    comparison = entry.get("comparison") or {}
    ops = {layer["index"]: layer["op"] for layer in entry["layers"]}
    deltas = [d for d in comparison.get("layer_deltas", [])
              if d["layer"] is not None and d["baseline_layer"] is not None
              and d["cycles"] is not None and d["baseline_cycles"] is not None
              and d["cycles"] != d["baseline_cycles"]]
    if not deltas:
        return ""
    top = sorted(deltas, key=lambda d: (-abs(float(d["cycles"]) - float(d["baseline_cycles"])), d["layer"]))[:count]
    top.sort(key=lambda d: d["layer"])  # network order
    high = max(max(float(d["cycles"]), float(d["baseline_cycles"])) for d in top)
    names = ", ".join(escape.mermaid(f"{d['layer']} {ops.get(d['layer'], '')}".strip()) for d in top)
    title = f"{label(entry)} on {entry['accelerator']}: layers that moved (bars now, line baseline)"
    return "\n".join([
        "```mermaid",
        "xychart-beta",
        f"    title {escape.mermaid(title)}",
        f"    x-axis [{names}]",
        f'    y-axis "cycles" 0 --> {math.ceil(high * 1.05)}',
        f"    bar [{', '.join(str(round(float(d['cycles']))) for d in top)}]",
        f"    line [{', '.join(str(round(float(d['baseline_cycles']))) for d in top)}]",
        "```",
    ]) + "\n"


def markdown_charts(entries: Sequence[Mapping[str, Any]]) -> str:
    """Mermaid charts of the regressed estimates, for appending to the Markdown summary."""
    parts = []
    for entry in entries:
        if entry["status"] != "regressed":
            continue
        chart = mermaid_chart(entry)
        if chart:
            parts.append(f"**{escape.markdown(label(entry))}** ({escape.markdown(entry['model'].rsplit('/', 1)[-1])} "
                         f"on {escape.markdown(entry['accelerator'])})"
                         f"\n\n{chart}")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# pytest-html: a static chart per estimate in the test's row.

SVG_WIDTH, SVG_HEIGHT, SVG_PAD = 720, 140, 4


def svg_chart(entry: Mapping[str, Any]) -> str:
    """A small static SVG of op cycles per layer (compute part dark, memory-bound part light;
    moved layers red; baseline as ticks), from the Jinja2 template ``layers.svg.j2``."""
    layers = entry["layers"]
    data = chart_data(entry)
    high = max([float(c) for c in data["cycles"]] + [float(b or 0) for b in data.get("baseline", [])] + [1.0])
    slot = (SVG_WIDTH - 2 * SVG_PAD) / max(1, len(layers))
    scale = (SVG_HEIGHT - 2 * SVG_PAD) / high
    bars = []
    for i, layer in enumerate(layers):
        cycles, npu = float(layer["cycles"]), min(float(layer["npu_cycles"]), float(layer["cycles"]))
        base = data.get("baseline", [None] * len(layers))[i]
        bars.append({
            "x": round(SVG_PAD + i * slot, 2), "w": round(max(slot * 0.8, 0.5), 2),
            "y": round(SVG_HEIGHT - SVG_PAD - cycles * scale, 2), "h": round(cycles * scale, 2),
            "cy": round(SVG_HEIGHT - SVG_PAD - npu * scale, 2), "ch": round(npu * scale, 2),
            "by": round(SVG_HEIGHT - SVG_PAD - float(base) * scale, 2) if base is not None else None,
            "moved": data.get("moved", [0] * len(layers))[i],
            "title": f"layer {layer['index']} {layer['op']}: {_num(cycles)} cycles "
                     f"({_num(npu)} compute), util {float(layer['mac_utilization']):.1f}%"
                     + (f", baseline {_num(base)}" if base is not None else "") + f" - {layer['name']}",
        })
    return _environment().get_template("layers.svg.j2").render(
        width=SVG_WIDTH, height=SVG_HEIGHT, bars=bars, title=f"{label(entry)} on {entry['accelerator']}")


def extras_for_pytest_html(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pytest-html ``extras`` for one test's estimates (JSON report entries): per estimate a
    headline and a static SVG chart, as ``pytest_html.extras.html``.  Append them to
    ``report.extras`` in a ``pytest_runtest_makereport`` wrapper (pytest-html 4)."""
    from pytest_html import extras  # type: ignore[import-untyped,import-not-found,unused-ignore]

    env = _environment()
    result: list[dict[str, Any]] = []
    for entry in entries:
        fragment = env.get_template("pytest_html_extra.html.j2").render(
            view=_view(dict(entry, _id="x")), svg=svg_chart(entry))
        result.append(extras.html(fragment))
    return result
