from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.models import write_models


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test models, made once per session."""
    directory = tmp_path_factory.mktemp("models")
    write_models(directory)
    return directory


@pytest.fixture
def project(pytester: pytest.Pytester, model_dir: Path) -> pytest.Pytester:
    """An inner project: a pytest.ini (so the rootdir is fixed) and models/ with the test models."""
    pytester.makeini("[pytest]\n")
    shutil.copytree(model_dir, pytester.path / "models")
    return pytester
