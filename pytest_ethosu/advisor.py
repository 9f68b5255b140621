"""The built-in advice rules: findings a person would otherwise dig out of the per-layer table.

The rules are a plugin on the project's own ``pytest_ethosu_advice`` hook (registered as
``ethosu-advisor``, a wrapper that adds its findings before any other implementation runs; ``-p no:ethosu-advisor``
turns them off and leaves other hooks running).  They run once per estimate, over the final
result, whatever the input format: a ``.tflite``, a ``.tosa`` file or a PyTorch model's merged
partitions.  Besides the figures they read the result's ``evidence`` (``result.Evidence``).

- ``channel_padding``: a convolution whose output depth is not a multiple of the depth the
  accelerator computes at a time (from Vela's architecture data; see
  ``vela.engine.depth_granularity``).  Each suggestion is checked with Vela through the hook's
  ``verify``: the layer is rebuilt (same input shape, kernel, stride, padding, int8) at both
  depths between two identity 1x1 max-pools, so that its feature maps are intermediate tensors
  as in the real network rather than network inputs and outputs, and estimated on the same
  target.  The advice is given only when Vela estimates no more cycles at the larger depth.
- ``memory_bound``: a layer whose busiest memory area needs at least 1.25x its NPU cycles (as
  in the seed article's fully connected layer), with that area named.
- ``weight_traffic``: the layers bound by a flash area's traffic (as ``memory_bound`` finds
  them) take at least 25% of the network's cycles.  Flash holds only what the model reads, its
  encoded weights and constants, so the finding gives Vela's bytes read from that area per
  inference against its ``encoded_weights`` and ``original_weights``.
- ``cpu_fallback``: every operator left on the CPU, with the reason Vela (or ExecuTorch) gave.
- ``layout_transposes``: the NCHW <-> NHWC transposes ExecuTorch's Arm backend puts at the
  edges of a partition, when they cost a noticeable share of the network (PyTorch models).
- ``hot_spot``: the fewest layers (at most 3) that make up half the network's cycles.

Vela's estimates are not silicon measurements; the findings say what Vela's model predicts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from typing import Any

import pytest

from .result import EstimateResult, Finding, Layer
from .vela import Placement, operator_key

MEMORY_BOUND_RATIO = 1.25
MIN_SHARE = 1.0  # percent of the network's cycles below which a layer is not worth a finding
LAYOUT_SHARE = 5.0  # percent of the network's cycles from which layout transposes get a finding
WEIGHT_SHARE = 25.0  # percent of the network's cycles in flash-bound layers from which weight traffic gets a finding
#: the flash areas: their traffic is the weights (and constants) the model reads
FLASH_AREAS = {"on-chip flash": "on_chip_flash_traffic", "off-chip flash": "off_chip_flash_traffic"}

#: estimates a verification model (TFLite bytes) on the target of the result being advised
Verify = Callable[[bytes], EstimateResult]


def single_conv(conv: Mapping[str, Any], depth: int) -> bytes | None:
    """The convolution alone, at another output depth; None when it cannot be rebuilt."""
    kernel, stride = conv["kernel"], conv["stride"]
    if (conv["dtype"] != "int8" or conv["dilation"] != [1, 1] or kernel[0] != kernel[1]
            or stride[0] != stride[1] or len(conv["input_shape"]) != 4):
        return None
    from .modelgen import ModelBuilder  # numpy and flatbuffers: only when a suggestion is checked

    m = ModelBuilder(tuple(conv["input_shape"]), seed=0)
    x = m.max_pool(m.input, size=1, stride=1, name="before")
    x = m.conv2d(x, filters=depth, kernel=kernel[0], stride=stride[0], padding=conv["padding"],
                 activation=None, name="layer")
    return m.build(m.max_pool(x, size=1, stride=1, name="after"))


def _is_conv(layer: Layer) -> bool:
    return operator_key(layer.op) == "conv2d"


def _conv_row(result: EstimateResult) -> Layer | None:
    return next((layer for layer in result.layers if _is_conv(layer) and layer.macs), None)


def channel_padding(result: EstimateResult, verify: Verify) -> list[Finding]:
    granularity = result.evidence.depth_granularity
    convs = result.evidence.convolutions
    if not granularity:
        return []
    findings = []
    for layer in result.layers:
        conv = convs.get(layer.index)
        if not _is_conv(layer) or layer.placement is not Placement.NPU or not layer.macs or conv is None:
            continue
        depth = int(conv["output_shape"][-1])
        if depth % granularity == 0:
            continue
        better = math.ceil(depth / granularity) * granularity
        now_model, better_model = single_conv(conv, depth), single_conv(conv, better)
        if now_model is None or better_model is None:
            continue
        now, then = _conv_row(verify(now_model)), _conv_row(verify(better_model))
        if now is None or then is None or float(then.cycles) > float(now.cycles):
            continue
        same = then.cycles == now.cycles
        more_macs = 100.0 * (then.macs - now.macs) / now.macs
        findings.append(Finding(
            kind="channel_padding", layer=layer.index, name=layer.label, op=layer.op,
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
        if layer.placement is not Placement.NPU or share < MIN_SHARE:
            continue
        areas = {"SRAM": layer.sram_access_cycles, "DRAM": layer.dram_access_cycles,
                 "on-chip flash": layer.on_chip_flash_access_cycles,
                 "off-chip flash": layer.off_chip_flash_access_cycles}
        area, access = max(areas.items(), key=lambda item: float(item[1]))
        if float(access) < MEMORY_BOUND_RATIO * float(layer.npu_cycles) or not access:
            continue
        ratio = float(access) / float(layer.npu_cycles) if layer.npu_cycles else math.inf
        findings.append(Finding(
            kind="memory_bound", layer=layer.index, name=layer.label, op=layer.op,
            evidence=(f"{area} access takes {access:,} cycles against {layer.npu_cycles:,} NPU cycles "
                      f"({ratio:.1f}x); the layer is {share:.1f}% of the network's cycles"),
            suggestion=(f"bound by {area} traffic, not by the MACs: move fewer bytes (smaller weights or "
                        f"feature maps) or use a memory mode that keeps this traffic in faster memory"),
            figures={"area": area, "access_cycles": access, "npu_cycles": layer.npu_cycles, "share": share}))
    return findings


def weight_traffic(result: EstimateResult, bound: list[Finding]) -> list[Finding]:
    """Weights read from flash that set a large share of the cycles (``bound``: the
    ``memory_bound`` findings)."""
    findings = []
    for area, traffic_figure in FLASH_AREAS.items():
        layers = [f for f in bound if f.figures["area"] == area]
        share = sum(float(f.figures["share"]) for f in layers)
        traffic = getattr(result, traffic_figure)
        if share < WEIGHT_SHARE or not traffic:
            continue
        encoded, original = result.encoded_weights, result.original_weights
        per_weight = f" ({float(traffic) / float(encoded):.2f}x the encoded weights)" if encoded else ""
        named = ", ".join(f"layer {f.layer} {f.op} {f.name}" for f in layers[:3]) + (", ..." if len(layers) > 3 else "")
        findings.append(Finding(
            kind="weight_traffic", layer=None, name=f"{len(layers)} layer(s) bound by {area} traffic", op="",
            evidence=(f"each inference reads {traffic:,} bytes from {area}{per_weight}: {encoded:,} bytes of "
                      f"encoded weights ({original:,} before Vela's encoding); the layers bound by that traffic "
                      f"take {share:.1f}% of the network's cycles ({named})"),
            suggestion=(f"the weights, not the MACs, set these layers' cycles: fewer or smaller weights in the layers "
                        f"named (fewer channels, pruning), or a system config and memory mode that read them from "
                        f"faster memory than {area}"),
            figures={"area": area, "traffic": traffic, "encoded_weights": encoded, "original_weights": original,
                     "share": share, "layers": [f.layer for f in layers]}))
    return findings


def cpu_fallback(result: EstimateResult) -> list[Finding]:
    findings = []
    for cpu in result.evidence.cpu:
        name = result.layers[cpu.layer].label if cpu.layer is not None else cpu.name
        if cpu.by == "executorch":
            evidence = f"{cpu.op} runs on the CPU: ExecuTorch did not delegate it ({cpu.reason})"
            instead = "operators the accelerator's TOSA profile supports,"
        else:
            evidence = f"{cpu.op} runs on the CPU: {cpu.reason or 'Vela gave no reason'}"
            instead = "operators the NPU supports (vela --supported-ops-report lists them)"
        findings.append(Finding(
            kind="cpu_fallback", layer=cpu.layer, name=name, op=cpu.op, evidence=evidence,
            suggestion=(f"Vela does not estimate CPU time, so this operator's cost is missing from the "
                        f"cycles; replace it with {instead} or budget its CPU time separately"),
            figures={"reason": cpu.reason or ("Vela gave no reason" if cpu.by == "vela" else "")}))
    return findings


def layout_transposes(result: EstimateResult) -> list[Finding]:
    rows = [result.layers[i] for i in result.evidence.layout]
    total = float(result.total_cycles) or 1.0
    cycles = sum(float(layer.cycles) for layer in rows)
    share = 100.0 * cycles / total
    if not rows or share < LAYOUT_SHARE:
        return []
    return [Finding(
        kind="layout_transposes", layer=None, name=", ".join(dict.fromkeys(r.module or r.name for r in rows)),
        op="Transpose",
        evidence=(f"{len(rows)} layout transposes (NCHW <-> NHWC, inserted by ExecuTorch's Arm backend at the "
                  f"partitions' inputs and outputs) take {cycles:,.0f} cycles, {share:.1f}% of the network"),
        suggestion=("PyTorch tensors are NCHW and the NPU works in NHWC: feed and return channels-last "
                    "tensors (example inputs in torch.channels_last memory format), or keep the work in one "
                    "partition so that the transposes happen once"),
        figures={"cycles": cycles, "share": share, "layers": [r.index for r in rows]})]


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
            kind="hot_spot", layer=layer.index, name=layer.label, op=layer.op,
            evidence=(f"{share:.1f}% of the network's cycles ({layer.cycles:,}) at "
                      f"{layer.mac_utilization:.1f}% MAC utilisation"),
            suggestion=why,
            figures={"share": share, "cycles": layer.cycles, "mac_utilization": layer.mac_utilization}))
        covered += share
        if covered >= 50.0:
            break
    return findings


def advise(result: EstimateResult, verify: Verify) -> list[Finding]:
    """Every built-in rule's findings for one estimate, in this order; ``verify`` estimates a
    verification model on the result's target."""
    bound = memory_bound(result)
    return (channel_padding(result, verify) + bound + weight_traffic(result, bound) + cpu_fallback(result)
            + layout_transposes(result) + hot_spots(result))


@pytest.hookimpl(wrapper=True)
def pytest_ethosu_advice(config: pytest.Config, result: EstimateResult, findings: list[Finding],
                         verify: Verify) -> Generator[None, None, None]:
    """The built-in rules, before every other implementation: as a wrapper, also before a
    ``tryfirst`` one in a conftest that pytest loads later (a sub-directory's)."""
    findings.extend(advise(result, verify))
    return (yield)
