"""The on-disk estimate cache: Vela's answer, keyed by everything that can change it.

The key hashes the model's bytes, the accelerator, system config, memory mode and Vela options,
the *contents* of the Vela ``.ini`` files used (Vela's bundled one when none is given), the
Vela version, this plugin's version and ``FORMAT``, the layout of an entry.  The caller passes
the digests of the bytes it hands to Vela (``estimator.py`` reads each file once per estimate),
so an entry is filed under the content Vela actually read.  The value is the
``VelaRun`` from which the estimator builds the result exactly as after a fresh run, so a hit
and a miss give the same result.  Advice is not cached: the advisor's rules run over every
result (``advisor.py``), and the models they build to check a suggestion are cached like any other.

Every entry is checked when it is read (its key, types, finite numbers, layers that add up to
the total); one that fails is ignored, counted in ``invalid`` and replaced.  Entries are
written atomically (``files.write_atomic``), so xdist workers and concurrent sessions can
share the directory.  The directory is created on the first write, marked as a cache with
``CACHEDIR.TAG`` and a ``.gitignore``, and ``clear`` removes it only when that marker is there:
the plugin never deletes a directory it did not make.  A cache that cannot be written is
reported once with a warning and the session goes on without it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import EthosuWarning
from .files import write_atomic
from .target import Target
from .vela import InvalidRun, VelaRun, vela_version

FORMAT = 5  # 3: entries hold a typed VelaRun; 4: and a digest of their content; 5: no findings
TAG_NAME = "CACHEDIR.TAG"
TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
       "# This directory is pytest-ethosu's estimate cache; see https://bford.info/cachedir/\n")


def plugin_version() -> str:
    try:
        return importlib.metadata.version("pytest-ethosu")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def code_digest(package: Path) -> str:
    """A digest of every Python source file of ``package`` (this plugin's, by default), by
    relative path and content."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


_PACKAGE = Path(__file__).resolve().parent


def is_cache_dir(path: Path) -> bool:
    """True when ``path`` is a directory this plugin made for its cache (it holds the tag)."""
    tag = path / TAG_NAME
    try:
        return path.is_dir() and not path.is_symlink() and tag.read_text(encoding="utf-8") == TAG
    except (OSError, UnicodeDecodeError):
        return False


def clear(path: Path) -> bool:
    """Delete the cache at ``path`` if it is one; False (touching nothing) otherwise."""
    if not is_cache_dir(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def _digest(run: Any) -> str:
    """A digest of an entry's content: a file changed on disk (a partial write, a bad copy, a
    hand edit) no longer matches it.  It detects corruption; it is no defence against someone
    who rewrites the digest too, like pytest's own cache."""
    text = json.dumps({"run": run}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class EstimateCache:
    def __init__(self, directory: Path, owned: bool = False, prepare: Callable[[], object] | None = None) -> None:
        """``owned``: the directory is the plugin's by construction (its place in pytest's
        cache), so existing files there need no tag to be the plugin's.  ``prepare`` runs
        before the first write: pytest's ``cache.mkdir``, so that pytest's own cache directory
        gets its ``.gitignore`` and ``CACHEDIR.TAG`` even when this plugin writes there first."""
        self.directory = directory
        self.owned = owned
        self._prepare = prepare
        self.hits = 0
        self.invalid = 0
        self.broken: str | None = None  # why the cache cannot be written, once it failed
        self._identity = {"format": FORMAT, "vela": vela_version(), "plugin": plugin_version(),
                          "code": code_digest(_PACKAGE)}

    def key(self, model_sha256: str, target: Target, ini_sha256: str) -> str:
        """The entry's name: ``ini_sha256`` digests the ``.ini`` content Vela reads
        (``target.ConfigReader``)."""
        parts = {
            **self._identity,
            "model": model_sha256,
            "accelerator": target.accelerator,
            "system_config": target.system_config,
            "memory_mode": target.memory_mode,
            "vela_args": list(target.vela_args),
            "config_names": list(target.config_names),
            "ini": ini_sha256,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> VelaRun | None:
        """The cached run; None on a miss."""
        path = self._path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        try:
            entry = json.loads(text)
            if not isinstance(entry, dict) or entry.get("key") != key or entry.get("format") != FORMAT:
                raise InvalidRun("not an entry for this key")
            if set(entry) != {"format", "key", "run", "digest"} or entry["digest"] != _digest(entry["run"]):
                raise InvalidRun("the entry's content does not match its digest")
            run = VelaRun.from_json(entry["run"])
        except (ValueError, KeyError, TypeError, RecursionError):
            self.invalid += 1
            return None
        self.hits += 1
        return run

    def put(self, key: str, run: VelaRun) -> None:
        """Store a run; a cache that cannot be written is reported once and then skipped."""
        entry: dict[str, Any] = {"format": FORMAT, "key": key, "run": run.to_json()}
        entry["digest"] = _digest(entry["run"])
        self._write(self._path(key), entry)

    def _lowered_path(self, key: str) -> Path:
        return self.directory / "lowered" / key[:2] / f"{key}.json"

    def get_lowered(self, key: str) -> Any:
        """A PyTorch lowering stored by ``put_lowered`` (``pytorch.Lowered.from_json`` checks
        it); None on a miss."""
        try:
            return json.loads(self._lowered_path(key).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return None

    def put_lowered(self, key: str, payload: dict[str, Any]) -> None:
        self._write(self._lowered_path(key), payload)

    def _write(self, path: Path, entry: dict[str, Any]) -> None:
        if self.broken is not None:
            return
        try:
            self._mark()
            write_atomic(path, json.dumps(entry, separators=(",", ":")), fsync=False)
        except OSError as exc:
            self.broken = f"{exc.strerror or exc}"
            warnings.warn(EthosuWarning(
                f"the estimate cache in {self.directory} cannot be written ({self.broken}); this "
                "session runs without it. Choose another directory with --ethosu-cache-dir=PATH, "
                "or turn the cache off with --ethosu-no-cache."), stacklevel=2)

    def _mark(self) -> None:
        if (self.directory / TAG_NAME).is_file():
            return
        if self._prepare is not None:
            self._prepare()
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(20, "not a directory", str(self.directory))
        if not self.owned and self.directory.is_dir() and any(self.directory.iterdir()):
            raise FileExistsError(17, "the directory holds other files and is not a pytest-ethosu "
                                  "cache (it has no CACHEDIR.TAG)", str(self.directory))
        write_atomic(self.directory / TAG_NAME, TAG, fsync=False)
        write_atomic(self.directory / ".gitignore", "# made by pytest-ethosu: the estimate cache\n*\n",
                     fsync=False)
