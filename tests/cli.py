"""The installed Vela's own command, for comparing the plugin's figures with it (parity).

``vela_cli`` runs the ``vela`` command of the Python environment the tests run in, exactly as a
user would, and reads its per-layer CSV, its summary CSV and its "CPU operators" line with
nothing of the plugin's.  ``differences`` lists every place where an ``EstimateResult``
disagrees with that.  Used by ``tests/test_parity.py`` and ``benchmarks/parity.py``.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pytest_ethosu.result import EstimateResult
from pytest_ethosu.target import Target
from pytest_ethosu.vela import version_tuple

#: Per-layer CSV columns (both cores' names) -> the plugin's layer fields.
COLUMNS = {
    "Original Operator": "op", "TFLite_operator": "op", "NNG Operator": "npu_op", "Target": "placement",
    "Staging Usage": "staging_usage", "SRAM Usage": "staging_usage", "Op Cycles": "cycles",
    "NPU": "npu_cycles", "SRAM AC": "sram_access_cycles", "DRAM AC": "dram_access_cycles",
    "OnFlash AC": "on_chip_flash_access_cycles", "OffFlash AC": "off_chip_flash_access_cycles",
    "MAC Count": "macs", "Util% (MAC)": "mac_utilization", "Util%": "mac_utilization", "Name": "name",
}

#: Summary CSV columns -> the result's network figures (numbers, as Vela writes them).
SUMMARY = {
    "cycles_total": "total_cycles", "cycles_npu": "npu_cycles", "cycles_sram_access": "sram_access_cycles",
    "cycles_dram_access": "dram_access_cycles", "cycles_on_chip_flash_access": "on_chip_flash_access_cycles",
    "cycles_off_chip_flash_access": "off_chip_flash_access_cycles", "nn_macs": "macs",
    "inference_time": "inference_time", "total_original_weights": "original_weights",
    "total_npu_encoded_weights": "encoded_weights", "sram_total_bytes": "sram_traffic",
    "dram_total_bytes": "dram_traffic", "on_chip_flash_total_bytes": "on_chip_flash_traffic",
    "off_chip_flash_total_bytes": "off_chip_flash_traffic",
}
#: Summary CSV columns in KiB -> the result's figures in bytes.
SUMMARY_KIB = {"sram_memory_used": "sram_used", "dram_memory_used": "dram_used",
               "on_chip_flash_memory_used": "on_chip_flash_used", "off_chip_flash_memory_used": "off_chip_flash_used"}
#: Summary CSV columns -> the result's resolved target.
SUMMARY_TARGET = {"system_config": "system_config", "memory_mode": "memory_mode", "core_clock": "core_clock"}


@dataclass
class CliRun:
    core: str
    header: list[str]
    rows: list[list[str]]
    total_cycles: str  # as the summary CSV writes it
    cpu_operators: int
    stdout: str
    summary: dict[str, str]  # the summary CSV: column -> text
    optimised_model_size: int  # bytes of the optimised model Vela wrote


def vela_command() -> list[str]:
    """The ``vela`` script of the running environment (else ``python -m ethosu.vela``)."""
    script = Path(sys.executable).parent / "vela"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ethosu.vela"]


def cli_args(target: Target) -> list[str]:
    args = ["--accelerator-config", target.accelerator]
    for ini in target.config_files:
        args += ["--config", ini]
    if target.system_config:
        args += ["--system-config", target.system_config]
    if target.memory_mode:
        args += ["--memory-mode", target.memory_mode]
    return args + list(target.vela_args)


def vela_cli(model: Path, target: Target, out: Path) -> CliRun:
    if out.exists():
        shutil.rmtree(out)
    done = subprocess.run([*vela_command(), str(model), "--verbose-performance", "--output-dir", str(out),
                           *cli_args(target)], check=True, capture_output=True, text=True)
    return read_cli_outputs(out, model.stem, done.stdout)


def read_cli_outputs(out: Path, stem: str, stdout: str, compiled: str = "_vela.tflite") -> CliRun:
    """What a Vela run wrote into ``out`` for a model named ``stem`` (and printed, ``stdout``),
    read with nothing of the plugin's.  ``compiled``: the optimised model's suffix
    (``_vela.npz`` for ``--output-format=raw``, as ExecuTorch runs Vela)."""
    lines = (out / f"{stem}_per-layer.csv").read_text().splitlines()
    header = next(csv.reader(lines[:1]))
    rows = [line.split(",", len(header) - 1) for line in lines[1:] if line and line != lines[0]]
    with open(next(out.glob(f"{stem}_summary_*.csv")), newline="") as f:
        summary = dict(zip(*list(csv.reader(f))[:2], strict=True))
    cpu = re.search(r"^CPU operators = (\d+)", stdout, re.MULTILINE)
    assert cpu is not None, stdout
    core = "legacy" if header[0] == "TFLite_operator" else "regor"
    return CliRun(core, header, rows, summary["cycles_total"], int(cpu[1]), stdout, summary,
                  (out / f"{stem}{compiled}").stat().st_size)


def differences(result: EstimateResult, cli: CliRun) -> list[str]:
    """Where the plugin's result and the CLI's output disagree (empty: parity)."""
    diffs = []
    if result.core != cli.core:
        diffs.append(f"core {result.core} vs {cli.core}")
    if float(result.total_cycles) != float(cli.total_cycles):
        diffs.append(f"total cycles {result.total_cycles} vs {cli.total_cycles}")
    diffs += summary_differences(result, cli.summary)
    if result.optimised_model_size != cli.optimised_model_size:
        diffs.append(f"optimised_model_size {result.optimised_model_size} vs {cli.optimised_model_size} bytes written")
    if result.cpu_ops != cli.cpu_operators:
        diffs.append(f"cpu_ops {result.cpu_ops} vs 'CPU operators = {cli.cpu_operators}'")
    if len(result.layers) != len(cli.rows):
        diffs.append(f"{len(result.layers)} layers vs {len(cli.rows)} rows")
    for layer, row in zip(result.layers, cli.rows, strict=False):
        for column, text in zip(cli.header, row, strict=True):
            field = COLUMNS.get(column)
            if field is None:
                continue
            ours = getattr(layer, field)
            if field == "op" and text == "N/A" and cli.core == "regor" and version_tuple() < (4, 3):
                # regor 4.0-4.2: the NNG operator stands in
                text = row[cli.header.index("NNG Operator")].removesuffix("Bias")
            same = ours == text if isinstance(ours, str) else float(ours) == float(text)
            if not same:
                diffs.append(f"layer {layer.index} {column}: {ours!r} vs {text!r}")
    return diffs


def summary_differences(result: EstimateResult, summary: dict[str, str]) -> list[str]:
    """Where the result's network figures and target disagree with Vela's summary CSV."""
    diffs = []
    for column, field_name in SUMMARY.items():
        if float(getattr(result, field_name)) != float(summary[column]):
            diffs.append(f"{field_name} {getattr(result, field_name)!r} vs summary {column}={summary[column]}")
    for column, field_name in SUMMARY_KIB.items():
        if getattr(result, field_name) != round(float(summary[column]) * 1024):
            diffs.append(f"{field_name} {getattr(result, field_name)!r} bytes vs summary {column}={summary[column]} KiB")
    for column, key in SUMMARY_TARGET.items():
        ours, theirs = result.target[key], summary[column]
        if (ours != theirs) if isinstance(ours, str) else float(ours) != float(theirs):
            diffs.append(f"target {key} {ours!r} vs summary {column}={theirs}")
    return diffs
