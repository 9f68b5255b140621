"""Scratch directories that nothing outlives: ``$TMPDIR/pytest-ethosu-*``.

A session's scratch directory holds the model bytes it writes for Vela and the worker's own
temporary directory (``worker.py``), so removing it removes everything the session made.  It
is removed when the session ends (``remove``) and, should pytest be stopped with SIGTERM, by a
handler that kills the worker first and then lets SIGTERM end the process as it would have.

A process killed outright (SIGKILL, the OOM killer, ``os._exit`` in a forked test) cleans
nothing, so each directory carries an ``.owner`` file that its process holds an exclusive
``flock`` on.  The kernel drops the lock when the process dies, so the next session finds such
directories (``sweep``) and removes them, as pytest's ``tmp_path`` retention removes old base
directories.  A lock says more than a process id: it cannot be reused by an unrelated process,
and it holds across PID namespaces that share one temporary directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

PREFIX = "pytest-ethosu-"
OWNER = ".owner"

_live: dict[str, int] = {}  # directory -> the descriptor that holds its lock
_handler_installed = False


def make() -> Path:
    """A new scratch directory under the system's temporary directory, owned (locked) by this
    process; directories of dead owners are removed first."""
    parent = Path(tempfile.gettempdir())
    sweep(parent)
    directory = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    fd = os.open(os.path.join(directory, OWNER), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())  # written under the lock: see _abandoned
    _live[directory] = fd
    _install_handler()
    return Path(directory)


def remove(directory: Path | str) -> None:
    """Remove a scratch directory made by ``make`` and release its lock."""
    path = str(directory)
    shutil.rmtree(path, ignore_errors=True)
    fd = _live.pop(path, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
    if not _live:
        _uninstall_handler()


def _abandoned(directory: Path) -> bool:
    """Whether ``directory``'s owner is gone: its lock can be taken and the owner had written
    its pid (an empty file may belong to an owner between creating and locking it)."""
    try:
        fd = os.open(directory / OWNER, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False  # no owner file (not ours, or made by an older version): left alone
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its owner lives
        return os.fstat(fd).st_size > 0
    finally:
        os.close(fd)


def sweep(parent: Path) -> list[Path]:
    """Remove the scratch directories under ``parent`` whose owner process has died; only
    real directories of this user with this module's owner file are considered."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == os.getuid() and _abandoned(Path(entry.path)):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(Path(entry.path))
    return removed


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Kill the workers, remove the scratch directories, then die of SIGTERM as before."""
    from .worker import kill_all

    kill_all()
    for directory in list(_live):
        shutil.rmtree(directory, ignore_errors=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_handler() -> None:
    """Only where SIGTERM would simply end the process: another handler is left alone."""
    global _handler_installed
    if _handler_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
        _handler_installed = True


def _uninstall_handler() -> None:
    global _handler_installed
    if not _handler_installed or threading.current_thread() is not threading.main_thread():
        return
    current: Any = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _handler_installed = False
