"""Process isolation: Vela runs in a long-lived child process, never in pytest's.

Vela's C++ core can segfault on a malformed model and writes to file descriptor 1 from native
code, so pytest's process never imports it.  ``VelaWorker`` (the parent side) starts one child
lazily on the first request, keeps it for the rest of the session (Vela is imported once) and
replaces it after a crash, a timeout or an interrupted exchange.  ``serve`` (the child side)
answers requests until its standard input closes; ``main`` serves ``vela.engine.handle``.

Messages are length-prefixed JSON: 8 bytes of big-endian length, then UTF-8 JSON.  Every
request carries an id that the child's acknowledgement and reply repeat, so a reply is never
matched to another request; and an exchange that is interrupted (a timeout plugin, a signal
handler, Ctrl-C) kills the child, so nothing stale is left in the pipe.  The child keeps a
private duplicate of its original stdout for replies.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import VelaCrash, VelaTimeout, WorkerStartError

_HEADER = struct.Struct(">Q")
PROTOCOL = 2
START_TIMEOUT = 120.0

Handler = Callable[[dict[str, Any]], dict[str, Any]]


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
    """The parent's handle on the child process that runs Vela.

    ``request`` sends one job and returns the child's reply.  A child that dies mid-job raises
    ``VelaCrash``; one that exceeds ``timeout`` seconds is killed and raises ``VelaTimeout``.
    Either way the next request starts a fresh child.  A child that cannot start at all (Vela
    does not import) makes this and every later request raise ``WorkerStartError`` at once.
    """

    def __init__(self, command: list[str] | None = None) -> None:
        self._command = command or [sys.executable, "-m", "pytest_ethosu.worker"]
        self._proc: subprocess.Popen[bytes] | None = None
        self._start_error: str | None = None
        self._next_id = 0
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._start_error is not None:
            raise WorkerStartError(self._start_error)
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=errors, env=env)
            assert proc.stdout is not None
            try:
                hello = _read_message(proc.stdout.fileno(), time.monotonic() + START_TIMEOUT)
            except (TimeoutError, ValueError):
                hello = None
            if hello is None or not hello.get("ok") or hello.get("protocol") != PROTOCOL:
                proc.kill()
                proc.wait()
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
        self._proc = proc
        return proc

    def request(self, job: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """One job, one reply.  If anything interrupts the exchange, the child is killed."""
        deadline = time.monotonic() + timeout if timeout else None
        self._next_id += 1
        request_id = self._next_id
        message = {"id": request_id, "job": job}
        try:
            proc = self._send(message, deadline)
            if proc is None:
                # the worker was gone before it took the job (killed between jobs): the job is
                # not to blame, so a fresh worker gets it once more
                proc = self._send(message, deadline)
            if proc is None:
                raise VelaCrash("the worker died twice before it could take the job")
            return self._reply(proc, request_id, deadline, timeout)
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

    def _send(self, message: dict[str, Any], deadline: float | None) -> subprocess.Popen[bytes] | None:
        """Hand the job to a live worker; None when the worker died before acknowledging it."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        assert proc.stdin is not None
        try:
            _write_message(proc.stdin, message)
            ack = self._expect(proc, message["id"], deadline)
        except BrokenPipeError:
            ack = None
        except TimeoutError:
            return proc  # taking the job took too long: _reply reports the timeout
        if ack is None:
            proc.wait()
            self._proc = None
            return None
        return proc

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
            status = proc.wait()
            self._proc = None
            raise VelaCrash(f"Vela crashed ({describe_exit(status)}) while compiling this model; "
                            "the worker was restarted and the session goes on.", status)
        result: dict[str, Any] = reply["reply"]
        return result

    def close(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        else:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


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
    """Ask Linux to kill this process when its parent dies (best effort, Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def serve(handler: Handler, start: Callable[[], dict[str, Any]]) -> int:
    """The child's loop: say hello (after ``start``), then acknowledge and answer each request
    with ``handler`` until standard input closes."""
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
    while True:
        message = _read_message(requests, None)
        if message is None:
            return 0
        _write_message(replies, {"id": message["id"], "ack": True})
        try:
            reply = handler(message["job"])
        except Exception as exc:
            reply = {"ok": False, "kind": "internal",
                     "error": "".join(traceback.format_exception_only(type(exc), exc))}
        _write_message(replies, {"id": message["id"], "reply": reply})


def main() -> int:
    handlers: list[Handler] = []

    def start() -> dict[str, Any]:
        from .vela import engine  # imports Vela: a broken installation fails the hello

        handlers.append(engine.handle)
        return engine.start()

    return serve(lambda job: handlers[0](job), start)


if __name__ == "__main__":
    sys.exit(main())
