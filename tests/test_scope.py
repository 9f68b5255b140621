"""Which baselines a run may touch: syrupy's per-location rule for unused baselines, one file
per (test, name), and writes only for tests that passed in full.  Inner sessions on real Vela,
serial and under xdist where the controller merges what workers saw."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from pytest_ethosu import baseline

MODES = {"serial": ["-p", "no:xdist"], "xdist": ["-n", "2"]}

CHECK = """
def test_{name}(ethosu_perf):
    ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")
"""
FILES = {
    "tests/test_a": CHECK.format(name="one") + CHECK.format(name="two"),
    "tests/test_other": CHECK.format(name="other"),
    "tests/sub/test_b": CHECK.format(name="b"),
}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> list[str]:
    return MODES[request.param]


@pytest.fixture
def tree(project: pytest.Pytester) -> pytest.Pytester:
    """Three test files in two directories, their baselines made."""
    project.makepyfile(**FILES)
    project.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=4)
    return project


def baselines(project: pytest.Pytester) -> dict[str, bytes]:
    root = project.path / "baselines"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def unused_lines(result: pytest.RunResult) -> list[str]:
    out = result.stdout.lines
    start = next((i for i, line in enumerate(out) if "unused baseline(s)" in line), None)
    if start is None:
        return []
    return [line.strip() for line in out[start + 1:] if line.startswith("  baselines/")]


def test_layout(tree: pytest.Pytester) -> None:
    assert sorted(baselines(tree)) == ["tests/sub/test_b/test_b/default.json", "tests/test_a/test_one/default.json",
                                       "tests/test_a/test_two/default.json",
                                       "tests/test_other/test_other/default.json"]


@pytest.mark.parametrize("run", ["subdirectory", "ignore", "keyword", "node", "module skip", "collection error",
                                 "collection error, continued", "deselect", "last failed", "dropped",
                                 "ignore a deleted file", "ignore-glob a deleted file", "exit in collection",
                                 "usage error in collection", "setup only", "repeat", "repeat marker",
                                 "ignore-glob from a subdirectory", "ignore-glob a deleted directory",
                                 "collect_ignore a deleted file", "collect_ignore_glob a deleted file", "fixtures"])
def test_a_selection_never_deletes_a_baseline(tree: pytest.Pytester, mode: list[str], run: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of these runs leaves a test file out of what it saw in full: --ethosu-update
    deletes nothing of it, and nothing is listed as unused."""
    before = baselines(tree)
    args = {"ignore": ["--ignore=tests/test_other.py"], "keyword": ["-k", "one or b"],
            "node": ["tests/test_a.py::test_one", "tests/sub"], "deselect": ["--deselect", "tests/test_a.py::test_two"],
            "collection error, continued": ["--continue-on-collection-errors"], "last failed": ["--lf"],
            "ignore a deleted file": ["--ignore=tests/test_other.py"], "ignore-glob a deleted file": [
                "--ignore-glob=*/test_oth*.py"], "usage error in collection": ["--forked"],
            "setup only": ["--setup-only"], "repeat": ["--count=2"], "fixtures": ["--fixtures"],
            "ignore-glob from a subdirectory": ["--ignore-glob=test_oth*.py"],
            "ignore-glob a deleted directory": ["--ignore-glob=*/sub"]}.get(run, [])
    if run.endswith("a deleted file") or run in ("ignore-glob from a subdirectory", "fixtures"):  # not on disk
        (tree.path / "tests" / "test_other.py").unlink()
    if run == "ignore-glob from a subdirectory":
        monkeypatch.chdir(tree.path / "tests")
    if run == "ignore-glob a deleted directory":  # a sparse checkout
        shutil.rmtree(tree.path / "tests" / "sub")
    if run == "collect_ignore a deleted file":
        (tree.path / "tests" / "conftest.py").write_text('collect_ignore = ["test_other.py"]\n')
    if run == "collect_ignore_glob a deleted file":
        (tree.path / "tests" / "conftest.py").write_text('collect_ignore_glob = ["test_oth*.py"]\n')
    if run == "repeat marker":  # pytest-repeat's marker: test_one runs as [1-2] and [2-2]
        tree.makepyfile(**{"tests/test_a": "import pytest\n@pytest.mark.repeat(2)" + CHECK.format(name="one")
                           + CHECK.format(name="two")})
    if run == "exit in collection":  # a conftest that stops the run before the plugin saw collection end
        tree.makeconftest("import pytest\n@pytest.hookimpl(tryfirst=True)\n"
                          "def pytest_collection_finish(session):\n    pytest.exit('no NPU here', returncode=0)\n")
    if run == "subdirectory":
        monkeypatch.chdir(tree.path / "tests" / "sub")
    if run == "module skip":
        tree.makepyfile(**{"tests/test_other": 'import pytest\npytest.importorskip("no_such_module")\n'
                           + CHECK.format(name="other")})
    if run.startswith("collection error"):
        tree.makepyfile(**{"tests/test_other": "raise ImportError('broken')\n" + CHECK.format(name="other")})
    if run == "dropped":  # as pytest-shard does: items removed without pytest_deselected
        tree.makeconftest("def pytest_collection_modifyitems(items):\n"
                          "    items[:] = [i for i in items if i.name != 'test_two']\n")
    if run == "last failed":  # test_two failed last time: --lf collects test_a.py only, and only that test
        tree.makepyfile(**{"tests/test_a": CHECK.format(name="one") + "def test_two():\n    assert False\n"})
        tree.runpytest("-p", "no:xdist")
        tree.makepyfile(**FILES)
    for update in ([], ["--ethosu-update"]):
        result = tree.runpytest(*args, *update, *mode)
        assert unused_lines(result) == [], result.stdout.str()
        assert "deleted unused" not in result.stdout.str()
        now = baselines(tree)
        assert {path: now.get(path) for path in before} == before
        assert now == before or run.startswith("repeat")  # pytest-repeat's instances ([1-2], [2-2]) get files


def test_runs_with_and_without_the_accelerator_option_keep_each_others_baselines(project: pytest.Pytester,
                                                                              mode: list[str]) -> None:
    """A CI job without --ethosu-accelerators and a nightly one with it: neither deletes the
    other's baselines; a test removed from the file is still reported for both."""
    project.makepyfile(test_m=CHECK.format(name="plain").replace(', accelerator="ethos-u55-64"', "")
                       + CHECK.format(name="gone").replace(', accelerator="ethos-u55-64"', ""))
    nightly = ["--ethosu-accelerators=ethos-u65-256"]
    project.runpytest("--ethosu-update", *mode).assert_outcomes(passed=2)
    project.runpytest("--ethosu-update", *nightly, *mode).assert_outcomes(passed=2)
    both = sorted(baselines(project))
    assert both == ["test_m/test_gone/default.json", "test_m/test_gone[ethos-u65-256]/default.json",
                    "test_m/test_plain/default.json", "test_m/test_plain[ethos-u65-256]/default.json"]
    for args in ([], nightly):
        result = project.runpytest("--ethosu-update", *args, *mode)
        assert "deleted unused" not in result.stdout.str() and sorted(baselines(project)) == both, args
    project.makepyfile(test_m=CHECK.format(name="plain").replace(', accelerator="ethos-u55-64"', ""))
    assert unused_lines(project.runpytest(*mode)) == ["baselines/test_m/test_gone/default.json",
                                                      "baselines/test_m/test_gone[ethos-u65-256]/default.json"]


def test_a_baseline_read_through_a_link_in_the_baseline_directory_is_used(tree: pytest.Pytester,
                                                                         mode: list[str]) -> None:
    """baselines/tests/test_other -> test_renamed (a link inside the tree): the check reads and
    writes through it, and the file it leads to is neither listed as unused nor deleted."""
    root = tree.path / "baselines" / "tests"
    (root / "test_other").rename(root / "test_renamed")
    (root / "test_other").symlink_to("test_renamed", target_is_directory=True)
    before = baselines(tree)
    for update in ([], ["--ethosu-update"]):
        result = tree.runpytest(*update, *mode)
        result.assert_outcomes(passed=4)
        assert unused_lines(result) == [] and "deleted unused" not in result.stdout.str(), result.stdout.str()
    assert baselines(tree) == before


def test_unused_where_the_run_saw_everything(tree: pytest.Pytester, mode: list[str]) -> None:
    """A renamed test and a deleted test file: each is reported by a run that saw its file (or
    the directory the deleted file was in) in full, and deleted by --ethosu-update on that run."""
    tree.makepyfile(**{"tests/test_a": CHECK.format(name="one") + CHECK.format(name="three")})
    (tree.path / "tests" / "test_other.py").unlink()
    renamed, deleted = "baselines/tests/test_a/test_two/default.json", "baselines/tests/test_other/test_other/default.json"
    expected = {(): [renamed, deleted], ("tests",): [renamed, deleted], ("tests/test_a.py",): [renamed],
                ("tests/sub",): [], ("tests/test_a.py::test_one",): [], ("-k", "one or three"): [renamed],
                ("-k", "one"): []}
    for args, paths in expected.items():
        assert unused_lines(tree.runpytest(*args, *mode)) == paths, args
    result = tree.runpytest("tests/test_a.py", *mode)
    result.stdout.fnmatch_lines(["1 unused baseline(s) (delete them with pytest --ethosu-update tests/test_a.py):"])

    before = baselines(tree)
    listed = tree.runpytest("--co", "--ethosu-update", *mode)  # collects, runs nothing: no summary, no deletion
    assert listed.ret == 0 and not any(line.startswith("ethosu") for line in listed.stdout.lines[3:]) and baselines(tree) == before

    update = tree.runpytest("--ethosu-update", "tests/test_a.py", *mode)
    update.stdout.fnmatch_lines([f"  deleted unused {renamed}"])
    assert (tree.path / deleted).exists()
    tree.runpytest("--ethosu-update", "tests", *mode).stdout.fnmatch_lines([f"  deleted unused {deleted}"])
    assert sorted(baselines(tree)) == ["tests/sub/test_b/test_b/default.json", "tests/test_a/test_one/default.json",
                                       "tests/test_a/test_three/default.json"]
    assert unused_lines(tree.runpytest(*mode)) == []


def test_failing_tests_keep_their_baselines_in_the_accelerator_matrix(project: pytest.Pytester,
                                                                     mode: list[str]) -> None:
    project.makepyfile(test_m="""
        import os
        def test_net(ethosu_perf):
            assert os.environ.get("BREAK") != "before", "fails before its check"
            ethosu_perf("models/base.tflite")
            assert os.environ.get("BREAK") != "after", "fails after its check"
    """)
    matrix = ["--ethosu-accelerators=ethos-u55-64,ethos-u65-256"]
    project.runpytest("--ethosu-update", *matrix, *mode).assert_outcomes(passed=2)
    before = baselines(project)
    assert len(before) == 2
    for where in ("before", "after"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("BREAK", where)
            result = project.runpytest("--ethosu-update", *matrix, *mode)
        result.assert_outcomes(failed=2)
        assert "deleted unused" not in result.stdout.str() and baselines(project) == before


def test_one_accelerator_of_the_matrix_keeps_the_others(project: pytest.Pytester, mode: list[str]) -> None:
    """One CI job per accelerator: a run of one accelerator of the option's matrix neither lists
    nor deletes the other accelerators' baselines; a test removed from the file still is."""
    project.makepyfile(test_m="""
        def test_net(ethosu_perf):
            ethosu_perf("models/base.tflite")

        def test_gone(ethosu_perf):
            ethosu_perf("models/base.tflite")
    """)
    project.runpytest("--ethosu-update", "--ethosu-accelerators=ethos-u55-64,ethos-u65-256",
                      *mode).assert_outcomes(passed=4)
    before = baselines(project)
    assert len(before) == 4
    project.makepyfile(test_m="""
        def test_net(ethosu_perf):
            ethosu_perf("models/base.tflite")
    """)
    gone = ["baselines/test_m/test_gone[ethos-u55-64]/default.json",
            "baselines/test_m/test_gone[ethos-u65-256]/default.json"]
    for one in ("ethos-u55-64", "ethos-u65-256"):
        result = project.runpytest(f"--ethosu-accelerators={one}", *mode)
        result.assert_outcomes(passed=1)
        assert unused_lines(result) == gone
    project.runpytest("--ethosu-update", "--ethosu-accelerators=ethos-u55-64", *mode).assert_outcomes(passed=1)
    assert sorted(baselines(project)) == ["test_m/test_net[ethos-u55-64]/default.json",
                                          "test_m/test_net[ethos-u65-256]/default.json"]


def test_one_file_per_test_and_name(project: pytest.Pytester) -> None:
    """A class in a file and a file in a directory of the same name; check names that differ
    only in case or that end like an obtained file: each has its own file, on a
    case-insensitive filesystem too, and an update that changes nothing writes nothing."""
    project.makepyfile(**{
        "tests/test_a": """
            class TestB_test:
                def test_c(self, ethosu_perf):
                    ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")
        """,
        "tests/test_a/TestB_test": """
            import pytest

            def test_c(ethosu_perf):
                ethosu_perf("models/wider.tflite", accelerator="ethos-u55-64")

            @pytest.mark.parametrize("x", ["A", "a"])
            def test_case(ethosu_perf, x):
                ethosu_perf("models/base.tflite" if x == "A" else "models/wider.tflite", accelerator="ethos-u55-64")
                ethosu_perf("models/base.tflite", accelerator="ethos-u55-64", name="Fast")
                ethosu_perf("models/wider.tflite", accelerator="ethos-u55-64", name="fast")
                ethosu_perf("models/extra.tflite", accelerator="ethos-u55-64", name="fast.obtained")
        """})
    created = project.runpytest("--ethosu-update", "-p", "no:xdist")
    created.assert_outcomes(passed=4)
    created.stdout.fnmatch_lines(["*ethosu baselines: 10 created, 0 updated, 0 unchanged, 0 deleted"])
    files = baselines(project)
    assert len(files) == 10 and len({name.lower() for name in files}) == 10
    again = project.runpytest("--ethosu-update", "-p", "no:xdist")
    again.stdout.fnmatch_lines(["*ethosu baselines: 0 created, 0 updated, 10 unchanged, 0 deleted"])
    assert baselines(project) == files
    project.runpytest("-p", "no:xdist").assert_outcomes(passed=4)

    # a failing "fast" check writes its obtained file where no baseline name reaches
    (project.path / "models" / "wider.tflite").write_bytes((project.path / "models" / "cpu.tflite").read_bytes())
    failed = project.runpytest("-p", "no:xdist", "tests/test_a/TestB_test.py::test_case[a]")
    failed.assert_outcomes(failed=1)
    obtained = sorted(p.relative_to(project.path).as_posix() for p in project.path.rglob("*.obtained.json"))
    assert len(obtained) == 1 and baselines(project).keys() - {obtained[0].removeprefix("baselines/")} == files.keys()
    ignore = (project.path / "baselines" / ".gitignore").read_text()
    assert all(not Path(name).match(line) for name in files for line in ignore.splitlines()[1:])


def test_a_baseline_where_0_1_kept_it_is_read_then_moved(project: pytest.Pytester, mode: list[str]) -> None:
    project.makepyfile(test_k="""
        class TestK:
            def test_c(self, ethosu_perf):
                ethosu_perf("models/base.tflite", accelerator="ethos-u55-64", name="Speed")
    """)
    project.runpytest("--ethosu-update", *mode).assert_outcomes(passed=1)
    root = project.path / "baselines"
    new = baseline.baseline_path(root, "test_k.py::TestK::test_c", "Speed")
    old = baseline.legacy_path(root, "test_k.py::TestK::test_c", "Speed")
    assert old.relative_to(root).as_posix() == "test_k/TestK/test_c/Speed.json" and new != old
    old.parent.mkdir(parents=True)
    shutil.move(new, old)
    shutil.rmtree(new.parent)
    plain = project.runpytest(*mode)
    plain.assert_outcomes(passed=1)
    assert unused_lines(plain) == [] and old.exists()
    moved = project.runpytest("--ethosu-update", *mode)
    moved.stdout.fnmatch_lines(["*ethosu baselines: 0 created, 1 updated, 0 unchanged, 0 deleted"])
    assert new.exists() and not old.exists() and not (root / "test_k" / "TestK").exists()


def test_another_tests_0_1_file_at_this_tests_path_is_neither_used_nor_lost(project: pytest.Pytester,
                                                                          mode: list[str]) -> None:
    """0.1 kept ``test_k.py::TestB::test_c``'s baseline at ``test_k/TestB/test_c/``, which is now
    the path of ``test_k/TestB.py::test_c``: that test neither compares with it nor overwrites it."""
    project.makeini("[pytest]\npython_files = test_*.py Test*.py\n")
    project.makepyfile(test_k="""
        class TestB:
            def test_c(self, ethosu_perf):
                ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")
    """)
    project.runpytest("--ethosu-update", *mode).assert_outcomes(passed=1)
    root = project.path / "baselines"
    method, function = "test_k.py::TestB::test_c", "test_k/TestB.py::test_c"
    new, old = baseline.baseline_path(root, method, "default"), baseline.legacy_path(root, method, "default")
    assert old == baseline.baseline_path(root, function, "default")
    old.parent.mkdir(parents=True)
    shutil.move(new, old)
    (project.path / "test_k").mkdir()
    (project.path / "test_k" / "TestB.py").write_text(
        "def test_c(ethosu_perf):\n    ethosu_perf('models/base.tflite', accelerator='ethos-u65-256')\n")
    plain = project.runpytest(*mode)
    plain.assert_outcomes(passed=1, failed=1)
    plain.stdout.fnmatch_lines([f"*baseline baselines/test_k/TestB/test_c/default.json is {method}'s, kept there by "
                                f"pytest-ethosu 0.1, and this path is now {function}'s. Run pytest --ethosu-update*"])
    assert json.loads(old.read_text())["test"] == method
    for _ in range(2):  # the first update moves the method's file; the function's is created then
        if project.runpytest("--ethosu-update", *mode).ret == 0:
            break
    assert json.loads(new.read_text())["test"] == method
    assert json.loads(old.read_text())["test"] == function
    project.runpytest(*mode).assert_outcomes(passed=2)


def test_baselines_are_written_only_for_tests_that_passed_in_full(project: pytest.Pytester, mode: list[str]) -> None:
    """A fixture that fails in teardown, a subtest that fails after the check: nothing
    written.  A check made in a fixture's teardown is recorded, and its create command
    converges."""
    project.makepyfile(test_t="""
        import pytest

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("teardown fails")

        @pytest.fixture
        def late(ethosu_perf):
            yield
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64", name="late")

        def test_teardown(ethosu_perf, broken_teardown):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")

        def test_subtest(ethosu_perf, subtests):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")
            with subtests.test("after the check"):
                assert False

        def test_late(late):
            pass
    """)
    result = project.runpytest("--ethosu-update", *mode)
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == 1 and outcomes.get("passed") == 2, outcomes  # test_late's file is written
    out = result.stdout.str()
    assert "ethosu baselines: 1 created, 0 updated, 0 unchanged, 0 deleted" in out
    assert sorted(baselines(project)) == ["test_t/test_late/late.json"]
    assert "test_teardown" in out and "test_subtest" in out and out.count("not written") >= 2

    (project.path / "baselines" / "test_t" / "test_late" / "late.json").unlink()
    missing = project.runpytest("-k", "test_late", *mode)
    missing.assert_outcomes(passed=1, errors=1)
    missing.stdout.fnmatch_lines(["*create it with: pytest --ethosu-update test_t.py::test_late*"])
    project.runpytest("--ethosu-update", "test_t.py::test_late", *mode).assert_outcomes(passed=1)
    project.runpytest("-k", "test_late", *mode).assert_outcomes(passed=1)


def test_a_module_fixtures_teardown_error_is_charged_as_pytest_charges_it(project: pytest.Pytester) -> None:
    """pytest charges a module fixture's teardown error to the module's last test: that test's
    baseline is not written; the test that used the fixture passed, and its baseline is.  Under
    pytest-rerunfailures the last test's rerun passes, and only then is its baseline written."""
    project.makepyfile(test_mod="""
        import pytest

        @pytest.fixture(scope="module")
        def resource():
            yield
            raise RuntimeError("module teardown fails")

        def test_user(ethosu_perf, resource):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")

        def test_last(ethosu_perf):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")
    """)
    result = project.runpytest("--ethosu-update", "-p", "no:xdist", "-rA")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["ERROR test_mod.py::test_last - RuntimeError: module teardown fails"])
    assert sorted(baselines(project)) == ["test_mod/test_user/default.json"]
    assert "ethosu baselines: 1 created, 0 updated, 0 unchanged, 0 deleted" in result.stdout.str()
    rerun = project.runpytest("--ethosu-update", "-p", "no:xdist", "--reruns=1")
    outcomes = rerun.parseoutcomes()
    assert outcomes.get("rerun") == 1 and "errors" not in outcomes and "failed" not in outcomes, outcomes
    assert sorted(baselines(project)) == ["test_mod/test_last/default.json", "test_mod/test_user/default.json"]


def test_a_check_after_its_test_ended_is_refused(project: pytest.Pytester, mode: list[str]) -> None:
    """A module fixture's teardown that calls a test's saved ethosu_perf: an ArgumentError that
    says why, never a check that is silently not recorded or a create command that never converges."""
    project.makepyfile(test_late="""
        import pytest

        saved = []

        @pytest.fixture(scope="module")
        def later():
            yield
            saved[0]("models/base.tflite", accelerator="ethos-u55-64", name="late")

        def test_first(ethosu_perf, later):
            saved.append(ethosu_perf)
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")

        def test_second():
            pass
    """)
    together = ["--dist", "loadfile"] if "-n" in mode else []  # one worker tears the module down after test_second
    for update in (["--ethosu-update"], []):
        result = project.runpytest(*update, *mode, *together)
        result.assert_outcomes(passed=2, errors=1)
        result.stdout.fnmatch_lines(["*ArgumentError: ethosu_perf of test_late.py::test_first was called after that "
                                     "test ended*"])
        assert "create it with" not in result.stdout.str()
    assert sorted(baselines(project)) == ["test_late/test_first/default.json"]


def test_a_rerun_keeps_the_last_attempt(project: pytest.Pytester, mode: list[str], tmp_path: Path) -> None:
    project.makepyfile(test_r=f"""
        from pathlib import Path

        def test_flaky(ethosu_perf):
            first = not Path({str(tmp_path / "ran")!r}).exists()
            Path({str(tmp_path / "ran")!r}).touch()
            ethosu_perf("models/wider.tflite" if first else "models/base.tflite", accelerator="ethos-u55-64")
    """)
    (tmp_path / "ran").touch()  # the baseline is the second attempt's model
    project.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=1)
    (tmp_path / "ran").unlink()
    result = project.runpytest("--reruns=1", "--ethosu-json=out.json", *mode)
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}, result.stdout.str()
    rows = [line for line in result.stdout.lines if line.startswith("test_flaky ")]
    assert len(rows) == 1 and rows[0].endswith(" ok"), rows
    assert "REGRESSED" not in result.stdout.str().upper().replace("1 RERUN", "")
    entries = json.loads((project.path / "out.json").read_text())["estimates"]
    assert [e["status"] for e in entries] == ["ok"]
    merged = project.run(sys.executable, "-m", "pytest_ethosu", "merge", "out.json", "-o", "merged.json", "-q")
    assert merged.ret == 0, merged.stderr.str()
    assert len(json.loads((project.path / "merged.json").read_text())["estimates"]) == 1


def test_forked_is_refused_in_one_line(project: pytest.Pytester) -> None:
    project.makepyfile(test_f="""
        def test_net(ethosu_perf):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")
    """)
    project.makepyfile(test_m="""
        import pytest

        @pytest.mark.forked
        def test_marked(ethosu_perf):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")

        def test_plain(ethosu_perf):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")
    """)
    for args in (["--forked"], ["test_m.py"]):
        result = project.runpytest_subprocess(*args, "--ethosu-update", "-p", "no:xdist")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
        assert len(errors) == 1 and errors[0].startswith(
            "ERROR: ethosu_perf does not run under pytest-forked (--forked or @pytest.mark.forked): test_")
        assert not (project.path / "baselines").exists()
    project.makepyfile(test_other="def test_other():\n    pass\n")
    # tests without estimates may fork (collected only: pytest-forked 1.7.5 fails every test under pytest 9)
    assert project.runpytest_subprocess("--forked", "--co", "test_other.py", "-p", "no:xdist").ret == 0


def test_hooks_that_fail_are_reported_and_change_no_outcome(project: pytest.Pytester, mode: list[str]) -> None:
    """A result hook that raises or adds what JSON cannot hold, a summary-row hook that raises:
    each is one line in the summary; the test's outcome, its baseline and the reports stand."""
    project.makeconftest("""
        import pathlib

        import pytest

        def pytest_ethosu_result(item, name, result, record):
            record["where"] = pathlib.Path("x")
            record["nan"] = float("nan")
            record["kept"] = 1
            if item.name == "test_raises":
                raise RuntimeError("boom")
            if item.name == "test_fails":
                pytest.fail("over budget")  # the test has ended: reported, as any other exception

        def pytest_ethosu_summary_row(config, record, row):
            if record["test"].endswith("test_fails"):
                pytest.skip("no row")
            raise KeyError("fps")
    """)
    project.makepyfile(test_h=CHECK.format(name="raises") + CHECK.format(name="fine") + CHECK.format(name="fails"))
    result = project.runpytest("--ethosu-update", "--ethosu-json=r.json", *mode)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines_random([
        "ethosu: a pytest_ethosu_result hook raised RuntimeError: boom (test_h.py::test_raises [default])",
        "ethosu: a pytest_ethosu_result hook raised Failed: over budget (test_h.py::test_fails [default])",
        "ethosu: a pytest_ethosu_summary_row hook raised Skipped: no row",
        "ethosu: a pytest_ethosu_result hook added 'where', which JSON cannot hold (*); it was left out (*)",
        "ethosu: a pytest_ethosu_result hook added 'nan', which JSON cannot hold (*); it was left out (*)",
        "ethosu: a pytest_ethosu_summary_row hook raised KeyError: 'fps'",
        "ethosu baselines: 3 created, 0 updated, 0 unchanged, 0 deleted"])
    assert sorted(baselines(project)) == ["test_h/test_fails/default.json", "test_h/test_fine/default.json",
                                          "test_h/test_raises/default.json"]
    entries = json.loads((project.path / "r.json").read_text())["estimates"]
    assert [(e["test"], e["status"], e["extra"]) for e in entries] == [
        ("test_h.py::test_fails", "created", {"kept": 1}), ("test_h.py::test_fine", "created", {"kept": 1}),
        ("test_h.py::test_raises", "created", {"kept": 1})]


def test_baselines_another_project_or_directory_keeps_are_not_judged(project: pytest.Pytester) -> None:
    """A second baseline directory nested in this one (a nightly job's), and a baseline directory
    outside the rootdir that another project shares: neither is taken for a deleted file's."""
    project.makepyfile(**{"tests/test_a": CHECK.format(name="one")})
    project.runpytest("--ethosu-update", "-p", "no:xdist").assert_outcomes(passed=1)
    nightly = ["--ethosu-baseline-dir=baselines/nightly", "-p", "no:xdist"]
    project.runpytest("--ethosu-update", *nightly).assert_outcomes(passed=1)
    before = baselines(project)
    assert "nightly/tests/test_a/test_one/default.json" in before
    for update in ([], ["--ethosu-update"]):
        result = project.runpytest(*update, "-p", "no:xdist")
        assert unused_lines(result) == [] and "deleted unused" not in result.stdout.str(), result.stdout.str()
    assert baselines(project) == before

    shared = project.path.parent / f"{project.path.name}-shared"  # another project's tests keep theirs here too
    other = {"schema": 1, "test": "tests/test_b.py::test_b", "name": "default"}
    project.runpytest("--ethosu-update", f"--ethosu-baseline-dir={shared}", "-p", "no:xdist").assert_outcomes(passed=1)
    theirs = shared / "tests" / "test_b" / "test_b" / "default.json"
    theirs.parent.mkdir(parents=True)
    theirs.write_text(json.dumps({**json.loads((shared / "tests/test_a/test_one/default.json").read_text()), **other}))
    for update in ([], ["--ethosu-update"]):
        result = project.runpytest(*update, f"--ethosu-baseline-dir={shared}", "-p", "no:xdist")
        assert unused_lines(result) == [] and "deleted unused" not in result.stdout.str(), result.stdout.str()
    assert theirs.exists()
    shutil.rmtree(shared)


def test_a_test_file_outside_the_rootdir_is_refused_in_one_line(project: pytest.Pytester) -> None:
    (project.path / "r").mkdir()
    (project.path / "r" / "pytest.ini").write_text("[pytest]\n")
    project.makepyfile(**{"t1/test_out": CHECK.format(name="out").replace("models/", str(project.path / "models") + "/")})
    result = project.runpytest("--rootdir=r", "-c", "r/pytest.ini", "t1/test_out.py", "-p", "no:cacheprovider",
                               "-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["ArgumentError: ::test_out: its test file lies outside pytest's rootdir*"])
    assert "Traceback" not in result.stdout.str()


def test_a_worker_that_dies_loses_no_record_of_the_tests_it_ran(project: pytest.Pytester) -> None:
    """Records go to the controller with each test's report: a worker crash later keeps them."""
    project.makepyfile(test_w="""
        import os
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_many(ethosu_perf, i):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")

        def test_zcrash(ethosu_perf):
            ethosu_perf("models/base.tflite", accelerator="ethos-u55-64")
            os._exit(1)
    """)
    result = project.runpytest("-n", "2", "--max-worker-restart=0", "--ethosu-update", "--ethosu-json=r.json")
    assert result.parseoutcomes().get("passed") == 6, result.stdout.str()
    entries = json.loads((project.path / "r.json").read_text())["estimates"]
    assert sorted(e["test"] for e in entries) == [f"test_w.py::test_many[{i}]" for i in range(6)]
    assert all(e["status"] == "created" for e in entries)
