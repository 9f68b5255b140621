"""The suite's own check (``tests/clean_checkout.py``): a run whose tests write into the git
checkout fails and names what they wrote."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PLUGIN = (Path(__file__).with_name("clean_checkout.py")).read_text()

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

SOURCE = """
from pathlib import Path

def test_writes_into_the_checkout(request):
    (request.config.rootpath / "baselines").mkdir(exist_ok=True)
    (request.config.rootpath / "baselines" / ".gitignore").write_text("*.obtained.json\\n")
    (request.config.rootpath / "baselines" / "net.obtained.json").write_text("{}")
    (request.config.rootpath / "tracked.txt").write_text("changed")

def test_writes_only_where_it_should(tmp_path):
    (tmp_path / "out.json").write_text("{}")
"""


@pytest.fixture
def checkout(pytester: pytest.Pytester) -> pytest.Pytester:
    """A git work tree with a tracked file and an untracked one; its conftest is the plugin
    (so xdist's workers load it as well)."""
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(test_leaks=SOURCE)
    (pytester.path / "tracked.txt").write_text("as committed")
    (pytester.path / "untracked.txt").write_text("there before the session")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=pytester.path, check=True)
    subprocess.run([*git, "add", "tracked.txt"], cwd=pytester.path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], cwd=pytester.path, check=True)
    return pytester


@pytest.mark.parametrize("mode", [["-p", "no:xdist"], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_write_into_the_checkout_fails_the_run(checkout: pytest.Pytester, mode: list[str]) -> None:
    result = checkout.runpytest("-p", "no:cacheprovider", "-p", "no:ethosu", *mode)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*= files written into the checkout =*",
                                 "the tests left 3 file(s) in * that git did not list when the session started*"])
    out = result.stdout.str()
    section = out[out.index("files written into the checkout"):out.rindex(" passed in ")]
    listed = [line[2:] for line in section.splitlines() if line.startswith("  ")]
    assert listed == [" M tracked.txt", "!! baselines/net.obtained.json", "?? baselines/.gitignore"]
    # the next session starts with them there: it has nothing new to report
    again = checkout.runpytest("-p", "no:cacheprovider", "-p", "no:ethosu", *mode)
    assert again.ret == pytest.ExitCode.OK and "written into the checkout" not in again.stdout.str()


def test_a_clean_run_passes_and_outside_git_nothing_is_checked(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(test_leaks=SOURCE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:ethosu", "-p", "no:xdist")
    assert result.ret == pytest.ExitCode.OK  # not a git work tree: not checked
    subprocess.run(["git", "init", "-q"], cwd=pytester.path, check=True)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:ethosu", "-p", "no:xdist", "-k", "only_where")
    assert result.ret == pytest.ExitCode.OK and "written into the checkout" not in result.stdout.str()
