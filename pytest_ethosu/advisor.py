"""Findings a person would otherwise dig out of the per-layer table by hand.

- ``channel_padding``: a convolution whose output depth is not a multiple of the depth the
  accelerator computes at a time (from Vela's architecture data; see
  ``vela.engine.depth_granularity``).  Each suggestion is checked with Vela: the layer is
  rebuilt (same input shape, kernel, stride, padding, int8) at both depths between two identity
  1x1 max-pools, so that its feature maps are intermediate tensors as in the real network
  rather than network inputs and outputs, and estimated on the same target.  The advice is given
  only when Vela estimates no more cycles at the larger depth.
- ``memory_bound``: a layer whose busiest memory area needs at least 1.25x its NPU cycles (as
  in the seed article's fully connected layer), with that area named.
- ``cpu_fallback``: every operator Vela left on the CPU, with the reason Vela gave.
- ``hot_spot``: the fewest layers (at most 3) that make up half the network's cycles.

Vela's estimates are not silicon measurements; the findings say what Vela's model predicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .modelgen import ModelBuilder
from .result import EstimateResult, Finding, Layer
from .vela import VelaRun, operator_key

MEMORY_BOUND_RATIO = 1.25
MIN_SHARE = 1.0  # percent of the network's cycles below which a layer is not worth a finding

Estimate = Callable[[bytes], EstimateResult]


def single_conv(conv: Mapping[str, Any], depth: int) -> bytes | None:
    """The convolution alone, at another output depth; None when it cannot be rebuilt."""
    kernel, stride = conv["kernel"], conv["stride"]
    if (conv["dtype"] != "int8" or conv["dilation"] != [1, 1] or kernel[0] != kernel[1]
            or stride[0] != stride[1] or len(conv["input_shape"]) != 4):
        return None
    m = ModelBuilder(tuple(conv["input_shape"]), seed=0)
    x = m.max_pool(m.input, size=1, stride=1, name="before")
    x = m.conv2d(x, filters=depth, kernel=kernel[0], stride=stride[0], padding=conv["padding"],
                 activation=None, name="layer")
    return m.build(m.max_pool(x, size=1, stride=1, name="after"))


def _is_conv(layer: Layer) -> bool:
    return operator_key(layer.op) == "conv2d"


def _conv_row(result: EstimateResult) -> Layer | None:
    return next((layer for layer in result.layers if _is_conv(layer) and layer.macs), None)


def channel_padding(result: EstimateResult, run: VelaRun, estimate: Estimate) -> list[Finding]:
    granularity = run.depth_granularity
    convs = run.facts.convolutions
    if not granularity:
        return []
    findings = []
    for layer in result.layers:
        conv = convs.get(layer.name)
        if not _is_conv(layer) or layer.placement != "NPU" or not layer.macs or conv is None:
            continue
        depth = int(conv["output_shape"][-1])
        if depth % granularity == 0:
            continue
        better = math.ceil(depth / granularity) * granularity
        now_model, better_model = single_conv(conv, depth), single_conv(conv, better)
        if now_model is None or better_model is None:
            continue
        now, then = _conv_row(estimate(now_model)), _conv_row(estimate(better_model))
        if now is None or then is None or float(then.cycles) > float(now.cycles):
            continue
        same = then.cycles == now.cycles
        more_macs = 100.0 * (then.macs - now.macs) / now.macs
        findings.append(Finding(
            kind="channel_padding", layer=layer.index, name=layer.name, op=layer.op,
            evidence=(f"output depth {depth} is not a multiple of {granularity}, the depth "
                      f"{result.accelerator} computes at a time; rebuilt alone, the layer takes "
                      f"{now.cycles:,} cycles with {depth} channels and {then.cycles:,} with {better} "
                      f"(Vela {result.vela_version})"),
            suggestion=(f"{better} channels: {'same' if same else 'fewer'} cycles, +{more_macs:.1f}% MACs "
                        f"(MAC utilisation {now.mac_utilization:.1f}% -> {then.mac_utilization:.1f}%)"),
            figures={"depth": depth, "suggested_depth": better, "granularity": granularity,
                     "cycles": now.cycles, "suggested_cycles": then.cycles, "macs": now.macs,
                     "suggested_macs": then.macs, "mac_utilization": now.mac_utilization,
                     "suggested_mac_utilization": then.mac_utilization}))
    return findings


def memory_bound(result: EstimateResult) -> list[Finding]:
    findings = []
    total = float(result.total_cycles) or 1.0
    for layer in result.layers:
        share = 100.0 * float(layer.cycles) / total
        if layer.placement != "NPU" or share < MIN_SHARE:
            continue
        areas = {"SRAM": layer.sram_access_cycles, "DRAM": layer.dram_access_cycles,
                 "on-chip flash": layer.on_chip_flash_access_cycles,
                 "off-chip flash": layer.off_chip_flash_access_cycles}
        area, access = max(areas.items(), key=lambda item: float(item[1]))
        if float(access) < MEMORY_BOUND_RATIO * float(layer.npu_cycles) or not access:
            continue
        ratio = float(access) / float(layer.npu_cycles) if layer.npu_cycles else math.inf
        findings.append(Finding(
            kind="memory_bound", layer=layer.index, name=layer.name, op=layer.op,
            evidence=(f"{area} access takes {access:,} cycles against {layer.npu_cycles:,} NPU cycles "
                      f"({ratio:.1f}x); the layer is {share:.1f}% of the network's cycles"),
            suggestion=(f"bound by {area} traffic, not by the MACs: move fewer bytes (smaller weights or "
                        f"feature maps) or use a memory mode that keeps this traffic in faster memory"),
            figures={"area": area, "access_cycles": access, "npu_cycles": layer.npu_cycles, "share": share}))
    return findings


def cpu_fallback(result: EstimateResult, run: VelaRun) -> list[Finding]:
    reasons = list(run.cpu_reasons)
    cpu_layers = [layer for layer in result.layers if layer.placement == "CPU"]
    # the legacy core reports no CPU rows: fall back to the compiled model's operator names
    entries: list[tuple[int | None, str, str]] = [(layer.index, layer.name, layer.op) for layer in cpu_layers]
    if not entries:
        entries = [(None, "", op) for op in result.cpu_operators]
    findings = []
    for index, name, op in entries:
        match = next((r for r in reasons if operator_key(r.op) == operator_key(op)), None)
        if match is not None:
            reasons.remove(match)
        reason = match.reason if match else "Vela gave no reason"
        findings.append(Finding(
            kind="cpu_fallback", layer=index, name=name, op=op,
            evidence=f"{op} runs on the CPU: {reason}",
            suggestion=("Vela does not estimate CPU time, so this operator's cost is missing from the "
                        "cycles; replace it with operators the NPU supports (vela --supported-ops-report "
                        "lists them) or budget its CPU time separately"),
            figures={"reason": reason}))
    return findings


def hot_spots(result: EstimateResult) -> list[Finding]:
    total = float(result.total_cycles)
    if not total:
        return []
    findings: list[Finding] = []
    covered = 0.0
    for layer in sorted(result.layers, key=lambda item: (-float(item.cycles), item.index))[:3]:
        share = 100.0 * float(layer.cycles) / total
        if float(layer.cycles) > float(layer.npu_cycles):
            why = "its cycles are set by memory traffic, not by the MACs (see memory bound)"
        elif layer.macs and layer.mac_utilization < 50:
            why = "low MAC utilisation with compute-bound cycles: its shape (channels, kernel, stride) fits this accelerator poorly"
        else:
            why = "already busy: fewer cycles here need a smaller layer"
        findings.append(Finding(
            kind="hot_spot", layer=layer.index, name=layer.name, op=layer.op,
            evidence=(f"{share:.1f}% of the network's cycles ({layer.cycles:,}) at "
                      f"{layer.mac_utilization:.1f}% MAC utilisation"),
            suggestion=why,
            figures={"share": share, "cycles": layer.cycles, "mac_utilization": layer.mac_utilization}))
        covered += share
        if covered >= 50.0:
            break
    return findings


def advise(result: EstimateResult, run: VelaRun, estimate: Estimate) -> list[Finding]:
    """All findings for one estimate; ``estimate`` compiles a verification model on its target."""
    return (channel_padding(result, run, estimate) + memory_bound(result)
            + cpu_fallback(result, run) + hot_spots(result))
