"""The end-of-session outputs: summary table, JSON report, Markdown, GitHub annotations."""

from __future__ import annotations

import json

import pytest

EIGHT = """
import pytest

@pytest.mark.ethosu(accelerators=["ethos-u55-128", "ethos-u65-256"])
@pytest.mark.parametrize("model", ["base", "wider", "extra", "cpu"])
def test_m(ethosu_perf, model):
    ethosu_perf(f"models/{model}.tflite")
"""


def summary_table(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "ethosu performance summary" in line)
    end = next(i for i in range(start + 1, len(lines))
               if not lines[i] or lines[i].startswith(("ethosu:", "advice for", "note:")))
    return lines[start + 1:end]


@pytest.fixture
def eight(project: pytest.Pytester) -> pytest.Pytester:
    project.makepyfile(test_m=EIGHT)
    project.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=8)
    return project


def test_eight_estimates_once_each_with_and_without_xdist(eight: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    step_summary = eight.path / "step_summary.md"
    step_summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    parallel = eight.runpytest("-n", "2", "--ethosu-json=report.json")
    parallel.assert_outcomes(passed=8)
    table = summary_table(parallel.stdout.str())
    assert len(table) == 2 + 8  # header, rule, one row per estimate
    assert sum("1/1" in row or "/1 " in row for row in table) == 2  # the CPU-fallback model, twice

    report = json.loads((eight.path / "report.json").read_text())
    assert report["schema"] == 1 and len(report["estimates"]) == 8
    assert len({(e["test"], e["name"]) for e in report["estimates"]}) == 8
    for entry in report["estimates"]:
        stored = json.loads((eight.path / entry["baseline"]).read_text())
        assert entry["layers"] == stored["layers"] and entry["totals"] == stored["totals"]
        assert entry["estimator"] == stored["estimator"]
        assert entry["comparison"]["status"] == "ok" and entry["comparison"]["layer_deltas"]

    markdown = step_summary.read_text()
    assert markdown.startswith("# earlier step\n## Ethos-U performance (pytest-ethosu)")
    assert sum(line.startswith("| test_m[") for line in markdown.splitlines()) == 8

    serial = eight.runpytest("-p", "no:xdist")
    assert summary_table(serial.stdout.str()) == table  # same rows, same order


def test_json_of_a_regression_and_github_annotation(eight: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    (eight.path / "models" / "base.tflite").write_bytes((eight.path / "models" / "wider.tflite").read_bytes())
    result = eight.runpytest("-p", "no:xdist", "-k", "base and u55", "--ethosu-json=out/r.json",
                             "--ethosu-markdown=summary.md")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["::error file=test_m.py,line=6,title=Ethos-U regression%3A models/base.tflite "
                                 "on ethos-u55-128::test_m.py::test_m*network total_cycles +*"])
    entry = json.loads((eight.path / "out" / "r.json").read_text())["estimates"][0]
    assert entry["status"] == "regressed"
    kinds = {c["kind"] for c in entry["comparison"]["changes"]}
    assert "regressed" in kinds
    assert "**Regressions**" in (eight.path / "summary.md").read_text()


def test_plain_estimates_are_rows_too(project: pytest.Pytester) -> None:
    project.makepyfile(test_plain="""
        def test_plain(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite", accelerator="ethos-u85-512")
    """)
    result = project.runpytest("-p", "no:xdist", "--ethosu-json=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_plain *base.tflite*ethos-u85-512*no baseline"])
    entry = json.loads((project.path / "r.json").read_text())["estimates"][0]
    assert entry["name"] == "" and entry["baseline"] is None and entry["comparison"] is None


def test_header_names_vela_and_core(project: pytest.Pytester) -> None:
    project.makepyfile(test_x="def test_x(): pass")
    result = project.runpytest("-p", "no:xdist", "--ethosu-vela-args=--debug-force-legacy-core",
                               "--ethosu-accelerator", "ethos-u65-512")
    result.stdout.fnmatch_lines(["ethosu: Vela * (legacy core), target accelerator=ethos-u65-512*"])
    assert "ethosu performance summary" not in result.stdout.str()  # no estimates, no summary
