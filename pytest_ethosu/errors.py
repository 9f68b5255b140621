"""Exceptions and the warning that estimates and checks raise.

Every error carries a message written for the person reading a failed test: which file, what
went wrong, what to do next.  The plugin reports these without a traceback (see
``session.EthosuSession.pytest_runtest_makereport``).  All of them are importable from
``pytest_ethosu``, so a test can name them, for example in ``pytest.mark.xfail(raises=...)``.
"""

from __future__ import annotations


class EthosuError(Exception):
    """Base class of every error this plugin raises for one estimate or check."""


class ModelError(EthosuError):
    """The model cannot be estimated: missing, empty, not a TFLite or TOSA flatbuffer, ..."""


class TargetError(EthosuError):
    """An accelerator, system config, memory mode, Vela config file or Vela option that cannot
    be used."""


class VelaError(EthosuError):
    """Vela rejected the model or its options, or failed while compiling it."""


class VelaCrash(VelaError):
    """The worker process died while Vela ran (for example a segmentation fault).

    ``status`` is the worker's exit status (negative: the signal that killed it), when known.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def model_caused(self) -> bool:
        """Killed by a fault signal, not from outside (SIGKILL, SIGTERM) nor a clean exit."""
        return self.status is not None and -self.status in (4, 6, 7, 8, 11)  # ILL ABRT BUS FPE SEGV


class VelaTimeout(VelaError):
    """Vela did not finish within the configured time."""


class WorkerStartError(EthosuError):
    """The worker process that runs Vela could not start (for example Vela fails to import)."""


class CheckFailed(EthosuError):
    """An estimate regressed against its baseline, or its baseline is missing."""


class BaselineError(EthosuError):
    """A baseline file exists but cannot be used; it is never overwritten by a check."""


class ArgumentError(EthosuError, TypeError):
    """A call keyword or marker argument that the plugin does not take, or a value of the wrong
    type or range; raised before Vela runs."""


class EthosuWarning(UserWarning):
    """An estimate was made, but it does not mean what it seems (float or precompiled model)."""
