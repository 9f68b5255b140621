"""Running Vela and reading what it wrote: the worker-only half of the Vela boundary.

Nothing here is imported in pytest's own process (see ``worker.py``).  ``handle`` answers one
``Job``: it checks the target and the model, runs Vela exactly as the ``vela`` command does
(same argument parser, same defaults) with ``--verbose-performance`` and a private output
directory, and reads the CSV files and the compiled model Vela wrote there.  The per-layer
figures are therefore the numbers ``vela --verbose-performance`` writes, for either core.
``ethosu.vela.vela.main`` is not a documented API: should a release move it, this is the file
to change.
"""

from __future__ import annotations

import configparser
import contextlib
import csv
import dataclasses
import functools
import io
import math
import os
import re
import struct
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from . import (
    LAYER_TEXT,
    MODEL_FORMATS,
    PLACEMENTS,
    SUMMARY_COLUMNS,
    CpuReason,
    InvalidRun,
    Job,
    ModelFacts,
    Row,
    VelaRun,
    default_config_file,
    vela_version,
    version_tuple,
)
from .tflite import ModelCheckError, inspect_model, model_operators, parse_model
from .tosa import TosaCheckError, inspect_tosa, read_graph

#: The compiled-model custom operator that stands for work placed on the NPU.
NPU_OPERATOR = "ethos-u"

# Vela's per-layer CSV columns, by core, mapped to the plugin's layer field names.  The two
# cores write different headers, and the legacy one repeats "Network%" for cycles and MACs, so
# columns are taken by position, not by name.  The header tells which core ran.
REGOR_COLUMNS = (
    ("Original Operator", "op"),
    ("NNG Operator", "npu_op"),
    ("Target", "placement"),
    ("Staging Usage", "staging_usage"),
    ("Peak% (Staging)", None),
    ("Op Cycles", "cycles"),
    ("Network% (cycles)", None),
    ("NPU", "npu_cycles"),
    ("SRAM AC", "sram_access_cycles"),
    ("DRAM AC", "dram_access_cycles"),
    ("OnFlash AC", "on_chip_flash_access_cycles"),
    ("OffFlash AC", "off_chip_flash_access_cycles"),
    ("MAC Count", "macs"),
    ("Network% (MAC)", None),
    ("Util% (MAC)", "mac_utilization"),
    ("Name", "name"),
)
LEGACY_COLUMNS = (
    ("TFLite_operator", "op"),
    ("NNG Operator", "npu_op"),
    ("SRAM Usage", "staging_usage"),
    ("Peak%", None),
    ("Op Cycles", "cycles"),
    ("Network%", None),
    ("NPU", "npu_cycles"),
    ("SRAM AC", "sram_access_cycles"),
    ("DRAM AC", "dram_access_cycles"),
    ("OnFlash AC", "on_chip_flash_access_cycles"),
    ("OffFlash AC", "off_chip_flash_access_cycles"),
    ("MAC Count", "macs"),
    ("Network%", None),
    ("Util%", "mac_utilization"),
    ("Name", "name"),
)
HEADERS = {",".join(c for c, _ in cols): (core, cols) for core, cols in
           (("regor", REGOR_COLUMNS), ("legacy", LEGACY_COLUMNS))}

SUMMARY_TEXT = frozenset({"experiment", "network", "accelerator_configuration", "system_config",
                          "memory_mode", "weights_storage_area", "feature_map_storage_area"})

_GENERATED = re.compile(r"#(\d+)")


class AdapterError(Exception):
    """Vela refused the request; the message is meant for the user."""


# ---------------------------------------------------------------------------------------------
# Targets


def accelerators() -> list[str]:
    from ethosu.vela.architecture_features import Accelerator

    return list(Accelerator.member_list())


def config_sections(ini_files: list[str]) -> tuple[list[str], list[str]]:
    """System config and memory mode names defined by the given Vela ``.ini`` files."""
    stamps = tuple((name, os.stat(name).st_mtime_ns) for name in ini_files)
    return _config_sections(stamps)


@functools.lru_cache(maxsize=32)
def _config_sections(stamps: tuple[tuple[str, int], ...]) -> tuple[list[str], list[str]]:
    """Parsed once per file version: a session checks the same .ini for every estimate."""
    parser = configparser.ConfigParser()
    for name, _ in stamps:
        with open(name, encoding="utf-8") as f:
            parser.read_file(f, source=name)
    systems = [s.split(".", 1)[1] for s in parser.sections() if s.startswith("System_Config.")]
    modes = [s.split(".", 1)[1] for s in parser.sections() if s.startswith("Memory_Mode.")]
    return systems, modes


def check_target(job: Job) -> None:
    """Refuse names Vela does not know, listing the ones it does."""
    ini_files = list(job.config_files) or [str(default_config_file())]
    valid = accelerators()
    if job.accelerator not in valid:
        raise AdapterError(f"unknown accelerator {job.accelerator!r}; Vela {vela_version()} knows: "
                           + ", ".join(valid))
    try:
        systems, modes = config_sections(ini_files)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise AdapterError(f"cannot read Vela config file: {exc}") from None
    where = ", ".join(ini_files)
    if job.system_config is not None and job.system_config not in systems:
        raise AdapterError(f"unknown system config {job.system_config!r} in {where}; valid: "
                           + ", ".join(sorted(systems)))
    if job.memory_mode is not None and job.memory_mode not in modes:
        raise AdapterError(f"unknown memory mode {job.memory_mode!r} in {where}; valid: "
                           + ", ".join(sorted(modes)))


def depth_granularity(accelerator: str) -> int | None:
    """Output depth that an accelerator processes in one go, from Vela's architecture data.

    Ethos-U55/U65: the OFM micro-block depth times the number of cores (8 on U65-256, 16 on
    U65-512, 4 on U55-32).  Vela's Python architecture data has no U85 figures (its U85 model
    lives in the C++ core), so for U85 the answer is None.
    """
    from ethosu.vela.architecture_features import Accelerator, ArchitectureFeatures

    config = ArchitectureFeatures.accelerator_configs.get(Accelerator(accelerator))
    if config is None:
        return None
    return int(config.ofm_ublock.depth * config.cores)


# ---------------------------------------------------------------------------------------------
# Vela's output files


def _number(text: str) -> int | float:
    value = float(text)
    if not math.isfinite(value):  # Vela writes NaN for percentages of an all-CPU network
        return 0
    return int(value) if value.is_integer() else value


def read_per_layer_csv(path: Path, names: frozenset[str] = frozenset()) -> tuple[str | None, list[dict[str, Any]]]:
    """The core that wrote Vela's per-layer CSV (None for an empty file), and its rows keyed
    by the plugin's layer field names, in Vela's order.  ``names`` are the tensor names of the
    input model (see ``model_names``): they tell a name that holds a line break from two rows,
    and Vela's generated ``#N`` names from the user's.

    The two cores write the file differently, and each is read as it writes it:

    - regor (``stats_writer.write_regor_perlayer_performance_csv``, Vela 4.0.0 to 5.2.0) joins
      the fields with ``,`` and ends each row with ``\n``, quoting nothing: a layer name, the
      last column, is written as it is and may hold commas, quotes and line breaks.  See
      ``_regor_table``.
    - legacy (``npu_performance.print_performance``) writes with Python's ``csv.writer``: rows
      end with ``\r\n`` and a name holding ``,``, ``"``, ``\r`` or ``\n`` is quoted.  It writes
      one header per NPU subgraph into the same file; repeated headers are skipped.

    Other characters (``\x0b \x0c \x1c-\x1e \x85 \u2028 \u2029``) are part of the name for
    both cores.  Regor in Vela 4.0.0 to 4.2.0 writes ``N/A`` as every row's original operator:
    such rows get their NNG operator instead, without the ``Bias`` suffix of those releases
    (``Conv2DBias`` -> ``Conv2D``, the name later releases write for the same rows).
    """
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        text = f.read()
    if not text:
        return None, []
    header = text.split("\n", 1)[0].removesuffix("\r")
    if header not in HEADERS:
        raise AdapterError(f"Vela {vela_version()} wrote a per-layer CSV header this plugin does "
                           f"not know: {header[:300]!r}")
    core, columns = HEADERS[header]
    table = _legacy_table(text) if core == "legacy" else _regor_table(text, len(columns), names)
    heading = [c for c, _ in columns]
    rows: list[dict[str, Any]] = []
    for fields in table:
        if fields == heading:
            continue
        if len(fields) != len(columns):
            raise AdapterError(f"unexpected per-layer CSV row from Vela: {','.join(fields)[:200]!r}")
        row: dict[str, Any] = {}
        for (_, key), value in zip(columns, fields, strict=True):
            if key is not None:
                row[key] = value if key in LAYER_TEXT else _field_number(value, fields)
        row.setdefault("placement", "NPU")  # the legacy core only reports NPU subgraphs
        if row["placement"] not in PLACEMENTS:
            raise AdapterError(f"Vela {vela_version()} placed a layer on {row['placement'][:40]!r}; this plugin "
                               f"knows {' and '.join(PLACEMENTS)}: {','.join(fields)[:200]!r}")
        if row["op"] == "N/A" and row["npu_op"] and core == "regor" and version_tuple() < (4, 3):
            # regor 4.0-4.2 writes N/A for every operator: its NNG operator stands in (a later
            # release's N/A is a row Vela inserted, such as a mask, and is kept as Vela wrote it)
            row["op"] = row["npu_op"].removesuffix("Bias")
        rows.append(row)
    return core, normalise_generated_names(rows, names)


def _field_number(text: str, fields: list[str]) -> int | float:
    try:
        return _number(text)
    except ValueError:
        raise AdapterError(f"unexpected per-layer CSV row from Vela: {','.join(fields)[:200]!r}") from None


def _legacy_table(text: str) -> list[list[str]]:
    """The legacy core's file, read with the ``csv`` module it was written with."""
    try:
        return [fields for fields in csv.reader(io.StringIO(text, newline="")) if fields]
    except csv.Error as exc:
        raise AdapterError(f"unreadable per-layer CSV from Vela's legacy core: {exc}") from None


# The start of a regor row, up to its name: the fields before the name never hold a comma or a
# line break (operator names, NPU or CPU, numbers).
_REGOR_ROW_START = re.compile(r"[^,\n]*,[^,\n]*,(?:NPU|CPU),(?:[-+.\w]+,){12}")


def _regor_table(text: str, width: int, names: frozenset[str]) -> list[list[str]]:
    """Regor's rows: ``width - 1`` fields that hold no comma or line break, then the name up to
    the ``\n`` that ends the row.  A ``\n`` inside a name is told from the end of a row by what
    follows it: the name goes on while the next line cannot start a row, or while the model has
    a name that goes on past this line break (so a model name holding a line break and a forged
    row after it stays one name).  The header (the first line) is left out."""
    if not text.endswith("\n"):
        raise AdapterError("Vela's per-layer CSV ends in the middle of a row (truncated?)")
    lines = text[:-1].split("\n")[1:]
    broken = [n for n in names if "\n" in n]
    table: list[list[str]] = []
    for line in lines:
        starts_row = _REGOR_ROW_START.match(line) is not None
        if table and (not starts_row or _goes_on(table[-1][-1], line, broken)):
            table[-1][-1] += "\n" + line
            continue
        if not starts_row:
            raise AdapterError(f"unexpected per-layer CSV line from Vela: {line[:200]!r}")
        table.append(line.split(",", width - 1))
    return table


def _goes_on(name: str, line: str, broken: list[str]) -> bool:
    """Whether a model name holding a line break reads on from ``name`` into ``line``."""
    joined = f"{name}\n{line}"
    return any(n.startswith(joined) or (joined.startswith(n) and len(n) > len(name)) for n in broken)


def model_names(data: bytes) -> frozenset[str]:
    """Every tensor name of the input model (TFLite or TOSA), the names Vela's per-layer rows
    are given unless Vela made the operator itself."""
    if MODEL_FORMATS.get(data[4:8]) == "tosa":
        return frozenset(read_graph(data).tensors)
    model = parse_model(data)
    found = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            found.add((graph.Tensors(t).Name() or b"").decode("utf-8", "surrogateescape"))
    return frozenset(found)


def normalise_generated_names(rows: list[dict[str, Any]], names: frozenset[str] = frozenset()
                              ) -> list[dict[str, Any]]:
    """Renumber the ``#N`` that Vela writes into the names of operators it creates.  Vela
    numbers them from a process-wide counter, so the same model would get other names after
    other estimates in the same worker; ranked within the model they are the same in every run.

    Only Vela's own part of a name is renumbered: a row named after a tensor of the model
    (``names``) keeps its name (``issue#42`` stays), and in a name that extends one (``x#42`` +
    ``#1110``) only what follows the longest such tensor name is."""
    found: list[tuple[dict[str, Any], int]] = []
    for row in rows:
        name = row["name"]
        if name not in names:
            found.append((row, max((len(n) for n in names if name.startswith(n)), default=0)))
    numbers = sorted({int(m[1]) for row, kept in found for m in _GENERATED.finditer(row["name"], kept)})
    if not numbers:
        return rows
    rank = {n: i + 1 for i, n in enumerate(numbers)}
    for row, kept in found:
        name = row["name"]
        row["name"] = name[:kept] + _GENERATED.sub(lambda m: f"#{rank[int(m[1])]}", name[kept:])
    return rows


def _summary_table(text: str) -> list[list[str]]:
    """Both cores write the summary with Python's ``csv.writer`` (rows end with ``\r\n``; the
    network name, the model file's name, is quoted where it holds ``,``, ``"`` or a line break)."""
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise AdapterError(f"unreadable summary CSV from Vela: {exc}") from None
    if len(table) < 2 or "cycles_total" not in table[0] or len(table[1]) != len(table[0]):
        raise AdapterError("Vela wrote a summary without cycles_total")
    return table


def summary_core(summary_text: str) -> str:
    """The core that wrote a summary CSV, for a run with no per-layer rows: the legacy core
    writes cycle counts as Python floats (``5629.0``), regor as integers (``7361``).  This held
    in every run of Vela 4.0.0 to 5.2.0 measured for this plugin (see README)."""
    header, values = _summary_table(summary_text)[:2]
    return "legacy" if "." in values[header.index("cycles_total")] else "regor"


def read_summary_csv(summary_text: str) -> dict[str, Any]:
    """Vela's network summary; numeric columns become numbers."""
    header, values = _summary_table(summary_text)[:2]
    summary: dict[str, Any] = {}
    for key, text in zip(header, values, strict=True):
        try:
            summary[key] = text if key in SUMMARY_TEXT else _number(text)
        except ValueError:
            summary[key] = text
    return summary


def summary_file(out_dir: Path, stem: str) -> Path | None:
    """The summary Vela wrote into ``out_dir`` for a model named ``stem``:
    ``<stem>_summary_<system config>.csv``.  Found by comparing names, not by a glob pattern,
    so that a model named ``m[1].tflite`` or ``a*b.tflite`` is found too."""
    prefix = f"{stem}_summary_"
    found = sorted(p for p in out_dir.iterdir() if p.name.startswith(prefix) and p.name.endswith(".csv"))
    return found[0] if found else None


# How Vela announces an operator left on the CPU, per core.  Each pattern names the operator
# and its output tensor; the reason follows ("Reason: ..." lines for regor, indented " - ..."
# lines for the legacy core), or is fixed by the pattern itself.
# Regor's notice has two forms: ``operator: QUANTIZE, ofm: 'q'`` (5.1 on) and
# ``operator:QUANTIZE ofm:q`` (4.3 to 5.0); regor 4.0 to 4.2 prints no reasons at all.
_CPU_NOTICES = (
    (re.compile(r"^Warning \(supported operators\) operator: (?P<op>[^,]+), ofm: '(?P<ofm>.*)'$"), None),
    (re.compile(r"^Warning \(supported operators\) operator:(?P<op>\S+) ofm:(?P<ofm>.*)$"), None),
    (re.compile(r"^Warning: Unsupported TensorFlow Lite semantics for (?P<op>\S+) '(?P<ofm>.*)'\. "
                r"Placing on CPU instead$"), None),
    (re.compile(r"^Warning: (?P<op>\S+) '(?P<ofm>.*)' is not supported on the NPU\. Placing on CPU instead$"),
     None),
    (re.compile(r"^Info: (?P<op>\S+) '(?P<ofm>.*)' is a CPU only op$"), "a CPU-only operator"),
)


def _cpu_notice(line: str) -> tuple[re.Match[str], str | None] | None:
    for pattern, fixed in _CPU_NOTICES:
        match = pattern.match(line)
        if match:
            return match, fixed
    return None


def cpu_reasons(log: str) -> list[CpuReason]:
    """Vela's stated reasons for leaving operators on the CPU, from its console output, in
    Vela's order.  Vela gives them only on the console, in formats that differ between its
    cores (see ``_CPU_NOTICES``)."""
    reasons = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        notice = _cpu_notice(line)
        if notice is None:
            continue
        match, fixed = notice
        detail = []
        for following in lines[i + 1:i + 4]:
            if fixed or not following.strip() or _cpu_notice(following) or following[:1] in ("#", "W", "I"):
                break
            detail.append(following.removeprefix("Reason: ").strip().removeprefix("- "))
        reasons.append(CpuReason(match["op"], match["ofm"], fixed or " ".join(detail)))
    return reasons


# ---------------------------------------------------------------------------------------------
# Running Vela


def vela_argv(job: Job, out_dir: Path) -> list[str]:
    argv = [job.model, "--accelerator-config", job.accelerator, "--verbose-performance",
            "--output-dir", str(out_dir)]
    for ini in job.config_files:
        argv += ["--config", ini]
    if job.system_config is not None:
        argv += ["--system-config", job.system_config]
    if job.memory_mode is not None:
        argv += ["--memory-mode", job.memory_mode]
    return argv + list(job.vela_args)


def run_vela(job: Job, out_dir: Path, facts: ModelFacts, log: str = "") -> VelaRun:
    """Compile the job's model with Vela and read what it wrote into ``out_dir``.

    Vela's console output goes wherever file descriptors 1 and 2 point; the caller captures them.
    """
    from ethosu.vela import vela

    try:
        code = vela.main(vela_argv(job, out_dir))
    except SystemExit as exc:  # argparse rejects an option: its message is on stderr
        code = exc.code if isinstance(exc.code, int) else 2
    if code:
        raise AdapterError(f"Vela exited with status {code}")
    return read_outputs(job, out_dir, facts)


def read_outputs(job: Job, out_dir: Path, facts: ModelFacts) -> VelaRun:
    stem = os.path.splitext(os.path.basename(job.model))[0]  # as Vela names its output files
    found = summary_file(out_dir, stem)
    per_layer = out_dir / f"{stem}_per-layer.csv"
    if found is None:
        raise AdapterError("Vela finished but wrote no performance summary")
    with open(found, encoding="utf-8", errors="surrogateescape", newline="") as f:
        summary_text = f.read()
    core, rows = read_per_layer_csv(per_layer, facts.names) if per_layer.exists() else (None, [])
    if core is None:  # nothing on the NPU: the summary still tells the cores apart
        core = summary_core(summary_text)
    summary = read_summary_csv(summary_text)
    totals: dict[str, int | float] = {  # scaled figures (KiB -> bytes) are whole, as are MACs
        ours: round(summary[theirs] * scale) if scale != 1 else summary[theirs]
        for ours, (theirs, scale) in SUMMARY_COLUMNS.items()}
    totals["macs"] = int(totals["macs"])
    compiled = out_dir / f"{stem}_vela.tflite"
    try:
        totals["optimised_model_size"] = compiled.stat().st_size
    except OSError:
        raise AdapterError("Vela finished but wrote no optimised model") from None
    try:
        layers = tuple(Row.from_json(row, f"layer {i}") for i, row in enumerate(rows))
    except InvalidRun as exc:
        raise AdapterError(f"Vela {vela_version()} wrote a per-layer row this plugin cannot read: {exc}") from None
    return VelaRun(
        core=core,
        layers=layers,
        totals=totals,
        system_config=str(summary["system_config"]),
        memory_mode=str(summary["memory_mode"]),
        core_clock=float(summary["core_clock"]),
        compiled_operators=tuple(model_operators(parse_model(compiled.read_bytes()))),
        npu_operator=NPU_OPERATOR,
        cpu_reasons=(),
        depth_granularity=depth_granularity(job.accelerator),
        facts=facts,
        rows_add_up=not (core == "regor" and (4, 3) <= version_tuple() < (5,)),
    )


@contextlib.contextmanager
def captured_output(log: IO[bytes]) -> Iterator[None]:
    """Point fds 1 and 2 (and Python's streams) at ``log``: Vela's native code writes to fd 1."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _inspect(path: Path) -> ModelFacts:
    data = path.read_bytes()
    return dataclasses.replace(_check_model(data), names=model_names(data))


def _check_model(data: bytes) -> ModelFacts:
    if MODEL_FORMATS.get(data[4:8]) == "tosa":
        try:
            return inspect_tosa(data)
        except TosaCheckError as exc:
            raise AdapterError(str(exc)) from None
    try:
        return inspect_model(data)
    except ModelCheckError as exc:
        raise AdapterError(str(exc)) from None
    except UnicodeDecodeError:
        raise AdapterError("corrupt: a name in the model is not UTF-8 text") from None
    except struct.error:  # the flatbuffers reader followed an offset out of the file
        raise AdapterError(f"truncated or corrupt: it refers to data past the end of the file "
                           f"({len(data)} bytes)") from None
    except Exception as exc:  # the flatbuffers reader raises assorted errors on bad input
        raise AdapterError(f"not a readable TFLite flatbuffer ({exc})") from None


def handle(message: dict[str, Any]) -> dict[str, Any]:
    """Answer one job (the worker's request): ``{"ok": True, "run": ..., "log": ...}`` or
    ``{"ok": False, "kind": "target" | "model" | "vela", "error": ..., "log": ...}``."""
    job = Job.from_json(message)
    try:
        check_target(job)
    except AdapterError as exc:
        return {"ok": False, "kind": "target", "error": str(exc)}
    try:
        facts = _inspect(Path(job.model))
    except AdapterError as exc:
        return {"ok": False, "kind": "model", "error": str(exc)}
    with tempfile.TemporaryDirectory(prefix="ethosu-") as out, tempfile.TemporaryFile() as log:
        error, run = None, None
        with captured_output(log):
            try:
                run = run_vela(job, Path(out), facts)
            except AdapterError as exc:
                error = str(exc)
            except Exception as exc:
                error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if run is None:
        return {"ok": False, "kind": "vela", "error": error, "log": text}
    run = dataclasses.replace(run, cpu_reasons=tuple(cpu_reasons(text)))
    return {"ok": True, "run": run.to_json(), "log": text}


def start() -> dict[str, Any]:
    """Import Vela up front, so that a broken installation shows at once; the worker's hello.
    The worker forks every job from the state this leaves (``worker.py``), so it must leave
    nothing that a compilation would change: imports and the bundled ``.ini``'s sections only."""
    from ethosu.vela import vela  # noqa: F401

    config_sections([str(default_config_file())])  # parsed once here, not in every job
    return {"vela_version": vela_version()}
