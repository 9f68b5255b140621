"""Hooks that conftest files and other plugins can implement.

Added to pytest's hook registry in ``plugin.pytest_addhooks``.  Implement them in a
``conftest.py`` or a plugin; each docstring shows a use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .result import EstimateResult, Finding


@pytest.hookspec
def pytest_ethosu_result(item: pytest.Item, name: str, result: EstimateResult,
                         record: dict[str, Any]) -> None:
    """Called for every estimate: checks (``ethosu_perf(...)``, ``name`` as given) and plain
    ``ethosu_perf.estimate(...)`` calls (``name`` is "").

    Called once per estimate, after its test has ended, teardown included: ``record`` is the
    estimate's summary in plain JSON types, with its final status (``record["status"]``:
    ``created``, ``regressed``, ``unwritten``, ...).  Keys a hook adds to ``record`` travel with
    it (also from xdist workers), reach ``pytest_ethosu_summary_row`` and the JSON report's
    ``extra``; changes to the plugin's own keys are not kept.  An exception in the hook fails the
    test's teardown.  Use it to push figures to a dashboard::

        # conftest.py
        def pytest_ethosu_result(item, name, result, record):
            metrics.append({"test": item.nodeid, "cycles": result.total_cycles,
                            "ms": 1000 * result.inference_time})

    Under xdist it runs in the worker that ran the test.
    """


@pytest.hookspec
def pytest_ethosu_advice(config: pytest.Config, result: EstimateResult, findings: list[Finding],
                         verify: Callable[[bytes], EstimateResult]) -> None:
    """Add (or remove) advisor findings for one estimate, in place.

    Called once per estimate, over its final result, whatever the input format.  The built-in
    rules (``pytest_ethosu/advisor.py``) are a wrapper of this hook that adds its findings before
    any other implementation runs (``-p no:ethosu-advisor`` turns them off), so ``findings`` holds their findings; append your
    own ``Finding`` objects to flag what matters to your product::

        # conftest.py
        from pytest_ethosu import Finding

        def pytest_ethosu_advice(config, result, findings):
            if result.sram_used > 256 * 1024:
                findings.append(Finding("sram_budget", None, "", "", f"{result.sram_used} bytes of SRAM",
                                        "our board has 256 KiB"))

    ``verify(model_bytes)`` estimates another ``.tflite`` or ``.tosa`` model on the same target,
    to check a suggestion with Vela (cached like any estimate; the summary counts it as the
    advisor's).  Runs in the process that made the estimate; the findings reach the summary and
    JSON report.  Not called under ``--ethosu-no-advice``.
    """


@pytest.hookspec
def pytest_ethosu_summary_row(config: pytest.Config, record: dict[str, Any],
                              row: dict[str, Any]) -> None:
    """Change the end-of-session summary row of one estimate, in place.

    ``row`` maps column headers to cell values in display order; add, change or delete
    entries.  ``record`` holds everything known about the estimate::

        # conftest.py
        def pytest_ethosu_summary_row(config, record, row):
            row["fps"] = f"{1000 / record['inference_ms']:.0f}"
            del row["SRAM KiB"]

    Runs on the controller only (never in xdist workers).
    """
