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
    strict = run(project, "--ethosu-update", "-W", "error::pytest_ethosu.EthosuWarning", "-k", "test_check")
    strict.assert_outcomes(failed=1)  # the warning, an error here, does not hide the real problem
    strict.stdout.fnmatch_lines(["ModelError: models/base_vela.tflite was already compiled by Vela*"])


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


def test_summary_commands_touch_only_the_tests_they_name(make_repo: Callable[[str], pytest.Pytester]) -> None:
    """After a selected run, pasting the summary's tighten command must not accept another
    test's regression."""
    repo = make_repo("""
        def test_a(ethosu_perf):
            ethosu_perf("models/a.tflite")

        def test_b(ethosu_perf):
            ethosu_perf("models/b.tflite")
    """)
    models = repo.path / "models"
    (models / "a.tflite").write_bytes((models / "wider.tflite").read_bytes())
    (models / "b.tflite").write_bytes((models / "base.tflite").read_bytes())
    run(repo, "--ethosu-update").assert_outcomes(passed=2)
    b_before = (repo.path / "baselines/test_models/test_b/default.json").read_bytes()
    (models / "a.tflite").write_bytes((models / "base.tflite").read_bytes())  # a improves
    (models / "b.tflite").write_bytes((models / "wider.tflite").read_bytes())  # b regresses
    selected = run(repo, "test_models.py::test_a")
    selected.assert_outcomes(passed=1)
    tighten = printed_command(selected, "tighten their baselines with ")
    assert tighten[-1] == "test_models.py::test_a"
    run(repo, *tighten).stdout.fnmatch_lines(["*0 created, 1 updated, 0 unchanged*"])
    assert (repo.path / "baselines/test_models/test_b/default.json").read_bytes() == b_before
    run(repo, "test_models.py::test_b").assert_outcomes(failed=1)


def test_commands_carry_the_ini_file_and_overrides(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo(NET)
    (repo.path / "ci.ini").write_text("[pytest]\nethosu_accelerator = ethos-u55-64\nethosu_baseline_dir = perf\n")
    missing = run(repo, "-c", "ci.ini", "-o", "ethosu_memory_mode=Shared_Sram", "test_models.py")
    missing.assert_outcomes(failed=1)
    create = printed_command(missing, "create it with: ")
    assert "--config-file=ci.ini" in create and "--override-ini=ethosu_memory_mode=Shared_Sram" in create
    run(repo, *create).assert_outcomes(passed=1)
    document = json.loads((repo.path / "perf/test_models/test_net/default.json").read_text())
    assert document["estimator"]["target"]["accelerator"] == "ethos-u55-64"
    run(repo, "-c", "ci.ini", "-o", "ethosu_memory_mode=Shared_Sram", "test_models.py").assert_outcomes(passed=1)


def test_commands_work_from_a_subdirectory(make_repo: Callable[[str], pytest.Pytester]) -> None:
    import os
    import subprocess
    import sys

    repo = make_repo("")
    (repo.path / "test_models.py").unlink()
    (repo.path / "tests").mkdir()
    (repo.path / "tests" / "test_net.py").write_text(NET)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}

    def pytest_in(directory: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", *args],
                              cwd=repo.path / directory, env=env, capture_output=True, text=True, timeout=300)

    missing = pytest_in("tests", "test_net.py")
    assert missing.returncode == 1
    line = next(line for line in missing.stdout.splitlines() if "create it with: " in line)
    command = shlex.split(line.split("create it with: ", 1)[1].split("  (then")[0])
    assert command[-1] == "test_net.py::test_net"
    created = pytest_in("tests", *command[1:])
    assert created.returncode == 0, created.stdout
    assert (repo.path / "baselines/tests/test_net/test_net/default.json").exists()


def test_update_removes_the_obtained_file(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo(NET)
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    use(repo, "wider.tflite")
    failed = run(repo)
    obtained = repo.path / "baselines/test_models/test_net/default.obtained.json"
    assert obtained.exists()
    run(repo, *printed_command(failed, "accept it with: ")).assert_outcomes(passed=1)
    assert not obtained.exists()


def test_marker_mistakes_fail_in_one_line(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo("""
        import pytest

        @pytest.mark.ethosu("ethos-u55-64")
        def test_positional(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite")

        @pytest.mark.ethosu(accelerators=[])
        def test_empty(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite")

        @pytest.mark.ethosu(accelerator="ethos-u55-64", accelerators=["ethos-u65-256"])
        def test_both(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite")
    """)
    result = run(repo)
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["ArgumentError: the ethosu marker takes keyword arguments only, not 'ethos-u55-64'*"])
    result.stdout.fnmatch_lines(["ArgumentError: the ethosu marker's accelerators= names no accelerator"])
    result.stdout.fnmatch_lines(["ArgumentError: the ethosu marker sets both accelerator= and accelerators=: give one"])


def test_a_session_that_estimates_nothing_still_writes_its_json(make_repo: Callable[[str], pytest.Pytester]) -> None:
    repo = make_repo(NET)
    run(repo, "-k", "nothing_matches", "--ethosu-json=empty.json")
    document = json.loads((repo.path / "empty.json").read_text())
    assert document["estimates"] == [] and document["schema"] == 1


def test_pytest_keeps_its_own_cache_directory_files(make_repo: Callable[[str], pytest.Pytester]) -> None:
    """The estimate cache lives in pytest's cache directory; pytest must still mark that
    directory (.gitignore, CACHEDIR.TAG) although the plugin may write there first."""
    repo = make_repo(NET)
    repo.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    cache = repo.path / ".pytest_cache"
    assert (cache / ".gitignore").exists() and (cache / "CACHEDIR.TAG").exists()
    assert list((cache / "d" / "ethosu").rglob("*.json"))
