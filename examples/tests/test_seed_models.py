"""The seed article's experiment as a CI gate: 90 vs 96 channels in the third convolution,
on an Ethos-U65-256 (Ethos_U65_High_End, Dedicated_Sram, set in pytest.ini)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("channels", [90, 96])
def test_seed_model(ethosu_perf, channels):
    result = ethosu_perf(f"models/model_{channels}ch.tflite")
    assert result.cpu_ops == 0  # the whole network maps to the NPU
    print(result.table())


def test_96_channels_use_the_macs_better(ethosu_perf):
    """The article's finding: same cycles for the third convolution, higher MAC utilisation."""
    narrow = ethosu_perf.estimate("models/model_90ch.tflite")
    wide = ethosu_perf.estimate("models/model_96ch.tflite")

    def third_conv(result):
        return next(layer for layer in result.layers if layer.name == "conv2d_2" and layer.macs)

    a, b = third_conv(narrow), third_conv(wide)
    print(f"third convolution: 90ch {a.cycles} cycles at {a.mac_utilization:.1f}% utilisation, "
          f"96ch {b.cycles} cycles at {b.mac_utilization:.1f}%")
    assert b.macs > a.macs
    assert b.mac_utilization > a.mac_utilization
    assert abs(float(b.cycles) - float(a.cycles)) <= 0.02 * float(a.cycles)
