"""What a new user hits in the first week: printed commands that work verbatim, the accelerator
matrix, ini lists, precompiled models, readable output and files to diff."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable

import pytest

from tests.models import use

NET = """
def test_net(ethosu_perf):
    ethosu_perf("models/current.tflite")
"""


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest("-p", "no:xdist", *args)


def printed_command(result: pytest.RunResult, prefix: str) -> list[str]:
    line = next(line for line in result.outlines if prefix in line)
    words = shlex.split(line.split(prefix, 1)[1].split("  (then")[0])
    assert words[:2] == ["pytest", "--ethosu-update"], words
    return words[1:]


@pytest.mark.parametrize("options", [["--ethosu-accelerator", "ethos-u55-64"],
                                     ["--ethosu-baseline-dir=perf/baselines", "--ethosu-accelerator=ethos-u65-256",
                                      "--ethosu-vela-args=--optimise Size"]], ids=["accelerator", "dir-and-args"])
def test_the_printed_accept_command_works_verbatim(make_repo: Callable[[str], pytest.Pytester],
                                                   options: list[str]) -> None:
    repo = make_repo(NET)
    missing = run(repo, *options)
    missing.assert_outcomes(failed=1)
    create = printed_command(missing, "create it with: ")
    run(repo, *create).assert_outcomes(passed=1)
    run(repo, *options).assert_outcomes(passed=1)
    use(repo, "wider.tflite")
    failed = run(repo, *options)
    failed.assert_outcomes(failed=1)
    accept = printed_command(failed, "accept it with: ")
    accepted = run(repo, *accept)
    accepted.assert_outcomes(passed=1)
    accepted.stdout.fnmatch_lines(["*0 created, 1 updated, 0 unchanged*"])
    run(repo, *options).assert_outcomes(passed=1)


def test_the_accelerator_matrix_leaves_fixed_tests_alone(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo("""
        import pytest

        def test_follows(ethosu_perf):
            ethosu_perf("models/base.tflite")

        @pytest.mark.ethosu(accelerator="ethos-u55-128")
        def test_fixed(ethosu_perf):
            ethosu_perf("models/base.tflite")

        def test_call_fixes(ethosu_perf):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-128")
    """)
    run(repo, "--ethosu-update", "-k", "fixed").assert_outcomes(passed=1)
    result = run(repo, "--ethosu-update", "--ethosu-accelerators=ethos-u65-256,ethos-u85-256", "-rf", "-v")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(["*test_follows?ethos-u65-256? PASSED*", "*test_fixed PASSED*"])
    result.stdout.fnmatch_lines(["ArgumentError: test_models.py::test_call_fixes?ethos-u65-256? runs once per "
                                 "accelerator (*), but this call fixes accelerator='ethos-u55-128'. Drop *"])
    fixed = json.loads((repo.path / "baselines/test_models/test_fixed/default.json").read_text())
    assert fixed["estimator"]["target"]["accelerator"] == "ethos-u55-128"  # its id and baseline unchanged
    follows = repo.path / "baselines/test_models/test_follows[ethos-u85-256]/default.json"
    assert json.loads(follows.read_text())["estimator"]["target"]["accelerator"] == "ethos-u85-256"


@pytest.mark.parametrize("ini, text", [
    ("pytest.ini", "[pytest]\nethosu_accelerators = ethos-u55-128, ethos-u65-256\n"),
    ("pytest.ini", "[pytest]\nethosu_accelerators = ethos-u55-128 ethos-u65-256\n"),
    ("pyproject.toml", '[tool.pytest.ini_options]\nethosu_accelerators = "ethos-u55-128,ethos-u65-256"\n'),
    ("pyproject.toml", '[tool.pytest.ini_options]\nethosu_accelerators = ["ethos-u55-128", "ethos-u65-256"]\n'),
], ids=["ini-comma-space", "ini-space", "toml-string", "toml-list"])
def test_accelerator_lists_in_ini_files(make_repo: Callable[[str], pytest.Pytester], ini: str, text: str) -> None:
    repo = make_repo(NET)
    (repo.path / "tox.ini").unlink(missing_ok=True)
    (repo.path / "pytest.ini").unlink(missing_ok=True)
    (repo.path / ini).write_text(text)
    result = run(repo, "--ethosu-update", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_net?ethos-u55-128? PASSED*", "*test_net?ethos-u65-256? PASSED*"])


def test_a_precompiled_model_is_refused_by_a_check(project: pytest.Pytester) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "ethosu.vela", "models/base.tflite", "--output-dir", "models"],
                   cwd=project.path, check=True, capture_output=True)
    project.makepyfile(test_pre="""
        def test_check(ethosu_perf):
            ethosu_perf("models/base_vela.tflite")

        def test_plain(ethosu_perf):
            assert ethosu_perf.estimate("models/base_vela.tflite").cpu_operators == ("ethos-u",)
    """)
    result = run(project, "--ethosu-update")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["ModelError: models/base_vela.tflite was already compiled by Vela*"])
    assert not (project.path / "baselines").exists()


def test_worst_changes_agree_and_the_status_names_the_metric(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo(NET)
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    use(repo, "wider.tflite")
    result = run(repo)
    out = result.stdout.str()
    message_rows = out[out.index("layer    name"):].splitlines()[2:3]
    summary = out[out.index("regressed; worst changes:"):].splitlines()[3:4]
    assert message_rows and summary
    first_layer = message_rows[0].split()[0]
    assert summary[0].split()[0] == first_layer  # the same layer leads both
    result.stdout.fnmatch_lines(["test_net *REGRESSED +*%*"])


def test_strict_mode_says_what_changed(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo(NET)
    use(repo, "extra.tflite")
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    use(repo, "base.tflite")
    result = run(repo, "--ethosu-strict", "--ethosu-rtol=100")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["CheckFailed: *: layers changed (--ethosu-strict fails on them): 2 removed"])


def test_layer_tables_and_an_obtained_file_to_diff(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo(NET)
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    tables = run(repo, "--ethosu-layers")
    tables.stdout.fnmatch_lines(["test_models.py::test_net: models/current.tflite on ethos-u55-256, * cycles",
                                 "#*Original Operator*NNG Operator*Op Cycles*Name", "*net/conv1"])
    use(repo, "wider.tflite")
    failed = run(repo)
    failed.stdout.fnmatch_lines(["this run's estimate: baselines/test_models/test_net/default.obtained.json "
                                 "(diff it against the baseline)"])
    obtained = repo.path / "baselines/test_models/test_net/default.obtained.json"
    assert json.loads(obtained.read_text())["totals"]["total_cycles"] > 0
    assert "*.obtained.json" in (repo.path / "baselines" / ".gitignore").read_text()
    assert "unused" not in failed.stdout.str()
    use(repo, "base.tflite")
    run(repo).assert_outcomes(passed=1)
    assert not obtained.exists()  # passing removes it


def test_a_passing_session_is_short(make_repo: Callable[[str], pytest.Pytester]) -> None:
    """The README's example tests (six estimates, advice included) print at most 25 lines of
    plugin output once their baselines exist; -q prints one."""
    repo = make_repo("""
        import pytest

        def test_kws_cycles(ethosu_perf):
            result = ethosu_perf.estimate("models/cpu.tflite", accelerator="ethos-u55-128")
            assert result.cpu_ops == 1

        def test_person_detect(ethosu_perf):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-128")

        @pytest.mark.ethosu(rtol=0.01, tolerances={"dram_access_cycles": {"rtol": 0.05}})
        def test_kws(ethosu_perf):
            ethosu_perf("models/cpu.tflite", accelerator="ethos-u65-256", name="u65")
            ethosu_perf("models/cpu.tflite", accelerator="ethos-u55-128", name="u55")

        @pytest.mark.ethosu(accelerators=["ethos-u55-128", "ethos-u65-256"])
        def test_every_target(ethosu_perf):
            ethosu_perf("models/cpu.tflite")
    """)
    run(repo, "--ethosu-update").assert_outcomes(passed=5)
    result = run(repo)
    result.assert_outcomes(passed=5)
    lines = result.stdout.str().splitlines()
    start = next(i for i, line in enumerate(lines) if "ethosu performance summary" in line)
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith("====="))
    plugin_lines = lines[start:end]
    assert len(plugin_lines) <= 25, "\n".join(plugin_lines)
    # the advice of the plain estimate (no baseline) is shown once, grouped
    assert sum("cpu fallback:" in line for line in plugin_lines) == 1
    quiet = run(repo, "-q")
    quiet_lines = quiet.stdout.str().splitlines()
    assert sum(line.startswith("ethosu:") for line in quiet_lines) == 1
