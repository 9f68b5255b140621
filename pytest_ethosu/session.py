"""Session state and the object tests receive from the ``ethosu_perf`` fixture.

One estimate's journey: the test calls ``ethosu_perf(model, ...)`` (``EthosuPerf.__call__``),
which resolves the target (``target.py``), asks the ``Estimator`` (``estimator.py``), builds the
baseline document (``baseline.py``) and compares it (``compare.py``).  A regression raises
``CheckFailed`` with the message from ``report.py``; otherwise a record joins the session.  In
update mode the new document waits on the item and is written only once the test has passed
(``EthosuSession.finish_item``).  At the end, ``plugin.py`` prints the records as the summary.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import baseline, report
from .cache import EstimateCache
from .compare import Comparison, Tolerances, compare
from .errors import EthosuError
from .estimator import Estimator, ModelArg, shown_path
from .result import EstimateResult
from .target import SETTINGS, Target, resolve

DRIFT_POLICIES = ("warn", "fail", "update")
TOLERANCE_KEYS = ("rtol", "atol", "tolerances")
TARGET_KEYS = tuple(SETTINGS)


class CheckFailed(EthosuError):
    """An estimate regressed against its baseline, or its baseline is missing or unusable."""


@dataclass
class Pending:
    """A check's outcome, kept on the item until the test's result is known."""

    name: str  # "" for a plain estimate()
    path: Path | None  # the baseline file of a check
    document: dict[str, Any] | None
    record: dict[str, Any]
    write: bool


@dataclass
class ItemState:
    pending: list[Pending] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)


item_state_key = pytest.StashKey[ItemState]()


def _option(config: pytest.Config, flag: str, ini: str) -> Any:
    value = config.getoption(flag.lstrip("-").replace("-", "_"), None)
    return value if value not in (None, "") else (config.getini(ini) or None)


class EthosuSession:
    """Per-process state, registered as the plugin ``ethosu-session``.

    Workers under xdist each have one; they send their records and bookkeeping to the
    controller through ``workeroutput`` and never write session-level output.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rootdir = config.rootpath
        self.update: bool = config.getoption("ethosu_update")
        self.detailed = bool(config.getoption("ethosu_json"))  # records carry every layer
        self.advise = not config.getoption("ethosu_no_advice") and config.getini("ethosu_advice")
        self.strict: bool = config.getoption("ethosu_strict")
        policy = str(config.getini("ethosu_drift") or "warn")
        if policy not in DRIFT_POLICIES:
            raise pytest.UsageError(f"ethosu_drift must be one of {', '.join(DRIFT_POLICIES)}, not {policy!r}")
        self.drift_policy = policy
        directory = _option(config, "--ethosu-baseline-dir", "ethosu_baseline_dir") or "baselines"
        self.baseline_root = (self.rootdir / directory).resolve()
        timeout = _option(config, "--ethosu-timeout", "ethosu_timeout")
        self.timeout = float(timeout) if timeout else 300.0
        self.settings = {name: _option(config, flag, ini) for name, (flag, ini, _) in SETTINGS.items()}
        rtol = _option(config, "--ethosu-rtol", "ethosu_rtol")
        atol = config.getini("ethosu_atol")
        try:
            self.tolerance_settings = {"rtol": float(rtol) if rtol else None,
                                       "atol": float(atol) if atol else None}
        except ValueError:
            raise pytest.UsageError(f"--ethosu-rtol / ethosu_rtol / ethosu_atol must be numbers, "
                                    f"not {rtol!r} / {atol!r}") from None
        self.cache_dir = self._cache_dir(config)
        self._estimator: Estimator | None = None
        self._scratch: str | None = None
        self.records: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.produced: set[str] = set()  # baseline files that this session's checks used
        self.passed_tests: set[str] = set()  # tests whose every check ran to the end
        self.deleted: list[Path] = []
        self.output_errors: list[str] = []

    @property
    def estimator(self) -> Estimator:
        """Started on first use: a session that never estimates starts no worker."""
        if self._estimator is None:
            self._scratch = tempfile.mkdtemp(prefix="pytest-ethosu-")
            cache = EstimateCache(self.cache_dir) if self.cache_dir is not None else None
            self._estimator = Estimator(self.rootdir, Path(self._scratch), self.timeout, cache=cache,
                                        advise=self.advise)
        return self._estimator

    def _cache_dir(self, config: pytest.Config) -> Path | None:
        """``--ethosu-cache-dir`` / ``ethosu_cache_dir``, else under pytest's cache directory."""
        if config.getoption("ethosu_no_cache"):
            return None
        chosen = _option(config, "--ethosu-cache-dir", "ethosu_cache_dir")
        if chosen:
            path: Path = (self.rootdir / str(chosen)).resolve()
            if config.getoption("cacheclear", False) and not hasattr(config, "workerinput"):
                shutil.rmtree(path, ignore_errors=True)  # --cache-clear clears this one too
            return path
        cache = getattr(config, "cache", None)
        return Path(cache.mkdir("ethosu")) if cache is not None else None

    def estimator_counts(self) -> None:
        """Fold this process's Vela runs and cache hits into the session counts."""
        if self._estimator is not None:
            self.counts["vela_runs"] += self._estimator.vela_runs
            cache = self._estimator.cache
            self.counts["cache_hits"] += cache.hits if cache is not None else 0

    def close(self) -> None:
        if self._estimator is not None:
            self._estimator.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def relative(self, path: Path) -> str:
        return shown_path(path, self.rootdir)

    # -- after each test ----------------------------------------------------------------------

    def finish_item(self, item: pytest.Item, passed: bool) -> list[str]:
        """Write the test's pending baselines if it passed; return write errors."""
        state = item.stash.get(item_state_key, None)
        if state is None:
            return []
        errors = []
        for pending in state.pending:
            if passed and pending.write:
                assert pending.path is not None and pending.document is not None
                existed = pending.path.exists()
                try:
                    changed = baseline.write(pending.path, pending.document)
                except OSError as exc:
                    errors.append(f"could not write baseline {self.relative(pending.path)}: "
                                  f"{exc.strerror or exc}. Check that the baseline directory is "
                                  "writable and the disk has space; the old file is unchanged.")
                    pending.record["status"] = "unwritten"
                    continue
                status = "unchanged" if not changed else ("updated" if existed else "created")
                pending.record["status"] = status
                self.counts[status] += 1
            elif pending.write:
                pending.record["status"] = "unwritten"
            if pending.name:
                item.user_properties.append((f"ethosu[{pending.name}]", json.dumps({
                    k: pending.record[k] for k in ("accelerator", "total_cycles", "inference_ms",
                                                   "cpu_ops", "status", "delta_percent")})))
            self.records.append(pending.record)
        if passed and not errors:
            self.passed_tests.add(item.nodeid)
        state.pending.clear()
        return errors

    # -- end of session ------------------------------------------------------------------------

    def worker_output(self) -> dict[str, Any]:
        return {"records": self.records, "counts": dict(self.counts),
                "produced": sorted(self.produced), "passed_tests": sorted(self.passed_tests)}

    def merge(self, data: dict[str, Any]) -> None:
        self.records.extend(data["records"])
        self.counts.update(data["counts"])
        self.produced.update(data["produced"])
        self.passed_tests.update(data["passed_tests"])

    def unused_baselines(self) -> list[Path]:
        """Baselines of tests that passed in this run but were not used by any of their checks."""
        unused: list[Path] = []
        for nodeid in sorted(self.passed_tests):
            directory = baseline.test_directory(self.baseline_root, nodeid)
            if directory.is_dir():
                unused.extend(p for p in sorted(directory.glob("*" + baseline.SUFFIX))
                              if str(p) not in self.produced)
        return unused

    def delete_unused(self) -> list[Path]:
        removed = []
        for path in self.unused_baselines():
            baseline.remove(path, self.baseline_root)
            removed.append(path)
        self.counts["deleted"] += len(removed)
        return removed

    def sorted_records(self) -> list[dict[str, Any]]:
        return sorted(self.records, key=lambda r: (r["test"], r["name"]))


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
        unknown = set(marker) - set(TARGET_KEYS) - set(TOLERANCE_KEYS) - {"accelerators"}
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: unknown ethosu marker argument(s): "
                                    + ", ".join(sorted(unknown)))
        self._marker = marker
        self._state = item.stash.setdefault(item_state_key, ItemState())
        self._names: set[str] = set()

    def target(self, **call: Any) -> Target:
        unknown = set(call) - set(TARGET_KEYS)
        if unknown:
            raise TypeError(f"unknown target setting(s): {', '.join(sorted(unknown))}; "
                            f"valid: {', '.join(TARGET_KEYS)}")
        param = {"accelerator": self._param_accelerator}
        return resolve([call, param, self._marker, self._session.settings], self._session.rootdir)

    def estimate(self, model: ModelArg, **target: Any) -> EstimateResult:
        """Estimate ``model`` with Vela on the resolved target; no baseline is involved."""
        __tracebackhide__ = True
        result = self._estimate(model, target)
        self._pend("", None, None, result, "unchecked", None, None, False)
        return result

    def _estimate(self, model: ModelArg, target: dict[str, Any]) -> EstimateResult:
        __tracebackhide__ = True
        result = self._session.estimator.estimate(model, self.target(**target), self._state.logs)
        if self._session.advise:
            findings = list(result.findings)
            self._session.config.hook.pytest_ethosu_advice(config=self._session.config, result=result,
                                                           findings=findings)
            result = dataclasses.replace(result, findings=tuple(findings))
        return result

    def __call__(self, model: ModelArg, *, name: str = "default", rtol: float | None = None,
                 atol: float | None = None, tolerances: dict[str, dict[str, float]] | None = None,
                 **target: Any) -> EstimateResult:
        __tracebackhide__ = True
        if name in self._names:
            raise CheckFailed(f"{self._item.nodeid}: two checks named {name!r}; give each "
                              "ethosu_perf(...) call in a test its own name=")
        self._names.add(name)
        result = self._estimate(model, target)
        session = self._session
        try:
            tol = Tolerances.merge([{"rtol": rtol, "atol": atol, "tolerances": tolerances},
                                    self._marker, session.tolerance_settings])
        except ValueError as exc:
            raise CheckFailed(str(exc)) from None
        nodeid = self._item.nodeid
        path = baseline.baseline_path(session.baseline_root, nodeid, name)
        shown = session.relative(path)
        session.produced.add(str(path))
        document = baseline.to_document(result, nodeid, name)
        label = f"{result.model} on {result.accelerator}" + (f" [{name}]" if name != "default" else "")
        comparison: Comparison | None = None
        write = session.update
        status = "pending" if write else "unchecked"
        if path.exists():
            stored = baseline.load(path)  # a broken baseline fails here and is never rewritten
            comparison = compare(stored, document, tol)
            if not write:
                status = comparison.status()
                if comparison.drift and session.drift_policy == "fail":
                    raise CheckFailed(f"ethosu: {label}: the estimator changed since the baseline "
                                      f"{shown} was made:\n" + "\n".join(comparison.drift)
                                      + f"\nre-baseline with: {report.accept_command(nodeid)}")
                if comparison.drift and session.drift_policy == "update":
                    write, status = True, "pending"
                elif comparison.failed(session.strict):
                    self._pend(name, path, document, result, status, comparison, shown, False)
                    raise CheckFailed(report.failure_message(
                        label, nodeid, comparison, shown, session.config.get_verbosity(),
                        session.strict))
                elif comparison.drift:
                    status = "drift"
        elif not write:
            self._pend(name, path, document, result, "missing", None, shown, False)
            raise CheckFailed(report.missing_message(label, nodeid, shown))
        self._pend(name, path, document, result, status, comparison, shown, write)
        return result

    def _pend(self, name: str, path: Path | None, document: dict[str, Any] | None, result: EstimateResult,
              status: str, comparison: Comparison | None, shown: str | None, write: bool) -> None:
        """Keep the outcome on the item until the test ends, and tell the result hook."""
        item = self._item
        location = (item.location[0], (item.location[1] or 0) + 1)
        record = report.make_record(item.nodeid, location, name, result, status, comparison, shown,
                                    self._session.detailed)
        self._state.pending.append(Pending(name, path, document, record, write))
        self._session.config.hook.pytest_ethosu_result(item=item, name=name, result=result, record=record)
