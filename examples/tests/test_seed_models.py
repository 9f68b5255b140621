"""The seed article's experiment as a CI gate: 90 vs 96 channels in the third convolution,
on an Ethos-U65-256 (Ethos_U65_High_End, Dedicated_Sram, set in pytest.ini)."""

from __future__ import annotations


def third_conv(result):
    """The third convolution: the third Conv2D row that does work (fused ReLUs are extra rows;
    Vela's legacy core, the default before Vela 5.0, spells it CONV_2D)."""
    return [layer for layer in result.layers if layer.op in ("Conv2D", "CONV_2D") and layer.macs][2]


def test_channel_experiment(ethosu_perf):
    narrow = ethosu_perf("models/model_90ch.tflite", name="90ch")   # each checked against its baseline
    wide = ethosu_perf("models/model_96ch.tflite", name="96ch")
    for result in (narrow, wide):
        assert result.cpu_ops == 0  # the whole network maps to the NPU
        print(result.table())

    # The article's finding: the same cycles for the third convolution, with more MACs done,
    # so its MAC utilisation rises.  A Vela upgrade that changes this fails here.
    a, b = third_conv(narrow), third_conv(wide)
    print(f"third convolution: 90ch {a.cycles} cycles at {a.mac_utilization:.1f}% utilisation, "
          f"96ch {b.cycles} cycles at {b.mac_utilization:.1f}%")
    assert b.macs > a.macs
    assert b.mac_utilization > a.mac_utilization
    assert abs(float(b.cycles) - float(a.cycles)) <= 0.02 * float(a.cycles)

    # The advisor finds the same win on its own, verified with Vela, and only for 90 channels.
    padding = [f for f in narrow.advice() if f.kind == "channel_padding"]
    assert [(f.layer, f.figures["suggested_depth"]) for f in padding] == [(a.index, 96)]
    assert padding[0].figures["suggested_cycles"] <= padding[0].figures["cycles"]
    assert not [f for f in wide.advice() if f.kind == "channel_padding"]
