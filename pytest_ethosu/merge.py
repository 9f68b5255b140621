"""Merge ``--ethosu-json`` reports from separate sessions (CI shards) into one document.

The merged document is what one session running every shard's tests would have written: the
same schema and Vela version, the estimates ordered by (test id, name) as the plugin orders them.
Inputs that disagree are refused with ``MergeError``, naming the files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import report
from .compare import Change, Comparison

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
# The summary table of merged entries.  Everything that rebuilds summary *records* from JSON
# report entries sits here, so the reporting can be swapped in one place.

def entry_record(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A summary record (as ``report.make_record`` makes it) rebuilt from a JSON report entry.

    Fields that hooks added to the session's records (``pytest_ethosu_result``) are not in the
    JSON report, so the columns that conftest hooks add are not rebuilt.
    """
    totals = entry["totals"]
    comparison = entry.get("comparison")
    changes = tuple(Change(c["kind"], c["metric"], c["baseline"], c["now"], c["layer"], c["name"], c["op"],
                           c["tolerance"]) for c in (comparison or {}).get("changes", []))
    compared = Comparison(changes, tuple((comparison or {}).get("drift", [])),
                          bool((comparison or {}).get("model_changed")))
    total = next((c for c in changes if c.layer is None and c.metric == "total_cycles"), None)
    return {
        "test": entry["test"], "name": entry["name"], "model": entry["model"],
        "accelerator": entry["accelerator"], "total_cycles": totals["total_cycles"],
        "inference_ms": entry["inference_ms"], "mac_utilization": entry["mac_utilization"],
        "npu_ops": totals["npu_ops"], "cpu_ops": totals["cpu_ops"], "sram_used": totals["sram_used"],
        "status": entry["status"], "baseline": entry["baseline"],
        "delta_percent": total.percent if total else None,
        "drift": list(compared.drift),
        "regressions": [c.to_dict() for c in compared.regressions[:report.TOP_LAYERS]],
        "headline": report.headline(compared) if compared.regressions else "",
        "advice": entry.get("findings", []),
    }


def summary_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The session summary table of JSON report entries, as the terminal shows it (verbose widths)."""
    records = [entry_record(e) for e in entries]
    rows = [report.summary_row(record, 10_000, 1) for record in records]
    lines = report.render_rows(rows).splitlines()
    for record in records:
        if record["status"] == "regressed":
            lines += ["", f"REGRESSED {record['test']}" + (f" [{record['name']}]" if record["name"] else "")
                      + f": {record['headline']}"]
            lines += report.render_rows(report.regression_rows(record)).splitlines()
    return lines


def markdown(entries: Sequence[Mapping[str, Any]], charts: bool = True) -> str:
    """The Markdown summary of merged entries, with a Mermaid chart per regressed estimate."""
    records = [entry_record(e) for e in entries]
    text = report.markdown([report.summary_row(r, 10_000, 1) for r in records], records)
    if charts:
        from .html_report import markdown_charts

        extra = markdown_charts(entries)
        if extra:
            text += extra + "\n"
    return text
