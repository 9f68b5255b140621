"""The HTML report, the merge of sharded JSON reports, Mermaid and pytest-html extras.

Every document here comes from real sessions: an inner project whose tests run the real Vela
(one estimate regresses because a layer got wider), split into three shards and run whole, and
a copy of the repository's own ``examples/`` session (the 90- vs 96-channel experiment).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import markupsafe
import pytest

from pytest_ethosu import html_report, merge
from pytest_ethosu.__main__ import main
from tests.models import write_models
from tests.shared import shared_directory

REPO = Path(__file__).resolve().parent.parent
SHARDS = {
    "test_a.py": """
def test_net(ethosu_perf):
    ethosu_perf("models/current.tflite")
""",
    "test_b.py": """
def test_targets(ethosu_perf):
    ethosu_perf("models/base.tflite", accelerator="ethos-u55-128", name="u55")
    ethosu_perf("models/base.tflite", accelerator="ethos-u65-256", name="u65")
""",
    "test_c.py": """
import pytest

@pytest.mark.parametrize("variant", ["extra", "cpu"])
def test_plain(ethosu_perf, variant):
    ethosu_perf.estimate(f"models/{variant}.tflite", accelerator="ethos-u55-256")
""",
}


WIDTH = 150  # the inner sessions' terminal width (pytest and the merge command read $COLUMNS)


def run_session(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GITHUB_"))}
    env["COLUMNS"] = str(WIDTH)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=600, check=False)


def make_sessions(root: Path) -> None:
    """One project in ``root``, run whole and as three shards (one test file each), each run
    writing its JSON report into ``root`` (``reports`` names them).

    ``test_net``'s model got wider after its baseline was made, so it regresses."""
    (root / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    models = write_models(root / "models")
    (root / "tests").mkdir()
    for name, source in SHARDS.items():
        (root / "tests" / name).write_text(source)
    shutil.copy(models["base.tflite"], root / "models" / "current.tflite")
    made = run_session(root, "--ethosu-update")
    assert made.returncode == 0, made.stdout + made.stderr
    shutil.copy(models["wider.tflite"], root / "models" / "current.tflite")
    paths = reports(root)
    whole = run_session(root, f"--ethosu-json={paths['all']}")
    assert whole.returncode == 1 and "REGRESSED" in whole.stdout, whole.stdout + whole.stderr
    paths["all.out"].write_text(whole.stdout)
    for number, name in enumerate(SHARDS):
        run_session(root, f"tests/{name}", f"--ethosu-json={paths[f'shard{number}']}")


def reports(root: Path) -> dict[str, Path]:
    return {"all": root / "all.json", "all.out": root / "all.out",
            **{f"shard{number}": root / f"shard-{number}.json" for number in range(len(SHARDS))}}


@pytest.fixture(scope="session")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """JSON reports of one project (``make_sessions``), made once per test run: under xdist,
    by one worker for all (``shared_directory``)."""
    return reports(shared_directory(tmp_path_factory, "html-sessions", make_sessions))


@pytest.fixture(scope="module")
def example_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples/ session's JSON report (90 vs 96 channels on an Ethos-U65-256)."""
    project = tmp_path_factory.mktemp("example") / "examples"
    shutil.copytree(REPO / "examples", project,  # a copy: the session writes beside its baselines
                    ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__", "pytorch"))
    path = project.parent / "example.json"
    result = run_session(project, f"--ethosu-json={path}")
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def terminal_summary(output: str) -> list[str]:
    """The lines of a session's "ethosu performance summary" section."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "ethosu performance summary" in line) + 1
    end = next((i for i in range(start, len(lines))
                if lines[i].startswith("====") or " generated ethosu " in lines[i]), len(lines))
    return lines[start:end]


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


# ---------------------------------------------------------------------------------------------
# The charts carry the JSON report's numbers.

def test_chart_data_equals_the_json_report(sessions: dict[str, Path]) -> None:
    document = load(sessions["all"])
    page = html_report.render(document)
    data = html_report.embedded_data(page)
    assert len(data["estimates"]) == len(document["estimates"]) == 5
    for number, entry in enumerate(document["estimates"]):
        series = data["estimates"][f"e{number}"]
        layers = entry["layers"]
        assert series["index"] == [layer["index"] for layer in layers]
        assert series["op"] == [layer["op"] for layer in layers]
        assert series["name"] == [layer["name"] for layer in layers]
        assert series["cycles"] == [layer["cycles"] for layer in layers]
        assert series["npu"] == [layer["npu_cycles"] for layer in layers]
        assert series["macs"] == [layer["macs"] for layer in layers]
        for key, field, _text in html_report.AREAS:
            values = [layer[field] for layer in layers]
            assert series.get(key, [0] * len(layers)) == values
        for util, layer in zip(series["util"], layers, strict=True):
            if layer["macs"]:
                assert util == pytest.approx(layer["mac_utilization"], abs=5e-4)
            else:
                assert util is None
        assert series["total"] == entry["totals"]["total_cycles"]
        assert sum(series["cycles"]) == pytest.approx(entry["totals"]["total_cycles"], rel=0.02)
        comparison = entry["comparison"]
        assert series["has_baseline"] == (comparison is not None)
        if comparison:
            by_index = {d["layer"]: d["baseline_cycles"] for d in comparison["layer_deltas"] if d["layer"] is not None}
            assert series["baseline"] == [by_index.get(layer["index"]) for layer in layers]
            slower = {c["layer"] for c in comparison["changes"] if c["layer"] is not None
                      and c["kind"] in ("regressed", "to_cpu")}
            assert {layers[i]["index"] for i, m in enumerate(series["moved"]) if m == 1} == slower
        pinned = {layers[int(i)]["index"] for i in series["findings"]}
        assert pinned == {f["layer"] for f in entry["findings"] if f["layer"] is not None}
        # the overview row shows the same totals
        assert f"{entry['totals']['total_cycles']:,.0f}" in page


def test_regression_comes_first_with_its_layer(sessions: dict[str, Path]) -> None:
    document = load(sessions["all"])
    entries = html_report.ordered(html_report.records(document))
    assert entries[0].record.status.value == "regressed"
    assert entries[0].record.test.endswith("test_a.py::test_net")
    page = html_report.render(document)
    first_card = page.index('<details class="estimate')
    assert page.index("est-regressed", first_card) < page.index("est-ok", first_card)
    assert page.index('id="regressions"') < page.index('id="overview"')
    moved = [c for c in html_report.layer_changes(entries[0].record) if c["kind"] == "regressed"]
    assert moved and 'data-layer="{}"'.format(moved[0]["layer"]) in page


def test_cpu_fallback_is_never_plain_ok(sessions: dict[str, Path]) -> None:
    """The estimate with an operator on the CPU comes right after the regression (before the
    estimates without), with a badge saying how many of its operators the CPU runs."""
    document = load(sessions["all"])
    entries = html_report.ordered(html_report.records(document))
    ranks = [("regressed" if e.record.status.value == "regressed" else "cpu" if e.record.cpu_ops else "rest")
             for e in entries]
    assert ranks == sorted(ranks, key=["regressed", "cpu", "rest"].index) and ranks.count("cpu") == 1
    cpu = next(e for e in entries if e.record.cpu_ops)
    page = html_report.render(document)
    card = page[page.index(f'id="{cpu.id}"'):page.index(f'id="{cpu.id}"') + 900]
    assert f'<span class="badge st-CPU">1 of {1 + cpu.record.npu_ops} operators on the CPU</span>' in card
    assert page.count('<span class="badge st-CPU">1 on CPU</span>') == 1  # its overview row


def test_side_by_side_groups(sessions: dict[str, Path]) -> None:
    document = load(sessions["all"])
    groups = html_report.groups(html_report.ordered(html_report.records(document)))
    accelerators = [g for g in groups if g["title"].startswith("base.tflite on 2 accelerators")]
    assert accelerators and sorted(accelerators[0]["heads"]) == ["ethos-u55-128", "ethos-u65-256"]


def test_rendering_refuses_other_schema(sessions: dict[str, Path]) -> None:
    document = load(sessions["all"])
    document["schema"] = 2
    with pytest.raises(html_report.HtmlReportError, match="schema 2"):
        html_report.render(document)


def test_page_is_self_contained(sessions: dict[str, Path]) -> None:
    """Nothing is loaded from elsewhere: no external scripts, styles, images or frames."""
    page = html_report.render(load(sessions["all"]))
    for tag in ("<script src", "<link", "<img", "<iframe", "@import"):
        assert tag not in page
    assert page.count("<script") == 3  # the data, Chart.js, the page's script


def test_large_network_stays_small() -> None:
    """A synthetic 1,306-layer estimate (the size of the LSTM in issue 15) renders into a small page."""
    document = synthetic_document(layers=1306, estimates=1)
    page = html_report.render(document)
    assert len(page.encode()) < 1_000_000
    assert len(html_report.embedded_data(page)["estimates"]["e0"]["cycles"]) == 1306


def synthetic_document(layers: int, estimates: int) -> dict[str, Any]:
    """A schema-1 document of the given size, made from the shape of a real entry."""
    entry_layers: list[dict[str, Any]] = [{"cycles": 1000 + 37 * i % 5000, "dram_access_cycles": 17 * i % 900, "index": i,
                     "mac_utilization": (i * 7.3) % 100, "macs": 0 if i % 4 == 3 else 1000 * i,
                     "name": f"model/lstm/while/cell_{i // 4}/layer_{i}/MatMul;model/lstm/while/add_{i}",
                     "npu_cycles": 800 + 29 * i % 4000, "npu_op": "FullyConnected",
                     "off_chip_flash_access_cycles": 0, "on_chip_flash_access_cycles": 0, "op": "FullyConnected",
                     "placement": "NPU", "sram_access_cycles": 13 * i % 1200, "staging_usage": 4096}
                    for i in range(layers)]
    total = sum(int(layer["cycles"]) for layer in entry_layers)
    totals = {"cpu_ops": 0, "dram_access_cycles": 1, "dram_used": 1, "macs": 1, "npu_cycles": total,
              "npu_ops": layers, "off_chip_flash_access_cycles": 0, "on_chip_flash_access_cycles": 0,
              "sram_access_cycles": 1, "sram_used": 100_000, "total_cycles": total}
    deltas = [{"baseline_layer": i, "layer": i, "baseline_cycles": layer["cycles"], "cycles": layer["cycles"]}
              for i, layer in enumerate(entry_layers)]
    entries = []
    for number in range(estimates):
        entries.append({
            "test": f"tests/test_zoo.py::test_model[{number:03d}]", "name": "", "model": f"models/m{number}.tflite",
            "model_sha256": f"{number:064x}", "accelerator": "ethos-u55-128", "status": "ok",
            "baseline": f"baselines/m{number}.json", "inference_ms": total / 1e6 * 2, "mac_utilization": 40.0,
            "target": {"accelerator": "ethos-u55-128", "system_config": "Ethos_U55_High_End_Embedded",
                       "memory_mode": "Shared_Sram"},
            "estimator": {"core": "regor", "vela_version": "5.2.0"}, "totals": totals, "layers": entry_layers,
            "comparison": {"status": "ok", "drift": [], "model_changed": False, "changes": [], "layer_deltas": deltas},
            "findings": [],
        })
    return {"schema": 1, "vela_version": "5.2.0", "estimates": entries}


# ---------------------------------------------------------------------------------------------
# Merging shards.

def test_three_shards_merge_to_the_unsplit_session(sessions: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    shards = [sessions[f"shard{n}"] for n in range(3)]
    whole = load(sessions["all"])
    merged = merge.merge_files(list(reversed(shards)))  # the order of the inputs does not matter
    assert merged == whole
    assert merge.dumps(merged) == sessions["all"].read_text()
    # the merged summary is the unsplit session's, printed by the same code; only the line that
    # counts Vela runs differs (the JSON does not record them)
    summary = merge.summary_lines(merged["estimates"], width=WIDTH)
    session = terminal_summary(sessions["all.out"].read_text())
    assert summary[:-1] == session[:-1] and any("REGRESSED" in line for line in summary)
    assert summary[-1] == "ethosu: 5 estimate(s)" and session[-1].startswith("ethosu: 5 estimate(s); Vela ran")

    out, page, notes = tmp_path / "merged.json", tmp_path / "merged.html", tmp_path / "summary.md"
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    assert main(["merge", *map(str, shards), "-o", str(out), "--html", str(page), "--markdown", str(notes)]) == 0
    assert out.read_text() == sessions["all"].read_text()
    printed = capsys.readouterr().out
    assert "\n".join(session[:-1]) in printed
    assert html_report.embedded_data(page.read_text()) == html_report.embedded_data(html_report.render(whole))
    markdown = notes.read_text()
    assert "| test" in markdown and "```mermaid\nxychart-beta" in markdown


@pytest.mark.parametrize("case", ["duplicate", "schema", "vela"])
def test_merge_refuses_disagreeing_inputs(sessions: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], case: str) -> None:
    first = load(sessions["shard0"])
    other = copy.deepcopy(first) if case == "duplicate" else load(sessions["shard1"])
    if case == "schema":
        other["schema"] = 2
    if case == "vela":
        other["vela_version"] = "4.1.0"
    a, b = tmp_path / "shard-a.json", tmp_path / "shard-b.json"
    a.write_text(json.dumps(first))
    b.write_text(json.dumps(other))
    out = tmp_path / "merged.json"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert str(a) in error and str(b) in error
    assert {"duplicate": "test_net", "schema": "schema", "vela": "Vela versions"}[case] in error
    assert not out.exists()


def test_merge_refuses_what_is_not_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "junit.json"
    bad.write_text("[1, 2]")
    assert main(["merge", str(bad), str(tmp_path / "missing.json")]) == 2
    assert str(bad) in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Mermaid and pytest-html.

def test_mermaid_chart_of_the_moved_layers(sessions: dict[str, Path]) -> None:
    document = load(sessions["all"])
    regressed = html_report.ordered(html_report.records(document))[0]
    chart = html_report.mermaid_chart(regressed.record)
    lines = chart.splitlines()
    assert lines[0] == "```mermaid" and lines[1] == "xychart-beta" and lines[-1] == "```"
    bars = [int(v) for v in next(line for line in lines if line.strip().startswith("bar ["))
            .split("[", 1)[1].rstrip("]").split(", ")]
    baseline = [int(v) for v in next(line for line in lines if line.strip().startswith("line ["))
                .split("[", 1)[1].rstrip("]").split(", ")]
    assert len(bars) == len(baseline) <= html_report.MERMAID_LAYERS
    assert regressed.detail.comparison is not None
    moved = {layer: (float(old), float(now)) for _old_layer, layer, old, now in regressed.detail.comparison.layer_deltas
             if layer is not None and old is not None and now is not None and now != old}
    worst = max(moved, key=lambda i: abs(moved[i][1] - moved[i][0]))
    assert round(moved[worst][1]) in bars and round(moved[worst][0]) in baseline
    unchanged = [r for r in html_report.records(document) if r.status.value == "ok"]
    assert html_report.mermaid_chart(unchanged[0]) == ""


def test_extras_for_pytest_html(sessions: dict[str, Path]) -> None:
    pytest.importorskip("pytest_html")
    document = load(sessions["all"])
    extras = html_report.extras_for_pytest_html(html_report.records(document)[:2])
    assert [e["format_type"] for e in extras] == ["html", "html"]
    assert all("<svg" in e["content"] and "<script" not in e["content"] for e in extras)
    regressed = html_report.extras_for_pytest_html([html_report.ordered(html_report.records(document))[0].record])[0][
        "content"]
    assert 'stroke="#d62728"' in regressed  # the moved layers are outlined


# ---------------------------------------------------------------------------------------------
# As a person sees it: a real headless Chromium.

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


#: the narrowest window the report is laid out for: the page never scrolls sideways in it
WINDOW = 1280


def open_in_browser(page_file: Path, screenshot: Path, full_page: bool = True, height: int = 1000) -> dict[str, Any]:
    """Load the page from file://, fail on any console error or page error, keep a screenshot,
    and return what the DOM shows."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, viewport={"width": WINDOW, "height": height})
        try:
            page = context.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            seen = page.evaluate("""() => ({
                first: document.querySelector('details.estimate').id,
                firstOpen: document.querySelector('details.estimate').open,
                firstClass: document.querySelector('details.estimate').className,
                regressions: !!document.getElementById('regressions'),
                movedRows: Array.from(document.querySelectorAll('details.estimate')[0]
                    .querySelectorAll('table.layers tr.moved-up')).map(r => r.id),
                redTicks: Object.keys(window.ethosuReport.charts).length,
                canvasWidth: document.querySelector('canvas.layer-chart').width,
                differTop: Array.from(document.querySelectorAll('.differ tr.top td')).map(td => td.textContent),
                findingRows: Array.from(document.querySelectorAll('table.layers tr.finding')).map(r => r.id),
                pageWidth: document.documentElement.scrollWidth,
                clientWidth: document.documentElement.clientWidth,
            })""")
            page.screenshot(path=str(screenshot), full_page=full_page)
        finally:
            context.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:", "about:")) for url in requests), requests
    # at the narrowest window only the wide tables scroll, inside their boxes; the page does not
    assert seen["pageWidth"] <= seen["clientWidth"] <= WINDOW, seen
    result: dict[str, Any] = seen
    return result


def test_regression_page_in_a_browser(sessions: dict[str, Path], tmp_path: Path) -> None:
    document = load(sessions["all"])
    page_file = tmp_path / "report.html"
    page_file.write_text(html_report.render(document))
    seen = open_in_browser(page_file, tmp_path / "regression.png")
    assert seen["regressions"] and seen["firstOpen"] and "est-regressed" in seen["firstClass"]
    entries = html_report.ordered(html_report.records(document))
    assert entries[0].detail.comparison is not None
    slower = sorted({c.layer for c in entries[0].detail.comparison.changes
                     if c.layer is not None and c.kind == "regressed"})
    assert slower and sorted(int(r.rsplit("-l", 1)[1]) for r in seen["movedRows"]) == slower
    assert seen["canvasWidth"] > 300
    assert (tmp_path / "regression.png").stat().st_size > 10_000


def test_example_page_in_a_browser(example_report: Path, tmp_path: Path) -> None:
    """The seed's experiment: the third convolution (layer 4) leads the side-by-side comparison,
    and the advisor's channel-padding finding is pinned to it."""
    document = load(example_report)
    page_file = tmp_path / "example.html"
    page_file.write_text(html_report.render(document))
    screenshot = tmp_path / "html-report.png"
    seen = open_in_browser(page_file, screenshot, full_page=False, height=1150)
    third = next(layer for layer in document["estimates"][0]["layers"] if layer["op"] == "Conv2D"
                 and layer["macs"] and layer["index"] > 2)
    assert seen["differTop"][:2] == [str(third["index"]), "Conv2D"]
    assert f"{third['cycles']:,}" in seen["differTop"]
    assert f"e0-l{third['index']}" in seen["findingRows"]
    if os.environ.get("ETHOSU_SCREENSHOT"):  # refresh the README's picture: ETHOSU_SCREENSHOT=docs/html-report.png
        shutil.copy(screenshot, REPO / os.environ["ETHOSU_SCREENSHOT"])


def test_findings_that_suggest_the_same_are_one_item(sessions: dict[str, Path]) -> None:
    """As the terminal groups them: one item per kind and suggestion, each layer's evidence in it."""
    document = load(sessions["all"])
    records = html_report.records(document)
    for record in records:
        groups = html_report.finding_groups(record.advice)
        assert len(groups) == len({(f.kind, f.suggestion) for f in record.advice})
        assert [f for g in groups for f in g["members"]] == sorted(
            (f.to_dict() for f in record.advice), key=lambda f: [(g["kind"], g["suggestion"]) for g in groups].index(
                (f["kind"], f["suggestion"])))
    shared = [(r, g) for r in records for g in html_report.finding_groups(r.advice) if len(g["members"]) > 1]
    assert shared, "the sessions' models have no two findings that suggest the same"
    page = html_report.render(document)
    record, group = shared[0]
    assert f"<b>{group['kind'].replace('_', ' ')}</b> ({len(group['members'])}):" in page
    assert all(str(markupsafe.escape(f["evidence"])) in page for f in group["members"])  # as the page escapes it
