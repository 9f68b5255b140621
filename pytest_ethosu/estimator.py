"""From a model argument to an ``EstimateResult``: checks, the memo, the cache, the worker.

``Estimator.estimate`` is the path every estimate takes:

1. ``load_model`` reads the model's bytes once and hashes them.  Only regular files are read,
   their size is checked first and their format identifier before the body, so a FIFO, a
   device or a huge file is refused at once with a message that names it;
2. ``ConfigReader`` (``target.py``) reads the target's ``.ini`` files and digests them;
3. the in-session memo answers a request already made (same bytes, same target, same ``.ini``
   content);
4. a model that crashed Vela on this target earlier in the session fails at once;
5. the disk cache (``cache.py``) answers what an earlier session already asked; otherwise the
   worker (``worker.py``) runs Vela (``vela/engine.py``) and replies with a ``VelaRun``.  The
   worker is given ``stage``'s copies of the bytes that were hashed, never the user's files,
   so a file replaced meanwhile cannot pair one content's digest with another's figures;
6. ``result.build_result`` turns the run into the public result, with warnings for float and
   already-compiled models and the evidence the advisor reads.  Advice is not made here: the
   fixture runs the ``pytest_ethosu_advice`` hook over the final result, and the advisor's
   verification models come back through this same path (``verify``), cached like any other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import vela
from .cache import EstimateCache
from .errors import EthosuError, ModelError, TargetError, VelaCrash, VelaError
from .files import write_atomic
from .result import EstimateResult, build_result
from .target import ConfigReader, Configs, Target
from .vela import InvalidRun, VelaRun
from .worker import VelaWorker

if TYPE_CHECKING:
    from .pytorch import Lowerer

ModelArg = str | os.PathLike[str] | bytes
MAX_MODEL_BYTES = 2 << 30  # flatbuffers address at most 2 GiB


@dataclass(frozen=True)
class Model:
    path: Path  # the user's file; for model bytes, their copy in the scratch directory
    display: str
    sha256: str
    kind: str = "tflite"  # a key of vela.FORMAT_NAMES
    data: bytes = field(default=b"", repr=False, compare=False)  # the bytes that were hashed

    @property
    def name(self) -> str:
        """The file name Vela is given: Vela names its outputs (and the network) after its stem."""
        return self.path.name


def stage(scratch: Path, digest: str, name: str, data: bytes) -> Path:
    """A read-only copy of ``data`` (whose sha256 is ``digest``) for the worker, at
    ``scratch/inputs/<digest>/<name>``: content-addressed, so a copy once written is the
    right one for good, and named as the user's file, so Vela's output is named as before."""
    path = scratch / "inputs" / digest / name
    if not path.is_file():
        write_atomic(path, data, fsync=False)  # a full disk keeps no partial copy; a scratch file needs no fsync
        path.chmod(0o444)
    return path


def shown_path(path: Path, rootdir: Path) -> str:
    """A path as messages show it: relative to the rootdir when it is inside it."""
    try:
        return str(path.relative_to(rootdir))
    except ValueError:
        return str(path)


def _check_format(head: bytes, display: str) -> str:
    kind = vela.model_format(head)
    if kind is None:
        raise ModelError(f"{display}: not a TensorFlow Lite or TOSA model (no 'TFL3' or 'TOSA' identifier "
                         "at byte 4). Pass the int8 .tflite file written by TFLiteConverter or a .tosa file, "
                         "or a PyTorch module or .pt2 program with its example inputs.")
    return kind


def _read_file(path: Path, display: str) -> tuple[bytes, str]:
    try:
        info = path.stat()
    except OSError as exc:
        raise ModelError(f"{display}: cannot read the model ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ModelError(f"{display}: is a directory; pass the path of a .tflite or .tosa file")
    if not stat.S_ISREG(info.st_mode):
        raise ModelError(f"{display}: not a regular file (a pipe, socket or device); pass the path "
                         "of a .tflite or .tosa file")
    if info.st_size == 0:
        raise ModelError(f"{display}: the file is empty (0 bytes); re-export the model")
    if info.st_size > MAX_MODEL_BYTES:
        raise ModelError(f"{display}: {info.st_size:,} bytes is more than a flatbuffer can hold "
                         f"({MAX_MODEL_BYTES:,}); is it really a model?")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            kind = _check_format(head, display)
            return head + f.read(MAX_MODEL_BYTES), kind
    except OSError as exc:
        raise ModelError(f"{display}: cannot read the model ({exc.strerror or exc})") from None


def load_model(model: ModelArg, rootdir: Path, scratch: Path) -> Model:
    """Resolve a model argument.  Relative paths are taken from ``rootdir``."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        digest = hashlib.sha256(data).hexdigest()
        display = f"<model bytes sha256:{digest[:12]}>"
        if not data:
            raise ModelError(f"{display}: the model is empty (0 bytes)")
        kind = _check_format(data[:8], display)
        path = scratch / "inputs" / digest / f"{digest}.{kind}"
        return Model(path=path, display=display, sha256=digest, kind=kind, data=data)
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(f"the model must be a path or the bytes of a model, not {model!r}")
    given = Path(os.fspath(model)).expanduser()
    path = given if given.is_absolute() else rootdir / given
    display = shown_path(path, rootdir)
    if not os.path.lexists(path):
        slashes = ""
        if "\\" in os.fspath(model) and os.sep == "/":
            slashes = (f" The path holds backslashes, which are part of a file name here, not separators: "
                       f"write {os.fspath(model).replace(chr(92), '/')!r} (or use pathlib).")
        raise ModelError(f"{display}: no such model file (looked at {path}). Relative model "
                         f"paths are resolved from pytest's rootdir, {rootdir}.{slashes}")
    data, kind = _read_file(path, display)
    return Model(path=path, display=display, sha256=hashlib.sha256(data).hexdigest(), kind=kind, data=data)


def _model_warnings(model: Model, run: VelaRun, cpu_ops: int) -> list[str]:
    found = []
    if run.precompiled:
        found.append(f"{model.display} was already compiled by Vela (it holds an "
                     f"'{run.npu_operator}' operator): Vela leaves that operator on the "
                     "CPU, so this estimate counts no NPU work. Pass the model from before Vela.")
    if run.facts.float_ops:
        found.append(f"{model.display} is a float model ({run.facts.float_ops} operators compute "
                     f"in float): Ethos-U runs int8/int16 only, so {cpu_ops} operators stay on the "
                     "CPU. Quantise it with TFLiteConverter (representative_dataset, "
                     "TFLITE_BUILTINS_INT8).")
    return found


def _user_names(reply: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The worker's reply with the staged copies' paths in its texts replaced by the user's."""
    for field_name in ("error", "log"):
        text = reply.get(field_name)
        if isinstance(text, str):
            for copy, user in names.items():
                text = text.replace(copy, user)
            reply[field_name] = text
    return reply


class Estimator:
    """Makes estimates for one pytest process; owns its worker and its memo."""

    def __init__(self, rootdir: Path, scratch: Path, timeout: float | None,
                 worker: VelaWorker | None = None, cache: EstimateCache | None = None) -> None:
        self.rootdir = rootdir
        self.scratch = scratch
        self.timeout = timeout
        self.worker = worker or VelaWorker(scratch=scratch)
        self.cache = cache
        self.configs = ConfigReader()
        # keyed by (model sha256, (target, .ini sha256)): the content Vela reads
        self._memo: dict[tuple[str, tuple[Target, str]], EstimateResult] = {}
        self._crashed: dict[tuple[str, tuple[Target, str]], str] = {}
        self.lowerer: Lowerer | None = None  # PyTorch models: made on the first one
        self.vela_runs = 0  # compilations of the models the tests asked for
        self.advisor_runs = 0  # compilations the advisor made to verify its suggestions
        self.cache_hits = 0  # estimates the tests asked for that the disk cache answered

    def estimate_pytorch(self, model: Any, example_inputs: Any, calibration: Any, quantize: bool, target: Target,
                         logs: list[str] | None = None) -> EstimateResult:
        """Estimate a PyTorch module or exported program: lowered once per (program, target) by
        ``pytorch.py``, then every delegated TOSA partition through ``estimate``, on the system
        the lowering targets (``pytorch.lowering_target``)."""
        from . import pytorch

        target = pytorch.lowering_target(target)
        if self.lowerer is None:
            cache = self.cache
            self.lowerer = pytorch.Lowerer(self.rootdir, get=cache.get_lowered if cache else None,
                                           put=cache.put_lowered if cache else None)
        lowered = self.lowerer.prepare(model, example_inputs, calibration, quantize, target, logs)
        count = len(lowered.partitions)
        results = [self.estimate(p.tosa, target, logs, display=f"{lowered.display} (TOSA partition {i + 1} of {count})")
                   for i, p in enumerate(lowered.partitions)]
        return pytorch.merge(lowered, results)

    def estimate(self, model: ModelArg, target: Target, logs: list[str] | None = None,
                 display: str | None = None, verifying: bool = False) -> EstimateResult:
        """Vela's estimate of ``model`` on ``target`` (no advice: that is a pass over the final
        result, ``advisor.py``).  ``display`` names model bytes in messages; ``verifying``
        counts a compilation as the advisor's (``verify``)."""
        loaded = load_model(model, self.rootdir, self.scratch)
        if display is not None:
            loaded = dataclasses.replace(loaded, display=display)
        configs = self.configs.read(target)
        key = (loaded.sha256, (target, configs.sha256))
        if key in self._memo:
            return dataclasses.replace(self._memo[key], model=loaded.display, source="memo")
        if key in self._crashed:
            raise VelaCrash(f"{loaded.display}: {self._crashed[key]} (earlier in this session; "
                            "not retried)")
        cache_key = self.cache.key(loaded.sha256, target, configs.sha256) if self.cache is not None else None
        run = self.cache.get(cache_key) if self.cache is not None and cache_key else None
        cached = run is not None
        if run is None:
            run = self._run_vela(loaded, target, configs, logs, verifying)
            if self.cache is not None and cache_key:
                self.cache.put(cache_key, run)
        elif not verifying:
            self.cache_hits += 1
        result = build_result(loaded.display, loaded.sha256, vela.vela_version(), target.config_names,
                              target.vela_args, target.accelerator, run)
        result = dataclasses.replace(result, warnings=tuple(_model_warnings(loaded, run, result.cpu_ops)),
                                     source="cache" if cached else "vela")
        self._memo[key] = result
        return result

    def verify(self, model: bytes, target: Target) -> EstimateResult:
        """Estimate a model the advisor built to check a suggestion, on the estimate's target."""
        return self.estimate(model, target, verifying=True)

    def _job(self, loaded: Model, target: Target, configs: Configs) -> tuple[dict[str, Any], dict[str, str]]:
        """The worker's job, on copies of exactly the bytes that were hashed, and the user's
        name for each copy (the worker's messages name the copies)."""
        model = stage(self.scratch, loaded.sha256, loaded.name, loaded.data)
        names = {str(model): str(loaded.path)}
        files = []
        for ini in configs.files:
            if ini.data is None:  # a bundled file: Vela's installation, read in place
                files.append(ini.path)
                continue
            copy = stage(self.scratch, ini.sha256, Path(ini.path).name, ini.data)
            names[str(copy)] = ini.path
            files.append(str(copy))
        return target.job(model, files if configs.files else None).to_json(), names

    def _run_vela(self, loaded: Model, target: Target, configs: Configs, logs: list[str] | None,
                  verifying: bool) -> VelaRun:
        """One round trip to the worker; errors name the model and the target."""
        if verifying:
            self.advisor_runs += 1
        else:
            self.vela_runs += 1
        key = (loaded.sha256, (target, configs.sha256))
        try:
            job, names = self._job(loaded, target, configs)
        except OSError as exc:
            raise EthosuError(f"{loaded.display}: cannot copy what Vela is to read into the session's scratch directory "
                              f"{self.scratch} ({exc.strerror or exc})") from None
        try:
            reply = _user_names(self.worker.request(job, self.timeout), names)
        except VelaCrash as exc:
            if exc.model_caused:
                self._crashed[key] = str(exc)
            raise VelaCrash(f"{loaded.display} on {target.describe()}: {exc}", exc.status) from None
        except EthosuError as exc:
            raise type(exc)(f"{loaded.display} on {target.describe()}: {exc}") from None
        finally:  # a model's copy is needed for this job only: the scratch holds one at a time
            Path(job["model"]).unlink(missing_ok=True)
        if logs is not None and reply.get("log"):
            logs.append(f"--- Vela, {loaded.display} on {target.describe()} ---\n{reply['log']}")
        if not reply.get("ok"):
            raise self._error(loaded, target, reply)
        try:
            return VelaRun.from_json(reply["run"])
        except (InvalidRun, KeyError) as exc:
            raise VelaError(f"{loaded.display}: the worker's answer is not usable ({exc})") from None

    @staticmethod
    def _error(model: Model, target: Target, reply: dict[str, Any]) -> EthosuError:
        kind, error = reply.get("kind"), reply.get("error", "")
        if kind == "target":
            return TargetError(error)
        if kind == "model":
            return ModelError(f"{model.display}: {error}. Is it a complete .{model.kind} file? "
                              "Re-export it from the converter.")
        tail = "\n".join(vela.console_lines(reply.get("log", ""))[-15:])
        return VelaError(f"{model.display}: Vela could not compile it for {target.describe()}: "
                         f"{error}" + (f"\nVela said:\n{tail}" if tail else ""))

    def close(self) -> None:
        self.worker.close()
