"""A worker for testing the isolation machinery: the real protocol (``worker.serve``), with
models that misbehave on purpose.

A model whose file name starts with ``crash`` makes the worker die of SIGSEGV, one that starts
with ``sleep_N`` sleeps N seconds first; every other job goes to the real Vela engine.  Run as
a script: ``VelaWorker([sys.executable, FAKE_WORKER])``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

FAKE_WORKER = str(Path(__file__).resolve())


def handle(job: dict[str, Any]) -> dict[str, Any]:
    from pytest_ethosu.vela import engine

    name = Path(job["model"]).name
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("sleep_"):
        time.sleep(float(name.split("_")[1].split(".")[0]))
    return engine.handle(job)


def start() -> dict[str, Any]:
    from pytest_ethosu.vela import engine

    return engine.start()


if __name__ == "__main__":
    from pytest_ethosu.worker import serve

    sys.exit(serve(handle, start))
