"""Writing files the plugin owns: baselines, reports, cache entries.

One helper, ``write_atomic``, serves them all.  It writes to a temporary file in the target's
directory and moves it into place with ``os.replace``, so a reader (another xdist worker, a
concurrent session, ``git``) never sees half a file, and a failure leaves the old file as it
was.  The new file gets the permissions a plain ``open()`` would give it under the process's
umask (``mkstemp`` alone would make it 0600).  Temporary files that an earlier, killed process
left behind in that directory are removed when they are older than a minute.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

TMP_PREFIX = ".ethosu-"
TMP_SUFFIX = ".tmp"
STALE_AFTER = 60.0  # seconds: an unfinished write of ours takes far less


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale(directory: Path) -> None:
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.name.startswith(TMP_PREFIX) and entry.name.endswith(TMP_SUFFIX):
                with contextlib.suppress(OSError):
                    if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > STALE_AFTER:
                        os.unlink(entry.path)


def write_atomic(path: Path, data: str | bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8 with ``\\n`` line ends).

    Characters UTF-8 cannot encode (lone surrogates) are written as ``\\udcXX`` escapes.
    Raises ``OSError`` when the directory cannot be written; nothing is left behind then.
    """
    raw = data.encode("utf-8", "backslashreplace") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def append_text(path: Path, text: str) -> None:
    """Append ``text`` to a file that others append to as well (``$GITHUB_STEP_SUMMARY``), all
    or nothing: when the write fails (a full disk), the file is cut back to its old length.

    The file is appended to in place, not replaced: GitHub's runner, and other steps' tools,
    hold it by its path, which may be a symlink or sit in a directory we cannot write; and what
    they appended before us must stay.  Raises ``OSError`` after restoring the old length.
    """
    raw = text.encode("utf-8", "backslashreplace")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    start: int | None = None  # where our text began: others may append between our writes
    try:
        view = memoryview(raw)
        while view:
            written = os.write(fd, view)
            if start is None:
                start = os.lseek(fd, 0, os.SEEK_CUR) - written
            view = view[written:]
    except BaseException:
        if start is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
        raise
    finally:
        os.close(fd)
