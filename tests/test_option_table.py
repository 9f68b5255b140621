"""The option table (``options.py``): every option declared once, with a flag and an ini key,
paths from the rootdir, values checked where they are declared; each through an inner session."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import pytest

from pytest_ethosu.options import BY_NAME, MARKER_KEYS, OPTIONS, PATH_FLAGS, REPLAYED, TARGET_KEYS
from tests.models import use
from tests.release import OTHER_CORE_ARGS

NET = """
def test_net(ethosu_perf):
    ethosu_perf("models/current.tflite", accelerator="ethos-u55-128")
"""


@pytest.fixture
def repo(make_repo: Callable[[str], pytest.Pytester], monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return make_repo(NET)


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest("-p", "no:xdist", *args)


def test_the_table_derives_every_list() -> None:
    """What used to be declared four times comes from one table: only --ethosu-update has no
    ini key (an ini file saying "update" would make a gate that never fails)."""
    assert [o.flag for o in OPTIONS if o.ini is None] == ["--ethosu-update"]
    assert len({o.flag for o in OPTIONS}) == len({o.ini for o in OPTIONS}) == len(OPTIONS)
    assert set(TARGET_KEYS) == {"accelerator", "system_config", "memory_mode", "vela_config", "vela_args"}
    assert set(TARGET_KEYS) | {"rtol", "atol"} <= set(MARKER_KEYS)
    assert {"--ethosu-json", "--ethosu-markdown", "--ethosu-html", "--ethosu-baseline-dir",
            "--ethosu-cache-dir", "--ethosu-vela-config"} == set(PATH_FLAGS)
    assert {BY_NAME[k].flag for k in TARGET_KEYS} | {"--ethosu-baseline-dir", "--ethosu-accelerators",
                                                     "--ethosu-budget"} == set(REPLAYED)


def test_help_lists_every_flag_and_ini_key(repo: pytest.Pytester) -> None:
    text = run(repo, "--help").stdout.str()
    for option in OPTIONS:
        assert option.flag in text
        if option.ini:
            assert f"{option.ini} (" in text, option.ini  # pytest lists ini keys as "name (type):"


@pytest.mark.parametrize("how", ["flags", "ini"])
def test_report_paths_are_relative_to_the_rootdir_from_a_subdirectory(
        repo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    (repo.path / "sub").mkdir()
    if how == "flags":
        args = ["--ethosu-json=out/r.json", "--ethosu-markdown=out/s.md", "--ethosu-html=out/h.html"]
    else:
        repo.makeini("[pytest]\nethosu_json = out/r.json\nethosu_markdown = out/s.md\nethosu_html = out/h.html\n")
        args = []
    (repo.path / "out").mkdir()
    (repo.path / "sub" / "out").mkdir()
    monkeypatch.chdir(repo.path / "sub")
    run(repo, "--ethosu-update", "../test_models.py", *args).assert_outcomes(passed=1)
    assert json.loads((repo.path / "out" / "r.json").read_text())["estimates"][0]["test"].endswith("test_net")
    assert "test_net" in (repo.path / "out" / "s.md").read_text()
    assert "<html" in (repo.path / "out" / "h.html").read_text()
    assert list((repo.path / "sub" / "out").iterdir()) == []  # nothing where the cwd would have put it


@pytest.mark.parametrize("flag", ["--ethosu-html", "--ethosu-markdown", "--ethosu-cache-dir"])
def test_every_path_flag_written_as_two_words_is_flagged(repo: pytest.Pytester, flag: str) -> None:
    result = run(repo, "--ethosu-update", flag, "out.x")
    result.stdout.fnmatch_lines([f"ethosu: {flag} out.x: write it as {flag}=out.x. *rootdir*"])


def test_native_toml_numbers_are_taken(repo: pytest.Pytester) -> None:
    """pytest 9's ``[tool.pytest]`` table keeps TOML's types: numbers are numbers."""
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    use(repo, "wider.tflite")
    (repo.path / "tox.ini").unlink()
    repo.makepyprojecttoml("[tool.pytest]\nethosu_rtol = 5\nethosu_atol = 0.0\nethosu_timeout = 120\n")
    result = run(repo)
    assert "expects a string" not in result.stderr.str()
    result.assert_outcomes(passed=1)  # within 500%
    repo.makepyprojecttoml("[tool.pytest]\nethosu_rtol = 0.001\n")
    run(repo).assert_outcomes(failed=1)
    repo.makepyprojecttoml('[tool.pytest]\nethosu_timeout = "soon"\n')
    bad = run(repo)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*ini key ethosu_timeout: expected a number of seconds above 0, not 'soon'"])


@pytest.mark.parametrize(("line", "message"), [
    ("ethosu_cache = maybe", "ini key ethosu_cache: *'maybe'* (use true or false)"),
    ("ethosu_summary = loud", "ini key ethosu_summary: expected one of none, short, full, not 'loud'"),
    ("ethosu_drift = sometimes", "ini key ethosu_drift: expected one of warn, fail, update, not 'sometimes'"),
    ("ethosu_atol = -1", "ini key ethosu_atol: expected a finite number >= 0, not '-1'"),
    ("ethosu_vela_args = --optimise 'Size", "*--ethosu-vela-args / ethosu_vela_args \"--optimise 'Size\": No closing quotation"),
    ("ethosu_accelerators = ethos-u55-128 ethos-u55-128",
     "*--ethosu-accelerators / ethosu_accelerators: ethos-u55-128 given more than once"),
])
def test_bad_ini_values_name_the_key(repo: pytest.Pytester, line: str, message: str) -> None:
    repo.makeini(f"[pytest]\n{line}\n")
    result = run(repo)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(("flag", "message"), [
    ("--ethosu-atol=lots", "argument --ethosu-atol: expected a finite number >= 0, not 'lots'"),
    ("--ethosu-drift=never", "argument --ethosu-drift: invalid choice: 'never'*"),
])
def test_bad_flag_values_name_the_flag(repo: pytest.Pytester, flag: str, message: str) -> None:
    result = run(repo, flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])


def test_new_ini_keys_take_effect(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    cache = repo.path / ".pytest_cache" / "d" / "ethosu"
    shutil.rmtree(cache)
    repo.makeini("[pytest]\nethosu_summary = none\nethosu_cache = false\n")
    result = run(repo)
    result.assert_outcomes(passed=1)
    assert "ethosu performance summary" not in result.stdout.str()
    assert not cache.exists()
    short = run(repo, "-o", "ethosu_summary=short", "-o", "ethosu_cache=true")
    assert "ethosu performance summary" in short.stdout.str()
    assert cache.exists()  # the same run with the cache on writes it
    repo.makeini("[pytest]\nethosu_layers = true\n")
    run(repo).stdout.fnmatch_lines(["*net/dense*"])  # a layer's name: only the per-layer table has it


def test_strict_atol_and_drift_as_flags_and_ini_keys(repo: pytest.Pytester) -> None:
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    use(repo, "wider.tflite")  # more channels: slower
    run(repo).assert_outcomes(failed=1)
    run(repo, "--ethosu-atol=1000000000").assert_outcomes(passed=1)
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    use(repo, "base.tflite")  # faster: passes, unless strict
    run(repo).assert_outcomes(passed=1)
    run(repo, "--ethosu-strict").assert_outcomes(failed=1)
    repo.makeini("[pytest]\nethosu_strict = true\n")
    run(repo).assert_outcomes(failed=1)
    repo.makeini("[pytest]\n")
    run(repo, "--ethosu-update").assert_outcomes(passed=1)
    # the other core: drift, and other figures (its weights take 6% more flash here), so a wide
    # tolerance leaves the drift policy alone to decide
    other = f"--ethosu-vela-args={' '.join(OTHER_CORE_ARGS)}", "--ethosu-rtol=0.5"
    run(repo, *other).assert_outcomes(passed=1)  # drift warns by default
    run(repo, *other, "--ethosu-drift=fail").assert_outcomes(failed=1)
    repo.makeini("[pytest]\nethosu_drift = fail\n")
    run(repo, *other).assert_outcomes(failed=1)
    run(repo, *other, "--ethosu-drift=warn").assert_outcomes(passed=1)  # the flag beats the ini key


def test_an_accelerator_named_twice_is_refused(repo: pytest.Pytester) -> None:
    """Named twice, an accelerator would be two tests with two baselines ([..._0], [..._1])."""
    result = run(repo, "--ethosu-accelerators=ethos-u55-128,ethos-u55-128")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ethosu-accelerators / ethosu_accelerators: ethos-u55-128 given more than once"])
    repo.makepyfile(test_twice="""
        import pytest

        @pytest.mark.ethosu(accelerators=["ethos-u55-64", "ethos-u65-256", "ethos-u55-64"])
        def test_twice(ethosu_perf):
            ethosu_perf("models/base.tflite")
    """)
    marked = run(repo, "test_twice.py")
    assert marked.ret != 0 and "Traceback" not in marked.stdout.str()
    marked.stdout.fnmatch_lines(["*test_twice.py::test_twice: @pytest.mark.ethosu(accelerators=...) names "
                                 "ethos-u55-64 more than once*"])


def test_the_report_header_escapes_what_the_options_hold(repo: pytest.Pytester) -> None:
    """A committed ini (or a flag) cannot set the terminal's title or clear its screen."""
    repo.makeini("[pytest]\nethosu_baseline_dir = b\x1b]0;OWNED\x07\x1b[2J\n")
    result = run(repo, "--co", "--ethosu-accelerator=\x1b[31mRED", "--ethosu-vela-args=--verbose-all\x1b[2J")
    header = next(line for line in result.stdout.lines if line.startswith("ethosu: Vela"))
    assert "\x1b" not in header and "\x07" not in header, header
    assert "RED" in header and "OWNED" in header
