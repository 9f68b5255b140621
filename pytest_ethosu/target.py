"""Which accelerator, system config, memory mode and Vela options an estimate uses.

Each setting can come from four places; the first that sets it wins:

1. the call: ``ethosu_perf.estimate(model, accelerator=...)``
2. the test's marker: ``@pytest.mark.ethosu(accelerator=...)``
3. the command line: ``--ethosu-accelerator ...``
4. the ini file: ``ethosu_accelerator = ...``

(the last two are declared in ``options.py``).

What none of them sets is left to Vela's own defaults (accelerator ``ethos-u55-256``, and the
system config and memory mode Vela picks for it from ``Arm/vela.ini``).  Vela accepts a config
file only together with both a system config and a memory mode; without one it uses its
bundled ``Arm/vela.ini``.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArgumentError, TargetError
from .vela import (
    DEFAULT_ACCELERATOR,
    Job,
    bundled_config_dir,
    bundled_config_names,
    check_config_settings,
    check_vela_args,
    default_config_file,
)


@dataclass(frozen=True)
class Target:
    """A fully specified request for Vela; hashable, so it keys the in-session memo."""

    accelerator: str
    system_config: str | None
    memory_mode: str | None
    config_files: tuple[str, ...]  # absolute paths handed to Vela; empty: Vela's default
    config_names: tuple[str, ...]  # the same files as recorded in results and baselines
    vela_args: tuple[str, ...]

    def job(self, model: Path, config_files: Sequence[str] | None = None) -> Job:
        """What the worker is asked to compile: ``model`` with ``config_files`` in place of the
        target's own ``.ini`` paths when given (the copies of what was read, see ``ConfigReader``)."""
        files = self.config_files if config_files is None else tuple(config_files)
        return Job(str(model), self.accelerator, self.system_config, self.memory_mode, files,
                   self.vela_args)

    def describe(self) -> str:
        parts = [self.accelerator, self.system_config or "default system config",
                 self.memory_mode or "default memory mode"]
        if self.vela_args:
            parts.append(" ".join(self.vela_args))
        return ", ".join(parts)


def resolve_config_file(value: str, rootdir: Path) -> tuple[str, str]:
    """A Vela ``.ini`` as (absolute path, portable name): bundled names first, then paths from
    the rootdir.  The portable name is the bundled name or the path relative to the rootdir."""
    bundled = bundled_config_dir() / value
    if not Path(value).is_absolute() and len(Path(value).parts) == 2 and bundled.is_file():
        return str(bundled), Path(value).as_posix()
    path = Path(value).expanduser()
    path = path if path.is_absolute() else rootdir / path
    if not path.is_file():
        raise TargetError(f"Vela config file {value!r} not found (looked at {path}). Give a path "
                          f"relative to the rootdir or one of Vela's bundled files: "
                          + ", ".join(bundled_config_names()))
    if path.suffix != ".ini":
        raise TargetError(f"Vela config file {path} must end in .ini (Vela refuses other names)")
    path = path.resolve()
    try:
        name = path.relative_to(rootdir.resolve()).as_posix()
    except ValueError:
        name = str(path)
    return str(path), name


def _vela_args(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise ArgumentError(f"vela_args {value!r} cannot be split like a shell command line: "
                                f"{exc}") from None
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)) and all(
            isinstance(v, str) for v in value):
        return tuple(value)
    raise ArgumentError(f"vela_args must be a list of strings (or one shell-quoted string), not "
                        f"{value!r}")


def _name(setting: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ArgumentError(f"{setting} must be a string, not {value!r}")
    return value


def resolve(sources: Sequence[Mapping[str, Any]], rootdir: Path) -> Target:
    """Merge settings from the most specific source to the least, then resolve files."""

    def first(name: str) -> Any:
        for source in sources:
            value = source.get(name)
            if value not in (None, ""):
                return value
        return None

    accelerator = (_name("accelerator", first("accelerator")) or DEFAULT_ACCELERATOR).lower()
    config = _name("vela_config", first("vela_config"))
    files = [resolve_config_file(config, rootdir)] if config else []
    vela_args = _vela_args(first("vela_args"))
    check_vela_args(vela_args, accelerator)
    system_config = _name("system_config", first("system_config"))
    memory_mode = _name("memory_mode", first("memory_mode"))
    check_config_settings([name for _, name in files], system_config, memory_mode)
    return Target(
        accelerator=accelerator,
        system_config=system_config,
        memory_mode=memory_mode,
        config_files=tuple(path for path, _ in files),
        config_names=tuple(name for _, name in files),
        vela_args=vela_args,
    )


@dataclass(frozen=True)
class ConfigFile:
    """One ``.ini`` file of a target as read for one estimate."""

    path: str  # the file the target names
    sha256: str
    data: bytes | None = field(repr=False)  # a user's file: what Vela must read; None: bundled


@dataclass(frozen=True)
class Configs:
    """The ``.ini`` content an estimate depends on: its files (none: Vela's bundled default)
    and one digest of everything Vela reads, the default included."""

    files: tuple[ConfigFile, ...]
    sha256: str


def _read_ini(path: str) -> bytes:
    """A user's ``.ini``, read once; only a regular file (a FIFO would block the session)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise TargetError(f"Vela config file {path} is not a regular file; give the path of an .ini file")
            return f.read()
    except OSError as exc:
        raise TargetError(f"Vela config file {path} cannot be read ({exc.strerror or exc})") from None


class ConfigReader:
    """Reads a target's ``.ini`` files for each estimate.

    Vela's bundled files belong to its installation and are read once per session.  A user's
    file is read again for every estimate: it is a few KiB, and a stat (size, mtime, inode)
    cannot tell apart two contents of the same size written within the file system's
    timestamp granularity.  The estimator hands Vela a copy of exactly these bytes, so the
    digest always describes what Vela read.
    """

    def __init__(self) -> None:
        self._bundled_dirs = {bundled_config_dir(), bundled_config_dir().resolve()}
        self._bundled: dict[str, bytes | None] = {}  # path -> content once read; None: not bundled
        self._fixed: dict[tuple[str, ...], Configs] = {}  # targets that name bundled files only

    def _bundled_bytes(self, path: str) -> bytes | None:
        """A bundled file's content (read on first use), or None for a user's file."""
        if path not in self._bundled:
            normal = Path(os.path.normpath(path))
            bundled = any(normal.is_relative_to(directory) for directory in self._bundled_dirs)
            self._bundled[path] = _read_ini(path) if bundled else None
        return self._bundled[path]

    def read(self, target: Target) -> Configs:
        fixed = self._fixed.get(target.config_files)
        if fixed is not None:
            return fixed
        files = []
        digest = hashlib.sha256()
        for path in target.config_files or (str(default_config_file()),):
            bundled = self._bundled_bytes(path)
            data = _read_ini(path) if bundled is None else bundled
            digest.update(data)
            digest.update(b"\0")
            files.append(ConfigFile(path, hashlib.sha256(data).hexdigest(), None if bundled is not None else data))
        configs = Configs(tuple(files) if target.config_files else (), digest.hexdigest())
        if all(f.data is None for f in files):
            self._fixed[target.config_files] = configs
        return configs
