"""Merge ``--ethosu-json`` reports from separate sessions (CI shards) into one document.

The merged document is what one session running every shard's tests would have written: the
same schema and Vela version, the estimates ordered by (test id, name) as the plugin orders them.
Inputs that disagree are refused with ``MergeError``, naming the files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import report
from .compare import Change, Comparison, worst_first

SCHEMA = report.JSON_SCHEMA


class MergeError(Exception):
    """The inputs cannot be merged; the message names the files."""


def load(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MergeError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise MergeError(f"{path}: not a JSON report: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("estimates"), list):
        raise MergeError(f"{path}: not a pytest-ethosu JSON report (no 'estimates' list)")
    return document


def merge_documents(documents: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Merge (source name, document) pairs; raise ``MergeError`` when they disagree."""
    if not documents:
        raise MergeError("nothing to merge: give at least one JSON report")
    schemas: dict[Any, list[str]] = {}
    versions: dict[Any, list[str]] = {}
    for source, document in documents:
        schemas.setdefault(document.get("schema"), []).append(source)
        versions.setdefault(document.get("vela_version"), []).append(source)
    if set(schemas) != {SCHEMA}:
        raise MergeError("the reports have different schemas (this version merges schema "
                         f"{SCHEMA}): " + _by_value(schemas))
    if len(versions) > 1:
        raise MergeError("the reports were made with different Vela versions, whose estimates differ: "
                         + _by_value(versions))
    seen: dict[tuple[str, str], str] = {}
    clashes = []
    estimates = []
    for source, document in documents:
        for entry in document["estimates"]:
            key = (entry["test"], entry["name"])
            if key in seen:
                clashes.append(f"{entry['test']}" + (f" [{entry['name']}]" if entry["name"] else "")
                               + f" is in both {seen[key]} and {source}")
            seen[key] = source
            estimates.append(entry)
    if clashes:
        raise MergeError("the same estimate is in more than one report (did two shards run the same "
                         "tests?):\n  " + "\n  ".join(clashes[:10])
                         + (f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else ""))
    estimates.sort(key=lambda e: (e["test"], e["name"]))
    return {"schema": SCHEMA, "vela_version": documents[0][1].get("vela_version"), "estimates": estimates}


def _by_value(groups: Mapping[Any, list[str]]) -> str:
    return "; ".join(f"{value!r} in {', '.join(sources)}" for value, sources in groups.items())


def merge_files(paths: Sequence[Path]) -> dict[str, Any]:
    return merge_documents([(str(path), load(path)) for path in paths])


def dumps(document: Mapping[str, Any]) -> str:
    """The document as the plugin writes it (sorted keys, 2-space indent, final newline)."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------------------------------------
# The summary of merged entries.  Records are rebuilt from JSON report entries and handed to the
# code that prints the terminal summary (``report.summary_lines``), so a merged summary is the
# unsplit session's.

DETAIL_KEYS = ("target", "estimator", "totals", "layers", "comparison")


def entry_record(entry: Mapping[str, Any]) -> report.Record:
    """The record ``report.make_record`` made for this estimate, rebuilt from its JSON report
    entry, with the keys that ``pytest_ethosu_result`` hooks added (the entry's ``extra``).

    The JSON report does not hold the test's line, so ``line`` is 0 (``file`` is the node id's).
    """
    totals = entry["totals"]
    comparison = entry.get("comparison")
    changes = tuple(Change(c["kind"], c["metric"], c["baseline"], c["now"], c["layer"], c["name"], c["op"],
                           c["tolerance"]) for c in (comparison or {}).get("changes", []))
    compared = Comparison(changes, tuple((comparison or {}).get("drift", [])),
                          bool((comparison or {}).get("model_changed")))
    total = compared.total_delta()
    worst = compared.headline_change()
    total_cycles = float(totals["total_cycles"]) or 1.0
    top = sorted(entry["layers"], key=lambda layer: (-float(layer["cycles"]), layer["index"]))[:report.TOP_LAYERS]
    estimator = entry.get("estimator", {})
    target = entry.get("target", {})
    record: report.Record = {
        "test": entry["test"], "file": entry["test"].split("::", 1)[0], "line": 0, "name": entry["name"],
        "model": entry["model"], "model_sha256": entry["model_sha256"], "accelerator": entry["accelerator"],
        "system_config": target.get("system_config"), "memory_mode": target.get("memory_mode"),
        "vela_version": estimator.get("vela_version", ""), "core": estimator.get("core", ""),
        "total_cycles": totals["total_cycles"], "inference_ms": entry["inference_ms"],
        "mac_utilization": entry["mac_utilization"], "npu_ops": totals["npu_ops"], "cpu_ops": totals["cpu_ops"],
        "sram_used": totals["sram_used"], "status": entry["status"], "baseline": entry["baseline"],
        "delta_percent": total.percent if total else None,
        "drift": list(compared.drift),
        "regressions": [c.to_dict() for c in worst_first(compared.regressions)[:report.TOP_LAYERS]],
        "headline": report.headline(compared) if compared.regressions else "",
        "change": report.short_change(worst) if worst is not None else "",
        "source": "",  # the JSON report does not say who answered
        "advice": list(entry.get("findings", [])),
        "top_layers": [{"index": layer["index"], "name": layer["name"], "op": layer["op"], "cycles": layer["cycles"],
                        "share": 100.0 * float(layer["cycles"]) / total_cycles,
                        "mac_utilization": layer["mac_utilization"]} for layer in top],
        "detail": {key: entry[key] for key in DETAIL_KEYS if key in entry},
    }
    record.update(entry.get("extra", {}))
    return record


#: ``pytest_ethosu_summary_row(config, record, row)``, called with ``config=None``
SummaryRowHook = Callable[..., None]


def summary_rows(records: Sequence[report.Record], width: int, verbosity: int,
                 summary_row: SummaryRowHook | None = None) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        row = report.summary_row(record, width, verbosity)
        if summary_row is not None:
            summary_row(config=None, record=record, row=row)
        rows.append(row)
    return rows


def summary_lines(entries: Sequence[Mapping[str, Any]], mode: str = "short", verbosity: int = 0, width: int = 80,
                  summary_row: SummaryRowHook | None = None) -> list[str]:
    """The end-of-session summary of JSON report entries, made by the code the terminal summary
    uses: the same table, regressions, costliest layers and advice as one session that ran them
    all.  Not known from the JSON: how often Vela ran, and unused baselines.

    Columns that conftest hooks add live in conftest code the merge does not load: pass such a
    hook as ``summary_row`` (it gets ``config=None``); the values it reads from the record
    (``pytest_ethosu_result``'s additions) are in each entry's ``extra``.
    """
    records = [entry_record(e) for e in entries]
    summary = report.SessionSummary(records=records, rows=summary_rows(records, width, verbosity, summary_row),
                                    counts=None, update=False)
    return "\n".join(report.summary_lines(summary, mode, verbosity, width)).splitlines()


def markdown(entries: Sequence[Mapping[str, Any]], charts: bool = True,
             summary_row: SummaryRowHook | None = None) -> str:
    """The Markdown summary of merged entries (as the session writes it), with a Mermaid chart
    per regressed estimate."""
    records = [entry_record(e) for e in entries]
    text = report.markdown(summary_rows(records, 10_000, 1, summary_row), records)
    if charts:
        from .html_report import markdown_charts

        extra = markdown_charts(entries)
        if extra:
            text += extra + "\n"
    return text
