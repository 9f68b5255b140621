"""``.tosa`` files: estimated, checked and gated exactly like ``.tflite`` files.

The TOSA files are committed (``tests/data``, made by ``scripts/make_tosa_models.py`` with
ExecuTorch), so these tests run without PyTorch.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ethosu import ModelError
from pytest_ethosu.estimator import Estimator
from pytest_ethosu.target import resolve
from pytest_ethosu.vela.tosa import TosaCheckError, inspect_tosa

DATA = Path(__file__).parent / "data"
U65 = {"accelerator": "ethos-u65-256", "system_config": "Ethos_U65_High_End", "memory_mode": "Dedicated_Sram"}


@pytest.fixture
def tosa_project(project: pytest.Pytester) -> pytest.Pytester:
    for name in ("tiny.tosa", "tiny_wide.tosa"):
        shutil.copy(DATA / name, project.path / "models" / name)
    return project


def test_figures_equal_vela_cli(tmp_path: Path) -> None:
    """Every layer's figures are those of ``vela --verbose-performance`` on the same file."""
    estimator = Estimator(tmp_path, tmp_path / "scratch", 120)
    (tmp_path / "scratch").mkdir()
    try:
        result = estimator.estimate(DATA / "tiny.tosa", resolve([U65], tmp_path))
    finally:
        estimator.close()
    subprocess.run([sys.executable, "-m", "ethosu.vela", str(DATA / "tiny.tosa"), "--accelerator-config",
                    U65["accelerator"], "--system-config", U65["system_config"], "--memory-mode",
                    U65["memory_mode"], "--verbose-performance", "--output-dir", str(tmp_path / "cli")],
                   check=True, capture_output=True)
    with open(tmp_path / "cli" / "tiny_per-layer.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert [(r[1], int(r[5])) for r in rows] == [(layer.npu_op, layer.cycles) for layer in result.layers]
    assert result.cpu_ops == 0 and result.npu_ops > 0 and not result.warnings
    assert sum(layer.cycles for layer in result.layers) == result.total_cycles


def test_structure_check_pinpoints_truncation() -> None:
    data = (DATA / "tiny.tosa").read_bytes()
    assert inspect_tosa(data).convolutions  # the two convolutions, by their fused names
    with pytest.raises(TosaCheckError, match=r"truncated or corrupt: .* past the end of the file \(3622 bytes\)"):
        inspect_tosa(data[:len(data) // 2])
    refused = 0
    for cut in range(4, len(data), 97):  # flatbuffers keep constants at the end: a full walk finds every cut
        with pytest.raises(TosaCheckError):
            inspect_tosa(data[:len(data) - cut])
        refused += 1
    assert refused > 50


def test_bad_input_matrix_fails_one_test_each(tosa_project: pytest.Pytester) -> None:
    """Truncated, flipped bytes, empty, text: one failed test each with the plugin's message;
    the good file in the same session still passes."""
    models = tosa_project.path / "models"
    data = (models / "tiny.tosa").read_bytes()
    (models / "truncated.tosa").write_bytes(data[:len(data) // 2])
    (models / "identifier.tosa").write_bytes(data[:4] + b"TFL3" + data[8:])  # crashes Vela's C++ core unchecked
    (models / "offset.tosa").write_bytes(b"\xff\xff\xff\x7f" + data[4:])
    (models / "empty.tosa").write_bytes(b"")
    (models / "text.tosa").write_text("not a model\n")
    tosa_project.makepyfile(test_bad="""
        import pytest

        @pytest.mark.parametrize("name", ["truncated", "identifier", "offset", "empty", "text", "tiny"])
        def test_model(ethosu_perf, name):
            ethosu_perf.estimate(f"models/{name}.tosa", accelerator="ethos-u65-256")
    """)
    result = tosa_project.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=5, passed=1)
    result.stdout.fnmatch_lines_random([
        "ModelError: models/truncated.tosa: truncated or corrupt: * past the end of the file (3622 bytes)*",
        "ModelError: models/identifier.tosa: not a readable TFLite flatbuffer*",
        "ModelError: models/offset.tosa: truncated or corrupt: the graph table at byte 2147483647 *",
        "ModelError: models/empty.tosa: the file is empty (0 bytes)*",
        "ModelError: models/text.tosa: not a TensorFlow Lite or TOSA model*",
    ])
    assert "Traceback" not in result.stdout.str() and "VelaCrash" not in result.stdout.str()


def test_tosa_gate_update_cache(tosa_project: pytest.Pytester) -> None:
    """Baselines, the gate's per-layer failure, --ethosu-update and the cache work for .tosa."""
    models = tosa_project.path / "models"
    shutil.copy(models / "tiny.tosa", models / "current.tosa")
    tosa_project.makepyfile(test_t="""
        def test_tiny(ethosu_perf):
            ethosu_perf("models/current.tosa", accelerator="ethos-u65-256", system_config="Ethos_U65_High_End",
                        memory_mode="Dedicated_Sram")
    """)
    tosa_project.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    shutil.copy(models / "tiny_wide.tosa", models / "current.tosa")
    result = tosa_project.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CheckFailed: ethosu: models/current.tosa on ethos-u65-256: network total_cycles +46.2%*",
                                 "*2 * tosa_rescale_default * Conv2D * cycles * 4,570 * 6,474*"])
    tosa_project.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    warm = tosa_project.runpytest("-p", "no:xdist")
    warm.assert_outcomes(passed=1)
    warm.stdout.fnmatch_lines(["*1 estimate(s); Vela ran 0 time(s), 1 answered from the cache*"])


def test_bytes_of_a_tosa_file(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    estimator = Estimator(tmp_path, tmp_path / "scratch", 120)
    try:
        data = (DATA / "tiny.tosa").read_bytes()
        result = estimator.estimate(data, resolve([U65], tmp_path))
        assert result.model.startswith("<model bytes") and result.total_cycles > 0
        with pytest.raises(ModelError, match=r"Is it a complete \.tosa file"):
            estimator.estimate(data[:-100], resolve([U65], tmp_path))
    finally:
        estimator.close()
