"""From a model argument to an ``EstimateResult``: checks, the worker round trip, the result.

``Estimator.estimate`` is the path every estimate takes:

1. ``load_model`` turns a path or the bytes of a model into a file on disk, refusing missing,
   empty and non-TFLite files with a message that names the file;
2. the in-session memo answers a request already made (same bytes, same target);
3. a model that crashed Vela on this target earlier in the session fails at once;
4. the disk cache (``cache.py``) answers what an earlier session already asked; otherwise the
   worker (``worker.py``) runs Vela through ``vela_adapter.py`` and replies;
5. ``result.build_result`` turns the reply into the public result, with warnings for float and
   already-compiled models, and ``advisor.advise`` adds its findings (its verification
   estimates come back through this same path, cached like any other).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import vela_adapter
from .cache import EstimateCache
from .errors import EthosuError, EthosuWarning, ModelError, TargetError, VelaCrash, VelaError
from .result import EstimateResult, Finding, build_result
from .target import Target
from .worker import VelaWorker

ModelArg = str | os.PathLike[str] | bytes


@dataclass(frozen=True)
class Model:
    path: Path
    display: str
    sha256: str


def shown_path(path: Path, rootdir: Path) -> str:
    """A path as messages show it: relative to the rootdir when it is inside it."""
    try:
        return str(path.relative_to(rootdir))
    except ValueError:
        return str(path)


def load_model(model: ModelArg, rootdir: Path, scratch: Path) -> Model:
    """Resolve a model argument.  Relative paths are taken from ``rootdir``."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        digest = hashlib.sha256(data).hexdigest()
        display = f"<model bytes sha256:{digest[:12]}>"
        path = scratch / f"{digest}.tflite"
        if not data:
            raise ModelError(f"{display}: the model is empty (0 bytes)")
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
    else:
        given = Path(os.fspath(model)).expanduser()
        path = given if given.is_absolute() else rootdir / given
        display = shown_path(path, rootdir)
        if not path.exists():
            raise ModelError(f"{display}: no such model file (looked at {path}). Relative model "
                             f"paths are resolved from pytest's rootdir, {rootdir}.")
        if path.is_dir():
            raise ModelError(f"{display}: is a directory; pass the path of a .tflite file")
        data = path.read_bytes()
        if not data:
            raise ModelError(f"{display}: the file is empty (0 bytes); re-export the model")
        digest = hashlib.sha256(data).hexdigest()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{display}: not a TensorFlow Lite model (no 'TFL3' identifier at byte 4). "
                         "Pass the int8 .tflite file written by TFLiteConverter.")
    return Model(path=path, display=display, sha256=digest)


def _model_warnings(model: Model, inspected: dict[str, Any], cpu_ops: int) -> list[str]:
    found = []
    if vela_adapter.ETHOSU_CUSTOM_OP in inspected["operators"]:
        found.append(f"{model.display} was already compiled by Vela (it holds an "
                     f"'{vela_adapter.ETHOSU_CUSTOM_OP}' operator): Vela leaves that operator on the "
                     "CPU, so this estimate counts no NPU work. Pass the model from before Vela.")
    if inspected["float_ops"]:
        found.append(f"{model.display} is a float model ({inspected['float_ops']} operators compute "
                     f"in float): Ethos-U runs int8/int16 only, so {cpu_ops} operators stay on the "
                     "CPU. Quantise it with TFLiteConverter (representative_dataset, "
                     "TFLITE_BUILTINS_INT8).")
    return found


def _vela_said(log: str) -> list[str]:
    """Vela's console lines worth showing: no blank lines and no argparse usage block."""
    lines, in_usage = [], False
    for line in log.splitlines():
        if line.startswith("usage: "):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        if line.strip():
            lines.append(line)
    return lines


class Estimator:
    """Makes estimates for one pytest process; owns its worker and its memo."""

    def __init__(self, rootdir: Path, scratch: Path, timeout: float | None,
                 worker: VelaWorker | None = None, cache: EstimateCache | None = None,
                 advise: bool = False) -> None:
        self.rootdir = rootdir
        self.scratch = scratch
        self.timeout = timeout
        self.worker = worker or VelaWorker()
        self.cache = cache
        self.advise = advise
        self._memo: dict[tuple[str, Target, bool], EstimateResult] = {}
        self._crashed: dict[tuple[str, Target], str] = {}
        self.vela_runs = 0

    def estimate(self, model: ModelArg, target: Target, logs: list[str] | None = None,
                 advise: bool = True) -> EstimateResult:
        """Estimate ``model`` on ``target``; with ``advise`` (and advice on) attach the findings."""
        loaded = load_model(model, self.rootdir, self.scratch)
        key = (loaded.sha256, target, self.advise and advise)
        if key in self._memo:
            return dataclasses.replace(self._memo[key], model=loaded.display)
        if key[:2] in self._crashed:
            raise VelaCrash(f"{loaded.display}: {self._crashed[key[:2]]} (earlier in this session; "
                            "not retried)")
        request = {
            "job": "estimate",
            "model": str(loaded.path),
            "accelerator": target.accelerator,
            "system_config": target.system_config,
            "memory_mode": target.memory_mode,
            "ini_files": list(target.config_files),
            "config_names": list(target.config_names),
            "vela_args": list(target.vela_args),
        }
        cache_key = self.cache.key(loaded.sha256, target) if self.cache is not None else None
        reply = self.cache.get(cache_key) if self.cache is not None and cache_key else None
        fresh = reply is None
        if reply is None:
            reply = self._run_vela(loaded, target, request, logs)
        result = build_result(loaded.display, loaded.sha256, vela_adapter.vela_version(), request, reply)
        found = _model_warnings(loaded, reply["inspected"], result.cpu_ops)
        for text in found:
            warnings.warn(EthosuWarning(text), stacklevel=3)
        findings: tuple[Finding, ...] = ()
        if self.advise and advise and "findings" in reply:
            findings = tuple(Finding(**f) for f in reply["findings"])  # advised in an earlier session
        elif self.advise and advise:
            from . import advisor  # builds verification models: only loaded when advice is on

            findings = tuple(advisor.advise(result, reply, lambda data: self.estimate(data, target, advise=False)))
            reply = {**reply, "findings": [f.to_dict() for f in findings]}
            fresh = True
        if fresh and self.cache is not None and cache_key:
            self.cache.put(cache_key, reply)
        result = dataclasses.replace(result, warnings=tuple(found), findings=findings)
        self._memo[key] = result
        return result

    def _run_vela(self, loaded: Model, target: Target, request: dict[str, Any],
                  logs: list[str] | None) -> dict[str, Any]:
        """One round trip to the worker; errors name the model and the target."""
        self.vela_runs += 1
        key = (loaded.sha256, target)
        try:
            reply = self.worker.request(request, self.timeout)
        except VelaCrash as exc:
            if exc.model_caused:
                self._crashed[key] = str(exc)
            raise VelaCrash(f"{loaded.display} on {target.describe()}: {exc}", exc.status) from None
        except EthosuError as exc:
            raise type(exc)(f"{loaded.display} on {target.describe()}: {exc}") from None
        if logs is not None and reply.get("log"):
            logs.append(f"--- Vela, {loaded.display} on {target.describe()} ---\n{reply['log']}")
        if not reply["ok"]:
            raise self._error(loaded, target, reply)
        return reply

    @staticmethod
    def _error(model: Model, target: Target, reply: dict[str, Any]) -> EthosuError:
        kind, error = reply.get("kind"), reply.get("error", "")
        if kind == "target":
            return TargetError(error)
        if kind == "model":
            return ModelError(f"{model.display}: {error}. Is it a complete .tflite file? "
                              "Re-export it from the converter.")
        tail = "\n".join(_vela_said(reply.get("log", ""))[-15:])
        return VelaError(f"{model.display}: Vela could not compile it for {target.describe()}: "
                         f"{error}" + (f"\nVela said:\n{tail}" if tail else ""))

    def close(self) -> None:
        self.worker.close()
