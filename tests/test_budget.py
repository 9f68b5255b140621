"""Budgets: absolute limits on an estimate's figures, next to the relative gate.

Figures of the test models on ethos-u55-128 (Vela's defaults), which the limits below sit
between: base.tflite uses 26,688 B of off-chip flash and 13,264 B of SRAM; wider.tflite 30,016 B
and 27,680 B; cpu.tflite puts one operator (``net/custom``) on the CPU.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_ethosu import budget, html_report
from pytest_ethosu.budget import BudgetError, Limit, Use
from tests.models import use

MODES = {"serial": ["-p", "no:xdist"], "xdist": ["-n", "2"]}

FLASH = """
def test_net(ethosu_perf):
    ethosu_perf("models/current.tflite", accelerator="ethos-u55-128")
"""

BASELINE = Path("baselines", "test_models", "test_net", "default.json")


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> list[str]:
    return MODES[request.param]


# -- reading limits ------------------------------------------------------------------------------

@pytest.mark.parametrize(("figure", "text", "value", "unit"), [
    ("sram_used", "256 KiB", 262144, "KiB"),
    ("sram_used", "256kib", 262144, "KiB"),
    ("off_chip_flash_used", "1 MiB", 1048576, "MiB"),
    ("off_chip_flash_used", "1.5MB", 1500000, "MB"),
    ("sram_used", 4096, 4096, ""),
    ("sram_used", "4096 B", 4096, "B"),
    ("inference_time", "5 ms", 0.005, "ms"),
    ("inference_time", "250us", 0.00025, "us"),
    ("inference_time", "0.5 s", 0.5, "s"),
    ("inference_time", "5 µs", 5e-6, "us"),  # the micro sign
    ("inference_time", "5 μs", 5e-6, "us"),  # the Greek letter mu
    ("total_cycles", "500000 cycles", 500000, "cycles"),
    ("cpu_ops", 0, 0, ""),
    ("cpu_ops", "2", 2, ""),
])
def test_limits_are_read_in_their_figures_unit(figure: str, text: object, value: float, unit: str) -> None:
    limit = budget.parse_limit(figure, text)
    assert (limit.figure, limit.unit) == (figure, unit)
    assert limit.value == pytest.approx(value)


@pytest.mark.parametrize(("figure", "text", "says"), [
    ("inference_time", 5, "budget of inference_time needs a unit: 5; write e.g. '5 ms'"),
    ("sram_used", "256 parsecs", "budget of sram_used does not take 'parsecs'"),
    ("sram_used", "lots", "budget of sram_used: cannot read 'lots'"),
    ("sram_used", "-1 KiB", "budget of sram_used must be a finite number >= 0, not '-1 KiB'"),
    ("sram_used", "1,000 KiB", "cannot read"),
    ("cpu_ops", 0.5, "budget of cpu_ops is a whole number: 0.5 is not"),
    ("total_cycles", "1.5", "budget of total_cycles is a whole number: '1.5' is not"),
    ("sram_used", True, "must be a number or text"),
    ("sram_used", float("inf"), "finite number >= 0"),
    ("sram_usage", "1 KiB", "unknown figure 'sram_usage' in budget; figures: total_cycles, "),
    ("sram_used", 10 ** 400, "budget of sram_used must be a finite number >= 0, not 100000000000000000000000… "
                             "(401 digits)"),
])
def test_a_limit_that_cannot_be_read_says_what_it_takes(figure: str, text: object, says: str) -> None:
    with pytest.raises(BudgetError) as excinfo:
        budget.parse_limit(figure, text)
    assert says in str(excinfo.value)


def test_text_budgets_and_precedence() -> None:
    ini = budget.parse(["sram_used = 256 KiB", "cpu_ops=0, inference_time = 5 ms"], "ini key ethosu_budget")
    assert ini == {"sram_used": Limit("sram_used", 262144, "KiB"), "cpu_ops": Limit("cpu_ops", 0, ""),
                   "inference_time": Limit("inference_time", 0.005, "ms")}
    marker = budget.parse({"sram_used": "128 KiB", "cpu_ops": None}, "the marker")
    call = budget.parse({"sram_used": "64 KiB"}, "budget=")
    # most specific first, figure by figure; None lifts the wider budget; the order is the figures'
    assert budget.merge([call, marker, ini]) == (Limit("sram_used", 65536, "KiB"),
                                                Limit("inference_time", 0.005, "ms"))
    assert budget.merge([{}, marker, ini])[0] == Limit("sram_used", 131072, "KiB")
    assert budget.merge([{}, {}, {}]) == ()
    with pytest.raises(BudgetError, match=r"^--ethosu-budget: 'sram_used 1' is not figure=limit"):
        budget.parse("sram_used 1", "--ethosu-budget")
    with pytest.raises(BudgetError, match=r"^budget=: budget of sram_used does not take 'ms'"):
        budget.parse({"sram_used": "3 ms"}, "budget=")
    with pytest.raises(BudgetError, match=r"^--ethosu-budget: sram_used given more than once$"):
        budget.parse("sram_used=1KiB, sram_used=1MiB", "--ethosu-budget")
    with pytest.raises(BudgetError, match="must map figures to limits"):
        budget.parse(5, "budget=")


def test_headroom_is_shown_in_the_unit_the_limit_was_written_in() -> None:
    assert Use(Limit("sram_used", 262144, "KiB"), 217498).headroom() == "sram_used 212.4 KiB of 256 KiB (83%)"
    assert Use(Limit("inference_time", 0.005, "ms"), 0.0012041).headroom() == "inference_time 1.204 ms of 5 ms (24%)"
    assert Use(Limit("cpu_ops", 0, ""), 0).headroom() == "cpu_ops 0 of 0"
    fits = Use(Limit("sram_used", 1024, "B"), 1024)
    assert not fits.over and fits.percent == 100.0  # equal fits
    # also where the unit makes the limit inexact in binary: Vela's 8.1878e-05 s against "81.878 us"
    assert not Use(budget.parse_limit("inference_time", "81.878 us"), 8.1878e-05).over
    assert Use(budget.parse_limit("inference_time", "81.877 us"), 8.1878e-05).over
    # bytes, cycles and counts compare exactly, however large: one more is over
    assert Use(budget.parse_limit("total_cycles", 2_000_000_000), 2_000_000_001).over
    assert Use(budget.parse_limit("dram_used", "2 GiB"), 2 * 1024 ** 3 + 1).over
    assert not Use(budget.parse_limit("sram_used", "4.35 kB"), 4350).over  # 4.35 * 1000 is 4349.999...
    assert budget.parse_limit("sram_used", "4.35 kB").value == 4350
    assert Use(Limit("cpu_ops", 0, ""), 1).over
    again = Use.from_json(json.loads(json.dumps(Use(Limit("sram_used", 1024, "KiB"), 2048, ("layer 4",)).to_json())))
    assert again == Use(Limit("sram_used", 1024, "KiB"), 2048, ("layer 4",))
    with pytest.raises(BudgetError):
        Use.from_json({"figure": "sram_used", "limit": 1, "unit": "parsecs", "used": 2})


# -- in a session --------------------------------------------------------------------------------

def test_a_model_whose_weights_grow_fails_on_flash_naming_the_layers(
        make_repo: Callable[[str], pytest.Pytester], mode: list[str]) -> None:
    repo = make_repo(FLASH)
    repo.makeini("[pytest]\nethosu_budget =\n    off_chip_flash_used = 28 KiB\n    cpu_ops = 0\n")
    created = repo.runpytest("--ethosu-update", *mode)
    created.assert_outcomes(passed=1)
    created.stdout.fnmatch_lines(["budgets (used of the limit):",
                                  "  test_net: off_chip_flash_used 26.1 KiB of 28 KiB (93%), cpu_ops 0 of 0"])
    path = repo.path / BASELINE
    kept = path.read_bytes()

    use(repo, "wider.tflite")
    result = repo.runpytest(*mode)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*CheckFailed: ethosu: models/current.tflite on ethos-u55-128: over budget: "
        "off_chip_flash_used 29.3 KiB of 28 KiB (105%)",
        "off_chip_flash_used: 29.3 KiB, over the budget of 28 KiB by 1.3 KiB; the layers that use it most: "
        "layer 7 FullyConnected net/dense (off_chip_flash_access_cycles 24,608), "
        "layer 0 Conv2D net/conv1 (off_chip_flash_access_cycles 5,664), "
        "layer 2 DepthwiseConv2D net/dw1 (off_chip_flash_access_cycles 1,920)",
        "within budget: cpu_ops 0 of 0",
        "baseline: baselines/test_models/test_net/default.json (kept)",
        "also against the baseline: network total_cycles +*",
        "a budget is what the device has: *--ethosu-update does not accept it",
        "this run's estimate: baselines/test_models/test_net/default.obtained.json (diff it against the baseline)",
    ])
    result.stdout.fnmatch_lines(["*test_net*OVER BUDGET off_chip_flash_used 105%*",
                                 "  test_net: OVER off_chip_flash_used 29.3 KiB of 28 KiB (105%), cpu_ops 0 of 0"])
    assert path.read_bytes() == kept
    assert json.loads(path.with_name("default.obtained.json").read_text())["totals"]["off_chip_flash_used"] == 30016

    update = repo.runpytest("--ethosu-update", *mode)  # an update accepts changes, not a model that no longer fits
    update.assert_outcomes(failed=1)
    update.stdout.fnmatch_lines(["*ethosu baselines: 0 created, 0 updated, 0 unchanged, 0 deleted"])
    assert path.read_bytes() == kept
    lifted = repo.runpytest("--ethosu-update", "--ethosu-budget=off_chip_flash_used=32KiB", *mode)
    lifted.assert_outcomes(passed=1)  # the flag replaces the ini budget: cpu_ops is no longer budgeted
    lifted.stdout.fnmatch_lines(["  test_net: off_chip_flash_used 29.3 KiB of 32 KiB (92%)"])
    assert json.loads(path.read_text())["totals"]["off_chip_flash_used"] == 30016


def test_a_budget_is_checked_without_a_baseline(make_repo: Callable[[str], pytest.Pytester],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    repo = make_repo(FLASH)
    use(repo, "cpu.tflite")
    result = repo.runpytest("-p", "no:xdist", "--ethosu-budget=cpu_ops=0,sram_used=16KiB", "--ethosu-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*CheckFailed: ethosu: models/current.tflite on ethos-u55-128: over budget: cpu_ops 1 of 0",
        "cpu_ops: 1, over the budget of 0 by 1; the layers that use it most: layer 4 Custom net/custom",
        "within budget: sram_used 13.0 KiB of 16 KiB (81%)",
        "no baseline at baselines/test_models/test_net/default.json; once the model fits, create it with: "
        "pytest --ethosu-update --ethosu-budget=cpu_ops=0,sram_used=16KiB test_models.py::test_net",
    ])
    result.stdout.fnmatch_lines(["test_net *OVER BUDGET cpu_ops 1 of 0"])
    # under GitHub Actions, an annotation at the failing call's line
    result.stdout.fnmatch_lines(["::error file=test_models.py,line=2,title=Ethos-U over budget%3A "
                                 "models/current.tflite on ethos-u55-128::test_models.py::test_net default: "
                                 "over budget: cpu_ops 1 of 0"])
    assert not (repo.path / "baselines").exists()  # nothing written, not even an .obtained file


PRECEDENCE = """
import pytest

@pytest.mark.ethosu(budget={"sram_used": "16 KiB"})
def test_marker(ethosu_perf):
    ethosu_perf("models/wider.tflite", accelerator="ethos-u55-128")

@pytest.mark.ethosu(budget={"sram_used": "16 KiB"})
def test_call_beats_marker(ethosu_perf):
    ethosu_perf("models/wider.tflite", accelerator="ethos-u55-128", budget={"sram_used": "32 KiB"})

@pytest.mark.ethosu(budget={"sram_used": None})
def test_marker_lifts_ini(ethosu_perf):
    ethosu_perf("models/wider.tflite", accelerator="ethos-u55-128")

def test_ini(ethosu_perf):
    ethosu_perf("models/wider.tflite", accelerator="ethos-u55-128")

def test_bad_call(ethosu_perf):
    ethosu_perf("models/no-such-model.tflite", accelerator="ethos-u55-128", budget={"inference_time": 5})
"""


def test_call_beats_marker_beats_ini_and_none_lifts(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo(PRECEDENCE)
    repo.makeini("[pytest]\nethosu_budget = sram_used = 1 KiB\n")
    result = repo.runpytest("-p", "no:xdist", "--ethosu-update", "-rA")
    result.assert_outcomes(passed=2, failed=3)
    out = result.stdout.str()
    assert "FAILED test_models.py::test_marker - " in out and "PASSED test_models.py::test_call_beats_marker" in out
    assert "PASSED test_models.py::test_marker_lifts_ini" in out and "FAILED test_models.py::test_ini - " in out
    result.stdout.fnmatch_lines(["*wider.tflite on ethos-u55-128: over budget: sram_used 27.0 KiB of 16 KiB (169%)",
                                 "*wider.tflite on ethos-u55-128: over budget: sram_used 27.0 KiB of 1 KiB (2,703%)"])
    # a budget that cannot be read fails the call before the model is looked for
    result.stdout.fnmatch_lines(["*ArgumentError: budget=: budget of inference_time needs a unit: 5*"])
    assert "no-such-model" not in out.split("ArgumentError: budget=")[1].splitlines()[0]


@pytest.mark.parametrize(("where", "args", "says"), [
    ("flag", ["--ethosu-budget=sram_used=12 parsecs"],
     "ERROR: --ethosu-budget: budget of sram_used does not take 'parsecs': '12 parsecs'; write e.g. '256 KiB' "
     "(units: B, KiB, MiB, GiB, kB, MB, GB)"),
    ("ini", [], "ERROR: ini key ethosu_budget: unknown figure 'sram' in budget; figures: *"),
])
def test_a_session_budget_that_cannot_be_read_stops_the_session(
        make_repo: Callable[[str], pytest.Pytester], where: str, args: list[str], says: str) -> None:
    repo = make_repo(FLASH)
    if where == "ini":
        repo.makeini("[pytest]\nethosu_budget = sram = 1 KiB\n")
    result = repo.runpytest("-p", "no:xdist", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([says])
    assert "Traceback" not in result.stderr.str()


def test_budgets_in_the_json_html_and_markdown_reports_and_after_a_merge(
        make_repo: Callable[[str], pytest.Pytester], mode: list[str]) -> None:
    repo = make_repo(FLASH)
    use(repo, "wider.tflite")
    result = repo.runpytest("--ethosu-budget=sram_used=16KiB,off_chip_flash_used=1MiB", "--ethosu-json=r.json",
                            "--ethosu-html=r.html", "--ethosu-markdown=r.md", *mode)
    result.assert_outcomes(failed=1)
    # each report is named at the end, as pytest names its --junitxml file
    result.stdout.fnmatch_lines([f"-* generated ethosu JSON report: {repo.path / 'r.json'} -*",
                                 f"-* generated ethosu HTML report: {repo.path / 'r.html'} -*",
                                 f"-* generated ethosu Markdown summary: {repo.path / 'r.md'} -*"])
    document = json.loads((repo.path / "r.json").read_text())
    (entry,) = document["estimates"]
    assert entry["status"] == "over_budget"
    assert entry["baseline"] is None  # none exists (the failure says where it would go)
    over, fits = entry["budget"]
    assert over == {"figure": "sram_used", "limit": 16384, "unit": "KiB", "used": 27680, "over": True,
                    "layers": ["layer 2 DepthwiseConv2D net/dw1 (staging_usage 25,568)",
                               "layer 4 Conv2D net/conv2 (staging_usage 22,592)",
                               "layer 0 Conv2D net/conv1 (staging_usage 17,664)"]}
    assert fits == {"figure": "off_chip_flash_used", "limit": 1048576, "unit": "MiB", "used": 30016, "over": False,
                    "layers": []}
    page = (repo.path / "r.html").read_text()
    assert len(html_report.embedded_data(page)["estimates"]) == 1
    assert '<span class="badge st-OVER-BUDGET">OVER BUDGET</span>' in page
    assert '<li class="over">over budget: sram_used 27.0 KiB of 16 KiB (169%); the layers that use it most: ' \
           "layer 2 DepthwiseConv2D net/dw1" in page
    assert '<li class="fits">off_chip_flash_used 0.0286 MiB of 1 MiB (3%)</li>' in page
    # the card's footprint, in KiB, and the weights' compression, from the same totals
    totals = entry["totals"]
    assert f"· off-chip flash {totals['off_chip_flash_used'] / 1024:.1f} KiB" in page
    assert f"· optimised model {totals['optimised_model_size'] / 1024:.1f} KiB" in page
    assert f"· encoded weights {100 * totals['encoded_weights'] / totals['original_weights']:.1f}% of the original" \
        in page
    notes = (repo.path / "r.md").read_text()
    assert "**Over budget**\n\n- test_models.py::test_net default: over budget\\: sram\\_used 27.0 KiB of 16 " \
           "KiB \\(169%\\)\n" in notes  # escaped as Markdown
    # the footprint table: Vela's figures in KiB (the flash column adds on-chip and off-chip)
    totals = entry["totals"]
    row = next(line for line in notes.splitlines() if line.startswith("| test_models.py::test_net | default |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")][2:]
    kib = [(totals["on_chip_flash_used"] + totals["off_chip_flash_used"]) / 1024, totals["optimised_model_size"] / 1024,
           totals["original_weights"] / 1024, totals["encoded_weights"] / 1024, totals["sram_traffic"] / 1024,
           totals["dram_traffic"] / 1024, (totals["on_chip_flash_traffic"] + totals["off_chip_flash_traffic"]) / 1024]
    assert cells == [f"{k:,.1f}" for k in kib] + [f"{totals['encoded_weights'] / totals['original_weights']:.3f}"]
    assert cells[0] == "29.3" and totals["optimised_model_size"] > totals["off_chip_flash_used"]

    merged = repo.run(sys.executable, "-m", "pytest_ethosu", "merge", "r.json", "-o", "merged.json")
    assert merged.ret == 0, merged.stderr.str()
    assert json.loads((repo.path / "merged.json").read_text())["estimates"][0]["budget"] == [over, fits]
    merged.stdout.fnmatch_lines(["*test_net*OVER BUDGET sram_used 169%*",
                                 "  test_net: OVER sram_used 27.0 KiB of 16 KiB (169%), "
                                 "off_chip_flash_used 0.0286 MiB of 1 MiB (3%)"])


def test_stacked_markers_merge_their_budgets_figure_by_figure(make_repo: Callable[[str], pytest.Pytester]) -> None:
    """A module's marker and a test's marker each give a budget: the closer one wins on the
    figures both name, and the wider one's other figures still apply."""
    repo = make_repo('''
import pytest

pytestmark = pytest.mark.ethosu(budget={"sram_used": "16 KiB", "cpu_ops": 0})

@pytest.mark.ethosu(budget={"cpu_ops": 1})
def test_stacked(ethosu_perf):
    ethosu_perf("models/wider.tflite", accelerator="ethos-u55-128")

@pytest.mark.ethosu(budget={"sram_used": "32 KiB"})
def test_closer_wins(ethosu_perf):
    ethosu_perf("models/cpu.tflite", accelerator="ethos-u55-128")
''')
    result = repo.runpytest("-p", "no:xdist", "--ethosu-update")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*wider.tflite on ethos-u55-128: over budget: sram_used 27.0 KiB of 16 KiB (169%)",
                                 "within budget: cpu_ops 0 of 1 (0%)"])
    result.stdout.fnmatch_lines(["*cpu.tflite on ethos-u55-128: over budget: cpu_ops 1 of 0",
                                 "within budget: sram_used 13.0 KiB of 32 KiB (41%)"])
