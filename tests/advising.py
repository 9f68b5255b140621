"""An estimator with the built-in advice on its results, as the fixture's pass gives it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pytest_ethosu import advisor
from pytest_ethosu.estimator import Estimator, ModelArg
from pytest_ethosu.result import EstimateResult
from pytest_ethosu.target import Target


class Advising:
    """``estimate`` returns the estimate with the built-in rules' findings, their suggestions
    verified through ``Estimator.verify``, as ``ethosu_perf`` does."""

    def __init__(self, estimator: Estimator) -> None:
        self.estimator = estimator
        self.rootdir: Path = estimator.rootdir

    def estimate(self, model: ModelArg, target: Target, **kwargs: Any) -> EstimateResult:
        result = self.estimator.estimate(model, target, **kwargs)
        findings = advisor.advise(result, lambda data: self.estimator.verify(data, target))
        return dataclasses.replace(result, findings=tuple(findings))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.estimator, name)
