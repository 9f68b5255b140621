"""Repository-level pytest configuration: the plugin tests drive inner sessions with pytester, and
the run checks that they left the checkout as they found it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# tests.clean_checkout: the run fails when a test leaves files in the git checkout
pytest_plugins = ("pytester", "tests.clean_checkout")

# The suite's helpers live in the package ``tests`` (``tests.models``, ``tests.fake_worker``).
# tosa-tools, which the PyTorch flow installs, puts a ``tests/`` directory without an
# ``__init__.py`` into site-packages: a namespace package of the same name.  Should anything
# import ``tests`` before pytest has put this checkout on ``sys.path``, ``tests.models`` would be
# looked up there.  This file is always the first conftest pytest imports, so bind the name to
# this checkout's package here, whatever is installed.
_TESTS = Path(__file__).resolve().parent / "tests"
_loaded = sys.modules.get("tests")
if _loaded is None or Path(getattr(_loaded, "__file__", None) or "/").resolve().parent != _TESTS:
    _spec = importlib.util.spec_from_file_location("tests", _TESTS / "__init__.py",
                                                   submodule_search_locations=[str(_TESTS)])
    assert _spec is not None and _spec.loader is not None
    sys.modules["tests"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["tests"])
