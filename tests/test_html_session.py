"""The HTML report, pytest-html extras, Markdown charts and hook-added record keys, wired into
real inner sessions (serial and under xdist).

One project: ``test_net`` checks ``models/current.tflite`` (made wider after its baseline, so
it regresses) and a second model; ``test_plain`` makes a plain estimate.  The conftest adds a
figure to each record (``pytest_ethosu_result``) and shows it as a column (``pytest_ethosu_summary_row``).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from pytest_ethosu import html_report, merge
from pytest_ethosu.report import record_from_entry
from tests.models import use
from tests.test_html import WIDTH, terminal_summary

TESTS = """
def test_net(ethosu_perf):
    ethosu_perf("models/base.tflite", accelerator="ethos-u65-256", name="u65")
    ethosu_perf("models/current.tflite", accelerator="ethos-u55-128", name="u55")  # regresses


def test_plain(ethosu_perf):
    ethosu_perf.estimate("models/extra.tflite", accelerator="ethos-u55-256")
"""

CONFTEST = """
def pytest_ethosu_result(item, name, result, record):
    record["first_layer"] = {"cycles": result.layers[0].cycles, "op": result.layers[0].op}


def pytest_ethosu_summary_row(config, record, row):
    if "first_layer" in record:
        row["1st layer cycles"] = f"{record['first_layer']['cycles']:,}"
"""

XDIST = {"serial": ("-p", "no:xdist"), "n2": ("-n", "2")}


@pytest.fixture
def regressed(make_repo: Callable[[str], pytest.Pytester], monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The project with baselines of the narrow model, then the model made wider."""
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    project = make_repo(TESTS)
    project.makeconftest(CONFTEST)
    project.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=2)
    use(project, "wider.tflite")
    return project


@pytest.mark.parametrize("mode", XDIST)
def test_html_report_of_a_session(regressed: pytest.Pytester, mode: str) -> None:
    result = regressed.runpytest(*XDIST[mode], "--ethosu-html=report.html", "--ethosu-json=report.json")
    result.assert_outcomes(passed=1, failed=1)
    document = json.loads((regressed.path / "report.json").read_text())
    page = (regressed.path / "report.html").read_text()
    assert page == html_report.render(document)  # built from the same document as the JSON report
    entries = html_report.ordered(html_report.records(document))
    assert [e.record.status.value for e in entries][:1] == ["regressed"] and entries[0].record.name == "u55"
    assert page.index('id="regressions"') < page.index('id="overview"')
    moved = [c["layer"] for c in html_report.layer_changes(entries[0].record) if c["kind"] == "regressed"]
    assert moved and f'data-layer="{moved[0]}"' in page


def test_html_report_alone_is_the_same_page_serial_and_parallel(regressed: pytest.Pytester) -> None:
    """Without --ethosu-json: the records carry their layers for the HTML report alone."""
    pages = []
    for mode in XDIST.values():
        regressed.runpytest(*mode, "--ethosu-html=report.html").assert_outcomes(passed=1, failed=1)
        pages.append((regressed.path / "report.html").read_text())
    assert pages[0] == pages[1]
    assert len(html_report.embedded_data(pages[0])["estimates"]) == 3


def test_ini_key_is_relative_to_the_rootdir(regressed: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    regressed.makeini("[pytest]\nethosu_html = reports/perf.html\n")
    monkeypatch.chdir(regressed.mkdir("sub"))
    result = regressed.runpytest("-p", "no:xdist", str(regressed.path))
    result.assert_outcomes(passed=1, failed=1)
    assert len(html_report.embedded_data((regressed.path / "reports" / "perf.html").read_text())["estimates"]) == 3
    assert not (regressed.path / "sub" / "reports").exists()


def test_without_jinja2_the_option_is_a_usage_error(regressed: pytest.Pytester) -> None:
    regressed.makeconftest(CONFTEST + "\nimport sys\nsys.modules['jinja2'] = None  # not installed\n")
    result = regressed.runpytest_subprocess("-p", "no:xdist", "-p", "no:html", "--ethosu-html=report.html")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ('ERROR: --ethosu-html: the HTML report needs Jinja2, which is not installed: '
            'pip install "pytest-ethosu[html]"') in result.stderr.str()
    assert not (regressed.path / "report.html").exists()
    # the plugin itself does not need it
    regressed.runpytest_subprocess("-p", "no:xdist", "-p", "no:html").assert_outcomes(passed=1, failed=1)


@pytest.mark.parametrize("mode", XDIST)
def test_markdown_has_a_chart_of_each_regression(regressed: pytest.Pytester, mode: str) -> None:
    result = regressed.runpytest(*XDIST[mode], "--ethosu-markdown=summary.md")
    result.assert_outcomes(passed=1, failed=1)
    text = (regressed.path / "summary.md").read_text()
    assert text.startswith("## Ethos-U performance (pytest-ethosu)")
    assert text.count("```mermaid\nxychart-beta") == 1  # the one regressed estimate
    assert "**test_net [u55]**" in text and "on ethos-u55-128: layers that moved" in text
    assert text.index("**Regressions**") < text.index("```mermaid")


def pytest_html_rows(page: str) -> dict[str, Any]:
    """pytest-html 4's report data: test id -> its rows (results, extras)."""
    blob = re.search(r'data-jsonblob="([^"]*)"', page)
    assert blob, "not a pytest-html 4 report"
    tests: dict[str, Any] = json.loads(html.unescape(blob.group(1)))["tests"]
    return tests


@pytest.mark.parametrize("mode", XDIST)
def test_estimates_in_the_pytest_html_report(regressed: pytest.Pytester, mode: str) -> None:
    pytest.importorskip("pytest_html")
    result = regressed.runpytest(*XDIST[mode], "--html=pytest-report.html", "--ethosu-json=report.json")
    result.assert_outcomes(passed=1, failed=1)
    rows = pytest_html_rows((regressed.path / "pytest-report.html").read_text())
    document = json.loads((regressed.path / "report.json").read_text())
    for test in ("test_models.py::test_net", "test_models.py::test_plain"):
        entries = [e for e in document["estimates"] if e["test"] == test]
        extras = [x for row in rows[test] for x in row["extras"]]
        assert [x["format_type"] for x in extras] == ["html"] * len(entries)
        for entry in entries:  # in the order the test made them
            content = next(x["content"] for x in extras if f"<b>{html_report.label(record_from_entry(entry))}</b>" in x["content"])
            assert "<svg" in content and "<script" not in content
            assert f"{entry['model'].rsplit('/', 1)[-1]} on {entry['accelerator']}" in content
            assert content.count("<rect") >= len(entry["layers"])  # a bar per layer
            assert f"{entry['totals']['total_cycles']:,.0f} cycles" in content
    regressed_chart = next(x["content"] for x in rows["test_models.py::test_net"][0]["extras"] if "[u55]" in x["content"])
    assert 'stroke="#d62728"' in regressed_chart  # the moved layers


def test_hook_keys_reach_the_json_report_and_the_merged_summary(regressed: pytest.Pytester) -> None:
    """The conftest's record key is in each entry's "extra", so the merged summary, given the
    conftest's row hook, is the session's summary (all but the line that counts Vela runs)."""
    result = regressed.runpytest("-p", "no:xdist", "--ethosu-json=report.json")
    document = json.loads((regressed.path / "report.json").read_text())
    assert [set(e["extra"]) for e in document["estimates"]] == [{"first_layer"}] * 3
    assert all(e["extra"]["first_layer"]["cycles"] == e["layers"][0]["cycles"] for e in document["estimates"])
    hooks: dict[str, Any] = {}
    exec(CONFTEST, hooks)
    session = terminal_summary(result.stdout.str())
    merged = merge.summary_lines(document["estimates"], width=WIDTH, summary_row=hooks["pytest_ethosu_summary_row"])
    assert "1st layer cycles" in merged[0]
    assert merged[:-1] == session[:-1]
    assert session[-1].startswith("ethosu: 3 estimate(s); Vela ran") and merged[-1] == "ethosu: 3 estimate(s)"
