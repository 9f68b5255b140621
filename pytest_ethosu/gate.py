"""The gate's decision for one check, as a pure function of its inputs.

``decide`` takes the stored baseline (None when there is none), the new estimate as a baseline,
the tolerances and the run's mode, and returns a ``Verdict``: the status, the comparison,
whether a baseline is to be written once the test has passed, and why the check fails, if it
does.  It reads no files and raises nothing, so every rule is testable without a session; the
fixture (``fixture.py``) gathers the inputs and reports the verdict.

The rules:

- over budget (``budget.py``): fail, baseline or not, ``--ethosu-update`` or not, and keep the
  baseline (an update accepts a change, not a model that no longer fits the device);
- no baseline: fail as *missing*, or under ``--ethosu-update`` write one;
- under ``--ethosu-update``: compare (for the summary) and write;
- the estimator changed (another Vela, core or target option): ``ethosu_drift`` decides:
  ``fail`` fails, ``update`` writes a new baseline, ``warn`` compares anyway;
- a regression fails (a move to the CPU always does); with ``strict``, improvements and added
  or removed layers fail too;
- otherwise the status is the comparison's (``drift`` when the estimator changed).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .compare import Comparison, Tolerances, compare

if TYPE_CHECKING:
    from .baseline import Baseline

DRIFT_POLICIES = ("warn", "fail", "update")


class Status(str, enum.Enum):
    """A check's (or plain estimate's) status, as the summary and the JSON report show it."""

    OK = "ok"
    REGRESSED = "regressed"
    IMPROVED = "improved"
    CHANGED = "changed"
    DRIFT = "drift"
    MISSING = "missing"
    PENDING = "pending"  # a baseline waits to be written when the test passes
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    UNWRITTEN = "unwritten"  # the test failed (or the write did), so the baseline was kept
    UNCHECKED = "unchecked"  # a plain estimate(): no baseline involved
    OVER_BUDGET = "over_budget"  # a figure exceeds its absolute budget (with or without a baseline)

    def __str__(self) -> str:
        return self.value


class Failure(enum.Enum):
    REGRESSED = "regressed"
    MISSING = "missing"
    DRIFT = "drift"
    BUDGET = "budget"


#: the statuses of a check that failed on its figures (not on a missing baseline): what reports put first
FAILED = (Status.REGRESSED, Status.OVER_BUDGET)


@dataclass(frozen=True)
class Verdict:
    status: Status
    comparison: Comparison | None
    write: bool
    failure: Failure | None = None


def decide(stored: Baseline | None, document: Baseline, tolerances: Tolerances, *,
           update: bool, strict: bool, drift_policy: str, over_budget: bool = False) -> Verdict:
    """The verdict for one check (see the module's docstring for the rules).  ``over_budget``:
    a figure of the estimate exceeds its budget (``budget.check``)."""
    if over_budget:
        comparison = compare(stored, document, tolerances) if stored is not None else None
        return Verdict(Status.OVER_BUDGET, comparison, write=False, failure=Failure.BUDGET)
    if stored is None:
        if update:
            return Verdict(Status.PENDING, None, write=True)
        return Verdict(Status.MISSING, None, write=False, failure=Failure.MISSING)
    comparison = compare(stored, document, tolerances)
    if update:
        return Verdict(Status.PENDING, comparison, write=True)
    status = Status(comparison.status())
    if comparison.drift and drift_policy == "fail":
        return Verdict(status, comparison, write=False, failure=Failure.DRIFT)
    if comparison.drift and drift_policy == "update":
        return Verdict(Status.PENDING, comparison, write=True)
    if comparison.failed(strict):
        return Verdict(status, comparison, write=False, failure=Failure.REGRESSED)
    return Verdict(Status.DRIFT if comparison.drift else status, comparison, write=False)


def after_test(verdict: Verdict, passed: bool, existed: bool, changed: bool | None) -> Status:
    """The final status of a check once its test has ended.  ``changed`` is None when the
    baseline write failed, else whether the write changed the file."""
    if not verdict.write:
        return verdict.status
    if not passed or changed is None:
        return Status.UNWRITTEN
    if not changed:
        return Status.UNCHANGED
    return Status.UPDATED if existed else Status.CREATED
