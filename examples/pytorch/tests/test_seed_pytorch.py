"""The seed article's experiment from PyTorch: 90 vs 96 channels in the third convolution,
lowered by ExecuTorch's Arm Ethos-U flow and gated on an Ethos-U65-256 (Ethos_U65_High_End,
Dedicated_Sram, set in pytest.ini)."""

from __future__ import annotations

from seed_net import calibration, example_inputs, network


def third_conv(result):
    return next(layer for layer in result.layers if layer.module == "conv3" and layer.macs)


def test_channel_experiment(ethosu_perf):
    narrow = ethosu_perf(network(90), example_inputs(), calibration=calibration(), name="90ch")
    wide = ethosu_perf(network(96), example_inputs(), calibration=calibration(), name="96ch")
    for result in (narrow, wide):
        print(result.table())

    a, b = third_conv(narrow), third_conv(wide)
    print(f"third convolution ({a.module}, {a.source}): 90ch {a.cycles} cycles at {a.mac_utilization:.1f}% "
          f"utilisation, 96ch {b.cycles} cycles at {b.mac_utilization:.1f}%")
    assert b.macs > a.macs and b.mac_utilization > a.mac_utilization

    padding = [f for f in narrow.advice() if f.kind == "channel_padding"]
    print("advisor on the 90-channel network:", *padding, sep="\n  ")
    assert [(f.layer, f.figures["suggested_depth"]) for f in padding] == [(a.index, 96)]
    assert not [f for f in wide.advice() if f.kind == "channel_padding"]
