from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_ethosu.estimator import Estimator
from tests.models import use, write_models

#: Plugins that other packages install and no inner session uses, blocked in inner sessions:
#: Hypothesis's terminal summary imports all of Hypothesis (1.3 s in every process here); the
#: PyTorch stack brings hydra-core's (0.6 s to import hydra), kgb's and, through httpx, anyio's
#: (0.5 s probing event loops at start-up).  An inner ``-n 2`` session on a cached estimate took
#: 3.85 s with them and 2.54 s without.  Blocking a plugin that is not installed is a no-op.
FOREIGN_PLUGINS = ("hypothesispytest", "hydra_pytest", "anyio", "kgb")


def _without_foreign_plugins(run: Callable[..., Any]) -> Callable[..., Any]:
    """Inner sessions (pytester's, in process or not, and their xdist workers, which take the
    command line but not PYTEST_ADDOPTS) run without ``FOREIGN_PLUGINS``."""
    @functools.wraps(run)
    def without(self: pytest.Pytester, *args: Any, **kwargs: Any) -> Any:
        return run(self, *args, *(f"-pno:{name}" for name in FOREIGN_PLUGINS), **kwargs)
    return without


pytest.Pytester.inline_run = _without_foreign_plugins(pytest.Pytester.inline_run)  # type: ignore[method-assign]
pytest.Pytester.runpytest_subprocess = _without_foreign_plugins(  # type: ignore[method-assign]
    pytest.Pytester.runpytest_subprocess)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test models, made once per session."""
    directory = tmp_path_factory.mktemp("models")
    write_models(directory)
    return directory


@pytest.fixture(scope="module")
def estimator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estimator]:
    """One estimator (worker, memo; no disk cache, no advice) shared by a test module."""
    root = tmp_path_factory.mktemp("root")
    est = Estimator(root, tmp_path_factory.mktemp("scratch"), timeout=300)
    yield est
    est.close()


@pytest.fixture
def project(pytester: pytest.Pytester, model_dir: Path) -> pytest.Pytester:
    """An inner project: a pytest.ini (so the rootdir is fixed) and models/ with the test models."""
    pytester.makeini("[pytest]\n")
    shutil.copytree(model_dir, pytester.path / "models")
    return pytester


@pytest.fixture
def make_repo(project: pytest.Pytester) -> Callable[[str], pytest.Pytester]:
    """A project whose tests (``source``) check ``models/current.tflite``, first the base variant."""
    def make(source: str) -> pytest.Pytester:
        use(project, "base.tflite")
        project.makepyfile(test_models=source)
        return project

    return make
