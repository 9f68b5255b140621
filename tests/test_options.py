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


def test_write_failure_is_an_error_and_keeps_the_old_file(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    before = baseline_file(repo).read_bytes()
    use(repo, "wider.tflite")
    repo.makeconftest("""
        import errno, os
        import pytest_ethosu.baseline as baseline

        real = os.replace

        def replace(src, dst):  # the baseline directory's disk is full; the scratch directory's is not
            if "baselines" not in str(dst):
                return real(src, dst)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def pytest_configure(config):  # the whole inner session: baselines are written after teardown
            baseline.os.replace = replace

        def pytest_unconfigure(config):
            baseline.os.replace = real
    """)
    result = run(repo, "--ethosu-update")
    result.assert_outcomes(passed=1, errors=1)  # the test passed; writing its baseline did not
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_net*",
                                 "*could not write baseline baselines/test_models/test_net/default.json: "
                                 "No space left on device*the old file is unchanged*"])
    assert baseline_file(repo).read_bytes() == before
    assert [p.name for p in baseline_file(repo).parent.iterdir()] == ["default.json"]  # no temp file left


def test_summary_none(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    short = run(repo)
    short.stdout.fnmatch_lines(["*ethosu performance summary*", "test_net *current.tflite*ethos-u55-128*ok",
                                "advice for 1 estimate(s) that passed unchanged is not repeated (-v shows it)"])
    assert "layers that cost the most cycles" not in short.stdout.str()
    full = run(repo, "-v")
    full.stdout.fnmatch_lines(["layers that cost the most cycles (top 15):", "advice (--ethosu-no-advice turns it off):",
                               "*hot spot: layer *"])
    terse = run(repo, "-q")
    assert "test_net " not in terse.stdout.str()  # nothing needs attention: no rows
    terse.stdout.fnmatch_lines(["ethosu: 1 estimate(s); Vela ran 0 time(s), 1 answered from the cache"])
    quiet = run(repo, "--ethosu-summary", "none")
    quiet.assert_outcomes(passed=1)
    assert "ethos-u55-128" not in quiet.stdout.str() and "layers that cost" not in quiet.stdout.str()


def test_baseline_dir_option(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update", "--ethosu-baseline-dir=perf/baselines").assert_outcomes(passed=1)
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
    repo.makepyfile(test_models=NET.replace(  # where the cycles go, named: more changed layers to list
        'accelerator="ethos-u55-128"', 'accelerator="ethos-u55-128", tolerances={"npu_cycles": {"rtol": 0.01}, '
        '"sram_access_cycles": {"rtol": 0.01}}'))
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


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan"])
def test_bad_timeout_is_a_usage_error(repo: pytest.Pytester, value: str) -> None:
    result = run(repo, f"--ethosu-timeout={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*argument --ethosu-timeout: expected a number of seconds above 0, not '{value}'"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_bad_ini_values_are_usage_errors(repo: pytest.Pytester) -> None:
    repo.makeini("[pytest]\nethosu_timeout = soon\n")
    result = run(repo)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini key ethosu_timeout: expected a number of seconds above 0, not 'soon'"])


def test_misspelled_arguments_fail_the_test_in_one_line(repo: pytest.Pytester) -> None:
    repo.makepyfile(test_models="""
        import pytest

        def test_keyword(ethosu_perf):
            ethosu_perf("models/current.tflite", accelerater="ethos-u55-128")

        @pytest.mark.ethosu(rtl=0.1)
        def test_marker(ethosu_perf):
            ethosu_perf.estimate("models/current.tflite")

        def test_rtol(ethosu_perf):
            ethosu_perf("models/current.tflite", rtol=float("nan"))

        def test_vela_args(ethosu_perf):
            ethosu_perf.estimate("models/current.tflite", vela_args=b"--optimise Size")

        def test_owned_option(ethosu_perf):
            ethosu_perf.estimate("models/current.tflite", vela_args=["--output-dir", "x"])
    """)
    result = run(repo, "-rf")
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines([
        "ArgumentError: unknown target keyword(s) 'accelerater'; valid: accelerator, system_config, "
        "memory_mode, vela_config, vela_args",
        "ArgumentError: unknown ethosu marker argument(s) 'rtl'; valid: accelerator, *, rtol, atol, tolerances, budget, "
        "accelerators",
        "ArgumentError: rtol must be a finite number >= 0, not nan",
        "ArgumentError: vela_args must be a list of strings (or one shell-quoted string), not b'--optimise Size'",
        "TargetError: the Vela option --output-dir cannot be passed in vela_args: use nothing*",
    ])
    assert "Traceback" not in result.stdout.str() and "pytest_ethosu/" not in result.stdout.str()
    assert result.stdout.str().count("Vela ran 0 time(s)") == 0  # nothing was estimated: no summary line


def test_errors_can_be_named_in_xfail(repo: pytest.Pytester) -> None:
    repo.makepyfile(test_models="""
        import pytest
        from pytest_ethosu import BaselineError, CheckFailed

        @pytest.mark.xfail(raises=CheckFailed, strict=True)
        def test_missing(ethosu_perf):
            ethosu_perf("models/current.tflite")

        @pytest.mark.xfail(raises=BaselineError, strict=True)
        def test_broken(ethosu_perf):
            ethosu_perf("models/current.tflite", name="broken")
    """)
    broken = repo.path / "baselines" / "test_models" / "test_broken" / "broken.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    run(repo).assert_outcomes(xfailed=2)


def test_vela_args_forms(repo: pytest.Pytester) -> None:
    """argparse takes a lone value that starts with '--' for an option, so the README writes the
    '=' form; a value with a space works as a separate word too."""
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    result = run(repo, "--ethosu-vela-args=--debug-force-legacy-core", "--ethosu-rtol=100")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*baseline made with the regor core, now the legacy core*"])
    result = run(repo, "--ethosu-vela-args", "--debug-force-legacy-core --optimise Performance", "--ethosu-rtol", "100")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*baseline made with the regor core, now the legacy core*"])


def test_vela_console_is_captured_not_printed(repo: pytest.Pytester) -> None:
    """Vela's console output (from its Python and its C++ code) never reaches the terminal, even
    with -s; a failing test shows it, a Vela error quotes it."""
    repo.makepyfile(test_models="""
        def test_fails(ethosu_perf):
            assert ethosu_perf.estimate("models/base.tflite").total_cycles < 10

        def test_rejected(ethosu_perf):
            ethosu_perf.estimate("models/wider.tflite", vela_args=["--no-such-option"])
    """)
    result = run(repo, "-s")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    section = out[out.index("Captured Vela output"):]
    assert "Warning: No configuration file specified" in section  # Vela's Python
    assert "Network summary for base" in section  # Vela's C++ core (regor) prints this
    assert out.count("Network summary for base") == 1  # only in the section, never live
    result.stdout.fnmatch_lines(["VelaError: models/wider.tflite: Vela could not compile it*",
                                 "*unrecognized arguments: --no-such-option*"])


def test_path_options_written_as_two_words_are_flagged(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    result = run(repo, "--ethosu-json", "out.json")
    result.stdout.fnmatch_lines(["ethosu: --ethosu-json out.json: write it as --ethosu-json=out.json. *rootdir*"])
    assert "write it as" not in run(repo, "--ethosu-json=out.json").stdout.str()


def test_unbalanced_quote_in_vela_args_is_a_usage_error(repo: pytest.Pytester) -> None:
    result = run(repo, "--ethosu-vela-args=--optimise 'Size")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ethosu-vela-args / ethosu_vela_args \"--optimise 'Size\": No closing quotation*"])


@pytest.mark.parametrize("mode", [["-p", "no:xdist"], ["-n", "2"]], ids=["serial", "xdist"])
def test_names_that_are_not_utf8_are_written(repo: pytest.Pytester, mode: list[str]) -> None:
    """A check name with a surrogate escape (from a non-UTF-8 file name) reaches the baseline, the
    JSON report and the Markdown summary."""
    repo.makepyfile(test_models="""
        def test_net(ethosu_perf):
            ethosu_perf("models/current.tflite", name="caf\\udce9")
    """)
    update = repo.runpytest("--ethosu-update", "--ethosu-json=r.json", "--ethosu-markdown=s.md", *mode)
    update.assert_outcomes(passed=1)
    assert "INTERNALERROR" not in update.stdout.str()
    files = list((repo.path / "baselines").rglob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["name"] == "caf\udce9"
    assert json.loads((repo.path / "r.json").read_text())["estimates"][0]["name"] == "caf\udce9"
    assert "caf\\udce9" in (repo.path / "s.md").read_text()
    repo.runpytest(*mode).assert_outcomes(passed=1)


def test_an_empty_accelerator_list_is_a_usage_error(repo: pytest.Pytester) -> None:
    result = run(repo, "--ethosu-accelerators=,")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ethosu-accelerators names no accelerator*"])
