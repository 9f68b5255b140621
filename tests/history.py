"""Do estimates depend on what the worker compiled before?  The same estimates, in one
long-lived worker in an interleaved order, and each in a worker of its own.

Used by ``tests/test_worker.py`` (generated models, in the Vela matrix) and by
``benchmarks/parity.py --history`` (the shared real models, by hand).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_ethosu.estimator import Estimator
from pytest_ethosu.target import Target, resolve


def targets(root: Path, accelerators: Sequence[str], core_args: dict[str, list[str]]) -> list[Target]:
    """Each accelerator with each core; regor only on Ethos-U85 (the only core it has)."""
    chosen = []
    for accelerator in accelerators:
        for core, args in core_args.items():
            if accelerator.startswith("ethos-u85") and core == "legacy":
                continue
            if accelerator.startswith("ethos-u85") and args:
                args = []  # U85's one core is the default; it takes no core option
            target = resolve([{"accelerator": accelerator, "vela_args": args}], root)
            if target not in chosen:
                chosen.append(target)
    return chosen


def _figures(estimator: Estimator, model: Path, target: Target) -> dict[str, Any] | str:
    try:
        return estimator.estimate(model, target).to_dict()
    except Exception as exc:  # a failure is a figure too: it must not depend on the history
        return f"{type(exc).__name__}: {exc}"


def differences(models: Sequence[Path], chosen: Sequence[Target]) -> tuple[int, list[str]]:
    """(estimates compared, what differed).  The one-worker order walks the targets inside
    the models and then the models inside the targets, so each compile follows others of
    other models and targets; no disk cache and the memo emptied, so every estimate is compiled."""
    order = [(m, t) for m in models for t in chosen]
    order += [(m, t) for t in reversed(chosen) for m in reversed(models)]
    with tempfile.TemporaryDirectory(prefix="ethosu-history-") as directory:
        scratch = Path(directory)
        shared = Estimator(scratch, scratch, timeout=600)
        try:
            together = []
            for model, target in order:
                shared._memo.clear()  # every estimate compiled: the memo would answer the second pass
                together.append((model, target, _figures(shared, model, target)))
            starts, runs = shared.worker.starts, shared.vela_runs
        finally:
            shared.close()
        found = [] if starts == 1 else [f"the shared worker started {starts} times"]
        found += [] if runs == len(order) else [f"{runs} compiles for {len(order)} estimates"]
        alone: dict[tuple[Path, Target], dict[str, Any] | str] = {}
        for model, target in dict.fromkeys(order):
            fresh = Estimator(scratch, scratch, timeout=600)
            try:
                alone[model, target] = _figures(fresh, model, target)
            finally:
                fresh.close()
    for model, target, figures in together:
        if figures != alone[model, target]:
            found.append(f"{model.name} on {target.accelerator} {' '.join(target.vela_args)}: "
                         f"differs after other compiles ({str(figures)[:200]})")
    return len(together), found
