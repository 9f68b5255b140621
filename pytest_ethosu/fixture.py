"""What a test receives from the ``ethosu_perf`` fixture.

One check, from the call to the record: ``EthosuPerf.__call__`` checks its arguments (before
Vela runs), resolves the target (``target.py``), asks the session's ``Estimator``
(``estimator.py``), runs the advice hook over the result (``advisor.py`` and conftest rules),
and hands the result to ``check.run``, which reads the baseline (``baseline.py``), lets the
gate decide (``gate.py``, which compares with ``compare.py``) and keeps the outcome and its
record (``report.py``) on the item.  A failing verdict raises ``CheckFailed`` with
``check.failure``'s message.  The session (``session.py``) has ``check.finish`` write pending
baselines once the test has passed, and prints the records at the end.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest

from . import budget as budgets
from . import check, escape
from .check import ItemState, item_state_key
from .compare import Tolerances
from .errors import ArgumentError, CheckFailed, EthosuWarning, ModelError
from .estimator import ModelArg
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


def _call_line(item: pytest.Item) -> int | None:
    """The line of the test's file that called the check, innermost first (the test itself, or
    a helper in that file); None when the call came from elsewhere (a conftest's helper)."""
    path = str(getattr(item, "path", ""))
    frame = sys._getframe(2)  # the caller of EthosuPerf.__call__
    while frame is not None:
        if frame.f_code.co_filename == path:
            return frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None


class EthosuPerf:
    """What the ``ethosu_perf`` fixture gives a test.

    ``estimate(model, **target)`` returns Vela's estimate.  Calling the object,
    ``ethosu_perf(model, name=..., **target, rtol=..., atol=..., tolerances=..., budget=...)``,
    estimates and checks the result against the test's baseline and its budgets (``budget.py``),
    and returns the estimate.
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
        #: every marker's settings, closest first: their tolerances= merge metric by metric and
        #: their budgets figure by figure, as the call's and the session's do
        self._markers = [mark.kwargs for mark in item.iter_markers("ethosu")]
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
        check.unchecked(self._session.context, self._item, self._state, result)
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
                 tolerances: dict[str, dict[str, float]] | None = None,
                 budget: Mapping[str, Any] | None = None, calibration: Any = None,
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
            tol = Tolerances.merge([{"rtol": rtol, "atol": atol, "tolerances": tolerances}, *self._markers,
                                    {"rtol": session.settings.rtol, "atol": session.settings.atol}])
            limits = budgets.merge([budgets.parse(budget, "budget="),
                                    *(budgets.parse(m.get("budget"), "the ethosu marker's budget=") for m in self._markers),
                                    session.settings.budget])
        except ValueError as exc:  # BudgetError too
            raise ArgumentError(str(exc)) from None
        resolved = self.target(**target)
        self._names.add(name)
        result = self._estimate(model, resolved, pytorch, check=True)
        context = session.context
        message = check.failure(context, nodeid, check.run(context, self._item, self._state, name, result, tol,
                                                           limits, line=_call_line(self._item)))
        if message is not None:
            raise CheckFailed(message)
        return result
