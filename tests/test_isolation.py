"""The worker machinery: crashes, hangs, interrupts and start failures stay inside one estimate.

A real Vela crash depends on the Vela release, so these use ``tests/fake_worker.py``: the
real protocol and the real Vela engine, with models that crash or hang on purpose (by file
name).  The session-level tests kill the real worker from outside.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_ethosu import VelaCrash, VelaTimeout, WorkerStartError
from pytest_ethosu.estimator import Estimator
from pytest_ethosu.target import resolve
from pytest_ethosu.worker import PROTOCOL, VelaWorker
from tests.fake_worker import FAKE_WORKER


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def fake_model(directory: Path, name: str, seed: int = 0) -> Path:
    """A file the parent accepts as a TFLite model (the fake worker acts on its name)."""
    path = directory / name
    path.write_bytes(b"\0\0\0\0TFL3" + seed.to_bytes(4, "little"))
    return path


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Estimator]:
    est = Estimator(tmp_path, tmp_path, timeout=60, worker=VelaWorker([sys.executable, FAKE_WORKER]))
    yield est
    est.close()


def test_crash_raises_and_next_request_gets_a_new_worker(fake: Estimator, tmp_path: Path, model_dir: Path) -> None:
    target = resolve([{}], tmp_path)
    assert fake.estimate(model_dir / "base.tflite", target).total_cycles > 0
    first = fake.worker.pid
    with pytest.raises(VelaCrash, match="killed by SIGSEGV"):
        fake.estimate(fake_model(tmp_path, "crash.tflite"), target)
    job = fake.worker.job_pid
    assert job is not None and job != first and not alive(job)  # the job that crashed is gone
    assert fake.estimate(model_dir / "wider.tflite", target).total_cycles > 0
    assert fake.worker.pid == first and fake.worker.starts == 1  # the worker itself never crashed


def test_timeout_kills_the_worker(tmp_path: Path, model_dir: Path) -> None:
    est = Estimator(tmp_path, tmp_path, timeout=0.5, worker=VelaWorker([sys.executable, FAKE_WORKER]))
    try:
        target = resolve([{}], tmp_path)
        est.timeout = 60
        est.estimate(model_dir / "base.tflite", target)
        pid = est.worker.pid
        assert pid is not None
        est.timeout = 0.5
        with pytest.raises(VelaTimeout, match="did not finish within 0.5 s"):
            est.estimate(fake_model(tmp_path, "sleep_30.tflite"), target)
        assert not alive(pid)
    finally:
        est.close()


def test_start_failure_is_reported_once_and_not_retried(tmp_path: Path, model_dir: Path) -> None:
    attempts = tmp_path / "attempts"
    worker = VelaWorker([sys.executable, "-c", f"import sys; open({str(attempts)!r}, 'a').write('x'); "
                         "print('no vela here', file=sys.stderr); sys.exit(3)"])
    est = Estimator(tmp_path, tmp_path, timeout=10, worker=worker)
    target = resolve([{}], tmp_path)
    with pytest.raises(WorkerStartError, match="no vela here"):
        est.estimate(model_dir / "base.tflite", target)
    with pytest.raises(WorkerStartError, match="could not start"):
        est.estimate(model_dir / "wider.tflite", target)
    assert worker.starts == 0 and attempts.read_text() == "x"  # started once, not once per estimate


def test_worker_of_another_protocol_is_refused(tmp_path: Path) -> None:
    script = (f"import json, struct, sys; m = json.dumps({{'ok': True, 'protocol': {PROTOCOL - 1}}}).encode(); "
              "sys.stdout.buffer.write(struct.pack('>Q', len(m)) + m); sys.stdout.flush(); sys.stdin.read()")
    worker = VelaWorker([sys.executable, "-c", script])
    with pytest.raises(WorkerStartError, match=f"speaks protocol {PROTOCOL - 1}, not {PROTOCOL}"):
        worker.request({}, timeout=10)


def test_close_leaves_no_process(tmp_path: Path, model_dir: Path) -> None:
    est = Estimator(tmp_path, tmp_path, timeout=60)
    est.estimate(model_dir / "base.tflite", resolve([{}], tmp_path))
    pid = est.worker.pid
    assert pid is not None and alive(pid)
    est.close()
    assert not alive(pid)


def test_crashed_model_is_not_fed_to_vela_again(fake: Estimator, tmp_path: Path, model_dir: Path) -> None:
    target = resolve([{}], tmp_path)
    crash = fake_model(tmp_path, "crash.tflite")
    with pytest.raises(VelaCrash, match="crash.tflite"):
        fake.estimate(crash, target)
    runs, starts = fake.vela_runs, fake.worker.starts
    with pytest.raises(VelaCrash, match="earlier in this session"):
        fake.estimate(crash, target)
    assert (fake.vela_runs, fake.worker.starts) == (runs, starts)  # no worker was asked
    assert fake.estimate(model_dir / "wider.tflite", target).total_cycles > 0


def test_interrupted_exchange_leaves_no_stale_reply(fake: Estimator, tmp_path: Path, model_dir: Path) -> None:
    """An exception while the parent waits (a timeout plugin, a signal handler) must not leave
    the interrupted job's reply in the pipe for the next request to pick up."""
    target = resolve([{}], tmp_path)
    base = fake.estimate(model_dir / "base.tflite", target)
    slow = fake_model(tmp_path, "sleep_1.tflite")
    (tmp_path / "sleep_1.tflite").write_bytes((model_dir / "wider.tflite").read_bytes())

    class Interrupt(Exception):
        pass

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(Interrupt):
            fake.estimate(slow, target)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    time.sleep(1.2)  # the interrupted job would have answered by now
    again = fake.estimate(model_dir / "extra.tflite", target)
    assert again.model_sha256 != base.model_sha256
    assert [layer.name for layer in again.layers] != [layer.name for layer in base.layers]
    assert len(again.layers) > len(base.layers)  # extra.tflite has one more layer: its own answer


INNER_CONFTEST = f"""
import sys
import pytest
from pytest_ethosu.plugin import session_key
from pytest_ethosu.worker import VelaWorker

@pytest.fixture(autouse=True, scope="session")
def fake_worker(pytestconfig):
    estimator = pytestconfig.stash[session_key].estimator
    estimator.worker = VelaWorker([sys.executable, {FAKE_WORKER!r}])
"""


def test_worker_killed_from_outside(project: pytest.Pytester) -> None:
    """Killed between jobs: the next estimate just works.  Killed mid-job: that one call fails,
    the crash is not blamed on the model, and the rest of the session goes on.  Each test
    starts its own worker state, whatever ran before."""
    project.makeconftest(INNER_CONFTEST)
    (project.path / "models" / "sleep_30.tflite").write_bytes((project.path / "models" / "extra.tflite").read_bytes())
    project.makepyfile(test_kill="""
        import os, signal, threading, time
        from pytest_ethosu.plugin import session_key

        def test_mid_job(ethosu_perf, request):
            worker = request.config.stash[session_key].estimator.worker
            worker.close()

            def kill_when_busy():
                while worker.pid is None:
                    time.sleep(0.05)
                time.sleep(1.0)  # the job is in: the worker sleeps for 30 s
                os.kill(worker.pid, signal.SIGKILL)

            threading.Thread(target=kill_when_busy).start()
            ethosu_perf.estimate("models/sleep_30.tflite")

        def test_between_jobs(ethosu_perf, request):
            ethosu_perf.estimate("models/base.tflite")
            worker = request.config.stash[session_key].estimator.worker
            os.kill(worker.pid, signal.SIGKILL)
            assert ethosu_perf.estimate("models/wider.tflite").total_cycles > 0

        def test_after(ethosu_perf):
            assert ethosu_perf.estimate("models/cpu.tflite").total_cycles > 0
    """)
    result = project.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["VelaCrash: models/sleep_30.tflite on *: Vela crashed (killed by SIGKILL)*"])


def test_session_goes_on_after_crashes(project: pytest.Pytester) -> None:
    """Every crash is a fresh model (no memo can answer), each one fails its own test, and the
    good model after them is estimated by a new worker."""
    project.makeconftest(INNER_CONFTEST)
    for i in range(8):
        (project.path / "models" / f"crash_{i}.tflite").write_bytes(b"\0\0\0\0TFL3" + bytes([i]))
    project.makepyfile(test_crashes="""
        import pytest
        from pytest_ethosu.plugin import session_key

        @pytest.mark.parametrize("i", range(8))
        def test_crash(ethosu_perf, i):
            ethosu_perf.estimate(f"models/crash_{i}.tflite")

        def test_good(ethosu_perf, request):
            assert ethosu_perf.estimate("models/base.tflite").total_cycles > 0
            assert request.config.stash[session_key].estimator.worker.starts == 1  # crashes were jobs'
    """)
    result = project.runpytest("-p", "no:xdist", "-rf")
    result.assert_outcomes(failed=8, passed=1)
    # each crash named with its signal (in CI, pytest's short summary repeats the whole message)
    crashed = {line.split("VelaCrash: models/", 1)[1].split(".tflite", 1)[0] for line in result.outlines
               if "VelaCrash: models/crash_" in line and "killed by SIGSEGV" in line}
    assert crashed == {f"crash_{i}" for i in range(8)}


def test_pytest_timeout_mid_estimate_does_not_poison_the_session(project: pytest.Pytester) -> None:
    """pytest-timeout interrupts a test while the parent waits for Vela: the next estimate in
    the same process gets its own answer."""
    project.makeconftest(INNER_CONFTEST)
    (project.path / "models" / "sleep_3.tflite").write_bytes((project.path / "models" / "wider.tflite").read_bytes())
    project.makepyfile(test_timeout="""
        import pytest

        @pytest.mark.timeout(1, method="signal")
        def test_interrupted(ethosu_perf):
            ethosu_perf.estimate("models/sleep_3.tflite")

        def test_next(ethosu_perf):
            import time
            time.sleep(3)  # the interrupted job would have answered by now
            result = ethosu_perf.estimate("models/extra.tflite")
            assert result.model == "models/extra.tflite"
            assert "net/extra" in [layer.name for layer in result.layers]  # not wider.tflite's answer
    """)
    result = project.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*Failed: Timeout*"])
