"""Exceptions raised by estimates and checks.

Every error carries a message written for the person reading a failed test: which file, what
went wrong, what to do next.  The plugin reports these without a traceback (see ``plugin.py``).
"""

from __future__ import annotations


class EthosuError(Exception):
    """Base class of every error this plugin raises for one estimate or check."""


class ModelError(EthosuError):
    """The model file cannot be estimated: missing, empty, not a TFLite flatbuffer, ..."""


class TargetError(EthosuError):
    """An accelerator, system config, memory mode or Vela config file Vela does not know."""


class VelaError(EthosuError):
    """Vela rejected the model or its options, or failed while compiling it."""


class VelaCrash(VelaError):
    """Vela killed the worker process (for example a segmentation fault)."""


class VelaTimeout(VelaError):
    """Vela did not finish within the configured time."""


class WorkerStartError(EthosuError):
    """The worker process that runs Vela could not start (for example Vela fails to import)."""


class EthosuWarning(UserWarning):
    """An estimate was made, but it does not mean what it seems (float or precompiled model)."""
