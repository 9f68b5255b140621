"""The example's own columns: the third convolution's cycles and MAC utilisation.

Shows both pytest-ethosu hooks: one adds figures to each estimate's record, the other puts
them in the summary table.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_ethosu import EstimateResult


def pytest_ethosu_result(item: pytest.Item, name: str, result: EstimateResult, record: dict[str, Any]) -> None:
    convs = [layer for layer in result.layers if layer.op == "Conv2D" and layer.macs]
    if len(convs) >= 3:
        record["third_conv"] = {"cycles": convs[2].cycles, "util": convs[2].mac_utilization}


def pytest_ethosu_summary_row(config: pytest.Config, record: dict[str, Any], row: dict[str, Any]) -> None:
    conv = record.get("third_conv")
    if conv:
        row["3rd conv cycles"] = f"{conv['cycles']:,}"
        row["3rd conv util %"] = f"{conv['util']:.1f}"
