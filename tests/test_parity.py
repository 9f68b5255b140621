"""Parity with the installed Vela release: the plugin's figures equal that release's own `vela`
command, with each core the release has, and options are read as that release reads them.

These are the tests the Vela matrix (``.ci/vela-matrix``) runs against the oldest and the newest
supported release: ``pytest -m parity``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_ethosu import TargetError
from pytest_ethosu.estimator import Estimator
from pytest_ethosu.target import resolve
from pytest_ethosu.vela import ADDED_IN, expected_core, version_tuple
from pytest_ethosu.vela.engine import summary_core
from tests.cli import differences, vela_cli
from tests.models import U65
from tests.release import CORE_ARGS, DEFAULT_CORE, OLD, OTHER_CORE, OTHER_CORE_ARGS, VERSION

pytestmark = pytest.mark.parity

TARGETS = {
    "u55-default-core": {"accelerator": "ethos-u55-128"},
    "u65-default-core": U65,
    "u65-other-core": {**U65, "vela_args": OTHER_CORE_ARGS},
    "u85-size": {"accelerator": "ethos-u85-256", "vela_args": "--optimise Size"},
}


@pytest.mark.parametrize("model", ["base.tflite", "cpu.tflite"])
@pytest.mark.parametrize("settings", TARGETS.values(), ids=TARGETS.keys())
def test_figures_equal_the_vela_command(estimator: Estimator, model_dir: Path, tmp_path: Path,
                                        settings: dict[str, object], model: str) -> None:
    """Every per-layer row, every network figure of the summary CSV (cycles of each kind, MACs,
    inference time, SRAM and DRAM use), the target Vela applied and the CPU operator count, as
    `vela --verbose-performance` of this environment writes them, with each core."""
    target = resolve([settings], estimator.rootdir)
    result = estimator.estimate(model_dir / model, target)
    cli = vela_cli(model_dir / model, target, tmp_path / "cli")
    assert differences(result, cli) == []
    assert result.core == expected_core(target.accelerator, target.vela_args) == cli.core
    assert len(result.layers) > 3
    if model == "cpu.tflite":  # the custom operator stays on the CPU, whichever core compiled the rest
        assert result.cpu_ops == 1 and result.cpu_operators == ("UserCpuOp",)


def test_each_core_of_the_release(estimator: Estimator, model_dir: Path) -> None:
    """Both cores on U55/U65 (the default one without options), regor on U85."""
    for core, args in CORE_ARGS.items():
        for accelerator in ("ethos-u55-128", "ethos-u65-256"):
            target = resolve([{"accelerator": accelerator, "vela_args": args}], estimator.rootdir)
            assert estimator.estimate(model_dir / "base.tflite", target).core == core
    u85 = resolve([{"accelerator": "ethos-u85-256"}], estimator.rootdir)
    assert estimator.estimate(model_dir / "base.tflite", u85).core == "regor"
    assert DEFAULT_CORE == ("legacy" if OLD else "regor")


def test_abbreviated_core_option_is_read_as_vela_reads_it(estimator: Estimator, model_dir: Path) -> None:
    """argparse accepts a unique prefix: `--debug-force` is `--debug-force-regor` before 5.0 (the
    only option it starts), `--debug-force-leg` is `--debug-force-legacy-core` from 5.0."""
    short = "--debug-force" if OLD else "--debug-force-leg"
    target = resolve([{"accelerator": "ethos-u55-128", "vela_args": [short]}], estimator.rootdir)
    assert expected_core("ethos-u55-128", [short]) == OTHER_CORE
    assert estimator.estimate(model_dir / "base.tflite", target).core == OTHER_CORE


def test_legacy_core_option_refused_where_the_release_has_no_such_choice(tmp_path: Path) -> None:
    u85 = {"accelerator": "ethos-u85-256", "vela_args": ["--debug-force-legacy-core"]}
    with pytest.raises(TargetError, match="only applies to Ethos-U55 and U65|has no --debug-force-legacy-core"):
        resolve([u85], tmp_path)
    u55 = {"accelerator": "ethos-u55-128", "vela_args": ["--debug-force-legacy-core"]}
    if OLD:  # 4.x: no such option, and nothing to choose: the legacy core is the default
        with pytest.raises(TargetError, match=rf"Vela {VERSION} has no --debug-force-legacy-core \(added in "
                                              r"5.0.0\): before 5.0 .* already the default"):
            resolve([u55], tmp_path)
    else:
        assert resolve([u55], tmp_path).vela_args == ("--debug-force-legacy-core",)


@pytest.mark.parametrize("option", ADDED_IN)
def test_options_of_later_releases_are_refused_by_name(tmp_path: Path, option: str) -> None:
    settings = {"accelerator": "ethos-u55-128", "vela_args": [option]}
    if version_tuple(ADDED_IN[option]) > version_tuple():
        with pytest.raises(TargetError, match=rf"Vela {VERSION} has no {option}"):
            resolve([settings], tmp_path)
    elif option != "--list-configs":  # that one makes Vela exit without compiling
        resolve([settings], tmp_path)  # accepted: this release has it


@pytest.mark.parametrize("option", ["--list-config-files", "--api-version", "--list-config-f"])
def test_options_that_exit_without_compiling_are_refused(tmp_path: Path, option: str) -> None:
    with pytest.raises(TargetError, match="makes Vela print information and exit"):
        resolve([{"vela_args": [option]}], tmp_path)


@pytest.mark.parametrize("settings, missing", [
    ({"vela_config": "Arm/vela.ini"}, "system_config and memory_mode"),
    ({"vela_config": "Arm/vela.ini", "system_config": "Ethos_U65_High_End"}, "memory_mode"),
])
def test_config_file_needs_system_config_and_memory_mode(tmp_path: Path, settings: dict[str, str],
                                                         missing: str) -> None:
    """Vela itself raises CliOptionError for these; the plugin says so before running it."""
    with pytest.raises(TargetError, match=f"vela_config Arm/vela.ini needs {missing} as well"):
        resolve([settings], tmp_path)


def test_owned_options_refused_when_abbreviated(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="--accelerator-config cannot be passed"):
        resolve([{"vela_args": ["--accel=ethos-u55-64"]}], tmp_path)


@pytest.mark.parametrize("version, accelerator, args, core", [
    ("4.0.0", "ethos-u55-128", [], "legacy"),
    ("4.5.0", "ethos-u65-256", ["--debug-force-regor"], "regor"),
    ("4.5.0", "ethos-u85-256", [], "regor"),
    ("5.0.0", "ethos-u55-128", [], "regor"),
    ("5.2.0", "ethos-u65-256", ["--debug-force-legacy-core"], "legacy"),
    ("5.2.0", "ethos-u85-256", ["--debug-force-legacy-core"], "regor"),
    ("5.1.0", "ethos-u55-128", ["--debug-force-regor"], "regor"),
])
def test_expected_core_per_release(version: str, accelerator: str, args: list[str], core: str) -> None:
    assert expected_core(accelerator, args, version) == core


def test_core_from_the_summary_alone() -> None:
    """With no per-layer rows, the summary tells the cores apart (summaries as Vela 5.2.0 wrote
    them for keyword_scrambled_8bit on ethos-u55-128, cut to the cycle columns)."""
    assert summary_core("cycles_npu,cycles_total\n3349.0,5629.0\n") == "legacy"
    assert summary_core("cycles_npu,cycles_total\n6080,7361\n") == "regor"
