"""A test's checks between the call and the end of the test, where fixture and session meet.

``ethosu_perf(...)`` (``fixture.py``) leaves one ``Pending`` per estimate in the item's
``ItemState`` (``item.stash[item_state_key]``): the baseline file, the document to write, the
record and the gate's verdict.  Once the test's outcome is final, teardown included, the session
(``session.finish_item``) writes what passed, gives each record its final status and hands it
to the ``pytest_ethosu_result`` hook.  Neither side reaches into the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .baseline import Baseline
from .gate import Verdict
from .record import Record
from .result import EstimateResult


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


@dataclass
class ItemState:
    pending: list[Pending] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    baselines: set[str] = field(default_factory=set)  # the baseline files its checks read or wrote (never unused)
    finished: bool = False  # the test's report is made: its checks are recorded, no more can be


item_state_key = pytest.StashKey[ItemState]()
