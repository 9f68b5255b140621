"""Which baselines a run may call unused, and so delete under ``--ethosu-update``.

syrupy's rule (its ``report.py``, ``unused``), per location: a baseline is judged only where
the run saw everything that could have used it.

- A test that ran and passed, setup to teardown, made every check it makes: a baseline in its
  directory that none of its checks read is unused (a check renamed or removed).
- A test file the run collected in full (collected without error or skip, no ``file::test``
  argument, nothing deselected or otherwise dropped from the items, no ``--lf``): a baseline of
  a test that file no longer has is unused (a test renamed or removed), except another
  accelerator's instance of a test that ``--ethosu-accelerators`` parametrized (the run chose
  the accelerators, not the file).
- A test file that no longer exists: its baselines are unused when it lay under a directory
  the run collected in full (a path argument, or the rootdir or ``testpaths`` when none was
  given, with nothing under it deselected or broken) and outside every path collection
  ignored; never when the baseline directory lies outside the rootdir (it may be shared with
  another project), nor for a file that names a test whose file exists (a second baseline
  directory nested in this one).

Anything else is out of scope and left alone: a selection never deletes a baseline.  Nothing
is judged at all when collection did not end normally (a usage error, ``pytest.exit``), when
test bodies did not run (``--setup-only``, ``--setup-plan``, ``--co``) or under
pytest-repeat's ``--count``, whose instances are not the tests that made the baselines.  A test
that failed, was skipped or did not run keeps its baselines.

``Collection`` is what a process saw while collecting; an xdist worker sends its own
(``to_json``) and the controller merges them (``from_json``, ``merge``).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import baseline
from .vela import ACCELERATOR_ID


@dataclass
class Collection:
    """What collection saw: paths are node-id paths, relative to the rootdir, with ``/``."""

    files: set[str] = field(default_factory=set)  # test files collected without error or skip
    partial: set[str] = field(default_factory=set)  # test files not collected in full
    broken: set[str] = field(default_factory=set)  # directories whose collection failed (a conftest error)
    ignored: set[str] = field(default_factory=set)  # paths collection ignored (--ignore, norecursedirs, ...)
    collected: set[str] = field(default_factory=set)  # node ids of the selected tests
    arguments: list[str] = field(default_factory=list)  # the run's path arguments; "::" marks a node filter
    last_failed: bool = False  # --lf: files with no failure were not collected at all
    #: the plugin saw collection end (no usage error or pytest.exit before it): nothing is
    #: judged unused without it
    complete: bool = False
    ignore_globs: list[str] = field(default_factory=list)  # --ignore-glob patterns, as given
    # tests (node ids without their parameters) that the accelerator matrix option parametrized:
    # the run chose their accelerators, so another accelerator's baseline is not a removed test
    matrix: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {"files": sorted(self.files), "partial": sorted(self.partial), "broken": sorted(self.broken),
                "ignored": sorted(self.ignored), "collected": sorted(self.collected),
                "arguments": self.arguments, "last_failed": self.last_failed, "matrix": sorted(self.matrix),
                "complete": self.complete, "ignore_globs": self.ignore_globs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Collection:
        return cls(files=set(data["files"]), partial=set(data["partial"]), broken=set(data["broken"]),
                   ignored=set(data["ignored"]), collected=set(data["collected"]), arguments=list(data["arguments"]),
                   last_failed=bool(data["last_failed"]), matrix=set(data["matrix"]),
                   complete=bool(data["complete"]), ignore_globs=list(data["ignore_globs"]))

    def merge(self, other: Collection) -> None:
        """Another process's view of the same collection (xdist workers all collect)."""
        self.files |= other.files
        self.partial |= other.partial
        self.broken |= other.broken
        self.ignored |= other.ignored
        self.collected |= other.collected
        self.arguments = self.arguments or other.arguments
        self.last_failed = self.last_failed or other.last_failed
        self.matrix |= other.matrix
        self.complete = self.complete or other.complete
        self.ignore_globs = self.ignore_globs or other.ignore_globs

    def other_accelerator(self, nodeid: str) -> bool:
        """A baseline's test that differs from what this run collected only in the accelerator
        matrix: another accelerator of a test the option parametrized, the test without the
        option, or a matrix instance of a test this run collected without it."""
        if any(nodeid == function or nodeid.startswith(function + "[") for function in self.matrix):
            return True
        start = nodeid.find("[", nodeid.rfind("::"))
        function, params = nodeid[:start], nodeid[start + 1:]
        if start < 0 or not params.endswith("]"):
            return False
        accelerator = ACCELERATOR_ID.pattern
        found = re.fullmatch(rf"(?:(?P<before>.*)-)?{accelerator}|{accelerator}-(?P<after>.*)", params[:-1])
        if found is None:
            return False
        rest = found["before"] or found["after"]
        return (function + (f"[{rest}]" if rest else "")) in self.collected

    def complete_files(self) -> set[str]:
        return set() if self.last_failed else self.files - self.partial

    def complete_directories(self, rootdir: Path) -> list[str]:
        """The directory arguments under which nothing was deselected, broken or partial."""
        if self.last_failed:
            return []
        spoiled = self.partial | self.broken
        directories = []
        for argument in self.arguments:
            if "::" in argument or not (rootdir / argument).is_dir():
                continue
            if not any(_under(path, argument) for path in spoiled):
                directories.append(argument)
        return directories


def _under(path: str, directory: str) -> bool:
    return directory in (".", "") or path == directory or path.startswith(directory.rstrip("/") + "/")


@dataclass(frozen=True)
class Unused:
    path: Path
    target: str  # what `pytest --ethosu-update <target>` takes to delete it: a node id, a file or a directory


def find(root: Path, rootdir: Path, collection: Collection, produced: set[str], passed: set[str]) -> list[Unused]:
    """The unused baselines under ``root`` (the baseline directory), by the rule above.
    ``produced``: the baseline files this run's checks read or wrote; ``passed``: the node ids
    of tests whose final outcome, teardown included, was a pass."""
    if not root.is_dir():
        return []
    files = collection.complete_files()
    directories = collection.complete_directories(rootdir)
    collected = collection.collected
    by_directory: dict[Path, str] = {}
    for nodeid in collected:
        by_directory[baseline.legacy_path(root, nodeid, "x").parent] = nodeid
    for nodeid in collected:
        by_directory[baseline.test_directory(root, nodeid)] = nodeid
    known = collection.files | collection.partial | {n.partition("::")[0] for n in collected}
    by_location = {baseline.location(root, f): f for f in known}

    # a baseline directory outside the rootdir may be another project's too (a monorepo's shared
    # directory): a test file missing from this project is not known to be deleted
    shared = not root.resolve().is_relative_to(rootdir.resolve())

    def deleted_file(file_part: str) -> str | None:
        """The complete directory a test file that no longer exists lay under, if any."""
        where = rootdir / file_part
        if shared or where.is_file() or any(_under(file_part, i) for i in collection.ignored) or any(
                fnmatch.fnmatch(str(path), g) for g in collection.ignore_globs
                for path in (where, *where.parents) if rootdir in (path, *path.parents)):
            return None
        return next((d for d in directories if _under(file_part, d)), None)

    if not collection.complete:
        return []
    # a check that read or wrote through a link inside the baseline directory used the file it leads to
    used = {os.path.realpath(p) for p in produced}
    unused = []
    for path in baseline.find_baselines(root):
        if str(path) in produced or os.path.realpath(path) in used:
            continue
        named = _named(path)
        owner = _owner(path, root, named)
        target: str | None = None
        if owner is not None:  # the file says which test made it, and lies where that test keeps it
            file_part = owner.partition("::")[0]
            if owner in collected:
                target = owner if owner in passed else None
            elif collection.other_accelerator(owner):
                target = None
            elif file_part in files:
                target = file_part
            else:
                target = deleted_file(file_part)
        elif path.parent in by_directory:  # by place: a copied or hand-made file in a test's directory
            nodeid = by_directory[path.parent]
            target = nodeid if nodeid in passed else None
        elif path.parent.parent in by_location:  # in a known test file's location, of no test it has
            known_file = by_location[path.parent.parent]
            target = known_file if known_file in files else None
        else:  # a location of no test file this run knows: one that was deleted, if its name says which
            gone = _file_of(path.parent.parent, root)
            target = deleted_file(gone) if gone is not None and not _names_a_test_on_disk(named, rootdir) else None
        if target is not None:
            unused.append(Unused(path, target))
    return unused


def _named(path: Path) -> tuple[str, str] | None:
    """The (test, estimate name) a baseline file says it holds; read once per file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    test, name = (document.get("test"), document.get("name")) if isinstance(document, dict) else (None, None)
    return (test, name) if isinstance(test, str) and isinstance(name, str) and test else None


def _owner(path: Path, root: Path, named: tuple[str, str] | None) -> str | None:
    """The node id a baseline file names, when the file lies where that test keeps it."""
    if named is None:
        return None
    test, name = named
    return test if path in (baseline.baseline_path(root, test, name), baseline.legacy_path(root, test, name)) else None


def _names_a_test_on_disk(named: tuple[str, str] | None, rootdir: Path) -> bool:
    """The file says it is the baseline of a test whose file exists, though it lies elsewhere
    (a second baseline directory nested in this one, a copy): not a deleted file's."""
    file_part = named[0].partition("::")[0] if named is not None else ""
    return bool(file_part) and (rootdir / file_part).is_file()


def _file_of(location: Path, root: Path) -> str | None:
    """The test file (``.py``) whose baselines would live in ``location``; None when a part of
    it was hashed and cannot be read back."""
    try:
        parts = location.relative_to(root).parts
    except ValueError:
        return None
    if not parts or any(baseline.safe_component(p, keep_case=True) != p for p in parts):
        return None
    return str(PurePosixPath(*parts)) + ".py"
