"""Merge ``--ethosu-json`` reports from separate sessions (CI shards) into one document.

The merged document is what one session running every shard's tests would have written: the
same schema and Vela version, the estimates ordered by (test id, name) as the plugin orders them.
Every input is checked whole when it is read (``load``): a malformed entry, NaN or Infinity is
refused with ``MergeError`` naming the file and the entry, before anything is written.  Inputs
that disagree are refused the same way, naming the files.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import report
from .baseline import FIRST_TOTALS
from .result import TOTAL_METRICS, Finding, Layer
from .vela import PLACEMENTS, InvalidRun

SCHEMA = report.JSON_SCHEMA


class MergeError(Exception):
    """The inputs cannot be merged; the message names the files."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"the key {twice[0]!r} appears twice in one object")
    return dict(pairs)


def load(path: Path) -> dict[str, Any]:
    """Read and check one ``--ethosu-json`` report; ``MergeError`` names the file and entry."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant,
                              object_pairs_hook=_unique_keys)
    except OSError as exc:
        raise MergeError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:  # also UnicodeDecodeError
        raise MergeError(f"{path}: not a JSON report: {exc}") from exc
    except RecursionError:
        raise MergeError(f"{path}: not a JSON report: nested too deeply") from None
    if not isinstance(document, dict) or not isinstance(document.get("estimates"), list):
        raise MergeError(f"{path}: not a pytest-ethosu JSON report (no 'estimates' list)")
    schema = document.get("schema")
    if type(schema) is not int:
        raise MergeError(f"{path}: 'schema' is {schema!r}, not a schema number (this version merges {SCHEMA})")
    if not isinstance(document.get("vela_version"), str):
        raise MergeError(f"{path}: 'vela_version' is {document.get('vela_version')!r}, not a version string")
    for index, entry in enumerate(document["estimates"]):
        problem = entry_problem(entry)
        if problem:
            test = entry.get("test") if isinstance(entry, dict) else None
            which = f"estimate {index}" + (f" ({test}" + (f" [{entry.get('name')}]" if entry.get("name") else "")
                                           + ")" if isinstance(test, str) else "")
            raise MergeError(f"{path}: {which}: {problem}; this is not an entry the plugin writes "
                             "(was the file edited or cut short?)")
    return document


# ---------------------------------------------------------------------------------------------
# What an estimate of a JSON report holds, as the summary, the Markdown and the HTML report read
# it.  A spec is a type (``int`` a whole number, ``float`` any finite number; never ``bool``), a tuple of
# alternatives, ``None``, a one-element list (a list of that), or a dict of required keys.

Spec = Any
NUMBER = float  # an int or a float
_FIELD_TYPES: dict[str, Spec] = {"int": int, "str": str, "float": NUMBER, "Number": NUMBER, "int | None": (int, None),
                                 "Placement": str}
LAYER: dict[str, Spec] = {f.name: _FIELD_TYPES[str(f.type)] for f in dataclasses.fields(Layer)
                          if f.default is dataclasses.MISSING}
FINDING: dict[str, Spec] = {f.name: _FIELD_TYPES.get(str(f.type), dict) for f in dataclasses.fields(Finding)}
CHANGE: dict[str, Spec] = {"kind": str, "metric": str, "baseline": (NUMBER, None), "now": (NUMBER, None),
                           "layer": (int, None), "name": str, "op": str, "tolerance": str,
                           "delta": (NUMBER, None), "percent": (NUMBER, None)}
LAYER_DELTA: dict[str, Spec] = {"baseline_layer": (int, None), "layer": (int, None),
                                "baseline_cycles": (NUMBER, None), "cycles": (NUMBER, None)}
COMPARISON: dict[str, Spec] = {"drift": [str], "model_changed": bool, "changes": [CHANGE], "layer_deltas": [LAYER_DELTA]}
ENTRY: dict[str, Spec] = {
    "test": str, "name": str, "model": str, "model_sha256": str, "accelerator": str, "status": str,
    "baseline": (str, None), "inference_ms": NUMBER, "mac_utilization": NUMBER, "findings": [FINDING],
    "extra": dict, "target": dict, "estimator": {"vela_version": str, "core": str}, "totals": {k: NUMBER for k in TOTAL_METRICS if k in FIRST_TOTALS},
    "layers": [LAYER], "comparison": (COMPARISON, None),
}


def _kind(spec: Spec) -> str:
    if spec is None:
        return "null"
    if isinstance(spec, tuple):
        return " or ".join(dict.fromkeys(_kind(s) for s in spec))
    if isinstance(spec, list):
        return "a list"
    if isinstance(spec, dict) or spec is dict:
        return "an object"
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}[spec]


def _matches(value: Any, spec: Spec) -> bool:
    if spec is None:
        return value is None
    if isinstance(spec, tuple):
        return any(_matches(value, s) for s in spec)
    if isinstance(spec, list):
        return isinstance(value, list)
    if isinstance(spec, dict) or spec is dict:
        return isinstance(value, dict)
    if type(value) is int:  # one that a float holds: 10**400 is no estimate
        return spec in (int, float) and abs(value) < 2**63
    if spec is float:
        return type(value) is float and math.isfinite(value)
    return type(value) is spec


def _problem(value: Any, spec: Spec, where: str) -> str | None:
    """What is wrong with ``value`` against ``spec`` (None: nothing), naming the field."""
    if not _matches(value, spec):
        return f"{where or 'the entry'} is {json.dumps(value, default=repr)[:60]}, not {_kind(spec)}"
    alternatives = spec if isinstance(spec, tuple) else (spec,)
    spec = next(s for s in alternatives if _matches(value, s))
    if isinstance(spec, list):
        for i, item in enumerate(value):
            problem = _problem(item, spec[0], f"{where}[{i}]")
            if problem:
                return problem
    elif isinstance(spec, dict):
        for key, inner in spec.items():
            if key not in value:
                return f"{where + '.' if where else ''}{key} is missing"
            problem = _problem(value[key], inner, f"{where + '.' if where else ''}{key}")
            if problem:
                return problem
    return None


def entry_problem(entry: Any) -> str | None:
    """What keeps a JSON report entry from being merged (None: nothing)."""
    problem = _problem(entry, ENTRY, "")
    if problem is None and entry["status"] not in report.STATUS_TEXT:
        problem = f"status is {entry['status']!r}, not one of {', '.join(sorted(report.STATUS_TEXT))}"
    for key in (k for k in TOTAL_METRICS if k not in FIRST_TOTALS) if problem is None else ():
        if key in entry["totals"]:  # a figure added later: absent from older reports, a number when there
            value = entry["totals"][key]
            problem = _problem(value, NUMBER, f"totals.{key}")
            if problem is None and value < 0:  # every figure Vela reports is a count or a size
                problem = f"totals.{key} is {value}, not a number of zero or more"
            if problem:
                break
    for i, layer in enumerate(entry["layers"] if problem is None else []):
        if layer["placement"] not in PLACEMENTS:
            problem = problem or f"layers[{i}].placement is {layer['placement']!r}, not one of {', '.join(PLACEMENTS)}"
    for i, finding in enumerate(entry["findings"] if problem is None else []):
        if "share" in finding["figures"]:  # the summary ranks memory-bound layers by it
            problem = problem or _problem(finding["figures"]["share"], NUMBER, f"findings[{i}].figures.share")
    if problem is None:
        try:  # what the summary and the reports read: the record the session would have built
            report.record_from_entry(entry)
        except (InvalidRun, KeyError, TypeError, ValueError) as exc:
            problem = f"it does not read as an estimate ({type(exc).__name__}: {exc})"
    return problem


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
    """The document as the plugin writes it (sorted keys, 2-space indent, final newline); never
    NaN or Infinity, which are not JSON."""
    return json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------------------
# The summary of merged entries.  Records are rebuilt from JSON report entries
# (``report.record_from_entry``) and handed to the code that prints the terminal summary
# (``report.summary_lines``), so a merged summary is the unsplit session's.

#: ``pytest_ethosu_summary_row(config, record, row)``, called with ``config=None``
SummaryRowHook = Callable[..., None]


def summary_lines(entries: Sequence[Mapping[str, Any]], mode: str = "short", verbosity: int = 0, width: int = 80,
                  summary_row: SummaryRowHook | None = None) -> list[str]:
    """The end-of-session summary of JSON report entries, made by the code the terminal summary
    uses: the same table, regressions, costliest layers and advice as one session that ran them
    all.  Not known from the JSON: how often Vela ran, and unused baselines.

    Columns that conftest hooks add live in conftest code the merge does not load: pass such a
    hook as ``summary_row`` (it gets ``config=None``); the values it reads from the record
    (``pytest_ethosu_result``'s additions) are in each entry's ``extra``.
    """
    records = [report.record_from_entry(e) for e in entries]
    summary = report.SessionSummary(records=records, rows=report.summary_rows(records, width, verbosity, summary_row),
                                    counts=None, update=False)
    return "\n".join(report.summary_lines(summary, mode, verbosity, width)).splitlines()


def markdown(entries: Sequence[Mapping[str, Any]], charts: bool = True,
             summary_row: SummaryRowHook | None = None) -> str:
    """The Markdown summary of merged entries (as the session writes it), with a Mermaid chart
    per regressed estimate."""
    records = [report.record_from_entry(e) for e in entries]
    text = report.markdown(report.summary_rows(records, 10_000, 1, summary_row), records)
    if charts:
        from .html_report import markdown_charts

        extra = markdown_charts(records)
        if extra:
            text += extra + "\n"
    return text
