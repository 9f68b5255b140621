"""Baselines and the regression gate, through inner pytest sessions.

The scenarios where xdist changes what happens (records merged from workers, reports written
once, unused baselines deleted by the controller, failure messages from workers) run with and
without it; the others run serially.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.models import use
from tests.release import DEFAULT_CORE, OTHER_CORE, OTHER_CORE_ARGS, op

MODES = {"serial": ["-p", "no:xdist"], "xdist": ["-n", "2"]}

TESTS = """
import pytest

def test_net(ethosu_perf):
    ethosu_perf("models/current.tflite", accelerator="ethos-u55-128")

@pytest.mark.ethosu(rtol=0.01, tolerances={"dram_access_cycles": {"rtol": 0.05}})
def test_two(ethosu_perf):
    ethosu_perf("models/base.tflite", accelerator="ethos-u65-256", name="u65")
    ethosu_perf("models/base.tflite", accelerator="ethos-u55-128", name="u55")

@pytest.mark.ethosu(accelerators=["ethos-u55-64", "ethos-u85-256"])
def test_targets(ethosu_perf):
    ethosu_perf("models/base.tflite")
"""


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> list[str]:
    return MODES[request.param]


@pytest.fixture
def repo(make_repo: Callable[[str], pytest.Pytester]) -> pytest.Pytester:
    return make_repo(TESTS)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def net_baseline(project: pytest.Pytester) -> Path:
    return project.path / "baselines" / "test_models" / "test_net" / "default.json"


def test_create_then_pass_then_unchanged(repo: pytest.Pytester, mode: list[str]) -> None:
    missing = repo.runpytest(*mode)
    missing.assert_outcomes(failed=4)
    missing.stdout.fnmatch_lines(["*no baseline at baselines/test_models/test_net/default.json",
                                  "*create it with: pytest --ethosu-update test_models.py::test_net*"])
    assert not (repo.path / "baselines").exists()

    created = repo.runpytest("--ethosu-update", *mode)
    created.assert_outcomes(passed=4)
    created.stdout.fnmatch_lines(["*ethosu baselines: 5 created, 0 updated, 0 unchanged, 0 deleted"])
    files = snapshot(repo.path / "baselines")
    assert sorted(files) == ["test_models/test_net/default.json",
                             "test_models/test_targets[ethos-u55-64]/default.json",
                             "test_models/test_targets[ethos-u85-256]/default.json",
                             "test_models/test_two/u55.json", "test_models/test_two/u65.json"]
    doc = json.loads(net_baseline(repo).read_text())
    assert doc["schema"] == 1 and doc["estimator"]["target"]["accelerator"] == "ethos-u55-128"
    assert doc["totals"]["total_cycles"] == sum(layer["cycles"] for layer in doc["layers"])
    assert net_baseline(repo).read_text().endswith("}\n")

    passed = repo.runpytest(*mode)
    passed.assert_outcomes(passed=4)
    again = repo.runpytest("--ethosu-update", *mode)
    again.stdout.fnmatch_lines(["*ethosu baselines: 0 created, 0 updated, 5 unchanged, 0 deleted"])
    assert snapshot(repo.path / "baselines") == files


def test_regression_names_layer_and_keeps_baseline(repo: pytest.Pytester, mode: list[str]) -> None:
    repo.runpytest("--ethosu-update", *mode).assert_outcomes(passed=4)
    path = net_baseline(repo)
    doc = json.loads(path.read_text())
    doc["layers"][0]["cycles"] = int(doc["layers"][0]["cycles"] * 0.9)  # the baseline claims 10% less
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    edited = path.read_bytes()
    result = repo.runpytest("-k", "test_net", *mode)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"CheckFailed: ethosu: models/current.tflite on ethos-u55-128: layer 0 ({op('Conv2D')}) cycles +11.*%*over "
        "the tolerance rtol=0.01; total cycles +0.0% (*)",  # the edited layer alone moved
        "baseline: baselines/test_models/test_net/default.json",
        "*layer*name*operator*metric*baseline*now*delta*delta %",
        f"0 *net/conv1*{op('Conv2D')}*cycles*",
        "if this change is intended, accept it with: pytest --ethosu-update test_models.py::test_net",
    ])
    assert "Traceback" not in result.stdout.str()
    assert path.read_bytes() == edited  # a failing run never rewrites a baseline


def test_a_baseline_from_before_the_flash_figures_passes_and_says_so_once(repo: pytest.Pytester,
                                                                          mode: list[str]) -> None:
    """A baseline written before the flash, weight and traffic figures were recorded: the run
    passes on the figures it holds and says so in one line; --ethosu-update adds them."""
    repo.runpytest("--ethosu-update", "-k", "test_net", *mode).assert_outcomes(passed=1)
    path = net_baseline(repo)
    doc = json.loads(path.read_text())
    later = ["encoded_weights", "off_chip_flash_used", "on_chip_flash_used", "original_weights", "sram_traffic"]
    for figure in later:
        del doc["totals"][figure]
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    old = path.read_bytes()
    use(repo, "wider.tflite")  # more weights and more cycles: still fails on what the baseline holds
    repo.runpytest("-k", "test_net", *mode).assert_outcomes(failed=1)
    use(repo, "base.tflite")
    result = repo.runpytest("-k", "test_net", *mode)
    result.assert_outcomes(passed=1)
    notes = [line for line in result.stdout.lines if "were written before some figures were recorded" in line]
    assert notes == ["1 baseline(s) were written before some figures were recorded (" + ", ".join(later) + "): they "
                     "were compared on the figures they hold; pytest --ethosu-update test_models.py::test_net "
                     "records the rest"], result.stdout.str()
    assert path.read_bytes() == old
    repo.runpytest("--ethosu-update", "-k", "test_net", *mode).assert_outcomes(passed=1)
    assert set(later) <= set(json.loads(path.read_text())["totals"])
    again = repo.runpytest("-k", "test_net", *mode)
    again.assert_outcomes(passed=1)
    assert "were written before some figures were recorded" not in again.stdout.str()


def test_wider_model_regresses_and_update_accepts(repo: pytest.Pytester) -> None:
    mode = MODES["serial"]  # xdist changes nothing here; the xdist variants cover merging
    repo.runpytest("--ethosu-update", *mode)
    use(repo, "wider.tflite")
    result = repo.runpytest("-k", "test_net", *mode)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*network total_cycles +*over the tolerance*", "*the model file changed*"])
    result.stdout.fnmatch_lines(["*test_net*REGRESSED*"])
    updated = repo.runpytest("--ethosu-update", "-k", "test_net", *mode)
    updated.assert_outcomes(passed=1)
    updated.stdout.fnmatch_lines(["*0 created, 1 updated, 0 unchanged, 0 deleted"])
    repo.runpytest(*mode).assert_outcomes(passed=4)


def test_improvement_passes_and_strict_fails(repo: pytest.Pytester) -> None:
    mode = MODES["serial"]  # xdist changes nothing here; the xdist variants cover merging
    use(repo, "wider.tflite")
    repo.runpytest("--ethosu-update", *mode)
    use(repo, "base.tflite")
    result = repo.runpytest("-k", "test_net", *mode)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*improved*", "1 estimate(s) improved beyond tolerance: tighten their "
                                 "baselines with pytest --ethosu-update test_models.py::test_net"])
    strict = repo.runpytest("-k", "test_net", "--ethosu-strict", *mode)
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*improved beyond tolerance (--ethosu-strict fails on it): network total_cycles -*"])


def test_layer_added_removed_renamed(repo: pytest.Pytester) -> None:
    mode = MODES["serial"]  # xdist changes nothing here; the xdist variants cover merging
    repo.runpytest("--ethosu-update", *mode)
    use(repo, "extra.tflite")
    added = repo.runpytest("-k", "test_net", "--ethosu-rtol", "10", "--ethosu-strict", *mode)
    added.assert_outcomes(failed=1)
    added.stdout.fnmatch_lines([f"*net/extra*{op('Conv2D')}*added*"])
    assert "net/conv2  " not in added.stdout.str().split("baseline: ")[1].split("if this change")[0]
    use(repo, "renamed.tflite")
    renamed = repo.runpytest("-k", "test_net", *mode)
    renamed.assert_outcomes(passed=1)  # a re-export renames layers; the figures are the same
    use(repo, "extra.tflite")
    repo.runpytest("--ethosu-update", "-k", "test_net", *mode)
    use(repo, "base.tflite")
    removed = repo.runpytest("-k", "test_net", "--ethosu-strict", "--ethosu-rtol", "10", *mode)
    removed.assert_outcomes(failed=1)
    removed.stdout.fnmatch_lines([f"*net/extra*{op('Conv2D')}*removed*"])
    lenient = repo.runpytest("-k", "test_net", "--ethosu-rtol", "10", *mode)
    lenient.assert_outcomes(passed=1)  # without --ethosu-strict a removed layer alone passes


def test_cpu_fallback_always_fails(repo: pytest.Pytester) -> None:
    mode = MODES["serial"]  # xdist changes nothing here; the xdist variants cover merging
    repo.runpytest("--ethosu-update", *mode)
    use(repo, "cpu.tflite")
    result = repo.runpytest("-k", "test_net", "--ethosu-rtol", "100", *mode)  # tolerances can't hide it
    result.assert_outcomes(failed=1)
    # regor lists the CPU's operators as layers; the legacy core only counts them
    moved = "*net/custom*Custom*to cpu*" if DEFAULT_CORE == "regor" else "network*cpu_ops*0*1*"
    result.stdout.fnmatch_lines(["*work moved from the NPU to the CPU*Vela does not estimate CPU time*", moved])


def test_unused_baselines_reported_then_deleted_for_selected_tests(repo: pytest.Pytester,
                                                                   mode: list[str]) -> None:
    repo.runpytest("--ethosu-update", *mode)
    stale = repo.path / "baselines" / "test_models" / "test_two" / "old.json"
    other = repo.path / "baselines" / "test_models" / "test_net" / "old.json"
    shutil.copy(net_baseline(repo), stale)
    shutil.copy(net_baseline(repo), other)
    report = repo.runpytest(*mode)
    report.assert_outcomes(passed=4)
    report.stdout.fnmatch_lines(["2 unused baseline(s) (delete them with pytest --ethosu-update "
                                 "test_models.py::test_net test_models.py::test_two):",
                                 "  baselines/test_models/test_net/old.json",
                                 "  baselines/test_models/test_two/old.json"])
    update = repo.runpytest("--ethosu-update", "-k", "test_two", *mode)
    update.stdout.fnmatch_lines(["*0 created, 0 updated, 2 unchanged, 1 deleted",
                                 "  deleted unused baselines/test_models/test_two/old.json"])
    assert not stale.exists() and other.exists()  # test_net was not selected: its file stays


@pytest.mark.parametrize(("corrupt", "says"), [
    (lambda doc: '{"schema": 1, "layers": [', " is not valid JSON (line 1, column *"),
    (lambda doc: json.dumps({**doc, "totals": {**doc["totals"], "total_cycles": -5}}),
     ": totals.total_cycles is -5, not a finite number of zero or more.*"),
    (lambda doc: json.dumps({**doc, "estimator": {**doc["estimator"], "target": {"accelerator": 5}}}),
     ": estimator.target.accelerator is 5, not text.*"),
], ids=["json", "negative", "types"])
def test_corrupt_baseline_is_reported_and_kept(repo: pytest.Pytester, corrupt: Any, says: str) -> None:
    mode = MODES["serial"]  # xdist changes nothing here; the xdist variants cover merging
    repo.runpytest("--ethosu-update", *mode)
    text = corrupt(json.loads(net_baseline(repo).read_text()))
    net_baseline(repo).write_text(text)
    for args in ([], ["--ethosu-update"]):
        result = repo.runpytest("-k", "test_net", *args, *mode)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["BaselineError: baseline */baselines/test_models/test_net/default.json" + says])
        assert net_baseline(repo).read_text() == text


def test_baselines_stay_inside_the_baseline_directory(repo: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
                                                      ) -> None:
    """A link under baselines/ that leads outside is neither read nor written through, and a file
    where a directory of baselines belongs is named as such."""
    mode = MODES["serial"]
    outside = tmp_path_factory.mktemp("outside")
    (outside / "test_net").mkdir()
    (repo.path / "baselines").mkdir()
    (repo.path / "baselines" / "test_models").symlink_to(outside, target_is_directory=True)
    for args in ([], ["--ethosu-update"]):
        result = repo.runpytest("-k", "test_net", *args, *mode)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"BaselineError: baselines/test_models is a link to {outside}, outside the "
                                     "baseline directory baselines: *"])
        assert [p.name for p in outside.rglob("*")] == ["test_net"]
    (repo.path / "baselines" / "test_models").unlink()
    (repo.path / "baselines" / "test_models").write_text("notes\n")
    result = repo.runpytest("-k", "test_net", "--ethosu-update", *mode)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["BaselineError: baselines/test_models is a file where pytest-ethosu keeps a "
                                 "directory of baselines (for baselines/test_models/test_net/default.json). "
                                 "Move or delete it."])
    assert (repo.path / "baselines" / "test_models").read_text() == "notes\n"
    (repo.path / "baselines" / "test_models").unlink()
    (repo.path / "baselines" / "test_models" / "test_net").mkdir(parents=True)
    os.mkfifo(net_baseline(repo))  # reading it would block for ever
    fifo = repo.runpytest("-k", "test_net", "--timeout=60", *mode)
    fifo.assert_outcomes(failed=1)
    fifo.stdout.fnmatch_lines(["BaselineError: baseline baselines/test_models/test_net/default.json is not a regular "
                               "file. Move or delete it*"])


def test_newer_schema_refused(repo: pytest.Pytester) -> None:
    repo.runpytest("--ethosu-update", "-p", "no:xdist")
    doc = json.loads(net_baseline(repo).read_text())
    doc["schema"] = 99
    net_baseline(repo).write_text(json.dumps(doc))
    result = repo.runpytest("-k", "test_net", "-p", "no:xdist")
    result.stdout.fnmatch_lines(["*has schema 99, newer than this pytest-ethosu understands (1). Upgrade pytest-ethosu."])


def test_core_change_is_reported(repo: pytest.Pytester) -> None:
    repo.runpytest("--ethosu-update", "-k", "test_net", "-p", "no:xdist")
    other = f"--ethosu-vela-args={' '.join(OTHER_CORE_ARGS)}"
    result = repo.runpytest("-k", "test_net", "-p", "no:xdist", other, "--ethosu-rtol", "10")
    result.stdout.fnmatch_lines([f"*baseline made with the {DEFAULT_CORE} core, now the {OTHER_CORE} core*"])
    repo.makeini("[pytest]\nethosu_drift = fail\n")
    failed = repo.runpytest("-k", "test_net", "-p", "no:xdist", other)
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*the estimator changed since the baseline*",
                                 f"*{DEFAULT_CORE} core, now the {OTHER_CORE} core*"])


def test_junitxml_properties_and_result_hook(repo: pytest.Pytester) -> None:
    repo.makeconftest("""
        seen = []
        def pytest_ethosu_result(item, name, result, record):
            seen.append((item.name, name, result.total_cycles))
        def pytest_ethosu_summary_row(config, record, row):
            row["fps"] = f"{1000 / record['inference_ms']:.0f}"
        def pytest_sessionfinish(session):
            print("SEEN", sorted(seen))
    """)
    result = repo.runpytest("--ethosu-update", "-k", "test_two", "-p", "no:xdist", "-s",
                            "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "SEEN [('test_two', 'u55', " in out and "('test_two', 'u65', " in out
    result.stdout.fnmatch_lines(["*baseline*fps*"])
    xml = (repo.path / "out.xml").read_text()
    assert 'name="ethosu[u65]"' in xml and "total_cycles" in xml


def test_update_writes_nothing_when_the_test_fails_after_its_check(repo: pytest.Pytester) -> None:
    repo.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=4)
    before = net_baseline(repo).read_bytes()
    use(repo, "wider.tflite")
    repo.makepyfile(test_models="""
        def test_net(ethosu_perf):
            ethosu_perf("models/current.tflite", accelerator="ethos-u55-128")
            assert False, "the test fails after its check"
    """)
    result = repo.runpytest("--ethosu-update", "-p", "no:xdist", "-k", "test_net")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["test_net *current.tflite*not written*", "*0 created, 0 updated, 0 unchanged*"])
    assert net_baseline(repo).read_bytes() == before


def test_call_tolerance_beats_the_marker(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo("""
        import pytest

        @pytest.mark.ethosu(rtol=0.01)
        def test_loose(ethosu_perf):
            ethosu_perf("models/current.tflite", rtol=10)

        @pytest.mark.ethosu(rtol=0.01, tolerances={"cycles": {"rtol": 10}, "npu_cycles": {"rtol": 10},
                                                   "total_cycles": {"rtol": 10}})
        def test_per_metric(ethosu_perf):
            ethosu_perf("models/current.tflite")

        @pytest.mark.ethosu(rtol=10)
        def test_tight(ethosu_perf):
            ethosu_perf("models/current.tflite", rtol=0.01)
    """)
    repo.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=3)
    use(repo, "wider.tflite")
    result = repo.runpytest("-p", "no:xdist", "-rf")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    # per-metric overrides hold cycles back, so the headline is another metric; without them,
    # the network's cycles lead
    per_metric = out[out.index("_ test_per_metric _"):out.index("_ test_tight _")]
    assert re.search(r"network sram_used \+\d+\.\d%.*; total cycles \+\d+\.\d% \(", per_metric)
    # beside the headline's statement of the total, no cycles figure is among the changes
    assert " cycles " not in re.sub(r"; total cycles [+-]\d+\.\d% \([\d,]+ -> [\d,]+\)", "", per_metric)
    tight = out[out.index("_ test_tight _"):]
    assert "network total_cycles +" in tight


def test_baselines_of_deleted_tests_are_found_in_a_full_run(repo: pytest.Pytester, mode: list[str]) -> None:
    """syrupy's rule: a test file collected in full reports every baseline of a test it no
    longer has (and --ethosu-update deletes it); a selection only looks at the selected tests.  Only regular files inside the
    baseline directory that read as baselines are ever touched."""
    repo.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=4)
    gone = repo.path / "baselines" / "test_models" / "test_deleted" / "default.json"
    gone.parent.mkdir()
    shutil.copy(net_baseline(repo), gone)
    notes = repo.path / "baselines" / "test_models" / "test_deleted" / "notes.json"
    notes.write_text('{"not": "a baseline"}')
    outside = repo.path.parent / f"{repo.path.name}-elsewhere"
    outside.mkdir()
    (outside / "default.json").write_bytes(net_baseline(repo).read_bytes())
    (repo.path / "baselines" / "test_models" / "test_linked").symlink_to(outside)

    selected = repo.runpytest("-k", "test_net", *mode)
    selected.assert_outcomes(passed=1)
    assert "unused baseline" not in selected.stdout.str()

    full = repo.runpytest(*mode)
    full.assert_outcomes(passed=4)
    full.stdout.fnmatch_lines(["1 unused baseline(s) (delete them with pytest --ethosu-update test_models.py):",
                               "  baselines/test_models/test_deleted/default.json"])

    update = repo.runpytest("--ethosu-update", *mode)
    update.stdout.fnmatch_lines(["*0 created, 0 updated, 5 unchanged, 1 deleted",
                                 "  deleted unused baselines/test_models/test_deleted/default.json"])
    assert not gone.exists() and notes.exists()
    assert (outside / "default.json").exists()
    assert "unused" not in repo.runpytest(*mode).stdout.str()


def test_dist_each_shows_each_estimate_once_and_refuses_to_update(repo: pytest.Pytester) -> None:
    """Under --dist each every worker runs every test: the summary shows each estimate once, and
    --ethosu-update is refused (a worker would write a baseline for a test another one failed)."""
    repo.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=4)
    before = snapshot(repo.path / "baselines")
    each = repo.runpytest("-n", "2", "--dist", "each")
    each.stdout.fnmatch_lines(["ethosu: 5 estimate(s); *"])
    refused = repo.runpytest("--ethosu-update", "-n", "2", "--dist", "each")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*--ethosu-update under --dist each: every worker runs every test*"])
    assert snapshot(repo.path / "baselines") == before


def test_missing_baselines_are_counted_up_to_the_first_failing_check(make_repo: Callable[[str], pytest.Pytester]
                                                                     ) -> None:
    """A test stops at its first check that fails: the summary says that later checks are not
    counted, and the command it gives creates them too."""
    repo = make_repo("""
def test_two(ethosu_perf):
    ethosu_perf("models/base.tflite", accelerator="ethos-u55-128", name="first")
    ethosu_perf("models/base.tflite", accelerator="ethos-u65-256", name="second")
""")
    result = repo.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["1 estimate(s) have no baseline: create them with pytest --ethosu-update "
                                 "test_models.py::test_two (counted up to each test's first failing check, where the "
                                 "test stopped; the command creates the later ones too)"])
    created = repo.runpytest("-p", "no:xdist", "--ethosu-update", "test_models.py::test_two")
    created.assert_outcomes(passed=1)
    created.stdout.fnmatch_lines(["*ethosu baselines: 2 created, 0 updated, 0 unchanged, 0 deleted"])


def test_stacked_markers_merge_their_tolerances_metric_by_metric(make_repo: Callable[[str], pytest.Pytester]
                                                                 ) -> None:
    """A module's marker loosens the network's cycles, a test's marker its SRAM: both apply, as
    budgets do; the closer marker wins on a metric both name."""
    repo = make_repo("""
import pytest

pytestmark = pytest.mark.ethosu(tolerances={"total_cycles": {"rtol": 10}, "cycles": {"rtol": 10},
                                            "sram_used": {"rtol": 0.01}})

@pytest.mark.ethosu(tolerances={"sram_used": {"rtol": 10}, "staging_usage": {"rtol": 10},
                                "off_chip_flash_used": {"rtol": 10}})
def test_both(ethosu_perf):
    ethosu_perf("models/current.tflite", accelerator="ethos-u55-128")

def test_module_only(ethosu_perf):
    ethosu_perf("models/current.tflite", accelerator="ethos-u55-128")
""")
    repo.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=2)
    use(repo, "wider.tflite")  # more cycles, SRAM, staging and flash
    result = repo.runpytest("-p", "no:xdist", "-rA")
    out = result.stdout.str()
    assert "PASSED test_models.py::test_both" in out, out
    assert "FAILED test_models.py::test_module_only" in out  # the module's sram_used rtol=0.01 holds there
    assert "CheckFailed: ethosu: models/current.tflite on ethos-u55-128: network sram_used +" in out, out
