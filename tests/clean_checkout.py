"""A pytest plugin for this suite: the run fails if its tests wrote into the git checkout.

At the start of the session it notes what ``git status`` lists (untracked and ignored files
one by one, modified tracked files); at the end, anything listed that was not there before
fails the run, with the paths named.  Tools' own caches (``__pycache__``, ``.pytest_cache``,
``.hypothesis`` ...) do not count.  Under xdist only the controller checks, once the workers
have finished.  Nothing happens outside a git work tree (an installed copy, the copy
``scripts/mutate.py`` makes) or without git.

``ETHOSU_SCREENSHOT=docs/html-report.png`` asks ``tests/test_html.py`` to refresh the README's
picture: that one path may change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

#: Directories that tools write beside the code (their files never count as the tests' writes).
TOOL_CACHES = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
                         "build"})  # pip install of the checkout (.ci/vela-matrix) builds in build/

_before = pytest.StashKey[frozenset[str]]()
_written = pytest.StashKey[list[str]]()


def git_status(root: Path) -> frozenset[str] | None:
    """``git status`` entries (``XY path``) under ``root``, tool caches left out; None outside a
    git work tree."""
    git = shutil.which("git")
    if git is None:
        return None
    inside = subprocess.run([git, "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    listed = subprocess.run([git, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching",
                             "--", "."], cwd=root, capture_output=True, text=True, check=True).stdout
    entries = set()
    for entry in listed.split("\0"):
        path = entry[3:]
        parts = Path(path).parts
        if not entry or any(p in TOOL_CACHES or p.endswith(".egg-info") for p in parts):
            continue
        entries.add(entry)
    return frozenset(entries)


def _controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    if _controller(session.config):
        status = git_status(session.config.rootpath)
        if status is not None:
            session.config.stash[_before] = status


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    before = session.config.stash.get(_before, None)
    if before is None:
        return
    after = git_status(session.config.rootpath) or frozenset()
    allowed = {os.environ["ETHOSU_SCREENSHOT"]} if os.environ.get("ETHOSU_SCREENSHOT") else set()
    written = sorted(entry for entry in after - before if entry[3:] not in allowed)
    if written:
        session.config.stash[_written] = written
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    written = config.stash.get(_written, [])
    if written:
        terminalreporter.section("files written into the checkout", sep="=", red=True, bold=True)
        terminalreporter.line(f"the tests left {len(written)} file(s) in {config.rootpath} that git did not list "
                              "when the session started (a test must write only to tmp_path or pytester):")
        for entry in written:
            terminalreporter.line(f"  {entry}")
