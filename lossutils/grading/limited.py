"""Trusted work on student data under a time and memory limit, in a forked child process.

Some of what the grader does with a submission's data costs what the student makes it cost:
the symbolic checker expanding a returned expression, the feedback page rendering what the
notebook printed. :func:`run_limited` runs such a step in a child forked from the worker, with
an address-space and CPU limit of its own and a wall-clock deadline, so that a submission that
exhausts them gets its own reason (:class:`Exhausted`) and the worker, with every other
submission it grades, goes on. The child inherits the worker's memory (the notebook, the
decoded answer) without copying it and sends back only the pickled result.
"""

from __future__ import annotations

import math
import os
import pickle
import resource
import selectors
import signal
import time
import warnings

__all__ = ["Exhausted", "run_limited"]


class Exhausted(RuntimeError):
    """A limited step ran out of time or memory, or its process died.

    ``kind`` is ``"time"``, ``"memory"`` or ``"crash"``.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):
        return type(self), (self.kind, str(self))


def _address_space() -> int | None:
    """This process's address space in bytes, where /proc says it."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _limit(seconds: float, memory_bytes: int) -> None:
    """In the child: at most ``memory_bytes`` more address space, ``seconds`` of CPU."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = _address_space()
    if size is not None:
        cap = size + memory_bytes
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    cpu = math.ceil(seconds) + 1
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    if cpu_hard == resource.RLIM_INFINITY or cpu < cpu_hard:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu_hard))


def _child(write_fd: int, fn, args, kwargs, seconds: float, memory_bytes: int) -> None:
    try:
        # a signal meant for the worker (Ctrl-C is ignored there) must not run its handlers
        # (forked from a thread, the child may not be allowed to set them: then it has none)
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:
            pass
        _limit(seconds, memory_bytes)
        try:
            payload = (True, fn(*args, **kwargs))
        except MemoryError:
            payload = (False, Exhausted("memory", "it needed more than its memory limit"))
        except BaseException as exc:
            payload = (False, exc)
        try:
            data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an unpicklable result or exception: say what it was
            data = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}"[:500])))
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view):]
    finally:
        os._exit(0)  # no atexit handlers, no finalisers of the worker's objects


def run_limited(fn, *args, seconds: float, memory_bytes: int, **kwargs):
    """``fn(*args, **kwargs)`` in a forked child with limits; its result or its exception.

    Parameters
    ----------
    fn : callable
        Trusted code; its result and any exception it raises must pickle.
    *args, **kwargs
        Its arguments (inherited by the fork, not copied).
    seconds : float
        Wall-clock deadline, and the child's CPU-time limit.
    memory_bytes : int
        Address space the child may add to what it inherited.

    Returns
    -------
    What ``fn`` returned.

    Raises
    ------
    Exhausted
        The child ran past ``seconds`` (``kind="time"``), out of memory (``"memory"``) or died
        (``"crash"``); it is killed and reaped before this returns.
    BaseException
        Whatever ``fn`` raised.
    """
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python warns that a fork of a threaded process may deadlock: the child only computes
        # and writes to its pipe, and a deadlock would end at the deadline like any other
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(write_fd, fn, args, kwargs, seconds, memory_bytes)
    os.close(write_fd)
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    timed_out = False
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(read_fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not sel.select(timeout=left):
                    continue
                block = os.read(read_fd, 1 << 20)
                if not block:
                    break
                chunks.append(block)
    finally:
        os.close(read_fd)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        raise Exhausted("time", f"it ran past its time limit of {seconds:g} s")
    if os.WIFSIGNALED(status) or not chunks:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if sig == signal.SIGXCPU:
            raise Exhausted("time", f"it used more than {seconds:g} s of CPU time")
        if sig == signal.SIGKILL:
            raise Exhausted("memory", "it was killed (most likely out of memory)")
        raise Exhausted("crash", f"its process died ({f'signal {sig}' if sig else 'no result'})")
    ok, value = pickle.loads(b"".join(chunks))
    if ok:
        return value
    raise value
