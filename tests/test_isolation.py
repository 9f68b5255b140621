"""The worker machinery: crashes, hangs and start failures stay inside one estimate.

These use the worker's test jobs ("crash", "sleep") and fake commands, since a real Vela crash
depends on the Vela release; the session-level test crashes the real worker from outside.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_ethosu import VelaCrash, VelaTimeout, WorkerStartError
from pytest_ethosu.estimator import Estimator
from pytest_ethosu.target import resolve
from pytest_ethosu.worker import VelaWorker


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_crash_raises_and_next_request_gets_a_new_worker() -> None:
    worker = VelaWorker()
    try:
        worker.request({"job": "sleep", "seconds": 0}, timeout=60)
        first = worker.pid
        with pytest.raises(VelaCrash, match="killed by SIGSEGV"):
            worker.request({"job": "crash"}, timeout=60)
        assert worker.request({"job": "sleep", "seconds": 0}, timeout=60) == {"ok": True}
        assert worker.pid != first and worker.starts == 2
    finally:
        worker.close()


def test_timeout_kills_the_worker() -> None:
    worker = VelaWorker()
    try:
        worker.request({"job": "sleep", "seconds": 0}, timeout=60)
        pid = worker.pid
        assert pid is not None
        with pytest.raises(VelaTimeout, match="did not finish within 0.5 s"):
            worker.request({"job": "sleep", "seconds": 30}, timeout=0.5)
        assert not alive(pid)
    finally:
        worker.close()


def test_start_failure_is_reported_once_and_not_retried() -> None:
    worker = VelaWorker([sys.executable, "-c", "import sys; print('no vela here', file=sys.stderr); sys.exit(3)"])
    with pytest.raises(WorkerStartError, match="no vela here"):
        worker.request({"job": "sleep", "seconds": 0}, timeout=10)
    with pytest.raises(WorkerStartError, match="could not start"):
        worker.request({"job": "sleep", "seconds": 0}, timeout=10)
    assert worker.starts == 0


def test_close_leaves_no_process() -> None:
    worker = VelaWorker()
    worker.request({"job": "sleep", "seconds": 0}, timeout=60)
    pid = worker.pid
    assert pid is not None and alive(pid)
    worker.close()
    assert not alive(pid)


def test_crashed_model_is_not_fed_to_vela_again(tmp_path: Path, model_dir: Path) -> None:
    class CrashOnce(VelaWorker):
        def request(self, message: dict[str, object], timeout: float | None) -> dict[str, object]:
            if message["job"] == "estimate" and "base" in str(message["model"]):
                message = {"job": "crash"}
            return super().request(message, timeout)

    est = Estimator(tmp_path, tmp_path, timeout=60, worker=CrashOnce())
    try:
        target = resolve([{}], tmp_path)
        with pytest.raises(VelaCrash, match="base.tflite"):
            est.estimate(model_dir / "base.tflite", target)
        runs = est.vela_runs
        with pytest.raises(VelaCrash, match="earlier in this session"):
            est.estimate(model_dir / "base.tflite", target)
        assert est.vela_runs == runs
        assert est.estimate(model_dir / "wider.tflite", target).total_cycles > 0
    finally:
        est.close()


def test_worker_killed_from_outside(project: pytest.Pytester) -> None:
    """Killed between jobs: the next estimate just works.  Killed mid-job: that one call fails,
    the crash is not blamed on the model, and the rest of the session goes on."""
    project.makepyfile(test_kill="""
        import os, signal, threading
        import pytest
        from pytest_ethosu import VelaCrash
        from pytest_ethosu.plugin import session_key

        def test_between_jobs(ethosu_perf, request):
            ethosu_perf.estimate("models/base.tflite")
            worker = request.config.stash[session_key].estimator.worker
            os.kill(worker.pid, signal.SIGKILL)
            assert ethosu_perf.estimate("models/wider.tflite").total_cycles > 0

        def test_mid_job(ethosu_perf, request):
            worker = request.config.stash[session_key].estimator.worker
            threading.Timer(0.5, os.kill, (worker.pid, signal.SIGKILL)).start()
            worker.request({"job": "sleep", "seconds": 30}, timeout=60)

        def test_after(ethosu_perf):
            assert ethosu_perf.estimate("models/wider.tflite").total_cycles > 0
    """)
    result = project.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(["VelaCrash: Vela crashed (killed by SIGKILL)*"])
