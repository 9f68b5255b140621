"""pytest-ethosu: gate Arm Ethos-U performance estimates from the Vela compiler in pytest."""

from __future__ import annotations

from .errors import (
    ArgumentError,
    BaselineError,
    CheckFailed,
    EthosuError,
    EthosuWarning,
    ModelError,
    TargetError,
    VelaCrash,
    VelaError,
    VelaTimeout,
    WorkerStartError,
)
from .result import EstimateResult, Finding, Layer

__all__ = [
    "ArgumentError",
    "BaselineError",
    "CheckFailed",
    "EstimateResult",
    "EthosuError",
    "EthosuWarning",
    "Finding",
    "Layer",
    "ModelError",
    "TargetError",
    "VelaCrash",
    "VelaError",
    "VelaTimeout",
    "WorkerStartError",
]
