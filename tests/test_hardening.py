"""Bad input, crashes and concurrency: one bad model is one failed test, nothing more.

The fuzz corpus is made here, seeded: bit flips in the header (first 256 bytes) and in the
body of a real model.  Some flips land in weight data and leave a valid model, so a corrupted
model may pass; what must never happen is a failure that is not the plugin's message, a dead
session, a core file, a process left behind, or a touched baseline.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pytest_ethosu import ModelError, TargetError
from pytest_ethosu.estimator import Estimator
from pytest_ethosu.target import resolve

CORPUS = 56
PLUGIN_ERRORS = ("ModelError: ", "VelaError: ", "VelaCrash: ", "VelaTimeout: ")


def corrupt(data: bytes, count: int, seed: int = 2026) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        buf = bytearray(data)
        lo, hi = (0, 256) if i % 2 == 0 else (256, len(buf))
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
        out.append(bytes(buf))
    return out


def processes_tagged(tag: str) -> list[int]:
    """Live processes whose environment carries ``tag`` (zombies count as gone)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if tag.encode() in (entry / "environ").read_bytes():
                if (entry / "stat").read_text().split()[2] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture
def tag(monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"ETHOSU_TEST_{uuid.uuid4().hex}"
    monkeypatch.setenv("ETHOSU_TEST_TAG", value)
    return value


@pytest.mark.parametrize("mode", [["-p", "no:xdist"], ["-n", "2"]], ids=["serial", "xdist"])
def test_fuzz_corpus_session(project: pytest.Pytester, tag: str, mode: list[str]) -> None:
    models = project.path / "models"
    for i, data in enumerate(corrupt((models / "base.tflite").read_bytes(), CORPUS)):
        (models / f"fuzz_{i:03d}.tflite").write_bytes(data)
    project.makepyfile(test_fuzz=f"""
        import pytest

        @pytest.mark.parametrize("i", range({CORPUS}))
        def test_corrupted(ethosu_perf, i):
            ethosu_perf.estimate(f"models/fuzz_{{i:03d}}.tflite", accelerator="ethos-u55-128")

        @pytest.mark.parametrize("model", ["base", "wider"])
        def test_good(ethosu_perf, model):
            ethosu_perf(f"models/{{model}}.tflite", accelerator="ethos-u55-128")
    """)
    project.runpytest("--ethosu-update", "-k", "good", "-p", "no:xdist").assert_outcomes(passed=2)
    baselines = {p: p.read_bytes() for p in (project.path / "baselines").rglob("*.json")}

    result = project.runpytest(*mode, "-rf")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) == 0
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == CORPUS + 2
    assert outcomes["failed"] >= CORPUS // 2  # every header flip, at least, is refused
    failures = [line for line in result.outlines if line.startswith("FAILED ")]
    assert len(failures) == outcomes["failed"]
    for line in failures:
        assert "test_corrupted" in line, line  # the good models never fail
        assert any(f" - {prefix}" in line for prefix in PLUGIN_ERRORS), line
    assert result.ret == 1
    assert not list(project.path.rglob("core*"))
    assert processes_tagged(tag) == []
    assert {p: p.read_bytes() for p in (project.path / "baselines").rglob("*.json")} == baselines


def test_structure_check_catches_header_corruption(model_dir: Path, tmp_path: Path) -> None:
    """Most malformed files are refused with a precise message before Vela sees them."""
    est = Estimator(tmp_path, tmp_path, timeout=60)
    try:
        refused = 0
        for data in corrupt((model_dir / "base.tflite").read_bytes(), 40)[::2]:  # header flips
            try:
                est.estimate(data, resolve([{}], tmp_path))
            except ModelError:
                refused += 1
            except Exception:
                pass
        assert refused >= 15  # measured: 15 of 20 header flips refused; 2 stay valid models
    finally:
        est.close()


def test_keyboard_interrupt_leaves_no_process(project: pytest.Pytester, tag: str) -> None:
    project.makepyfile(test_int="""
        def test_interrupted(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite")
            raise KeyboardInterrupt

        def test_never(ethosu_perf):
            pass
    """)
    result = project.runpytest_subprocess("-p", "no:xdist")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert processes_tagged(tag) == []


def test_timeout_option(project: pytest.Pytester) -> None:
    project.makepyfile(test_slow="""
        def test_slow(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite")

        def test_fine(ethosu_perf):
            ethosu_perf.estimate("models/wider.tflite")
    """)
    result = project.runpytest("-p", "no:xdist", "--ethosu-timeout", "0.001")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["VelaTimeout: models/base.tflite on *: Vela did not finish within 0.001 s*"])


def test_malformed_ini_on_real_model(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "bad.ini").write_text("[System_Config.X\nnot ini at all\n")
    est = Estimator(tmp_path, tmp_path, timeout=60)
    try:
        with pytest.raises(TargetError, match=r"(?s)cannot read Vela config file.*bad.ini"):
            est.estimate(model_dir / "base.tflite", resolve([{"vela_config": "bad.ini", "system_config": "X", "memory_mode": "Y"}],
                                                            tmp_path))
    finally:
        est.close()


def test_two_sessions_at_once_write_valid_baselines(project: pytest.Pytester) -> None:
    project.makepyfile(test_a="""
        import pytest

        @pytest.mark.parametrize("model", ["base", "wider", "extra", "cpu"])
        def test_a(ethosu_perf, model):
            ethosu_perf(f"models/{model}.tflite")
    """)
    shutil.copy(project.path / "test_a.py", project.path / "test_b.py")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "--ethosu-update"]
    runs = [subprocess.Popen([*command, name], cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for name in ("test_a.py", "test_b.py", "test_a.py")]
    for run in runs:
        output = run.communicate(timeout=300)[0].decode()
        assert run.returncode == 0, output
    files = list((project.path / "baselines").rglob("*.json"))
    assert len(files) == 8
    for path in files:
        assert json.loads(path.read_text())["schema"] == 1
    assert not [p for p in (project.path / "baselines").rglob("*") if p.name.endswith(".tmp")]
