"""Expensive test inputs made once per test run, also under xdist."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def shared_directory(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A directory that ``make`` fills once per test run, for expensive inputs many tests read.

    Without xdist: a new temporary directory, made here.  Under xdist: the first worker to ask
    makes it in the run's shared temporary directory, holding a file lock, and the others wait
    for it and reuse it (the pattern xdist documents for session data).  A ``make`` that fails
    leaves no result behind: the next worker to ask tries again, and fails the same way."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        directory = tmp_path_factory.mktemp(name)
        make(directory)
        return directory
    run = tmp_path_factory.getbasetemp().parent  # one per xdist run, shared by its workers
    directory, done = run / f"shared-{name}", run / f"shared-{name}.done"
    with FileLock(str(run / f"shared-{name}.lock")):
        if not done.exists():
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir()
            make(directory)
            done.touch()
    return directory
