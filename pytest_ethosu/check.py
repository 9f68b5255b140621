"""One check, from the fixture's call to its final status: the baseline it reads, the verdict,
the record, and the write once the test has ended.

``ethosu_perf(...)`` (``fixture.py``) hands each estimate to ``run``, which finds the baseline
file, reads it, lets the gate decide (``gate.py``) and keeps a ``Pending`` on the item's
``ItemState`` (``item.stash[item_state_key]``) with its record (``report.make_record``).
``failure`` is the message a failing verdict raises.  Once the test's outcome is final,
teardown included, the session (``session.finish_item``) calls ``finish``, which writes what
passed and gives the final status; the record then goes to the ``pytest_ethosu_result`` hook.
The session's side of it is one ``Context``, built once from the settings: neither the fixture
nor this module reaches into the session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import baseline, budget, report
from .baseline import Baseline
from .budget import Limit, Use
from .compare import Tolerances
from .errors import ArgumentError, BaselineError
from .gate import Failure, Status, Verdict, after_test, decide
from .record import Record
from .result import EstimateResult


@dataclass(frozen=True)
class Context:
    """What checks need from the session: where baselines live, the run's mode, and how
    messages name files and the command that accepts a change."""

    root: Path  # the baseline directory
    rootdir: Path  # pytest's
    update: bool
    strict: bool
    drift_policy: str
    verbosity: int
    relative: Callable[[Path], str]  # a path as messages show it
    accept: Callable[[list[str]], str]  # the command that re-baselines these tests
    detail: Callable[[Status], bool]  # whether a record with this status carries every layer


@dataclass
class Pending:
    """A check's outcome, kept on the item until the test's result is known."""

    name: str  # "" for a plain estimate()
    path: Path | None  # the baseline file of a check
    document: Baseline | None  # what a passing check writes
    record: Record  # its status is the verdict's until the test ends
    verdict: Verdict
    result: EstimateResult
    legacy: Path | None = None  # the baseline was read where pytest-ethosu 0.1 kept it; a write moves it
    shown: str | None = None  # the baseline file read, as messages name it


@dataclass
class ItemState:
    pending: list[Pending] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    baselines: set[str] = field(default_factory=set)  # the baseline files its checks read or wrote (never unused)
    finished: bool = False  # the test's report is made: its checks are recorded, no more can be


item_state_key = pytest.StashKey[ItemState]()


def _record(context: Context, item: pytest.Item, name: str, result: EstimateResult, verdict: Verdict,
            shown: str | None, uses: tuple[Use, ...] = (), line: int | None = None) -> Record:
    location = (item.location[0], line or (item.location[1] or 0) + 1)
    if verdict.failure is Failure.BUDGET and verdict.comparison is None:
        shown = None  # over budget with no baseline: the reports name none (the failure says where it would go)
    return report.make_record(item.nodeid, location, name, result, verdict.status, verdict.comparison, shown,
                              context.detail(verdict.status), uses)


def unchecked(context: Context, item: pytest.Item, state: ItemState, result: EstimateResult) -> None:
    """A plain ``estimate()``: recorded, never compared."""
    verdict = Verdict(Status.UNCHECKED, None, write=False)
    state.pending.append(Pending("", None, None, _record(context, item, "", result, verdict, None), verdict, result))


def run(context: Context, item: pytest.Item, state: ItemState, name: str, result: EstimateResult,
        tolerances: Tolerances, limits: tuple[Limit, ...] = (), line: int | None = None) -> Pending:
    """Compare ``result`` with the baseline of (test, ``name``) and its budgets (``limits``) and
    keep the outcome on the item.  A broken baseline raises ``BaselineError`` here, and is kept."""
    nodeid, root = item.nodeid, context.root
    if not nodeid.partition("::")[0]:
        raise ArgumentError(f"{nodeid}: its test file lies outside pytest's rootdir ({context.rootdir}), so its "
                            "node id names no file and its baseline would have no place. Run pytest with a rootdir "
                            "that contains the test files (--rootdir, or the ini file's directory).")
    path = baseline.baseline_path(root, nodeid, name)
    baseline.check_place(path, root, context.relative)
    legacy = None if path.exists() else baseline.legacy_for(root, nodeid, name)
    state.baselines.update(str(p) for p in (path, legacy) if p is not None)
    read = legacy or path
    shown = context.relative(read)
    document = Baseline.of(result, nodeid, name)
    stored = baseline.load(read) if read.exists() else None  # a broken one fails here, kept
    if stored is not None and legacy is None:
        baseline.refuse_another_tests_legacy(root, path, stored, nodeid, shown)
    uses = budget.check(result, limits)
    verdict = decide(stored, document, tolerances, update=context.update, strict=context.strict,
                     drift_policy=context.drift_policy, over_budget=bool(budget.over(uses)))
    pending = Pending(name, path, document, _record(context, item, name, result, verdict, shown, uses, line),
                      verdict, result, legacy, shown)
    state.pending.append(pending)
    return pending


def failure(context: Context, nodeid: str, pending: Pending) -> str | None:
    """The message of a failing check (None when it passes).  A failure leaves what it estimated
    beside the baseline (``*.obtained.json``), for diffing; a pass removes an old one."""
    verdict, path, result, shown = pending.verdict, pending.path, pending.result, pending.shown
    assert path is not None and pending.document is not None and shown is not None
    if verdict.failure is None:
        baseline.remove_obtained(path)  # a leftover of an earlier failure
        return None
    label = f"{result.model} on {result.accelerator}" + (f" [{pending.name}]" if pending.name != "default" else "")
    accept = context.accept([nodeid])
    if verdict.failure is Failure.MISSING:
        return report.missing_message(label, accept, shown)
    if verdict.failure is Failure.BUDGET and verdict.comparison is None:
        return report.budget_message(label, pending.record.budget, None, shown, accept)
    try:
        obtained = context.relative(baseline.write_obtained(path, pending.document, context.root))
    except OSError:
        obtained = None
    assert verdict.comparison is not None
    compare = f"\nthis run's estimate: {obtained} (diff it against the baseline)" if obtained else ""
    if verdict.failure is Failure.BUDGET:
        return report.budget_message(label, pending.record.budget, verdict.comparison, shown, accept) + compare
    if verdict.failure is Failure.DRIFT:
        return report.drift_message(label, accept, verdict.comparison, shown) + compare
    return report.failure_message(label, accept, verdict.comparison, shown, context.verbosity,
                                  context.strict) + compare


def finish(context: Context, pending: Pending, passed: bool) -> tuple[Status, list[str], list[str]]:
    """After the test's teardown: write the pending baseline if the test passed.  The check's
    final status, the write errors (which fail the run) and other problems to report."""
    changed: bool | None = None
    errors: list[str] = []
    problems: list[str] = []
    path = pending.path
    existed = path is not None and (path.exists() or pending.legacy is not None)
    if passed and pending.verdict.write:
        assert path is not None and pending.document is not None
        try:
            changed = baseline.write(path, pending.document)
        except OSError as exc:
            errors.append(f"could not write baseline {context.relative(path)}: {exc.strerror or exc}. Check that "
                          "the baseline directory is writable and the disk has space; the old file is unchanged.")
        else:
            if pending.legacy is not None:  # moved from where pytest-ethosu 0.1 kept it
                changed = True
                try:
                    baseline.remove(pending.legacy, context.root)
                except (OSError, BaselineError) as exc:
                    problems.append(f"could not delete {context.relative(pending.legacy)} after moving it to "
                                    f"{context.relative(path)}: {exc}")
    return after_test(pending.verdict, passed, existed, changed), errors, problems
