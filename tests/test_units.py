"""Properties of the pure parts: baseline names, the file format, layer matching."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_ethosu import BaselineError, baseline
from pytest_ethosu.baseline import Identity
from pytest_ethosu.compare import drift, match_layers
from pytest_ethosu.result import TOTAL_METRICS, Layer
from pytest_ethosu.vela import LAYER_NUMBERS, Placement

ids = st.text(min_size=1, max_size=300)


@settings(max_examples=300, deadline=None)
@given(ids)
def test_safe_component_never_escapes(name: str) -> None:
    part = baseline.safe_component(name)
    assert part and "/" not in part and "\\" not in part and "\x00" not in part
    assert part not in (".", "..") and len(part.encode()) <= 100
    root = Path("/base")
    assert root in (root / part).parents


@settings(max_examples=300, deadline=None)
@given(ids, ids)
def test_distinct_names_get_distinct_files(a: str, b: str) -> None:
    if a != b:
        assert baseline.safe_component(a) != baseline.safe_component(b)


@settings(max_examples=300, deadline=None)
@given(ids)
def test_a_hashed_name_is_never_a_kept_one(name: str) -> None:
    """A name that is hashed never equals another name kept as it is: the hashed form itself,
    given as a name, is hashed again (case-folded too, for case-insensitive filesystems)."""
    for keep_case in (False, True):
        part = baseline.safe_component(name, keep_case)
        if part != name:
            assert baseline.safe_component(part, keep_case) != part
            assert baseline.safe_component(part.lower(), keep_case) != part.lower()


@pytest.mark.parametrize("name", ["fast run", "aux", ".x", "x.json", "x" * 81, "A"])
def test_names_like_a_hashed_form_get_their_own_file(name: str) -> None:
    hashed = baseline.safe_component(name)
    assert hashed != name
    assert baseline.safe_component(hashed) != hashed


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=5))
def test_document_text_is_stable(data: dict[str, object]) -> None:
    text = baseline.dumps({"schema": 1, **data})
    assert text.endswith("\n") and baseline.dumps(json.loads(text)) == text


def test_hostile_parametrize_ids(tmp_path: Path) -> None:
    for nodeid in ["t.py::test[../../etc]", "t.py::test[a/b]", "t.py::test[\x00]", "t.py::test[" + "x" * 500 + "]",
                   "t.py::test[ünï]"]:
        path = baseline.baseline_path(tmp_path, nodeid, "default")
        assert tmp_path in path.parents
        written = baseline.from_json(_valid_baseline() | {"test": nodeid}, nodeid)
        baseline.write(path, written)
        assert baseline.load(path) == written


def test_inserted_layer_is_added_not_a_cascade() -> None:
    def layer(op: str, name: str) -> Layer:
        zero: dict[str, Any] = dict.fromkeys(LAYER_NUMBERS, 0)
        return Layer(op=op, npu_op=op, placement=Placement.NPU, name=name, index=0, **zero)

    base = [layer("Conv2D", "a"), layer("Conv2D", "b"), layer("Pool", "c")]
    now = [layer("Conv2D", "a"), layer("Conv2D", "x"), layer("Conv2D", "b"), layer("Pool", "c")]
    pairs = match_layers(base, now)
    assert [(o and o.name, n and n.name) for o, n in pairs] == [("a", "a"), (None, "x"), ("b", "b"),
                                                                      ("c", "c")]


numbers = st.integers(min_value=0, max_value=10**12) | st.floats(min_value=0, max_value=1e12, allow_nan=False)
layer = st.fixed_dictionaries({
    "index": st.integers(0, 10_000), "name": st.text(max_size=40), "op": st.sampled_from(["Conv2D", "Add"]),
    "npu_op": st.text(max_size=10), "placement": st.sampled_from(["NPU", "CPU"]), "cycles": numbers,
    "npu_cycles": numbers, "sram_access_cycles": numbers, "dram_access_cycles": numbers,
    "on_chip_flash_access_cycles": numbers, "off_chip_flash_access_cycles": numbers,
    "macs": st.integers(0, 10**12), "mac_utilization": st.floats(0, 100), "staging_usage": st.integers(0, 10**9)})
document = st.fixed_dictionaries({
    "schema": st.just(1), "test": st.text(max_size=60), "name": st.text(max_size=20),
    "model": st.fixed_dictionaries({"path": st.text(max_size=30), "sha256": st.text("0123456789abcdef", min_size=64,
                                                                                  max_size=64)}),
    "estimator": st.fixed_dictionaries({"vela_version": st.text(max_size=8), "core": st.sampled_from(["regor", "legacy"]),
                                        "target": st.fixed_dictionaries({
                                            "accelerator": st.text(max_size=16), "system_config": st.none() | st.text(),
                                            "memory_mode": st.none() | st.text(), "config_files": st.lists(st.text()),
                                            "core_clock": st.none() | st.integers(1, 10**10),
                                            "vela_args": st.lists(st.text(max_size=20))})}),
    "totals": st.fixed_dictionaries({name: st.integers(0, 100) if name.endswith("_ops") else numbers
                                     for name in TOTAL_METRICS}),
    "layers": st.lists(layer, max_size=5)})


@settings(max_examples=150, deadline=None)
@given(document)
def test_baseline_round_trip(doc: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sub" / "b.json"
        assert baseline.write(path, baseline.from_json(doc, path)) is True
        first = path.read_bytes()
        assert baseline.load(path).to_json() == doc
        assert baseline.write(path, baseline.load(path)) is False  # unchanged content is not rewritten
        assert path.read_bytes() == first
        assert [p.name for p in path.parent.iterdir()] == ["b.json"]


_LAYER = json.dumps({"index": 0, "name": "l", "op": "Conv2D", "npu_op": "Conv2D", "placement": "NPU", "cycles": 9,
                     **dict.fromkeys(["npu_cycles", "sram_access_cycles", "dram_access_cycles", "macs",
                                      "on_chip_flash_access_cycles", "off_chip_flash_access_cycles",
                                      "mac_utilization", "staging_usage"], 1)})


def _valid_baseline() -> dict[str, object]:
    return {"schema": 1, "test": "t.py::test_a", "name": "default",
            "model": {"path": "m.tflite", "sha256": "0" * 64},
            "estimator": {"vela_version": "5.2.0", "core": "regor", "target": {}},
            "totals": dict.fromkeys(TOTAL_METRICS, 0), "layers": []}


def test_json_no_parser_reads_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Deep nesting and numbers of more digits than Python reads: a BaselineError (or a merge
    error) naming the file, never a RecursionError; a file no test reads is not a baseline."""
    from pytest_ethosu import merge

    deep, digits = tmp_path / "deep.json", tmp_path / "digits.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    digits.write_text(json.dumps(_valid_baseline()).replace('"total_cycles": 0', '"total_cycles": ' + "9" * 5000))
    for path, says in ((deep, "nested too deeply"), (digits, "digits")):
        with pytest.raises(BaselineError) as raised:
            baseline.load(path)
        assert str(path) in str(raised.value) and says in str(raised.value), raised.value
        assert not baseline.is_baseline(path)
        with pytest.raises(merge.MergeError, match=str(path)):
            merge.load(path)


@pytest.mark.parametrize(("edit", "says"), [
    (lambda text: text.replace('"schema": 1', '"schema": true'), "no schema version"),
    (lambda text: text.replace('"estimator": {', '"estimator": "5.2.0", "_": {'), "estimator is '5.2.0', not an object"),
    (lambda text: text.replace('"core": "regor"', '"core": 5'), "estimator.core is 5, not text"),
    (lambda text: text.replace('"model": {', '"model": ["m.tflite"], "_m": {'), "model is ['m.tflite'], not an object"),
    (lambda text: text.replace('"name": "default"', '"name": "default", "name": "fast"'), "has the key 'name' twice"),
    (lambda text: text.replace('"vela_version": "5.2.0"', '"vela_version": "5.2.0", "vela_version": "5.1.0"'),
     "has the key 'vela_version' twice"),
    (lambda text: text.replace('"test": "t.py::test_a"', '"test": 3'), "test is 3, not text"),
    (lambda text: text.replace('"test": "t.py::test_a", ', ''), "lacks test"),
    (lambda text: text.replace('"sha256": "' + "0" * 64 + '"', '"sha": 1'), "lacks model.sha256"),
    (lambda text: text.replace('"core": "regor", "target": {}', '"target": {}'), "lacks estimator.core"),
    (lambda text: text.replace('"estimator": {"vela_version": "5.2.0", "core": "regor", "target": {}}',
                               '"estimator": {}'), "lacks estimator.vela_version"),
    (lambda text: text.replace('"target": {}', '"target": {"accelerator": 5}'), "estimator.target.accelerator is 5"),
    (lambda text: text.replace('"target": {}', '"target": {"config_files": "Arm/vela.ini"}'),
     "estimator.target.config_files is 'Arm/vela.ini', not a list of text"),
    (lambda text: text.replace('"target": {}', '"target": {"vela_args": [3]}'), "vela_args is [3], not a list"),
    (lambda text: text.replace('"target": {}', '"target": {"core_clock": "fast"}'),
     "estimator.target.core_clock is 'fast', not a number or null"),
    (lambda text: text.replace('"target": {}', '"target": {"memory_mode": false}'), "memory_mode is False, not text"),
    (lambda text: text.replace('"total_cycles": 0', '"total_cycles": -1'), "totals.total_cycles is -1, not a finite"),
    (lambda text: text.replace('"cpu_ops": 0', '"cpu_ops": 0.5'), "totals.cpu_ops is 0.5, not a whole number"),
    (lambda text: text.replace('"layers": []', '"layers": [' + _LAYER.replace('"NPU"', '"GPU"') + ']'),
     "layers[0].placement is 'GPU', not one of NPU, CPU"),
    (lambda text: text.replace('"layers": []', '"layers": [' + _LAYER.replace('"index": 0', '"index": 1.5') + ']'),
     "layers[0].index is 1.5, not a whole number"),
    (lambda text: text.replace('"layers": []', '"layers": [' + _LAYER.replace('"cycles": 9', '"cycles": -9') + ']'),
     "layers[0].cycles is -9, not a finite number of zero or more"),
])
def test_a_malformed_baseline_is_refused_naming_the_file(tmp_path: Path, edit: object, says: str) -> None:
    path = tmp_path / "b.json"
    text = json.dumps(_valid_baseline())
    assert callable(edit)
    path.write_text(edit(text))
    assert path.read_text() != text
    with pytest.raises(BaselineError) as raised:
        baseline.load(path)
    assert str(path) in str(raised.value) and says in str(raised.value), raised.value
    assert "pytest --ethosu-update" in str(raised.value)
    path.write_text(text)
    assert baseline.load(path).to_json() == _valid_baseline()
    with_layer = text.replace('"layers": []', '"layers": [' + _LAYER + ']')
    path.write_text(with_layer)
    assert baseline.load(path).to_json()["layers"] == [json.loads(_LAYER)]


def test_advice_lines_cut_memory_bound_unless_full() -> None:
    from pytest_ethosu.gate import Status
    from pytest_ethosu.record import Record
    from pytest_ethosu.report import advice_lines
    from pytest_ethosu.result import Finding

    def finding(kind: str, layer: int, share: float) -> Finding:
        return Finding(kind, layer, f"l{layer}", "Conv2D", "e", "s", {"share": share})

    advice = [finding("memory_bound", i, share) for i, share in enumerate([5, 30, 1, 20, 10])]
    advice += [finding("hot_spot", 1, 30), finding("cpu_fallback", 9, 0)]
    record = Record(test="t.py::t", file="t.py", line=1, name="", model="m.tflite", model_sha256="0" * 64,
                    accelerator="ethos-u55-128", system_config=None, memory_mode=None, vela_version="5.2.0",
                    core="regor", total_cycles=1, inference_ms=0.1, mac_utilization=0.0, npu_ops=1, cpu_ops=0,
                    sram_used=0, status=Status.UNCHECKED, delta_percent=None, baseline=None, drift=(),
                    regressions=(), headline="", change="", advice=tuple(advice), top_layers=(), source="vela",
                    detail=None)
    short = "\n".join(advice_lines([record], full=False, width=80))
    assert [f"layer {i} " in short for i in range(5)] == [False, True, False, True, True]
    assert "... and 2 more memory-bound layer(s)" in short and "hot spot" not in short and "cpu fallback" in short
    full = "\n".join(advice_lines([record], full=True, width=80))
    assert full.count("memory bound") == 5 and "hot spot" in full and "more memory-bound" not in full


def test_every_subpackage_is_shipped() -> None:
    """A non-editable install ships the packages pyproject.toml lists: each one with an __init__.py."""
    tomllib = pytest.importorskip("tomllib")
    repo = Path(__file__).resolve().parent.parent
    shipped = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "pytest_ethosu").rglob("__init__.py")}
    assert found <= shipped


def test_a_framework_release_change_is_drift_that_names_it() -> None:
    """A PyTorch baseline records the releases that lowered the model; another one is drift."""
    def estimator(frameworks: dict[str, str] | None) -> Identity:
        return Identity("5.2.0", "regor", {}, frameworks or {})

    then = estimator({"executorch": "1.5.0", "torch": "2.13.0", "tosa-tools": "1.0.0"})
    now = estimator({"executorch": "1.5.1", "torch": "2.13.0", "tosa-tools": "1.0.0"})
    assert drift(then, then) == [] and drift(estimator(None), estimator(None)) == []
    assert drift(then, now) == ["baseline made with executorch 1.5.0, now 1.5.1; lowering a PyTorch model changes "
                                "between releases"]
    assert [note.split(";")[0] for note in drift(estimator(None), now)] == [
        "baseline made with no recorded executorch release, now 1.5.1",
        "baseline made with no recorded torch release, now 2.13.0",
        "baseline made with no recorded tosa-tools release, now 1.0.0"]


_ROW = {"op": "Conv2D", "npu_op": "Conv2D", "placement": "CPU", "name": "net/conv", "staging_usage": 0, "cycles": 7,
        "npu_cycles": 5, "sram_access_cycles": 1, "dram_access_cycles": 0, "on_chip_flash_access_cycles": 0,
        "off_chip_flash_access_cycles": 2.5, "macs": 10, "mac_utilization": 1.5}


@settings(max_examples=100, deadline=None)
@given(layer)
def test_the_vela_boundary_hands_out_typed_rows(raw: dict[str, object]) -> None:
    """Vela's rows cross the worker boundary as ``vela.Row`` (placement an enum, the operator
    normalised) and reach the result's ``Layer`` with every figure as it was."""
    from pytest_ethosu.result import Layer
    from pytest_ethosu.vela import InvalidRun, Placement, Row

    fields = {k: v for k, v in raw.items() if k != "index"}
    row = Row.from_json(fields, "layer 3")
    assert row.placement is Placement(fields["placement"]) and row.to_json() == fields
    assert row.operator == str(fields["op"]).lower()
    as_layer = Layer.from_row(3, row).to_dict()
    assert as_layer == {**fields, "index": 3} and json.loads(json.dumps(as_layer)) == as_layer
    with pytest.raises(InvalidRun, match="layer 3 placement is 'GPU'"):
        Row.from_json({**fields, "placement": "GPU"}, "layer 3")
    with pytest.raises(InvalidRun, match="layer 3 has fields"):
        Row.from_json({**fields, "share": 1}, "layer 3")
    with pytest.raises(InvalidRun, match="layer 3 cycles is 'x'"):
        Row.from_json({**fields, "cycles": "x"}, "layer 3")


def test_a_cached_run_keeps_its_typed_rows() -> None:
    from pytest_ethosu.vela import InvalidRun, Placement, VelaRun

    totals = {"total_cycles": 7, "npu_cycles": 5, "sram_access_cycles": 1, "dram_access_cycles": 0,
              "on_chip_flash_access_cycles": 0, "off_chip_flash_access_cycles": 2.5, "macs": 10, "sram_used": 1,
              "dram_used": 0, "on_chip_flash_used": 0, "off_chip_flash_used": 3, "inference_time": 1e-6,
              "original_weights": 4, "encoded_weights": 3, "sram_traffic": 9, "dram_traffic": 0,
              "on_chip_flash_traffic": 0, "off_chip_flash_traffic": 3, "optimised_model_size": 100}
    data = {"core": "regor", "layers": [_ROW], "totals": totals, "system_config": "s", "memory_mode": "m",
            "core_clock": 5e8, "compiled_operators": ["ethos-u"], "npu_operator": "ethos-u", "rows_add_up": True,
            "cpu_reasons": [], "depth_granularity": 16, "facts": {"operators": ["CONV_2D"], "float_ops": 0,
                                                                  "convolutions": {}}}
    run = VelaRun.from_json(data)
    assert run.layers[0].placement is Placement.CPU and run.layers[0].name == "net/conv"
    assert VelaRun.from_json(json.loads(json.dumps(run.to_json()))) == run and run.to_json() == data
    with pytest.raises(InvalidRun, match="layer 0 placement"):
        VelaRun.from_json({**data, "layers": [{**_ROW, "placement": "DSP"}]})


@pytest.mark.parametrize(("text", "width", "shown"), [
    ("test_every_target[ethos-u55-128]", 26, "test_…arget[ethos-u55-128]"),
    ("test_channel_experiment [90ch]", 26, "test_chann…periment [90ch]"),
    ("test_short[a]", 26, "test_short[a]"),
    ("test_x[" + "p" * 40 + "]", 26, "test_x…" + "p" * 18 + "]"),  # the parameters alone do not fit
    ("test_dscnn_on_every_target[ethos-u55-128] [where]", 26, "test_dsc…-u55-128] [where]"),
    ("TestKws::test_a_rather_long_name", 24, "TestKws::tes…r_long_name"),
])
def test_summary_test_ids_keep_the_function_name_and_parameters(text: str, width: int, shown: str) -> None:
    from pytest_ethosu.report import shorten_test

    assert shorten_test(text, width) == shown and len(shown) <= width


@pytest.mark.parametrize(("text", "width", "shown"), [
    ("blocks.2.pw (kws_net.py:17) tosa_rescale_default_6", 30, "blocks.2.pw (kws_net.py:17) …"),
    ("blocks.2.pw (kws_net.py:17) tosa_rescale_default_6", 60, "blocks.2.pw (kws_net.py:17) tosa_rescale_default_6"),
    ("features.denseblock4.denselayer16.conv2 (densenet.py:123) tosa_conv2d_default_99", 40,
     "features.de…er16.conv2 (densenet.py:123)"),
    ("MobilenetV1/MobilenetV1/Conv2d_13_pointwise/Relu6", 30, "…tV1/Conv2d_13_pointwise/Relu6"),  # a TFLite path
])
def test_a_pytorch_layer_keeps_its_module_path_and_line_when_shortened(text: str, width: int, shown: str) -> None:
    from pytest_ethosu.report import shorten

    assert shorten(text, width) == shown and len(shown) <= width
