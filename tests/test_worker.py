"""The worker (issue 20 items 7, 9, 15): every estimate is a fresh process's, the time limit is
the compile's, and nothing is left in the temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_ethosu.estimator import Estimator
from pytest_ethosu.modelgen import ModelBuilder
from pytest_ethosu.target import resolve
from pytest_ethosu.vela.tflite import BuiltinOperator

LEGACY = ["--debug-force-legacy-core"]


def lut_model(filters: int, seed: int) -> bytes:
    """Sigmoid and tanh: the legacy core gives their lookup tables ids from an lru_cache."""
    m = ModelBuilder((1, 16, 16, 3), seed=seed)
    x = m.conv2d(m.input, filters=filters, kernel=3, name="conv")
    x = m._op(BuiltinOperator.LOGISTIC, [x], x.shape, "sig")
    x = m.conv2d(x, filters=8, kernel=1, name="conv2")
    x = m._op(BuiltinOperator.TANH, [x], x.shape, "tanh")
    return m.build(x)


def test_an_estimate_does_not_depend_on_what_the_worker_compiled_before(tmp_path: Path) -> None:
    """Measured before the fix: b.tflite failed with "Two different addresses cannot be
    assigned to the same tensor" after a.tflite in the same worker."""
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    a.write_bytes(lut_model(16, 0))
    b.write_bytes(lut_model(48, 3))
    one = Estimator(tmp_path, tmp_path, timeout=300)
    try:
        for model, accelerator in [(a, "ethos-u55-64"), (a, "ethos-u65-512"), (b, "ethos-u55-64")]:
            result = one.estimate(model, resolve([{"accelerator": accelerator, "vela_args": LEGACY}], tmp_path))
        assert one.worker.starts == 1
    finally:
        one.close()
    fresh = Estimator(tmp_path, tmp_path, timeout=300)
    try:
        alone = fresh.estimate(b, resolve([{"accelerator": "ethos-u55-64", "vela_args": LEGACY}], tmp_path))
    finally:
        fresh.close()
    assert result.core == "legacy"
    assert result.to_dict()["layers"] == alone.to_dict()["layers"]
    assert result.total_cycles == alone.total_cycles


def test_a_timeout_beyond_a_week_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:xdist", "--ethosu-timeout=1e10")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*argument --ethosu-timeout: expected at most 604800 seconds (a week), not '1e10'"])


TIMES_OUT = """
import time
from pathlib import Path

def test_times_out(ethosu_perf):
    ethosu_perf.estimate("models/base.tflite")  # the worker is up; a slow next job times out
    ethosu_perf.estimate("models/wider.tflite")

def test_waits_for_sigterm(ethosu_perf):
    ethosu_perf.estimate("models/base.tflite")
    Path("estimated").write_text("")
    time.sleep(60)
"""


def _scratch_entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(("ethosu-", "pytest-ethosu-")))


def test_timeouts_and_sigterm_leave_nothing_in_the_temporary_directory(project: pytest.Pytester,
                                                                        tmp_path: Path) -> None:
    """Measured before the fix: each timeout left $TMPDIR/ethosu-*, SIGTERM left pytest-ethosu-*."""
    import os
    import signal
    import subprocess
    import sys
    import time

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    project.makepyfile(test_models=TIMES_OUT)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    command = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "--ethosu-no-cache"]
    # a limit that the first compile of a tiny model meets but that is far too short for a second,
    # larger job is hard to pin; 0.001 s makes every compile time out, the start-up not counted
    timed = subprocess.run([*command, "--ethosu-timeout=0.001", "test_models.py::test_times_out"],
                           cwd=project.path, env=env, capture_output=True, text=True, timeout=300)
    assert "VelaTimeout" in timed.stdout, timed.stdout[-2000:]
    assert _scratch_entries(tmpdir) == []

    run = subprocess.Popen([*command, "-s", "test_models.py::test_waits_for_sigterm"], cwd=project.path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (project.path / "estimated").exists():
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0][-2000:]
        time.sleep(0.1)
    assert _scratch_entries(tmpdir) != []  # the session's directory exists while it runs
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=60)
    assert run.returncode == -signal.SIGTERM
    assert _scratch_entries(tmpdir) == []


@pytest.mark.parity
def test_one_worker_and_fresh_workers_give_the_same_estimates(tmp_path: Path) -> None:
    """Generated models (the suite's variants and two with lookup tables), both cores on U55
    and U65 and regor on U85, in one worker in two interleaved orders and each in a fresh
    worker: every figure (and every refusal) the same.  The Vela matrix runs it on 4.0.0."""
    from tests import history
    from tests.models import VARIANTS
    from tests.release import CORE_ARGS

    models = []
    for name in ("base.tflite", "wider.tflite", "cpu.tflite"):
        models.append(tmp_path / name)
        models[-1].write_bytes(VARIANTS[name]())
    for filters, seed in ((16, 0), (48, 3)):
        models.append(tmp_path / f"lut{filters}.tflite")
        models[-1].write_bytes(lut_model(filters, seed))
    chosen = history.targets(tmp_path, ["ethos-u55-64", "ethos-u65-512", "ethos-u85-256"], CORE_ARGS)
    assert len(chosen) == 5
    compared, found = history.differences(models, chosen)
    assert compared == 2 * 5 * 5 and found == []
