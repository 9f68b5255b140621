"""Process isolation: Vela runs in child processes, never in pytest's.

Vela's C++ core can segfault on a malformed model and writes to file descriptor 1 from native
code, so pytest's process never imports it.  Vela also keeps process-wide state between
compilations (the legacy core's ``TensorAddressMap`` and ``lru_cache``-made tensor ids, regor's
counters), so one long-lived process that compiled model after model would give answers that
depend on what it compiled before.  Hence two levels:

- the *worker* (``serve``), one long-lived child of pytest's process, started lazily on the
  first request, imports Vela once and then never compiles anything itself;
- for each request the worker forks a *job* process that runs the handler (``vela.engine.handle``)
  from the state right after the import (copy-on-write, so no import is repeated) and exits.

Every compilation therefore sees a process like a fresh ``vela`` command's.  A job that dies
(a segmentation fault) is reported by the worker with its signal, and the worker goes on.  A
worker that dies, times out or is interrupted mid-exchange is killed together with its job (they
share a process group) and replaced on the next request; its start-up has its own limit
(``START_TIMEOUT``) and does not count against the job's.

Messages are length-prefixed JSON: 8 bytes of big-endian length, then UTF-8 JSON.  Every
request carries an id that the worker's acknowledgement and reply repeat, so a reply is never
matched to another request; and an exchange that is interrupted (a timeout plugin, a signal
handler, Ctrl-C) kills the worker, so nothing stale is left in the pipe.  The worker keeps a
private duplicate of its original stdout for replies.

Scratch files: the worker runs with ``TMPDIR`` set to a directory of its own inside the
session's scratch directory, and each job gets a subdirectory of that which the worker removes
when the job ends, however it ends.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from . import scratch as scratch_dirs
from .errors import VelaCrash, VelaTimeout, WorkerStartError

_HEADER = struct.Struct(">Q")
PROTOCOL = 3
START_TIMEOUT = 120.0
#: The exit status of a job process whose handler could not even report an error.
_JOB_FAILED = 70

Handler = Callable[[dict[str, Any]], dict[str, Any]]

#: Process groups of the live workers of this process (each worker and its job): for
#: ``kill_all``, which a SIGTERM handler calls (``scratch.py``).
_groups: set[int] = set()


def _write_message(stream: IO[bytes], message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":")).encode("utf-8", "surrogatepass")
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes | None:
    """Read ``size`` bytes from ``fd``; None at end of file; TimeoutError past ``deadline``."""
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int, deadline: float | None) -> dict[str, Any] | None:
    head = _read_exactly(fd, _HEADER.size, deadline)
    if head is None:
        return None
    body = _read_exactly(fd, _HEADER.unpack(head)[0], deadline)
    if body is None:
        return None
    message: dict[str, Any] = json.loads(body.decode("utf-8", "surrogatepass"))
    return message


class ProtocolError(Exception):
    """The child answered out of turn."""


class VelaWorker:
    """The parent's handle on the worker process.

    ``request`` sends one job and returns its reply.  A job that dies raises ``VelaCrash`` and
    the worker stays; a worker that dies mid-job raises ``VelaCrash`` too, and one whose job
    exceeds ``timeout`` seconds is killed and raises ``VelaTimeout``: either way the next
    request starts a fresh worker.  A worker that cannot start at all (Vela does not import)
    makes this and every later request raise ``WorkerStartError`` at once.

    ``scratch`` is where the worker's temporary files go (a directory per worker process,
    removed with it); without one, a scratch directory of its own (``scratch.make``), removed
    by ``close``.
    """

    def __init__(self, command: list[str] | None = None, scratch: Path | None = None) -> None:
        self._command = command or [sys.executable, "-m", "pytest_ethosu.worker"]
        self._scratch = scratch
        self._own_scratch: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None  # the live worker's TMPDIR
        self._start_error: str | None = None
        self._next_id = 0
        self.starts = 0
        self.job_pid: int | None = None  # the process running the current (or last) job

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _worker_tmp(self) -> Path:
        if self._scratch is None and self._own_scratch is None:
            self._own_scratch = scratch_dirs.make()
        parent = self._scratch or self._own_scratch
        assert parent is not None
        return Path(tempfile.mkdtemp(prefix="vela-", dir=parent))

    def _start(self) -> subprocess.Popen[bytes]:
        if self._start_error is not None:
            raise WorkerStartError(self._start_error)
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        tmp = self._worker_tmp()
        env["TMPDIR"] = str(tmp)
        with tempfile.TemporaryFile() as errors:
            # a session (and process group) of its own: killing the group takes the job too
            proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=errors, env=env, start_new_session=True)
            assert proc.stdout is not None
            try:
                hello = _read_message(proc.stdout.fileno(), time.monotonic() + START_TIMEOUT)
            except (TimeoutError, ValueError):
                hello = None
            if hello is None or not hello.get("ok") or hello.get("protocol") != PROTOCOL:
                _kill_group(proc)
                shutil.rmtree(tmp, ignore_errors=True)
                errors.seek(0)
                detail = (hello or {}).get("error") or errors.read().decode("utf-8", "replace")
                if hello is not None and hello.get("ok"):
                    detail = f"it speaks protocol {hello.get('protocol')!r}, not {PROTOCOL}"
                self._start_error = ("the worker process that runs Vela could not start, so no "
                                     "estimate can be made in this session:\n"
                                     + (detail.strip() or f"exit status {proc.returncode}")
                                     + "\nCheck that ethos-u-vela is installed: pip install ethos-u-vela")
                raise WorkerStartError(self._start_error)
        self.starts += 1
        self._proc, self._tmp = proc, tmp
        _groups.add(proc.pid)
        return proc

    def request(self, job: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """One job, one reply.  ``timeout`` limits the job, not the worker's start-up.  If
        anything interrupts the exchange, the worker is killed."""
        self._next_id += 1
        request_id = self._next_id
        message = {"id": request_id, "job": job}
        try:
            for _ in range(2):
                # the worker is gone before it took the job (killed between jobs): the job is
                # not to blame, so a fresh worker gets it once more
                proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
                deadline = time.monotonic() + timeout if timeout else None  # from a live worker on
                if self._send(proc, message, deadline):
                    return self._reply(proc, request_id, deadline, timeout)
            raise VelaCrash("the worker died twice before it could take the job")
        except (VelaCrash, VelaTimeout, WorkerStartError):
            raise
        except BaseException:
            self.close(kill=True)  # a half-finished exchange must not leave a reply in the pipe
            raise

    def _expect(self, proc: subprocess.Popen[bytes], request_id: int, deadline: float | None
                ) -> dict[str, Any] | None:
        assert proc.stdout is not None
        message = _read_message(proc.stdout.fileno(), deadline)
        if message is not None and message.get("id") != request_id:
            raise ProtocolError(f"the worker answered request {message.get('id')!r} during {request_id}")
        return message

    def _send(self, proc: subprocess.Popen[bytes], message: dict[str, Any], deadline: float | None) -> bool:
        """Hand the job to the worker; False when the worker died before acknowledging it."""
        assert proc.stdin is not None
        self.job_pid = None
        try:
            _write_message(proc.stdin, message)
            ack = self._expect(proc, message["id"], deadline)
        except BrokenPipeError:
            ack = None
        except TimeoutError:
            return True  # taking the job took too long: _reply reports the timeout
        if ack is None:
            self._lost()
            return False
        self.job_pid = ack.get("pid")
        return True

    def _reply(self, proc: subprocess.Popen[bytes], request_id: int, deadline: float | None,
               timeout: float | None) -> dict[str, Any]:
        try:
            reply = self._expect(proc, request_id, deadline)
        except TimeoutError:
            self.close(kill=True)
            raise VelaTimeout(f"Vela did not finish within {timeout:g} s; the worker was stopped. "
                              "Raise the limit with --ethosu-timeout or the ethosu_timeout ini key "
                              "if the model is simply large.") from None
        if reply is None:
            status = self._lost()
            raise VelaCrash(f"Vela crashed ({describe_exit(status)}) while compiling this model; "
                            "the worker was restarted and the session goes on.", status)
        if "crashed" in reply:
            status = int(reply["crashed"])
            raise VelaCrash(f"Vela crashed ({describe_exit(status)}) while compiling this model; "
                            "the session goes on.", status)
        result: dict[str, Any] = reply["reply"]
        return result

    def _lost(self) -> int:
        """The worker died by itself: make sure its job went with it, and forget it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        _kill_group(proc)
        self._forget_tmp()
        assert proc.returncode is not None
        return proc.returncode

    def _forget_tmp(self) -> None:
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def close(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if kill:
                _kill_group(proc)
            else:
                with contextlib.suppress(OSError):
                    assert proc.stdin is not None
                    proc.stdin.close()
                try:
                    proc.wait(timeout=5)
                    _groups.discard(proc.pid)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        self._forget_tmp()
        if self._own_scratch is not None:
            scratch_dirs.remove(self._own_scratch)
            self._own_scratch = None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the worker and whatever job it runs (its process group), and reap the worker.  The
    group's id stays reserved while a member lives, so this never hits another process."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _groups.discard(proc.pid)


def kill_all() -> None:
    """Kill every live worker of this process and its job, waiting for nothing (for a signal
    handler that is about to end the process; the kernel reaps them)."""
    for group in list(_groups):
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


# ---------------------------------------------------------------------------------------------
# The child side.


def _no_core_dumps() -> None:
    """A Vela crash must not leave a core file in the user's repository."""
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (best effort, Linux only).  A fork
    does not inherit this, so the worker and each job ask for themselves."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _exit_status(status: int) -> int:
    """A ``waitpid`` status as ``Popen.returncode`` writes it: negative for a signal."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else status


def _run_job(handler: Handler, job: dict[str, Any], directory: str, out: int) -> None:
    """In the job process: answer ``job`` into the pipe ``out`` and exit, never returning."""
    status = _JOB_FAILED
    try:
        tempfile.tempdir = directory
        try:
            reply = handler(job)
        except Exception as exc:
            reply = {"ok": False, "kind": "internal",
                     "error": "".join(traceback.format_exception_only(type(exc), exc))}
        with os.fdopen(out, "wb") as stream:
            _write_message(stream, reply)
        status = 0
    finally:
        os._exit(status)


def run_in_job(handler: Handler, job: dict[str, Any], started: Callable[[int], None],
               keep: tuple[int, ...] = ()) -> dict[str, Any] | int:
    """Fork a job process that answers ``job`` with ``handler`` from this process's state, and
    wait for it: its reply, or its exit status when it gave none (negative: a signal).
    ``started`` is told the job's pid; ``keep`` are descriptors the job must not hold."""
    directory = tempfile.mkdtemp(prefix="job-")
    read_end, write_end = os.pipe()
    parent = os.getpid()
    try:
        pid = os.fork()
        if pid == 0:  # the job
            os.close(read_end)
            for fd in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
            _die_with_parent()
            if os.getppid() != parent:  # the worker died before the job could ask
                os._exit(_JOB_FAILED)
            _run_job(handler, job, directory, write_end)
        os.close(write_end)
        started(pid)
        with os.fdopen(read_end, "rb") as stream:
            data = stream.read()
        status = _exit_status(os.waitpid(pid, 0)[1])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if status == 0 and len(data) >= _HEADER.size and _HEADER.unpack(data[:_HEADER.size])[0] == len(data) - _HEADER.size:
        reply: dict[str, Any] = json.loads(data[_HEADER.size:].decode("utf-8", "surrogatepass"))
        return reply
    return status


def serve(handler: Handler, start: Callable[[], dict[str, Any]]) -> int:
    """The worker's loop: say hello (after ``start``), then acknowledge each request and answer
    it from a job process (``run_in_job``) until standard input closes."""
    replies = os.fdopen(os.dup(1), "wb")
    requests = sys.stdin.buffer.fileno()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()
    _no_core_dumps()
    try:
        hello = {"ok": True, "protocol": PROTOCOL, "pid": os.getpid(), **start()}
    except BaseException as exc:
        hello = {"ok": False, "error": "".join(traceback.format_exception_only(type(exc), exc))}
    _write_message(replies, hello)
    if not hello["ok"]:
        return 1
    os.dup2(devnull, 2)
    warnings.simplefilter("ignore", DeprecationWarning)  # os.fork() with numpy's threads about
    gc.collect()
    gc.freeze()  # what the import made is never collected, so a job does not copy its pages
    while True:
        message = _read_message(requests, None)
        if message is None:
            return 0
        request_id = message["id"]

        def started(pid: int, request_id: Any = request_id) -> None:
            _write_message(replies, {"id": request_id, "ack": True, "pid": pid})

        answer = run_in_job(handler, message["job"], started, keep=(replies.fileno(), requests))
        if isinstance(answer, dict):
            _write_message(replies, {"id": request_id, "reply": answer})
        else:
            _write_message(replies, {"id": request_id, "crashed": answer})


def main() -> int:
    handlers: list[Handler] = []

    def start() -> dict[str, Any]:
        from .vela import engine  # imports Vela: a broken installation fails the hello

        handlers.append(engine.handle)
        return engine.start()

    return serve(lambda job: handlers[0](job), start)


if __name__ == "__main__":
    sys.exit(main())
