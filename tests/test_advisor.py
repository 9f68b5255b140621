"""The advisor, on models Vela really compiles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_ethosu.estimator import Estimator
from pytest_ethosu.modelgen import ModelBuilder
from pytest_ethosu.result import EstimateResult
from pytest_ethosu.target import resolve
from pytest_ethosu.vela import CpuReason
from pytest_ethosu.vela.engine import cpu_reasons
from tests.advising import Advising
from tests.models import U65
from tests.release import CORE_ARGS, DEFAULT_CORE


def seed_network(channels: int) -> bytes:
    """The seed article's network (see examples/make_models.py), made without TensorFlow."""
    m = ModelBuilder((1, 284, 284, 3), seed=channels)
    x = m.conv2d(m.input, filters=32, kernel=3, padding="valid", name="conv2d")
    x = m.conv2d(x, filters=64, kernel=3, stride=2, padding="valid", name="conv2d_1")
    x = m.conv2d(x, filters=channels, kernel=3, stride=2, padding="valid", name="conv2d_2")
    x = m.conv2d(x, filters=32, kernel=3, stride=2, padding="valid", name="conv2d_3")
    x = m.fully_connected(m.reshape(x, (1, -1), name="flatten"), units=10, name="dense")
    return m.build(x)


@pytest.fixture(scope="module")
def estimator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Advising]:
    root = tmp_path_factory.mktemp("advice")
    est = Estimator(root, root, timeout=300)
    yield Advising(est)
    est.close()


def kinds(result: EstimateResult, kind: str) -> list[object]:
    return [f for f in result.advice() if f.kind == kind]


def test_channel_padding_only_where_vela_confirms_it(estimator: Advising) -> None:
    target = resolve([U65], estimator.rootdir)
    narrow = estimator.estimate(seed_network(90), target)
    padding = [f for f in narrow.advice() if f.kind == "channel_padding"]
    assert len(padding) == 1
    finding = padding[0]
    assert finding.name == "conv2d_2" and finding.op == {"regor": "Conv2D", "legacy": "CONV_2D"}[narrow.core]
    assert finding.figures["granularity"] == 8 and finding.figures["suggested_depth"] == 96
    assert finding.figures["suggested_cycles"] == finding.figures["cycles"]  # Vela: same cycles
    assert finding.figures["suggested_mac_utilization"] > finding.figures["mac_utilization"]
    assert "96 channels: same cycles, +6.7% MACs" in finding.suggestion
    in_network = narrow.layers[finding.layer]  # type: ignore[index]
    # the rebuilt layer behaves as in the network: exactly with Vela 5.2.0 and the legacy core,
    # within 0.06% with regor in 5.0.0 and 5.1.0 (1,060,448 rebuilt vs 1,059,918 in the network)
    assert finding.figures["cycles"] == pytest.approx(in_network.cycles, rel=1e-3)

    wide = estimator.estimate(seed_network(96), target)
    assert not [f for f in wide.advice() if f.kind == "channel_padding"]
    u85 = estimator.estimate(seed_network(90), resolve([{"accelerator": "ethos-u85-256"}], estimator.rootdir))
    assert not [f for f in u85.advice() if f.kind == "channel_padding"]  # no U85 data in Vela's Python


def test_memory_bound_and_hot_spots(estimator: Advising, model_dir: Path) -> None:
    result = estimator.estimate(model_dir / "base.tflite", resolve([{"accelerator": "ethos-u55-128"}],
                                                                   estimator.rootdir))
    bound = [f for f in result.advice() if f.kind == "memory_bound"]
    assert bound
    for f in bound:
        layer = result.layers[f.layer]  # type: ignore[index]
        assert f.figures["access_cycles"] >= 1.25 * float(layer.npu_cycles)
        assert f.figures["area"] in f.evidence and f.figures["share"] >= 1.0
    hot = [f for f in result.advice() if f.kind == "hot_spot"]
    shares = [f.figures["share"] for f in hot]
    assert shares == sorted(shares, reverse=True) and (sum(shares) >= 50 or len(hot) == 3)
    assert hot[0].layer == max(result.layers, key=lambda layer: float(layer.cycles)).index


@pytest.mark.parametrize("core", ["regor", "legacy"])
def test_cpu_fallback_for_every_cpu_operator(estimator: Advising, model_dir: Path, core: str) -> None:
    result = estimator.estimate(model_dir / "cpu.tflite", resolve([{"accelerator": "ethos-u65-256",
                                                                    "vela_args": CORE_ARGS[core]}], estimator.rootdir))
    assert result.core == core
    fallback = [f for f in result.advice() if f.kind == "cpu_fallback"]
    assert len(fallback) == result.cpu_ops == 1
    assert "runs on the CPU" in fallback[0].evidence and "Vela does not estimate CPU time" in fallback[0].suggestion


def test_cpu_reasons_from_both_cores_console_formats() -> None:
    regor = ("Warning (supported operators) operator: SVDF, ofm: '<unnamed>_act'\nReason: Unsupported opType\n\n"
             "Warning (supported operators) operator: QUANTIZE, ofm: 'q'\nReason: Unsupported dataType Int32\n"
             "32-bit feature-maps are not supported.\n")
    legacy = ("Warning: Unsupported TensorFlow Lite semantics for SOFTMAX ''. Placing on CPU instead\n"
              " - IFM and OFM data types must match\n   Op has ifm_dtype=int8 and ofm_dtype=int16\n"
              "Info: SVDF '' is a CPU only op\n")
    assert cpu_reasons(regor) == [
        CpuReason("SVDF", "<unnamed>_act", "Unsupported opType"),
        CpuReason("QUANTIZE", "q", "Unsupported dataType Int32 32-bit feature-maps are not supported.")]
    regor_4_3 = ("Warning (supported operators) operator:QUANTIZE ofm:<unnamed>\nReason: Unsupported dataType Int32\n"
                 "32-bit feature-maps are not supported.\nWarning (supported operators) operator:SVDF ofm:<unnamed>\n"
                 "Reason: Unsupported opType\n")
    assert cpu_reasons(regor_4_3) == [  # Vela 4.3.0 to 5.0.0
        CpuReason("QUANTIZE", "<unnamed>", "Unsupported dataType Int32 32-bit feature-maps are not supported."),
        CpuReason("SVDF", "<unnamed>", "Unsupported opType")]
    assert cpu_reasons(legacy) == [
        CpuReason("SOFTMAX", "", "IFM and OFM data types must match Op has ifm_dtype=int8 and ofm_dtype=int16"),
        CpuReason("SVDF", "", "a CPU-only operator")]


def test_advice_in_summary_json_hook_and_off_switch(project: pytest.Pytester) -> None:
    project.makeconftest("""
        from pytest_ethosu import Finding

        def pytest_ethosu_advice(config, result, findings):
            findings.append(Finding("sram_budget", None, "", "", f"{result.sram_used} bytes of SRAM",
                                    "our board has 8 KiB"))
    """)
    project.makepyfile(test_a="""
        def test_a(ethosu_perf):
            result = ethosu_perf.estimate("models/cpu.tflite", accelerator="ethos-u55-128")
            assert [f.kind for f in result.advice()].count("sram_budget") == 1
    """)
    on = project.runpytest("-p", "no:xdist", "--ethosu-json=r.json")
    on.assert_outcomes(passed=1)
    # regor lists the CPU's operators as layers; the legacy core only names them
    fallback = "  cpu fallback: 1 operator(s) on the CPU: " + ("Custom" if DEFAULT_CORE == "regor" else "UserCpuOp")
    on.stdout.fnmatch_lines(["advice (--ethosu-no-advice turns it off):", fallback,
                             "  sram budget:", "    13280 bytes of SRAM", "    -> our board has 8 KiB"])
    entry = json.loads((project.path / "r.json").read_text())["estimates"][0]
    assert {f["kind"] for f in entry["findings"]} >= {"cpu_fallback", "sram_budget", "hot_spot"}
    project.makepyfile(test_a="""
        def test_a(ethosu_perf):
            assert ethosu_perf.estimate("models/cpu.tflite", accelerator="ethos-u55-128").advice() == []
    """)
    off = project.runpytest("-p", "no:xdist", "--ethosu-no-advice")
    off.assert_outcomes(passed=1)
    assert "advice (" not in off.stdout.str()
    # the built-in rules are a plugin on the advice hook: blocked, the conftest's rule still runs
    project.makepyfile(test_a="""
        def test_a(ethosu_perf):
            result = ethosu_perf.estimate("models/cpu.tflite", accelerator="ethos-u55-128")
            assert [f.kind for f in result.advice()] == ["sram_budget"]
    """)
    project.runpytest("-p", "no:xdist", "-p", "no:ethosu-advisor").assert_outcomes(passed=1)


def test_a_later_conftests_tryfirst_hook_sees_the_built_in_findings(project: pytest.Pytester) -> None:
    """A sub-directory's conftest is loaded after the built-in rules are registered; with
    ``tryfirst`` it still runs after them, whatever paths pytest is given."""
    sub = project.mkpydir("sub")
    (sub / "conftest.py").write_text(
        "import pytest\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_ethosu_advice(config, result, findings):\n"
        "    assert findings, 'the built-in findings come first'\n"
        "    findings[:] = [f for f in findings if f.kind != 'hot_spot']\n")
    (sub / "test_s.py").write_text(
        "def test_s(ethosu_perf):\n    result = ethosu_perf.estimate('models/base.tflite', accelerator='ethos-u55-128')\n"
        "    kinds = {f.kind for f in result.advice()}\n    assert 'memory_bound' in kinds and 'hot_spot' not in kinds\n")
    for args in ((), ("sub",)):
        project.runpytest("-p", "no:xdist", *args).assert_outcomes(passed=1)


def test_weight_traffic_from_flash_with_vela_figures(estimator: Advising, model_dir: Path) -> None:
    """On ethos-u55-128 (Shared_Sram: weights in off-chip flash) the test network's fully
    connected layer is bound by off-chip flash traffic; on ethos-u65-256 with Dedicated_Sram
    the weights live in DRAM, and no flash finding is given."""
    result = estimator.estimate(model_dir / "wider.tflite", resolve([{"accelerator": "ethos-u55-128"}],
                                                                    estimator.rootdir))
    (finding,) = [f for f in result.advice() if f.kind == "weight_traffic"]
    bound = [f for f in result.advice() if f.kind == "memory_bound" and f.figures["area"] == "off-chip flash"]
    assert finding.figures["layers"] == [f.layer for f in bound]
    assert finding.figures["share"] == pytest.approx(sum(f.figures["share"] for f in bound)) and \
        finding.figures["share"] >= 25
    # the figures are Vela's: its bytes read from off-chip flash and its weight totals
    assert (finding.figures["traffic"], finding.figures["encoded_weights"], finding.figures["original_weights"]) \
        == (result.off_chip_flash_traffic, result.encoded_weights, result.original_weights)
    assert finding.evidence.startswith(f"each inference reads {result.off_chip_flash_traffic:,} bytes from off-chip "
                                       f"flash ({result.off_chip_flash_traffic / result.encoded_weights:.2f}x the "
                                       f"encoded weights)")
    assert finding.name == f"{len(bound)} layer(s) bound by off-chip flash traffic"
    dram = estimator.estimate(model_dir / "wider.tflite", resolve([{"accelerator": "ethos-u65-256",
                                                                    "system_config": "Ethos_U65_High_End",
                                                                    "memory_mode": "Dedicated_Sram"}],
                                                                  estimator.rootdir))
    assert dram.off_chip_flash_traffic == 0
    assert not [f for f in dram.advice() if f.kind == "weight_traffic"]
