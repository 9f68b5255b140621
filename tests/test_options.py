"""The options README promises, each through an inner session."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.models import use
from tests.release import OTHER_CORE, OTHER_CORE_ARGS

NET = """
def test_net(ethosu_perf):
    ethosu_perf("models/current.tflite", accelerator="ethos-u55-128")
"""


@pytest.fixture
def repo(make_repo: Callable[[str], pytest.Pytester]) -> pytest.Pytester:
    return make_repo(NET)


def baseline_file(project: pytest.Pytester, directory: str = "baselines") -> Path:
    return project.path / directory / "test_models" / "test_net" / "default.json"


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest("-p", "no:xdist", *args)


def test_write_failure_fails_the_test_and_keeps_the_old_file(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    before = baseline_file(repo).read_bytes()
    use(repo, "wider.tflite")
    repo.makeconftest("""
        import errno, os
        import pytest
        import pytest_ethosu.baseline as baseline

        @pytest.fixture(autouse=True)
        def full_disk(monkeypatch):
            def replace(src, dst):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            monkeypatch.setattr(baseline.os, "replace", replace)
    """)
    result = run(repo, "--ethosu-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*could not write baseline baselines/test_models/test_net/default.json: "
                                 "No space left on device*the old file is unchanged*"])
    assert baseline_file(repo).read_bytes() == before
    assert [p.name for p in baseline_file(repo).parent.iterdir()] == ["default.json"]  # no temp file left


def test_summary_none(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    short = run(repo)
    short.stdout.fnmatch_lines(["*ethosu performance summary*", "test_net *current.tflite*ethos-u55-128*ok",
                                "layers that cost the most cycles (top 5):"])
    quiet = run(repo, "--ethosu-summary", "none")
    quiet.assert_outcomes(passed=1)
    assert "ethos-u55-128" not in quiet.stdout.str() and "layers that cost" not in quiet.stdout.str()


def test_baseline_dir_option(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update", "--ethosu-baseline-dir", "perf/baselines").assert_outcomes(passed=1)
    assert baseline_file(repo, "perf/baselines").is_file()
    assert not (repo.path / "baselines").exists()
    repo.makeini("[pytest]\nethosu_baseline_dir = perf/baselines\n")
    run(repo).assert_outcomes(passed=1)


def test_accelerators_from_command_line_and_ini(repo: pytest.Pytester) -> None:
    repo.makepyfile(test_models="""
        def test_net(ethosu_perf):
            ethosu_perf("models/current.tflite")
    """)
    cli = run(repo, "--ethosu-update", "--ethosu-accelerators", "ethos-u55-32,ethos-u65-512", "-v")
    cli.assert_outcomes(passed=2)
    cli.stdout.fnmatch_lines(["*test_net?ethos-u55-32? PASSED*", "*test_net?ethos-u65-512? PASSED*"])
    doc = json.loads((repo.path / "baselines/test_models/test_net[ethos-u65-512]/default.json").read_text())
    assert doc["estimator"]["target"]["accelerator"] == "ethos-u65-512"
    repo.makeini("[pytest]\nethosu_accelerators = ethos-u55-32 ethos-u65-512\n")
    run(repo).assert_outcomes(passed=2)


def test_tolerances_from_ini_and_command_line(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    use(repo, "wider.tflite")
    run(repo).assert_outcomes(failed=1)
    run(repo, "--ethosu-rtol", "5").assert_outcomes(passed=1)  # 500% allowed
    repo.makeini("[pytest]\nethosu_atol = 1000000000\n")
    run(repo).assert_outcomes(passed=1)
    bad = run(repo, "--ethosu-rtol", "lots")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*argument --ethosu-rtol: expected a finite number >= 0, not 'lots'*"])


def test_long_change_tables_are_cut_unless_vv(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    use(repo, "wider.tflite")
    cut = run(repo)
    cut.stdout.fnmatch_lines(["... * more (run with -vv to see all)"])
    full = run(repo, "-vv")
    assert "more (run with -vv to see all)" not in full.stdout.str()


def test_drift_update_rebaselines(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    repo.makeini("[pytest]\nethosu_drift = update\n")
    result = run(repo, f"--ethosu-vela-args={' '.join(OTHER_CORE_ARGS)}")
    result.assert_outcomes(passed=1)
    doc = json.loads(baseline_file(repo).read_text())
    assert doc["estimator"]["core"] == OTHER_CORE
    assert doc["estimator"]["target"]["vela_args"] == OTHER_CORE_ARGS


def test_vela_output_shown_only_when_a_test_fails(repo: pytest.Pytester) -> None:
    repo.makepyfile(test_models="""
        def test_fails(ethosu_perf):
            assert ethosu_perf.estimate("models/base.tflite").total_cycles < 10

        def test_passes(ethosu_perf):
            assert ethosu_perf.estimate("models/wider.tflite").total_cycles > 10
    """)
    result = run(repo)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*Captured Vela output*", "--- Vela, models/base.tflite on *",
                                 "*Network summary for base*"])
    assert "Network summary for wider" not in result.stdout.str()
