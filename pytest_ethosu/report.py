"""What people read: the failure message of a check and the summary at the end of the session.

Both work from *records* (``record.Record``, one per estimate, made by ``make_record`` here or
rebuilt from a JSON report's entry by ``record_from_entry``, which derive their summary the same
way).
Records hold the real names; every text made here for a person passes them through the
escaping of its sink (``escape.py``): the terminal, GitHub annotations or Markdown.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from tabulate import tabulate

from . import escape
from .baseline import Identity
from .budget import Use
from .compare import Change, Comparison, worst_first
from .gate import FAILED, Status
from .record import Detail, Record, TopLayer
from .result import EstimateResult, Finding, Layer, compression
from .result import layer_table as result_layer_table

FAILURE_ROWS = 10
TOP_LAYERS = 5


_PYTORCH_LABEL = re.compile(r"(?P<module>\S+) \((?P<source>[^()]+:\d+)\) (?P<name>.+)")


def shorten(text: str, width: int) -> str:
    """Cut a long name from the front, keeping its distinctive tail: layer names are paths
    that share their beginnings (``MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6``) and
    test ids end in their parameters.  A PyTorch layer's label (``blocks.2.pw (kws.py:17)
    tosa_rescale_default_6``) keeps its module path and source line: Vela's name for the row
    goes first, then the module path is cut in the middle."""
    if len(text) <= width or width < 5:
        return text
    label = _PYTORCH_LABEL.fullmatch(text)
    if label is not None:
        kept = f"{label['module']} ({label['source']})"
        if len(kept) + 2 <= width:
            return kept + " " + "…"
        module, room = label["module"], width - len(label["source"]) - 4  # " (", ")" and "…"
        if room >= 6:
            front = (room + 1) // 2
            return f"{module[:front]}…{module[len(module) - (room - front):]} ({label['source']})"
    return "…" + text[len(text) - (width - 1):]


def shorten_test(text: str, width: int) -> str:
    """Cut a long test id in the middle of its function name, keeping the name's start and end
    and every parameter (``test_ever…ry_target[ethos-u55-128]``); where the parameters alone
    leave too little room, the start of the function name and the end of the parameters
    (``test_dsc…u55-128] [where]``)."""
    if len(text) <= width or width < 12:
        return text if len(text) <= width else shorten(text, width)
    cut = text.find("[")
    head, tail = (text, "") if cut < 0 else (text[:cut], text[cut:])
    room = width - len(tail) - 1
    if room < 8:
        keep = min(len(head), 8)
        return head[:keep] + "…" + tail[len(tail) - (width - keep - 1):]
    front = (room + 1) // 2
    return head[:front] + "…" + head[len(head) - (room - front):] + tail


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _pct(change: Change) -> str:
    if change.percent is not None:
        return f"{change.percent:+.1f}%"
    return "new" if change.now else "-"


def accept_command(nodeid: str | None, options: Sequence[str] = ()) -> str:
    """The command that accepts a test's estimates (all of them without ``nodeid``):
    ``options`` are the run's own options that shaped the estimates or say where baselines
    live, so the command works pasted verbatim."""
    words = ["pytest", "--ethosu-update", *options, *([nodeid] if nodeid else [])]
    return " ".join(map(shlex.quote, words))


def make_record(nodeid: str, location: tuple[str, int], name: str, result: EstimateResult, status: Status,
                comparison: Comparison | None, baseline_file: str | None, detail: bool,
                budget: tuple[Use, ...] = ()) -> Record:
    """The session-level summary of one estimate.

    ``name`` is the check's name, or "" for a plain ``estimate()``.  With ``detail`` (for the
    JSON report) the record also holds the resolved target, the estimator identity, the totals,
    every layer and the whole comparison.
    """
    shown = Detail(result.target, Identity.of(result), result.totals(), result.layers, comparison) if detail else None
    return Record(
        test=nodeid, file=location[0], line=location[1], name=name, model=result.model,
        model_sha256=result.model_sha256, accelerator=result.accelerator,
        system_config=result.target.get("system_config"), memory_mode=result.target.get("memory_mode"),
        vela_version=result.vela_version, core=result.core, total_cycles=result.total_cycles,
        inference_ms=1000.0 * result.inference_time, mac_utilization=result.mac_utilization,
        npu_ops=result.npu_ops, cpu_ops=result.cpu_ops, sram_used=result.sram_used, status=status,
        baseline=baseline_file, advice=result.findings, source=result.source, detail=shown,
        unrecorded=comparison.unrecorded if comparison else (), budget=budget,
        totals=result.totals(),
        **_summarised(comparison, result.layers, result.total_cycles, budget))


def record_from_entry(entry: Mapping[str, Any]) -> Record:
    """The record ``make_record`` made for an estimate, rebuilt from its JSON report entry
    (``merge.load`` checked it), with the keys that ``pytest_ethosu_result`` hooks added (the
    entry's ``extra``).  The JSON report does not hold the test's line (``line`` is 0; ``file``
    is the node id's) nor who answered (``source`` is "")."""
    detail = Detail.from_json(entry)
    budget = tuple(Use.from_json(use) for use in entry.get("budget", ()))
    totals, estimator, target, comparison = detail.totals, detail.estimator, detail.target, detail.comparison
    return Record(
        test=entry["test"], file=entry["test"].split("::", 1)[0], line=0, name=entry["name"], model=entry["model"],
        model_sha256=entry["model_sha256"], accelerator=entry["accelerator"],
        system_config=target.get("system_config"), memory_mode=target.get("memory_mode"),
        vela_version=estimator.vela_version, core=estimator.core,
        total_cycles=totals["total_cycles"], inference_ms=entry["inference_ms"],
        mac_utilization=entry["mac_utilization"], npu_ops=int(totals["npu_ops"]), cpu_ops=int(totals["cpu_ops"]),
        sram_used=int(totals["sram_used"]), status=Status(entry["status"]), baseline=entry["baseline"],
        advice=tuple(Finding(**f) for f in entry.get("findings", [])), source="",
        detail=detail, extra=dict(entry.get("extra", {})), budget=budget,
        totals=dict(totals),
        **_summarised(comparison, detail.layers, totals["total_cycles"], budget))


def _summarised(comparison: Comparison | None, layers: Sequence[Layer], total_cycles: float,
                budget: Sequence[Use] = ()) -> dict[str, Any]:
    """What a record says about its comparison, its budgets and its costliest layers, from either source."""
    total = comparison.total_delta() if comparison else None
    worst = comparison.headline_change() if comparison else None
    top = sorted(layers, key=lambda layer: (-float(layer.cycles), layer.index))[:TOP_LAYERS]
    return {
        "delta_percent": total.percent if total else None,
        "drift": tuple(comparison.drift) if comparison else (),
        "regressions": tuple(worst_first(comparison.regressions)[:TOP_LAYERS]) if comparison else (),
        "headline": (budget_headline(budget) if any(use.over for use in budget)
                     else headline(comparison) if comparison and comparison.regressions else ""),
        "change": short_change(worst) if worst is not None else "",
        "unpinned": unpinned(comparison.parts_changed) if comparison and comparison.model_changed else "",
        "top_layers": tuple(TopLayer(layer.index, layer.label, layer.op, layer.cycles,
                                     100.0 * float(layer.cycles) / (float(total_cycles) or 1.0),
                                     float(layer.mac_utilization)) for layer in top),
    }


def _scope(change: Change) -> str:
    return "network" if change.layer is None else f"layer {change.layer} ({change.op})"


def short_change(change: Change) -> str:
    """A change in a few words, for the summary's status column."""
    if change.kind == "to_cpu":
        return "moved to the CPU"
    if change.kind in ("added", "removed"):
        return f"layer {change.layer} {change.kind}"
    where = "" if change.layer is None else f"layer {change.layer} "
    return f"{where}{change.metric} {_pct(change)}"


def headline(comparison: Comparison) -> str:
    """The failure's first line after the label: the headline change with its size and why."""
    worst = comparison.headline_change()
    if worst is None:
        return "no change beyond tolerance"
    if worst.kind == "to_cpu":
        to_cpu = [c for c in comparison.regressions if c.kind == "to_cpu"]
        layers = [c for c in to_cpu if c.layer is not None]
        what = (f"{len(layers)} layer(s) now run on the CPU" if layers else
                f"CPU operators {to_cpu[0].baseline} -> {to_cpu[0].now}")
        return (f"work moved from the NPU to the CPU: {what} (Vela does not estimate CPU time, so "
                "NPU cycles can drop while inference gets slower)")
    if worst.kind in ("added", "removed"):
        counts = {kind: sum(c.kind == kind for c in comparison.structural) for kind in ("added", "removed")}
        return ("layers changed (--ethosu-strict fails on them): "
                + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n))
    text = (f"{_scope(worst)} {worst.metric} {_pct(worst)} ({_fmt(worst.baseline)} -> {_fmt(worst.now)}), "
            f"{'over' if worst.kind == 'regressed' else 'beyond'} the tolerance {worst.tolerance}")
    total = comparison.total_delta()
    if total is not None and worst is not total:  # what the device feels, beside what failed
        text += f"; total cycles {_pct(total)} ({_fmt(total.baseline)} -> {_fmt(total.now)})"
    return text if worst.kind == "regressed" else f"improved beyond tolerance (--ethosu-strict fails on it): {text}"


def change_table(changes: Sequence[Change], limit: int | None, name_width: int = 48) -> str:
    """Layer changes, largest increase first; ``limit`` None shows them all."""
    ordered = worst_first(changes)
    shown = ordered if limit is None else ordered[:limit]
    rows = [[c.layer if c.layer is not None else "-", shorten(escape.terminal(c.name), name_width),
             escape.terminal(c.op),
             c.metric if c.kind in ("regressed", "improved") else c.kind.replace("_", " "),
             _fmt(c.baseline), _fmt(c.now), _fmt(c.delta) if c.baseline is not None else "-", _pct(c)]
            for c in shown]
    text = tabulate(rows, headers=["layer", "name", "operator", "metric", "baseline", "now",
                                   "delta", "delta %"], tablefmt="simple", disable_numparse=True)
    if len(ordered) > len(shown):
        text += f"\n... {len(ordered) - len(shown)} more (run with -vv to see all)"
    return _Table(text)


def failure_message(label: str, accept: str, comparison: Comparison, baseline_file: str,
                    verbosity: int, strict: bool) -> str:
    """One screen: headline, baseline file, offending layers, context and the accept command."""
    lines = [f"ethosu: {label}: {headline(comparison)}",
             f"baseline: {baseline_file}"]
    totals = [c for c in comparison.regressions if c.layer is None and c.kind != "to_cpu"]
    if totals:
        lines.append("network: " + "; ".join(
            f"{c.metric} {_fmt(c.baseline)} -> {_fmt(c.now)} ({_pct(c)})" for c in totals))
    layer_changes = [c for c in comparison.regressions if c.layer is not None]
    if strict:
        layer_changes += [c for c in comparison.improvements + comparison.structural
                          if c.layer is not None and c.kind != "renamed"]
    other = [c for c in comparison.structural if c not in layer_changes and c.kind != "renamed"]
    limit = None if verbosity >= 2 else FAILURE_ROWS
    if layer_changes:
        lines.append(change_table(layer_changes, limit))
    if other:
        lines.append("graph changes: " + ", ".join(
            f"layer {c.layer} {c.op} {c.kind}" for c in other[:FAILURE_ROWS])
            + (f" and {len(other) - FAILURE_ROWS} more" if len(other) > FAILURE_ROWS else ""))
    renamed = sum(c.kind == "renamed" for c in comparison.changes)
    if renamed:
        lines.append(f"{renamed} layer(s) renamed (matched by position and operator)")
    if comparison.model_changed:
        lines.append(model_change_note(comparison.parts_changed))
    lines.extend(f"note: {note}" for note in comparison.drift)
    lines.append(f"if this change is intended, accept it with: {accept}")
    return _terminal_text(lines)


def _terminal_text(lines: Sequence[str]) -> str:
    """Lines for the terminal: each one line (its names may hold line breaks: escaped), or a
    table whose cells were escaped when it was made (``\n`` kept)."""
    return "\n".join(escape.terminal_lines(line) if _is_table(line) else escape.terminal(line) for line in lines)


class _Table(str):
    """A block of lines (a rendered table) whose values were escaped cell by cell."""


def _is_table(line: str) -> bool:
    return isinstance(line, _Table)


def regression_rows(record: Record) -> list[dict[str, Any]]:
    """The summary's table of a regressed estimate's worst changes (from its record)."""
    return [{"layer": c.layer if c.layer is not None else "network", "operator": c.op,
             "name": shorten(c.name, 40), "metric": c.metric, "baseline": _fmt(c.baseline),
             "now": _fmt(c.now), "delta %": f"{c.percent:+.1f}%" if c.percent is not None else "-"}
            for c in record.regressions]


def missing_message(label: str, accept: str, path: str) -> str:
    return _terminal_text([f"ethosu: {label}: no baseline at {path}",
                           f"create it with: {accept}  (then commit the file)"])


def model_change_note(parts: Sequence[str]) -> str:
    """What changed in the model since the baseline (``parts``: a PyTorch model's parts that
    differ), and, when the module is the same but was built or calibrated differently, how to
    make every run estimate the same model."""
    pin = unpinned(parts)
    if not pin:
        return ("the model changed since the baseline was made" if parts
                else "the model file changed since the baseline was made")
    return pin


def unpinned(parts: Sequence[str]) -> str:
    """For a PyTorch model whose graph is the baseline's but whose other parts (``parts``) are
    not: which of them differ and how to pin them; "" otherwise."""
    if "graph" in parts or not parts:
        return ""
    pin = []
    if "weights" in parts:
        pin.append("its weights differ from the baseline's though its graph is the same: a module built without a "
                   "fixed seed gets new weights on every run; call torch.manual_seed(...) before building it, or "
                   "load saved weights")
    if "calibration" in parts:
        pin.append("its calibration data differ from the baseline's, so it is quantised differently: make them "
                   "with a fixed seed or commit them")
    if "inputs" in parts:
        pin.append("its example inputs differ from the baseline's: make them with a fixed seed")
    return "the model is not the one the baseline was made from: " + "; ".join(pin)


def budget_headline(uses: Sequence[Use]) -> str:
    """ "over budget: sram_used 300.2 of 256 KiB (117%)" """
    return "over budget: " + "; ".join(use.headroom() for use in uses if use.over)


def budget_message(label: str, uses: Sequence[Use], comparison: Comparison | None, path: str, accept: str) -> str:
    """One screen for a check over budget: each budget exceeded with the layers that use most
    of it, the budgets it fits, what the baseline comparison says, and what to do."""
    lines = [f"ethosu: {label}: {budget_headline(uses)}"]
    for use in (u for u in uses if u.over):
        spent = f"; the layers that use it most: {', '.join(use.layers)}" if use.layers else ""
        lines.append(f"{use.limit.figure}: {use.limit.show(float(use.used))}, over the budget of "
                     f"{use.limit.show(use.limit.value)} by {use.limit.show(float(use.used) - use.limit.value)}{spent}")
    fits = [use.headroom() for use in uses if not use.over]
    if fits:
        lines.append("within budget: " + ", ".join(fits))
    if comparison is None:
        lines.append(f"no baseline at {path}; once the model fits, create it with: {accept}")
    else:
        lines.append(f"baseline: {path} (kept)")
        if comparison.regressions:
            lines.append(f"also against the baseline: {headline(comparison)}")
        lines.extend(f"note: {note}" for note in comparison.drift)
    lines.append("a budget is what the device has: make the model fit, or change the budget (budget= in the call "
                 "or the ethosu marker, --ethosu-budget or the ini key ethosu_budget); --ethosu-update does not "
                 "accept it")
    return _terminal_text(lines)


def drift_message(label: str, accept: str, comparison: Comparison, path: str) -> str:
    return _terminal_text([f"ethosu: {label}: the estimator changed since the baseline {path} was made:",
                           *comparison.drift, f"re-baseline with: {accept}"])


# ---------------------------------------------------------------------------------------------
# The terminal summary.

STATUS_TEXT = {"ok": "ok", "regressed": "REGRESSED", "improved": "improved", "changed": "changed",
               "created": "new", "updated": "updated", "unchanged": "ok", "missing": "MISSING",
               "drift": "drift", "unchecked": "no baseline", "unwritten": "not written",
               "over_budget": "OVER BUDGET"}


def summary_rows(records: Sequence[Record], width: int, verbose: int, hook: Callable[..., Any] | None = None,
                 config: Any = None, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The summary's rows, after a ``pytest_ethosu_summary_row`` hook (``hook``) has changed
    them.  With ``problems``, a hook that raises leaves the plugin's row and is reported there
    (once per message); without, its exception propagates."""
    rows = []
    for record in records:
        row = summary_row(record, width, verbose)
        if hook is not None:
            try:
                hook(config=config, record=record.to_json(), row=row)
            except (Exception, pytest.fail.Exception, pytest.skip.Exception, SystemExit) as exc:
                if problems is None:
                    raise
                row = summary_row(record, width, verbose)
                error = f"a pytest_ethosu_summary_row hook raised {type(exc).__name__}: {exc}"
                if error not in problems:
                    problems.append(error)
        rows.append(row)
    return rows


def summary_row(record: Record, width: int, verbose: int) -> dict[str, Any]:
    """One estimate's row of the summary table, column header -> cell."""
    name_width = max(24, width // 3) if verbose <= 0 else 200
    status = STATUS_TEXT[record.status.value]
    if record.over_budget:
        status += " " + ", ".join(f"{use.limit.figure} {use.percent:,.0f}%" if use.percent is not None
                                  else f"{use.limit.figure} {use.used:,} of 0" for use in record.over_budget)
    elif record.status in (Status.REGRESSED, Status.IMPROVED) and record.change and \
            not record.change.startswith("total_cycles"):
        status += f" {record.change}"  # the metric that decided, as the failure message names it
    elif record.delta_percent:
        status += f" {record.delta_percent:+.1f}%"
    test = record.label.split("::", 1)[-1]
    return {
        "test": shorten_test(test, name_width),
        "model": shorten(record.model.rsplit("/", 1)[-1], 28 if verbose <= 0 else 200),
        "accelerator": record.accelerator,
        "cycles": f"{record.total_cycles:,.0f}",
        "ms": f"{record.inference_ms:.4g}",
        "util %": f"{record.mac_utilization:.1f}",
        "NPU/CPU ops": f"{record.npu_ops}/{record.cpu_ops}",
        "SRAM KiB": f"{record.sram_used / 1024:.1f}",
        "flash KiB": f"{record.flash_used / 1024:.1f}" if record.flash_used is not None else "",
        "baseline": status,
    }


def render_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows (column header -> cell) as a terminal table, every cell escaped for the terminal."""
    headers: list[str] = []
    for row in rows:
        headers.extend(h for h in row if h not in headers)
    return _Table(tabulate([[escape.terminal(row.get(h, "")) for h in headers] for row in rows],
                           headers=[escape.terminal(h) for h in headers], tablefmt="simple",
                           disable_numparse=True))


MEMORY_BOUND_SHOWN = 3
SEEN = (Status.OK, Status.UNCHANGED, Status.DRIFT)  # passed against a baseline that existed: advice shown before


def _counted(items: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return ", ".join(f"{item} (x{n})" if n > 1 else item for item, n in counts.items())


def advice_lines(records: Sequence[Record], full: bool, width: int) -> list[str]:
    """The advisor's findings, grouped: the same advice for the same model and target is shown
    once with the tests that share it, and the CPU fallbacks of an estimate become one line.
    Unless ``full``: hot spots (the top-layers table's business) are left out, and only the
    three costliest memory-bound layers of an estimate are shown."""
    groups: dict[tuple[str, str, str], tuple[Record, list[str], list[Finding]]] = {}
    for r in records:
        findings = [f for f in r.advice if full or f.kind != "hot_spot"]
        if not findings:
            continue
        key = (r.model_sha256 or r.model, r.accelerator, repr(findings))
        groups.setdefault(key, (r, [], findings))[1].append(r.label)
    lines = []
    for r, tests, findings in groups.values():
        shared = f"{tests[0]}" + (f" and {len(tests) - 1} more test(s)" if len(tests) > 1 else "")
        lines.append(f"{r.model.rsplit('/', 1)[-1]} on {r.accelerator} ({shared}):")
        fallback = [f for f in findings if f.kind == "cpu_fallback"]
        if fallback:
            reasons = _counted(str(f.figures.get("reason", "")) for f in fallback)
            lines.append(f"  cpu fallback: {len(fallback)} operator(s) on the CPU: {_counted(f.op for f in fallback)}")
            lines.append(f"    reasons: {reasons}")
            lines += [f"    -> {suggestion}" for suggestion in dict.fromkeys(f.suggestion for f in fallback)]
        bound = [f for f in findings if f.kind == "memory_bound"]
        keep = bound if full else sorted(bound, key=lambda f: -f.figures.get("share", 0))[:MEMORY_BOUND_SHOWN]
        for f in findings:
            if f.kind == "cpu_fallback" or (f.kind == "memory_bound" and f not in keep):
                continue
            where = f"layer {f.layer} {f.op}" if f.layer is not None else f.op
            name = shorten(f.name, max(20, width // 3))
            lines.append(f"  {f.kind.replace('_', ' ')}: {' '.join(part for part in (where, name) if part)}".rstrip())
            lines.append(f"    {f.evidence}")
            lines.append(f"    -> {f.suggestion}")
        if len(bound) > len(keep):
            lines.append(f"  ... and {len(bound) - len(keep)} more memory-bound layer(s) (-v lists them)")
    return [escape.terminal(line) for line in lines]


def top_layers_table(records: Iterable[Record], count: int, width: int) -> str:
    """The costliest layers of the session; one row per layer of a model and target, with the
    test that estimated it."""
    rows: dict[tuple[str, str, int], tuple[float, Record, TopLayer]] = {}
    for r in records:
        for layer in r.top_layers:
            rows.setdefault((r.model_sha256 or r.model, r.accelerator, layer.index), (float(layer.cycles), r, layer))
    ranked = sorted(rows.values(), key=lambda item: -item[0])
    name_width = max(24, (width - 70) // 2)
    cells = [[shorten_test(r.label.split("::", 1)[-1], name_width), shorten(r.model.rsplit("/", 1)[-1], 24),
              r.accelerator, layer.index, layer.op, shorten(layer.name, name_width),
              f"{layer.cycles:,.0f}", f"{layer.share:.1f}", f"{layer.mac_utilization:.1f}"]
             for _, r, layer in ranked[:count]]
    return _Table(tabulate(
        [[escape.terminal(cell) for cell in row] for row in cells],
        headers=["test", "model", "accelerator", "layer", "operator", "name", "cycles", "% of net", "util %"],
        tablefmt="simple", disable_numparse=True))


@dataclass
class SessionSummary:
    """What the end-of-session summary reports besides the records' rows."""

    records: list[Record]
    rows: list[dict[str, Any]]  # the summary table's rows, after the summary-row hooks
    counts: Mapping[str, int] | None  # Vela runs, cache hits, baselines written; None when unknown
    update: bool
    deleted: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: the update command for some tests (all of them for an empty list), with the run's options
    command: Callable[[list[str]], str] = lambda nodeids: accept_command(None, nodeids)
    unused_tests: list[str] | None = None  # the tests the unused baselines belong to; None: some to none


def layer_table(record: Record) -> str:
    """One estimate's per-layer table (``--ethosu-layers``), from its record's detail."""
    layers = [{key: escape.terminal(value) if isinstance(value, str) else value for key, value in layer.items()}
              for layer in (layer.to_dict() for layer in (record.detail.layers if record.detail else ()))]
    return _terminal_text([
        f"{record.label}: {record.model} on {record.accelerator}, {record.total_cycles:,} cycles",
        _Table(result_layer_table(layers, record.total_cycles))])


def count_line(records: Sequence[Record], advisor_runs: int) -> str:
    """Where the session's estimates came from; the parts add up to the whole."""
    by = {source: sum(r.source == source for r in records) for source in ("vela", "cache", "memo")}
    return (f"ethosu: {len(records)} estimate(s); Vela ran {by['vela']} time(s), {by['cache']} answered from the cache"
            + (f", {by['memo']} repeated an earlier estimate of this session" if by["memo"] else "")
            + (f"; the advisor ran Vela {advisor_runs} more time(s) to check its advice" if advisor_runs else ""))


def summary_lines(summary: SessionSummary, mode: str, verbosity: int, width: int) -> list[str]:
    """The terminal summary, line by line, as long as what needs attention.

    Default: the table, each regression's worst changes, and the advice of estimates that are
    new, changed or plain (what passed against an unchanged baseline had its advice shown
    when that baseline was made: one line says how to see it again).  ``-v`` or ``full`` adds
    the costliest layers, every finding and hot spots; ``-q`` keeps only the rows that need
    attention; ``none`` prints nothing but errors."""
    lines = _summary_lines(summary, mode, verbosity, width)
    return [escape.terminal_lines(line) if _is_table(line) else escape.terminal(line) for line in lines]


def _summary_lines(summary: SessionSummary, mode: str, verbosity: int, width: int) -> list[str]:
    records, counts = summary.records, summary.counts or {}
    lines = [f"ethosu: {error}" for error in summary.errors]
    if mode == "none" or (not records and not summary.deleted and not summary.unused):
        return lines
    full = mode == "full" or verbosity > 0
    if records:
        rows = summary.rows
        if verbosity < 0:
            rows = [row for row, r in zip(summary.rows, records, strict=True) if r.status not in SEEN]
        if rows:
            lines.append(render_rows(rows))
        for record in (r for r in records if r.status is Status.REGRESSED):
            lines += ["", f"{record.label} regressed; worst changes:", render_rows(regression_rows(record))]
        budgeted = [r for r in records if r.budget and (verbosity >= 0 or r.over_budget)]
        if budgeted:
            lines += ["", "budgets (used of the limit):"]
            lines += [f"  {r.label.split('::', 1)[-1]}: " + ", ".join(
                ("OVER " if use.over else "") + use.headroom() for use in r.budget) for r in budgeted]
        if full:
            count = 3 * TOP_LAYERS
            lines += ["", f"layers that cost the most cycles (top {count}):", top_layers_table(records, count, width)]
        shown = records if full else [r for r in records if r.status not in SEEN]
        advice = advice_lines(shown, full=full, width=width) if verbosity >= 0 else []
        if advice:
            lines += ["", "advice (--ethosu-no-advice turns it off):", *advice]
        hidden = sum(bool(r.advice) for r in records if r not in shown)
        if hidden and verbosity >= 0:
            lines.append(f"advice for {hidden} estimate(s) that passed unchanged is not repeated (-v shows it)")
    lines += [f"note: {note}" for note in sorted({note for r in records for note in r.drift})]
    improved = [r.test for r in records if r.status is Status.IMPROVED]
    if improved and not summary.update:
        lines.append(f"{len(improved)} estimate(s) improved beyond tolerance: tighten their baselines with "
                     f"{summary.command(improved)}")
    older = [r for r in records if r.unrecorded]
    if older and not summary.update:
        figures = ", ".join(sorted({figure for r in older for figure in r.unrecorded}))
        lines.append(f"{len(older)} baseline(s) were written before some figures were recorded ({figures}): they "
                     f"were compared on the figures they hold; {summary.command(sorted({r.test for r in older}))} "
                     "records the rest")
    for record in (r for r in records if r.unpinned):
        lines.append(f"{record.label}: {record.unpinned}")
    missing = [r.test for r in records if r.status is Status.MISSING]
    if missing:
        lines.append(f"{len(missing)} estimate(s) have no baseline: create them with {summary.command(missing)}"
                     " (counted up to each test's first failing check, where the test stopped; the command "
                     "creates the later ones too)")
    if records and summary.counts is None:  # a merged report: how many times Vela ran is not recorded
        lines.append(f"ethosu: {len(records)} estimate(s)")
    elif records:
        lines.append(count_line(records, counts.get("advisor_runs", 0)))
        lowered, lowering_hits = counts.get("lowerings", 0), counts.get("lowering_hits", 0)
        if lowered or lowering_hits:
            lines.append(f"ethosu: ExecuTorch lowered {lowered} PyTorch program(s) to TOSA, "
                         f"{lowering_hits} answered from the cache")
    if summary.update:
        # from the records, one per estimate: under --dist each every worker runs every test
        written = {status: sum(r.status is status for r in records)
                   for status in (Status.CREATED, Status.UPDATED, Status.UNCHANGED)}
        lines.append(f"ethosu baselines: {written[Status.CREATED]} created, {written[Status.UPDATED]} updated, "
                     f"{written[Status.UNCHANGED]} unchanged, {len(summary.deleted)} deleted")
        lines += [f"  deleted unused {path}" for path in summary.deleted]
    elif summary.unused:
        how = (summary.command(summary.unused_tests) if summary.unused_tests
               else f"a full run of {summary.command([])}, which also writes every other change it finds")
        lines.append(f"{len(summary.unused)} unused baseline(s) (delete them with {how}):")
        lines += [f"  {path}" for path in summary.unused]
    return lines


# ---------------------------------------------------------------------------------------------
# Machine-readable output: the JSON report, Markdown for CI pages, GitHub annotations.

JSON_SCHEMA = 1


def json_report(records: Sequence[Record], vela_version: str) -> dict[str, Any]:
    """The ``--ethosu-json`` document (schema 1).

    ``estimates`` holds one entry per estimate of the session, ordered by test id and name.
    Each entry has ``test`` (node id), ``name`` ("" for a plain ``estimate()``), ``model``,
    ``model_sha256``, ``accelerator``, ``status``, ``baseline`` (file, or null), ``target``,
    ``estimator`` (Vela version, core, target options), ``totals`` and ``layers`` as in baseline
    files, and ``comparison`` (null without a baseline): ``status``, ``drift``,
    ``model_changed``, ``changes`` (every gated total and every change beyond tolerance) and
    ``layer_deltas`` (each baseline layer with its match and both cycle counts), and
    ``findings``, the advisor's findings (``kind``, ``layer``, ``name``, ``op``, ``evidence``,
    ``suggestion``, ``figures``).  ``extra`` holds the keys that ``pytest_ethosu_result`` hooks
    added to the estimate's record (``{}`` when none did).
    """
    return {"schema": JSON_SCHEMA, "vela_version": vela_version, "estimates": [json_entry(r) for r in records]}


def json_entry(record: Record) -> dict[str, Any]:
    """One estimate as the JSON report holds it, and as the HTML views (the report page and
    pytest-html's extras) read it."""
    return {
        "test": record.test, "name": record.name, "model": record.model, "model_sha256": record.model_sha256,
        "accelerator": record.accelerator, "status": record.status.value, "baseline": record.baseline,
        "inference_ms": record.inference_ms, "mac_utilization": record.mac_utilization,
        "findings": [f.to_dict() for f in record.advice], "extra": dict(record.extra),
        "budget": [use.to_json() for use in record.budget],
        **(record.detail.to_json() if record.detail else {}),
    }


def markdown(rows: Sequence[Mapping[str, Any]], records: Sequence[Record]) -> str:
    """The summary as GitHub-flavoured Markdown, for ``$GITHUB_STEP_SUMMARY`` or a file."""
    headers: list[str] = []
    for row in rows:
        headers.extend(h for h in row if h not in headers)
    text = "## Ethos-U performance (pytest-ethosu)\n\n" + tabulate(
        [[escape.markdown(row.get(h, "")) for h in headers] for row in rows],
        headers=[escape.markdown(h) for h in headers], tablefmt="github", disable_numparse=True) + "\n"
    over = [r for r in records if r.status is Status.OVER_BUDGET]
    if over:
        text += "\n**Over budget**\n\n" + "".join(
            f"- {escape.markdown(r.test)} {escape.markdown(r.name)}: {escape.markdown(r.headline)}\n" for r in over)
    regressed = [r for r in records if r.status is Status.REGRESSED]
    if regressed:
        text += "\n**Regressions**\n\n" + "".join(
            f"- {escape.markdown(r.test)} {escape.markdown(r.name)}: {escape.markdown(r.headline)}\n"
            for r in regressed)
    return text + footprint_markdown(records) + "\n"


#: the footprint table's columns: heading -> the figures added up for it (KiB)
FOOTPRINT_COLUMNS = {
    "flash used": ("on_chip_flash_used", "off_chip_flash_used"),
    "optimised model": ("optimised_model_size",),
    "weights": ("original_weights",),
    "encoded weights": ("encoded_weights",),
    "SRAM traffic": ("sram_traffic",),
    "DRAM traffic": ("dram_traffic",),
    "flash traffic": ("on_chip_flash_traffic", "off_chip_flash_traffic"),
}


def footprint_markdown(records: Sequence[Record]) -> str:
    """What each estimate takes and moves (KiB; traffic per inference), from Vela's figures; a
    figure that a record lacks (a JSON report from before it) is left blank."""
    rows = [r for r in records if r.totals]
    if not rows:
        return ""

    def cell(r: Record, figures: tuple[str, ...]) -> str:
        if not all(f in r.totals for f in figures):
            return ""
        return f"{sum(float(r.totals[f]) for f in figures) / 1024:,.1f}"

    headers = ["test", "name", *FOOTPRINT_COLUMNS, "encoded / original"]
    table = [[escape.markdown(r.test), escape.markdown(r.name),
              *(cell(r, figures) for figures in FOOTPRINT_COLUMNS.values()),
              "" if (ratio := compression(r.totals)) is None else f"{ratio:.3f}"] for r in rows]
    return ("\n**Footprint** (KiB, Vela's figures; traffic is per inference)\n\n"
            + tabulate(table, headers=headers, tablefmt="github", disable_numparse=True) + "\n")


def github_annotations(records: Sequence[Record]) -> list[str]:
    """``::error`` workflow commands, one per regressed estimate, pointing at the test."""
    lines = []
    for r in records:
        if r.status not in FAILED:
            continue
        what = "over budget" if r.status is Status.OVER_BUDGET else "regression"
        title = f"Ethos-U {what}: {r.model} on {r.accelerator}"
        message = f"{r.test} {r.name}: {r.headline}"
        lines.append(f"::error file={escape.annotation_property(r.file)},line={r.line},"
                     f"title={escape.annotation_property(title)}::{escape.annotation_data(message)}")
    return lines
