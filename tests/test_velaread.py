"""Vela's output files read exactly as Vela writes them (issue 20, items 4, 14 and 16).

Layer names come from the model's tensor names and may hold any character.  Regor writes its
per-layer CSV unquoted with ``\\n`` row ends; the legacy core and both summaries use Python's
``csv.writer`` (``\\r\\n``, quoting).  The parity tests compare the plugin with what a fresh
``vela --verbose-performance`` process of this environment writes, read here by an independent
reader that knows the names the test put into the model.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from pytest_ethosu.errors import VelaError
from pytest_ethosu.estimator import Estimator
from pytest_ethosu.modelgen import ModelBuilder
from pytest_ethosu.result import EstimateResult
from pytest_ethosu.target import Target, resolve
from tests.cli import CliRun, cli_args, differences, vela_command
from tests.release import CORE_ARGS

#: A forged row after a line break in the name, as each core would write it (777,777 cycles).
FORGED_REGOR = "conv1\nConv2D,Conv2D,NPU,0,0.0,777777,0.0,777777,0,0,0,0,0,0.0,0.0,conv1"
FORGED_LEGACY = "conv1\r\nCONV_2D,Conv2DBias,0,0.0,777777.0,0.0,777777.0,0.0,0.0,0.0,0.0,0,0.0,0.0,conv1"
FORGED_LS = "conv1\u2028Conv2D,Conv2D,NPU,0,0.0,777777,0.0,777777,0,0,0,0,0,0.0,0.0,conv1"

#: Layer names with every character ``str.splitlines`` breaks on, and ``,``, ``"``, line ends.
HOSTILE = ["conv1", "a\nb", "c\r\nd", "o\rp", "e,f", 'g"h', '"quoted"', "i\u2028j", "p\u2029q", "k\x0cl",
           "v\x0bt", "fs\x1c", "gs\x1d", "rs\x1e", "m\x85n", "\nlead", "end\n", "issue#42",
           FORGED_REGOR, FORGED_LEGACY, FORGED_LS]

#: Model file stems with a comma, a quote and a line separator (the summary's "network" column
#: and every output file name hold them), and with glob characters.
STEMS = {"plain": "hostile", "separator": "net\u2028x\x0cy", "quoted": 'net,"1"\u2028x',
         "glob": 'net,"1"\u2028[x]*?'}

#: The plugin's totals -> Vela's summary columns.
SUMMARY = {"total_cycles": "cycles_total", "npu_cycles": "cycles_npu", "sram_access_cycles": "cycles_sram_access",
           "dram_access_cycles": "cycles_dram_access", "on_chip_flash_access_cycles": "cycles_on_chip_flash_access",
           "off_chip_flash_access_cycles": "cycles_off_chip_flash_access", "macs": "nn_macs",
           "inference_time": "inference_time"}

TARGETS = {f"{core}-{acc}": (core, {"accelerator": acc, "vela_args": args})
           for core, args in CORE_ARGS.items() for acc in ("ethos-u55-128", "ethos-u65-256")}
TARGETS["regor-ethos-u85-256"] = ("regor", {"accelerator": "ethos-u85-256"})


def hostile_model(path: Path, names: list[str]) -> Path:
    """One convolution per name (no activation: one per-layer row each, in every release)."""
    m = ModelBuilder((1, 8, 8, 8))
    x = m.input
    for name in names:
        x = m.conv2d(x, filters=8, activation=None, name=name)
    return m.save(path, x)


def cpu_only_model(path: Path) -> Path:
    """A model whose one operator stays on the CPU (its bytes differ per file name, so that no
    estimate is answered from the estimator's memo)."""
    m = ModelBuilder((1, 8, 8, 8))
    return m.save(path, m.custom(m.input, "UserCpuOp", name=f"cpu\nonly {path.stem}"))


def summary_of(out: Path, stem: str) -> dict[str, str]:
    found = [p for p in out.iterdir() if p.name.startswith(f"{stem}_summary_") and p.name.endswith(".csv")]
    assert len(found) == 1, sorted(p.name for p in out.iterdir())
    with open(found[0], newline="", encoding="utf-8") as f:
        header, values = list(csv.reader(f))
    return dict(zip(header, values, strict=True))


def cli_run(model: Path, target: Target, out: Path, names: list[str]) -> tuple[CliRun, dict[str, str]]:
    """Run the ``vela`` command and read its files knowing the layer names, in order: regor's
    rows are the 15 fields without commas, the name, and ``\\n``; the legacy core's are CSV."""
    done = subprocess.run([*vela_command(), str(model), "--verbose-performance", "--output-dir", str(out),
                           *cli_args(target)], check=True, capture_output=True, text=True)
    text = (out / f"{model.stem}_per-layer.csv").read_bytes().decode("utf-8")
    if text.startswith("TFLite_operator,"):
        table = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
        header, rows = table[0], [row for row in table[1:] if row != table[0]]
        core = "legacy"
    else:
        first, pos, rows = text.index("\n"), text.index("\n") + 1, []
        header = text[:first].split(",")
        for name in names:
            match = re.compile(r"((?:[^,\n]*,){15})" + re.escape(name) + "\n").match(text, pos)
            assert match, f"no row named {name!r} at {text[pos:pos + 200]!r}"
            rows.append([*match[1].split(",")[:-1], name])
            pos = match.end()
        assert pos == len(text), text[pos:]
        core = "regor"
    cpu = re.search(r"^CPU operators = (\d+)", done.stdout, re.MULTILINE)
    assert cpu is not None, done.stdout
    summary = summary_of(out, model.stem)
    return CliRun(core, header, rows, summary["cycles_total"], int(cpu[1]), done.stdout, summary,
                  (out / f"{model.stem}_vela.tflite").stat().st_size), summary


def summary_differences(result: EstimateResult, summary: dict[str, str]) -> list[str]:
    diffs = [f"{ours} {getattr(result, ours)} vs {theirs} {summary[theirs]}"
             for ours, theirs in SUMMARY.items() if float(getattr(result, ours)) != float(summary[theirs])]
    for ours, theirs in (("sram_used", "sram_memory_used"), ("dram_used", "dram_memory_used")):
        if getattr(result, ours) != round(float(summary[theirs]) * 1024):
            diffs.append(f"{ours} {getattr(result, ours)} vs {theirs} {summary[theirs]} KiB")
    if (result.target["system_config"], result.target["memory_mode"]) != (summary["system_config"],
                                                                          summary["memory_mode"]):
        diffs.append(f"target {result.target} vs {summary['system_config']}/{summary['memory_mode']}")
    return diffs


@pytest.mark.parity
@pytest.mark.parametrize("core, settings", TARGETS.values(), ids=TARGETS.keys())
def test_hostile_layer_names_read_as_the_vela_command_wrote_them(
        estimator: Estimator, tmp_path: Path, core: str, settings: dict[str, object]) -> None:
    """A name holding a line break, a comma, a quote, a form feed, a line separator, a forged
    row: one layer per convolution, named as in the model, field for field the CLI's rows, and
    the totals the CLI's summary."""
    model = hostile_model(tmp_path / f"{STEMS['plain']}.tflite", HOSTILE)
    target = resolve([settings], estimator.rootdir)
    result = estimator.estimate(model, target)
    cli, summary = cli_run(model, target, tmp_path / "cli", HOSTILE)
    assert result.core == cli.core == core
    assert [layer.name for layer in result.layers] == HOSTILE
    assert differences(result, cli) == []
    assert summary_differences(result, summary) == []
    assert summary["network"] == model.stem
    assert all(layer.cycles != 777777 for layer in result.layers)


@pytest.mark.parity
@pytest.mark.parametrize("stem", STEMS.values(), ids=STEMS.keys())
@pytest.mark.parametrize("core, settings", [TARGETS[f"{core}-ethos-u55-128"] for core in CORE_ARGS],
                         ids=list(CORE_ARGS))
def test_summary_of_a_model_without_npu_layers(estimator: Estimator, tmp_path: Path, core: str,
                                                settings: dict[str, object], stem: str) -> None:
    """With nothing on the NPU only the summary tells the cores apart; it is CSV with the
    model's name quoted where needed, and a line separator in that name is no row end."""
    model = cpu_only_model(tmp_path / f"{stem}.tflite")
    target = resolve([settings], estimator.rootdir)
    out = tmp_path / "cli"
    cli = subprocess.run([*vela_command(), str(model), "--verbose-performance", "--output-dir", str(out),
                          *cli_args(target)], capture_output=True)
    if cli.returncode != 0:  # regor in Vela 4.0 raises KeyError('') on a network with nothing on the NPU
        with pytest.raises(VelaError):  # the plugin then fails as the vela command does
            estimator.estimate(model, target)
        return
    result = estimator.estimate(model, target)
    summary = summary_of(out, model.stem)
    assert result.core == core
    assert result.cpu_operators == ("UserCpuOp",)
    assert summary_differences(result, summary) == []
    assert summary["network"] == stem


GLOB_TESTS = """
import pytest

@pytest.mark.parametrize("model", ["m[1].tflite", "a*b.tflite", "x?.tflite", "[!]].tflite"],
                         ids=["brackets", "star", "question", "negation"])
def test_model(ethosu_perf, model):
    result = ethosu_perf("models/" + model, accelerator="ethos-u55-128")
    assert result.total_cycles > 0
"""


def test_model_names_with_glob_characters_through_the_fixture(project: pytest.Pytester) -> None:
    for name in ("m[1]", "a*b", "x?", "[!]]"):
        hostile_model(project.path / "models" / f"{name}.tflite", ["conv"])
    project.makepyfile(test_glob=GLOB_TESTS)
    created = project.runpytest("--ethosu-update", "-p", "no:xdist")
    created.assert_outcomes(passed=4)
    project.runpytest("-p", "no:xdist").assert_outcomes(passed=4)


HASH_TESTS = """
def test_hash(ethosu_perf):
    result = ethosu_perf("models/hash.tflite", accelerator="ethos-u55-128")
    assert [layer.name for layer in result.layers] == ["issue#42", "x#7", "x#7#1"]
"""


def test_users_hash_names_are_kept_in_results_and_baselines(project: pytest.Pytester) -> None:
    """Only names Vela made are renumbered: the model's own ``issue#42`` stays."""
    hostile_model(project.path / "models" / "hash.tflite", ["issue#42", "x#7", "x#7#1"])
    project.makepyfile(test_hash=HASH_TESTS)
    project.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=1)
    baseline = next((project.path / "baselines").rglob("*.json"))
    assert [layer["name"] for layer in json.loads(baseline.read_text())["layers"]] == ["issue#42", "x#7", "x#7#1"]
    project.runpytest("-p", "no:xdist").assert_outcomes(passed=1)


def tosa_with_hash_names(tmp_path: Path) -> Path:
    """tests/data/tiny.tosa with its rescale tensors renamed (same length) to ``...#420``:
    the user's ``#420`` beside Vela's generated ``#N`` transposes."""
    data = (Path(__file__).parent / "data" / "tiny.tosa").read_bytes()
    assert data.count(b"tosa_rescale_default") >= 2
    path = tmp_path / "hash.tosa"
    path.write_bytes(data.replace(b"tosa_rescale_default", b"tosa_rescale_def#420"))
    return path


def test_generated_names_renumbered_and_users_kept_whatever_the_workers_history(
        estimator: Estimator, tmp_path: Path, model_dir: Path) -> None:
    u55 = resolve([{"accelerator": "ethos-u55-128"}], estimator.rootdir)
    model = tosa_with_hash_names(tmp_path)
    fresh = Estimator(estimator.rootdir, tmp_path, timeout=300)
    try:
        first = [layer.name for layer in fresh.estimate(model, u55).layers]
    finally:
        fresh.close()
    for accelerator in ("ethos-u55-64", "ethos-u65-256", "ethos-u85-256"):  # advance Vela's counter
        estimator.estimate(model, resolve([{"accelerator": accelerator}], estimator.rootdir))
    later = [layer.name for layer in estimator.estimate(model, u55).layers]
    assert later == first
    assert "tosa_rescale_def#420" in first and "tosa_rescale_def#420_1" in first
    generated = [name for name in first if name.startswith("#")]
    assert generated and set(generated) <= {"#1", "#2", "#3", "#4"}
