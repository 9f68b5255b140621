"""The estimator against the real Vela: figures, targets, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ethosu import ModelError, TargetError, VelaError
from pytest_ethosu.estimator import Estimator
from pytest_ethosu.result import EstimateResult
from pytest_ethosu.target import Target, resolve
from pytest_ethosu.vela import default_config_file
from tests.models import U65
from tests.release import op


def target(root: Path, **settings: object) -> Target:
    return resolve([settings], root)


def test_result_names_units_and_json(estimator: Estimator, model_dir: Path) -> None:
    result = estimator.estimate(model_dir / "base.tflite", target(estimator.rootdir, **U65))
    assert result.target["system_config"] == "Ethos_U65_High_End"
    assert result.target["memory_mode"] == "Dedicated_Sram"
    assert result.target["core_clock"] == 1_000_000_000
    assert result.vela_version.count(".") >= 1 and result.cpu_ops == 0 and result.npu_ops == 6
    assert result.inference_time == pytest.approx(float(result.total_cycles) / 1e9, rel=1e-3)
    assert [layer.index for layer in result.layers] == list(range(len(result.layers)))
    first = result.layers[0]
    assert (first.op, first.placement, first.name) == (op("Conv2D", result.core), "NPU", "net/conv1")
    assert first.staging_usage > 0 and first.macs > 0 and 0 < first.mac_utilization <= 100
    data = json.loads(json.dumps(result.to_dict()))
    assert EstimateResult.from_dict(data) == result
    table = result.table()
    assert "net/conv1" in table and "Op Cycles" in table and str(first.cycles) in table


def test_bytes_equal_path_and_memo(estimator: Estimator, model_dir: Path) -> None:
    path = model_dir / "wider.tflite"
    runs = estimator.vela_runs
    by_path = estimator.estimate(path, target(estimator.rootdir))
    by_bytes = estimator.estimate(path.read_bytes(), target(estimator.rootdir))
    assert by_bytes.layers == by_path.layers and by_bytes.model_sha256 == by_path.model_sha256
    assert by_bytes.model.startswith("<model bytes sha256:")
    assert estimator.vela_runs == runs + 1  # the same bytes on the same target ran Vela once


@pytest.mark.parametrize("content, expected", [
    (None, "no such model file"),
    (b"", r"empty \(0 bytes\)"),
    (b"hello, this is a text file\n", "not a TensorFlow Lite or TOSA model"),
    (bytes(range(256)) * 8, "not a TensorFlow Lite or TOSA model"),
])
def test_bad_files_name_the_file(estimator: Estimator, tmp_path: Path, content: bytes | None,
                                 expected: str) -> None:
    path = tmp_path / "bad.tflite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=expected) as info:
        estimator.estimate(path, target(estimator.rootdir))
    assert "bad.tflite" in str(info.value)


def test_a_windows_style_path_gets_a_hint(estimator: Estimator) -> None:
    with pytest.raises(ModelError) as info:
        estimator.estimate("models\\kws.tflite", target(estimator.rootdir))
    assert str(info.value).endswith("The path holds backslashes, which are part of a file name here, not separators: "
                                    "write 'models/kws.tflite' (or use pathlib).")
    with pytest.raises(ModelError) as plain:
        estimator.estimate("models/kws.tflite", target(estimator.rootdir))
    assert "backslashes" not in str(plain.value)


def test_directory_and_truncated(estimator: Estimator, model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a directory"):
        estimator.estimate(tmp_path, target(estimator.rootdir))
    cut = tmp_path / "cut.tflite"
    cut.write_bytes((model_dir / "base.tflite").read_bytes()[:2000])
    with pytest.raises(ModelError, match="cut.tflite: truncated or corrupt"):
        estimator.estimate(cut, target(estimator.rootdir))


def test_indices_out_of_range_are_refused_before_vela(estimator: Estimator, model_dir: Path, tmp_path: Path) -> None:
    """Vela's C++ core trusts the indices in a model; the plugin checks them first and says
    which one is wrong."""
    import struct

    from pytest_ethosu.vela.tflite import parse_model

    data = bytearray((model_dir / "base.tflite").read_bytes())
    tensor = parse_model(bytes(data)).Subgraphs(0).Tensors(1)
    struct.pack_into("<I", data, tensor._tab.Pos + tensor._tab.Offset(8), 9999)  # its 'buffer' field
    bad = tmp_path / "bad_index.tflite"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"bad_index.tflite: corrupt: tensor 1 of subgraph 0 uses buffer 9999, "
                                         r"but the model has \d+ buffers"):
        estimator.estimate(bad, target(estimator.rootdir))


def test_only_regular_files_are_read(estimator: Estimator, tmp_path: Path) -> None:
    """A FIFO would block forever, a device never ends, a huge sparse file would be read whole:
    each is refused from its metadata or its first 8 bytes."""
    import os
    import time

    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.tflite"
    with open(huge, "wb") as f:
        f.truncate(3 << 30)  # sparse: costs no disk
    sparse_model = tmp_path / "sparse.tflite"
    with open(sparse_model, "wb") as f:
        f.write(b"\0\0\0\0XXXX")
        f.truncate(1 << 30)
    started = time.monotonic()
    for path, expected in ((fifo, "pipe.tflite: not a regular file"), (Path("/dev/zero"), "/dev/zero: not a regular"),
                           (huge, "huge.tflite: 3,221,225,472 bytes is more than a flatbuffer can hold"),
                           (sparse_model, "sparse.tflite: not a TensorFlow Lite or TOSA model")):
        with pytest.raises(ModelError, match=expected):
            estimator.estimate(path, target(estimator.rootdir))
    assert time.monotonic() - started < 2.0


def test_float_and_precompiled_models_warn(estimator: Estimator, model_dir: Path, tmp_path: Path) -> None:
    result = estimator.estimate(model_dir / "float.tflite", target(estimator.rootdir))
    assert len(result.warnings) == 1 and "float model" in result.warnings[0]
    assert result.npu_ops == 0 and result.cpu_ops == 6 and result.total_cycles == 0
    subprocess.run([sys.executable, "-m", "ethosu.vela", str(model_dir / "base.tflite"),
                    "--output-dir", str(tmp_path)], check=True, capture_output=True)
    result = estimator.estimate(tmp_path / "base_vela.tflite", target(estimator.rootdir))
    assert len(result.warnings) == 1 and "already compiled by Vela" in result.warnings[0]
    assert result.cpu_operators == ("ethos-u",)


def test_warning_points_at_the_test(project: pytest.Pytester) -> None:
    """The EthosuWarning names the line of the user's test, not a line of the plugin."""
    project.makepyfile(test_float="""
        def test_float(ethosu_perf):
            x = 1
            ethosu_perf.estimate("models/float.tflite")

        def test_float_check(ethosu_perf):
            ethosu_perf("models/float.tflite")
    """)
    result = project.runpytest("-p", "no:xdist", "--ethosu-update", "-W", "always")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_float.py:3: EthosuWarning: *float model*",
                                 "*test_float.py:6: EthosuWarning: *float model*"])


@pytest.mark.parametrize("settings, expected", [
    ({"accelerator": "ethos-u99-1"}, "unknown accelerator 'ethos-u99-1'.*ethos-u55-32.*ethos-u85-2048"),
    ({"system_config": "Nope"}, "unknown system config 'Nope'.*Ethos_U65_High_End"),
    ({"system_config": "Ethos_U65_High_End", "memory_mode": "Nope"}, "unknown memory mode 'Nope'.*Shared_Sram"),
])
def test_unknown_names_list_valid_ones(estimator: Estimator, model_dir: Path,
                                       settings: dict[str, str], expected: str) -> None:
    with pytest.raises(TargetError, match=expected):
        estimator.estimate(model_dir / "base.tflite", target(estimator.rootdir, **settings))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="'my.ini' not found.*Arm/vela.ini"):
        resolve([{"vela_config": "my.ini"}], tmp_path)


def test_user_ini_file(estimator: Estimator, model_dir: Path) -> None:
    bundled = default_config_file()
    mine = estimator.rootdir / "configs" / "mine.ini"
    mine.parent.mkdir(exist_ok=True)
    mine.write_text(bundled.read_text().replace("[System_Config.Ethos_U65_High_End]",
                                                "[System_Config.My_Board]"))
    result = estimator.estimate(model_dir / "base.tflite", target(
        estimator.rootdir, accelerator="ethos-u65-256", vela_config="configs/mine.ini",
        system_config="My_Board", memory_mode="Dedicated_Sram"))
    assert result.target["system_config"] == "My_Board"
    assert result.target["config_files"] == ["configs/mine.ini"]  # portable, not an absolute path


def test_vela_rejects_option(estimator: Estimator, model_dir: Path) -> None:
    with pytest.raises(VelaError, match=r"base.tflite: Vela could not compile(.|\n)*unrecognized arguments: --no-such"):
        estimator.estimate(model_dir / "base.tflite", target(estimator.rootdir, vela_args=["--no-such"]))


def test_fixture_api_and_precedence(project: pytest.Pytester) -> None:
    """call > marker > command line > ini, for the target settings."""
    project.makeini("[pytest]\nethosu_accelerator = ethos-u55-64\nethosu_system_config = Ethos_U55_Deep_Embedded\n")
    project.makepyfile(test_api="""
        import pytest

        def test_ini_and_cli(ethosu_perf):
            r = ethosu_perf.estimate("models/base.tflite")
            assert r.accelerator == "ethos-u55-32"                   # from the command line
            assert r.target["system_config"] == "Ethos_U55_Deep_Embedded"   # from the ini

        @pytest.mark.ethosu(accelerator="ethos-u55-128")
        def test_marker(ethosu_perf):
            assert ethosu_perf.estimate("models/base.tflite").accelerator == "ethos-u55-128"
            r = ethosu_perf.estimate("models/base.tflite", accelerator="ethos-u55-256")
            assert r.accelerator == "ethos-u55-256"
            print(r.table())
            assert r.cpu_ops == 0
            assert r.total_cycles < 400_000
    """)
    result = project.runpytest("--ethosu-accelerator", "ethos-u55-32", "-p", "no:xdist")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*ethosu: Vela *accelerator=ethos-u55-32*"])
    assert "Warning: No" not in result.stdout.str()  # Vela's console output is captured


def test_truncated_model_fails_one_test_only(project: pytest.Pytester) -> None:
    data = (project.path / "models" / "base.tflite").read_bytes()
    (project.path / "models" / "truncated.tflite").write_bytes(data[: len(data) // 2])
    project.makepyfile(test_two="""
        def test_truncated(ethosu_perf):
            ethosu_perf.estimate("models/truncated.tflite", accelerator="ethos-u55-128")

        def test_good(ethosu_perf):
            assert ethosu_perf.estimate("models/base.tflite", accelerator="ethos-u55-128").cpu_ops == 0
    """)
    result = project.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1, passed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["ModelError: models/truncated.tflite: truncated or corrupt: *"])
    assert "Traceback" not in result.stdout.str() and "pytest_ethosu/" not in result.stdout.str()
