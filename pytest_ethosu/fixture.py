"""What a test receives from the ``ethosu_perf`` fixture.

One check, from the call to the record: ``EthosuPerf.__call__`` checks its arguments (before
Vela runs), resolves the target (``target.py``), asks the session's ``Estimator``
(``estimator.py``), builds the baseline document (``baseline.py``), lets the gate decide
(``gate.py``, which compares with ``compare.py``), and keeps a ``Pending`` outcome with its
record (``report.py``) on the item (``check.py``).  A failing verdict raises ``CheckFailed`` with the message
from ``report.py``.  The session (``session.py``) writes pending baselines once the test has
passed and prints the records at the end.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import baseline, escape, report
from .check import ItemState, Pending, item_state_key
from .compare import Tolerances
from .errors import ArgumentError, CheckFailed, EthosuWarning, ModelError
from .estimator import ModelArg
from .gate import Failure, Status, Verdict, decide
from .options import MARKER_KEYS, TARGET_KEYS, split_names
from .result import EstimateResult, Finding
from .target import Target, resolve

if TYPE_CHECKING:
    from .session import EthosuSession



def _unknown(kind: str, given: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ArgumentError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")


def _pytorch_arguments(model: Any, example_inputs: Any, calibration: Any, quantize: Any
                       ) -> tuple[Any, Any, bool] | None:
    """``(example_inputs, calibration, quantize)`` for a PyTorch model, None for a model file.
    PyTorch is imported only when the test passes a PyTorch model (``pytorch.py``)."""
    if not isinstance(quantize, bool):
        raise ArgumentError(f"quantize must be True or False, not {quantize!r}")
    if isinstance(model, (bytes, bytearray, memoryview)) or (
            isinstance(model, (str, os.PathLike)) and not os.fspath(model).endswith(".pt2")):
        if example_inputs is not None or calibration is not None or not quantize:
            raise ArgumentError("example_inputs, calibration and quantize are for PyTorch models (a module, "
                                "an ExportedProgram or a .pt2 file), not for a .tflite or .tosa file")
        return None
    from . import pytorch as pytorch_flow

    if not pytorch_flow.is_pytorch_model(model):
        if example_inputs is None:
            return None  # the estimator says what a model can be
        pytorch_flow.require()  # a PyTorch model without PyTorch installed: name the extra
    return example_inputs, calibration, quantize


class EthosuPerf:
    """What the ``ethosu_perf`` fixture gives a test.

    ``estimate(model, **target)`` returns Vela's estimate.  Calling the object,
    ``ethosu_perf(model, name=..., **target, rtol=..., atol=..., tolerances=...)``, estimates and
    checks the result against the test's baseline, and returns the estimate.
    """

    def __init__(self, item: pytest.Item, session: EthosuSession, accelerator: str | None) -> None:
        self._item = item
        self._session = session
        self._param_accelerator = accelerator
        marker: dict[str, Any] = {}
        for mark in item.iter_markers("ethosu"):  # closest first
            for key, value in mark.kwargs.items():
                marker.setdefault(key, value)
        self._marker = marker
        self._state = item.stash.setdefault(item_state_key, ItemState())
        self._state.finished = False  # a new attempt (pytest-rerunfailures) makes a new fixture
        self._names: set[str] = set()

    def _check_marker(self) -> None:
        _unknown("ethosu marker argument(s)", self._marker, MARKER_KEYS)
        positional = [arg for mark in self._item.iter_markers("ethosu") for arg in mark.args]
        if positional:
            raise ArgumentError(f"the ethosu marker takes keyword arguments only, not {positional[0]!r}; valid: "
                                + ", ".join(MARKER_KEYS))
        if "accelerators" in self._marker:
            if not split_names(self._marker["accelerators"]):
                raise ArgumentError("the ethosu marker's accelerators= names no accelerator")
            if "accelerator" in self._marker:
                raise ArgumentError("the ethosu marker sets both accelerator= and accelerators=: give one")

    def target(self, **call: Any) -> Target:
        """The target an estimate with these keywords would use."""
        self._check_marker()
        _unknown("target keyword(s)", call, TARGET_KEYS)
        fixed = call.get("accelerator")
        if self._param_accelerator and fixed and str(fixed).lower() != self._param_accelerator.lower():
            raise ArgumentError(
                f"{self._item.nodeid} runs once per accelerator (--ethosu-accelerators, ethosu_accelerators or "
                f"the marker's accelerators=), but this call fixes accelerator={fixed!r}. Drop accelerator= from "
                "the call to follow the matrix, or mark the test @pytest.mark.ethosu(accelerator=...) to keep it "
                "out of the matrix.")
        param = {"accelerator": self._param_accelerator}
        return resolve([call, param, self._marker, self._session.settings.target], self._session.rootdir)

    def estimate(self, model: ModelArg | Any, example_inputs: Any = None, *, calibration: Any = None,
                 quantize: bool = True, **target: Any) -> EstimateResult:
        """Estimate ``model`` with Vela on the resolved target; no baseline is involved.

        ``model`` is a ``.tflite`` or ``.tosa`` file (a path or its bytes), or a PyTorch model:
        a ``torch.nn.Module``, a ``torch.export.ExportedProgram`` or a ``.pt2`` path, with its
        ``example_inputs`` (``calibration``: an iterable of inputs for quantisation, default the
        example inputs; ``quantize=False`` for a program that is already quantised).
        """
        __tracebackhide__ = True
        pytorch = _pytorch_arguments(model, example_inputs, calibration, quantize)
        result = self._estimate(model, self.target(**target), pytorch)
        self._pend("", None, None, result, Verdict(Status.UNCHECKED, None, write=False), None)
        return result

    def _estimate(self, model: ModelArg | Any, target: Target,
                  pytorch: tuple[Any, Any, bool] | None = None, check: bool = False) -> EstimateResult:
        """Vela's estimate with the advice on it; for a check (``check``), a precompiled model is
        refused before its warning, so ``-W error`` still names the real problem."""
        __tracebackhide__ = True
        session = self._session
        if pytorch is not None:
            result = session.estimator.estimate_pytorch(model, *pytorch, target, self._state.logs)
        else:
            result = session.estimator.estimate(model, target, self._state.logs)
        if check and result.precompiled:
            raise ModelError(f"{result.model} was already compiled by Vela: its work sits in one 'ethos-u' "
                             "operator that Vela cannot estimate, so a baseline would record 0 cycles. Check "
                             "the model from before Vela (the converter's .tflite).")
        for text in result.warnings:
            warnings.warn(EthosuWarning(escape.terminal_lines(text)), stacklevel=3)  # the line in the test
        if session.settings.advise:  # a pass over the final result: the built-in rules (advisor.py), then hooks
            findings: list[Finding] = []
            estimator = session.estimator
            session.config.hook.pytest_ethosu_advice(config=session.config, result=result, findings=findings,
                                                     verify=lambda data: estimator.verify(data, target))
            result = dataclasses.replace(result, findings=tuple(findings))
        return result

    def __call__(self, model: ModelArg | Any, example_inputs: Any = None, *, name: str = "default",
                 rtol: float | None = None, atol: float | None = None,
                 tolerances: dict[str, dict[str, float]] | None = None, calibration: Any = None,
                 quantize: bool = True, **target: Any) -> EstimateResult:
        __tracebackhide__ = True
        session, nodeid = self._session, self._item.nodeid
        if self._state.finished:
            raise ArgumentError(f"ethosu_perf of {nodeid} was called after that test ended (from a fixture of a "
                                "wider scope, or saved elsewhere): its check could never be recorded. Call it from "
                                "the test or from a function-scoped fixture's teardown.")
        pytorch = _pytorch_arguments(model, example_inputs, calibration, quantize)
        if not isinstance(name, str) or not name:
            raise ArgumentError(f"name must be a non-empty string, not {name!r}")
        if name in self._names:
            raise ArgumentError(f"{nodeid}: two checks named {name!r}; give each ethosu_perf(...) call "
                                "in a test its own name=")
        try:
            tol = Tolerances.merge([{"rtol": rtol, "atol": atol, "tolerances": tolerances}, self._marker,
                                    {"rtol": session.settings.rtol, "atol": session.settings.atol}])
        except ValueError as exc:
            raise ArgumentError(str(exc)) from None
        resolved = self.target(**target)
        self._names.add(name)
        result = self._estimate(model, resolved, pytorch, check=True)
        root = session.settings.baseline_root
        if not nodeid.partition("::")[0]:
            raise ArgumentError(f"{nodeid}: its test file lies outside pytest's rootdir ({session.rootdir}), so its "
                                "node id names no file and its baseline would have no place. Run pytest with a rootdir "
                                "that contains the test files (--rootdir, or the ini file's directory).")
        path = baseline.baseline_path(root, nodeid, name)
        baseline.check_place(path, root, session.relative)
        legacy = None if path.exists() else baseline.legacy_for(root, nodeid, name)
        self._state.baselines.update(str(p) for p in (path, legacy) if p is not None)
        read = legacy or path
        shown = session.relative(read)
        document = baseline.Baseline.of(result, nodeid, name)
        stored = baseline.load(read) if read.exists() else None  # a broken one fails here, kept
        if stored is not None and legacy is None:
            baseline.refuse_another_tests_legacy(root, path, stored, nodeid, shown)
        verdict = decide(stored, document, tol, update=session.settings.update,
                         strict=session.settings.strict, drift_policy=session.settings.drift_policy)
        self._pend(name, path, document, result, verdict, shown, legacy)
        if verdict.failure is None:
            baseline.remove_obtained(path)  # a leftover of an earlier failure
            return result
        label = f"{result.model} on {result.accelerator}" + (f" [{name}]" if name != "default" else "")
        accept = session.update_command([nodeid])
        if verdict.failure is Failure.MISSING:
            raise CheckFailed(report.missing_message(label, accept, shown))
        try:  # beside the baseline, for diff: what this run estimated
            obtained = session.relative(baseline.write_obtained(path, document, session.settings.baseline_root))
        except OSError:
            obtained = None
        assert verdict.comparison is not None
        compare = f"\nthis run's estimate: {obtained} (diff it against the baseline)" if obtained else ""
        if verdict.failure is Failure.DRIFT:
            raise CheckFailed(report.drift_message(label, accept, verdict.comparison, shown) + compare)
        raise CheckFailed(report.failure_message(label, accept, verdict.comparison, shown,
                                                 session.config.get_verbosity(), session.settings.strict) + compare)

    def _pend(self, name: str, path: Path | None, document: baseline.Baseline | None, result: EstimateResult,
              verdict: Verdict, shown: str | None, legacy: Path | None = None) -> None:
        """Keep the outcome on the item until the test ends, and tell the result hook."""
        item = self._item
        location = (item.location[0], (item.location[1] or 0) + 1)
        record = report.make_record(item.nodeid, location, name, result, verdict.status, verdict.comparison,
                                    shown, self._session.wants_detail(verdict.status))
        self._state.pending.append(Pending(name, path, document, record, verdict, result, legacy))
