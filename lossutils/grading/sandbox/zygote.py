"""The kernel zygote, grader side: a sandboxed process that forks one kernel per submission.

:class:`KernelZygote` starts :mod:`lossutils.grading.sandbox._zygote` in the sandbox and asks
it, one JSON line at a time, to fork kernels (or, for verification, plain processes); it
kills every process of a kernel's user id before the next fork. :class:`ForkedKernel` and
:class:`ForkedProcess` are the :class:`subprocess.Popen`-like handles of what it forked.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .._patches import switch_env
from .bwrap import (
    DEFAULT_LIMITS,
    Limits,
    is_under,
    lossutils_path,
    prepare_workdir,
    python_paths,
    sandbox_argv,
    sandbox_uid,
)
from .processes import kill_tree, kill_user, runs_as, user_processes

__all__ = [
    "ForkedKernel",
    "ForkedProcess",
    "KernelZygote",
    "ZygoteError",
    "close_zygotes",
    "kept_under_tmp",
    "kernel_zygote",
    "reap_slots",
    "zygote_supported",
]


class ZygoteError(RuntimeError):
    """The kernel zygote could not start or fork a kernel."""




def _slots_base() -> str:
    for base in (os.environ.get("LOSSUTILS_SLOTS_DIR"), "/var/tmp", "/var/cache"):
        if base and os.path.isdir(base) and not is_under(os.path.realpath(base), ["/tmp"]):
            return base
    raise ZygoteError("no folder outside /tmp for the kernels' work folders; set "
                      "LOSSUTILS_SLOTS_DIR to one")


# A slot folder's owner holds a lock on this file for as long as it lives; a folder whose lock
# is free belongs to a worker that died without cleaning up (killed, out of memory).
_OWNER = ".owner"


def _claim(folder: str) -> int:
    """Lock ``folder`` for this process; return the descriptor that holds the lock.

    The lock file is locked before it gets its name, so no reaper ever finds it unlocked.
    """
    import fcntl

    fd = os.open(os.path.join(folder, _OWNER + ".new"), os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(os.path.join(folder, _OWNER + ".new"), os.path.join(folder, _OWNER))
    return fd


def reap_slots(base: str) -> list[str]:
    """Remove the slot folders under ``base`` whose owner process is gone; return them.

    A folder without a lock file (being made, or made by an older grader) is left alone, and
    so is every folder whose owner still holds its lock.
    """
    import fcntl

    reaped = []
    for entry in os.scandir(base):
        if not entry.name.startswith("lossutils-slots-") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(os.path.join(entry.path, _OWNER), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its owner is alive
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
            reaped.append(entry.path)
        finally:
            os.close(fd)
    return reaped


def zygote_supported() -> bool:
    """Whether kernels can be forked from a zygote here: sandboxed grading as root."""
    return os.geteuid() == 0 and os.environ.get("LOSSUTILS_NO_ZYGOTE", "") in ("", "0")


def kept_under_tmp(paths: Iterable[str]) -> list[str]:
    """The folders of ``paths`` under /tmp, outermost only: what a forked process must see
    again over its own fresh /tmp (a checkout or virtual environment living there).

    Examples
    --------
    >>> kept_under_tmp(["/usr/lib", "/tmp/x/.venv", "/tmp/x/.venv/lib", "/tmp/x/lossutils"])
    ['/tmp/x/.venv', '/tmp/x/lossutils']
    """
    under = sorted({os.path.normpath(p) for p in paths if is_under(os.path.normpath(p), ["/tmp"])})
    kept: list[str] = []
    for path in under:
        if path != "/tmp" and not is_under(path, kept):
            kept.append(path)
    return kept


class KernelZygote:
    """A sandboxed process that forks one fresh, isolated kernel per submission.

    Starting a kernel costs a Python start-up, ipykernel's imports and then the notebook's own
    imports (matplotlib, sympy, ...): about two seconds for the course's notebooks, more than
    many of their cells. The zygote (:mod:`lossutils.grading.sandbox._zygote`) pays that once per
    worker: it imports ipykernel and the ``preload`` modules in the sandbox (and when they
    include matplotlib, draws one throw-away figure, so that its first-figure set-up is done
    once too: :attr:`warm`), then forks a kernel per submission. Each kernel gets its own
    session, mount namespace (a private ``/tmp``), IPC namespace, resource limits and fresh
    user id before it runs anything, and every process of that user id is killed by
    :meth:`release` before the next kernel is forked, so nothing passes from one submission
    to the next. The kernels share the zygote's sandbox: no network, the same read-only
    system, and one writable folder per kernel under :attr:`slots` (mode 0700, owned by that
    kernel's user).

    With ``bare=True`` it is a *verification* zygote instead: started without ``lossutils``
    in its sandbox (as :mod:`lossutils.grading.verify` requires), it imports only ``preload``
    and forks verification processes (:meth:`spawn`), with the same isolation.

    Only for a root grader (the fresh user ids need it); see :func:`zygote_supported`.

    Parameters
    ----------
    limits : Limits
        Limits of each kernel (the zygote gets the same memory and file limits).
    preload : sequence of str
        Modules to import once (names that fail to import are skipped).
    bare : bool, default False
        A verification zygote: no ipykernel, no ``lossutils``.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, preload: Sequence[str] = (), *,
                 bare: bool = False):
        if os.geteuid() != 0:
            raise ZygoteError("the kernel zygote needs a root grader (fresh user ids)")
        self.limits = limits
        self.preload = tuple(preload)
        self.bare = bare
        # not under /tmp: each kernel mounts a private /tmp over the zygote's
        base = _slots_base()
        self.slots = tempfile.mkdtemp(prefix="lossutils-slots-", dir=base)
        self._owner = _claim(self.slots)
        os.chmod(self.slots, 0o711)
        # what dead workers left behind (atexit never ran for them)
        reap_slots(base)
        self._home = tempfile.mkdtemp(prefix="zygote-", dir=self.slots)
        self.users: set[int] = set()
        self._inner: dict[int, int] = {}  # uid -> pid of its process inside the sandbox
        self.keep = kept_under_tmp([*python_paths(), *([] if bare else [lossutils_path()])])
        if bare:
            source = Path(__file__).with_name("_zygote.py").read_text(encoding="utf-8")
            argv = [sys.executable, "-I", "-c", source, "--bare", *self.preload]
        else:
            argv = [sys.executable, "-m", "lossutils.grading.sandbox._zygote", *self.preload]
        # the kernel zygote applies two patches: it must see their off switch
        argv = sandbox_argv(argv, workdir=self._home, limits=limits, with_lossutils=not bare,
                            env=None if bare else switch_env(), rw_binds=[self.slots],
                            zygote=True)
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            hello = self._request({"op": "ping"})
            self.preloaded = hello["preloaded"]
            self.warm = hello["warm"]  # it drew a figure before forking (see _zygote)
            if hello["threads"] != 1:
                raise ZygoteError(f"the zygote runs {hello['threads']} threads after its "
                                  "imports; forking it would be unsafe")
            self._self_test()
        except BaseException:
            self.close()
            raise

    def alive(self) -> bool:
        """Whether the zygote process is still running."""
        return self.process.poll() is None

    def _request(self, message: dict) -> dict:
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except OSError as exc:
            raise ZygoteError(f"the kernel zygote is gone ({exc})") from None
        if not line:
            raise ZygoteError(f"the kernel zygote died (exit status {self.process.wait()})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise ZygoteError(f"the kernel zygote could not fork a kernel: {reply.get('error')}")
        return reply

    def _self_test(self) -> None:
        """Fork once through every isolation step (without a kernel) before trusting it."""
        uid = sandbox_uid()
        workdir = self.new_slot(uid)
        try:
            self._request(self._fork_message(uid, workdir, [], {}, dry=True))
        finally:
            self.release(uid)
            shutil.rmtree(workdir, ignore_errors=True)

    def new_slot(self, uid: int) -> str:
        """A fresh private folder under :attr:`slots` for the kernel of ``uid``."""
        path = tempfile.mkdtemp(prefix="kernel-", dir=self.slots)
        prepare_workdir(path, uid)
        return path

    def _fork_message(self, uid, workdir, kernel_args, env, dry=False, run=None) -> dict:
        lim = self.limits
        return {"op": "fork", "uid": uid, "workdir": workdir, "kernel_args": list(kernel_args),
                "env": {k: str(v) for k, v in env.items()}, "dry": dry, "run": run,
                "keep": self.keep,
                "tmp_bytes": int(lim.tmp_bytes),
                "limits": [int(lim.memory_bytes), int(lim.cpu_seconds), int(lim.max_processes),
                           int(lim.file_size_bytes), int(lim.open_files)]}

    def fork(self, uid: int, workdir: str, kernel_args: Sequence[str],
             env: Mapping[str, str], run: dict | None = None) -> int:
        """Fork a kernel as ``uid`` in ``workdir`` (under :attr:`slots`); return its pid here.

        Every earlier kernel's processes are killed first. ``run`` is for :meth:`spawn`.
        """
        if not is_under(os.path.realpath(workdir), [os.path.realpath(self.slots)]):
            raise ZygoteError(f"{workdir} is not under the zygote's folder {self.slots}")
        self.release_all()
        self._inner.clear()  # every earlier process is gone: their statuses no longer matter
        self.users.add(uid)
        reply = self._request(self._fork_message(uid, workdir, kernel_args, env, run=run))
        self._inner[uid] = int(reply["pid"])
        pids = user_processes(uid)
        if len(pids) != 1:
            raise ZygoteError(f"expected one new kernel process of uid {uid}, found {len(pids)}")
        return pids[0]

    def spawn(self, uid: int, source: str, start_timeout: float = 10.0) -> ForkedProcess:
        """Fork a process as ``uid`` that runs the Python ``source`` on two pipes to this one.

        For the verification runner: what :class:`subprocess.Popen` with ``stdin=PIPE,
        stdout=PIPE`` would give, without a Python start-up. The pipes are named pipes in a
        fresh folder of ``uid`` under :attr:`slots`, which :meth:`ForkedProcess.close` removes.
        """
        workdir = self.new_slot(uid)
        fifos = {"stdin": os.path.join(workdir, "stdin"),
                 "stdout": os.path.join(workdir, "stdout")}
        for path in fifos.values():
            os.mkfifo(path, 0o600)
            os.chown(path, uid, uid)
        reader = writer = None
        try:
            pid = self.fork(uid, workdir, [], {}, run={"source": source, **fifos})
            reader = os.open(fifos["stdout"], os.O_RDONLY | os.O_NONBLOCK)
            deadline = time.monotonic() + start_timeout
            while writer is None:
                try:  # succeeds once the child opened its end (after its stdout)
                    writer = os.open(fifos["stdin"], os.O_WRONLY | os.O_NONBLOCK)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:
                        raise
                    if time.monotonic() > deadline or not runs_as(pid, uid):
                        raise ZygoteError("the forked process did not open its pipes") from None
                    time.sleep(0.001)
            os.set_blocking(writer, True)
            return ForkedProcess(pid, uid, self, workdir, os.fdopen(writer, "wb"),
                                 os.fdopen(reader, "rb"))
        except BaseException:
            for fd in (reader, writer):
                if fd is not None:
                    os.close(fd)
            self.release(uid)
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def exit_status(self, uid: int) -> int | None:
        """How the process forked for ``uid`` ended (``Popen.returncode`` style), if known."""
        inner = self._inner.pop(uid, None)
        if inner is None:
            return None
        return self._request({"op": "status", "pid": inner})["status"]

    def release(self, uid: int) -> None:
        """Kill every process of the kernel of ``uid``; raise if one survives."""
        self.users.discard(uid)
        if not kill_user(uid):
            self.close()
            raise ZygoteError(f"processes of uid {uid} survived SIGKILL; zygote stopped")

    def release_all(self) -> None:
        """:meth:`release` every kernel this zygote forked."""
        for uid in list(self.users):
            self.release(uid)

    def close(self) -> None:
        """Stop the zygote and every kernel it forked; remove its folders."""
        for uid in list(self.users):
            self.users.discard(uid)
            kill_user(uid)
        kill_tree(self.process)
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        shutil.rmtree(self.slots, ignore_errors=True)
        if self._owner is not None:
            os.close(self._owner)
            self._owner = None


_ZYGOTES: dict = {}
atexit.register(lambda: close_zygotes())


def kernel_zygote(limits: Limits = DEFAULT_LIMITS, preload: Sequence[str] = (), *,
                  bare: bool = False) -> KernelZygote:
    """This thread's zygote for ``limits`` (a verification zygote if ``bare``), started (or
    restarted) when needed.

    A zygote that does not preload every module of ``preload`` is replaced by one that
    preloads the union, so a worker grading several assignments pays each import once. Each
    thread gets its own (a Dask worker may run several tasks at once): a zygote serves one
    kernel at a time and kills the previous kernel's processes before forking the next.
    bubblewrap's ``--die-with-parent`` follows the thread that started it, so a zygote ends
    with its thread.
    """
    key = (limits, threading.get_ident(), bare)
    current = _ZYGOTES.get(key)
    if current is not None and current.alive() and set(preload) <= set(current.preload):
        return current
    wanted = tuple(dict.fromkeys([*(current.preload if current else ()), *preload]))
    if current is not None:
        current.close()
    _ZYGOTES[key] = zygote = KernelZygote(limits, wanted, bare=bare)
    return zygote


def close_zygotes() -> None:
    """Stop this process's zygotes (at exit)."""
    while _ZYGOTES:
        _ZYGOTES.popitem()[1].close()




class ForkedKernel:
    """The part of :class:`subprocess.Popen` jupyter_client uses, for a zygote's kernel."""

    def __init__(self, pid: int, uid: int, zygote: KernelZygote):
        self.pid, self.uid, self.zygote = pid, uid, zygote
        self.returncode = None
        self.stdin = self.stdout = self.stderr = None

    def poll(self):
        if self.returncode is None and not self._running():
            self.returncode = -signal.SIGKILL  # the zygote reaped it: the status is not ours
        return self.returncode

    def _running(self) -> bool:
        return runs_as(self.pid, self.uid)

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("kernel", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum):
        if signum == signal.SIGKILL:
            self.kill()
        elif self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.zygote.release(self.uid)




class ForkedProcess(ForkedKernel):
    """A process a zygote forked with :meth:`KernelZygote.spawn`: the :class:`subprocess.Popen`
    interface the verification channel uses (``stdin``, ``stdout``, ``poll``, ``wait``,
    ``kill``), with the exit status asked of the zygote that reaped it."""

    def __init__(self, pid, uid, zygote, workdir, stdin, stdout):
        super().__init__(pid, uid, zygote)
        self.workdir, self.stdin, self.stdout = workdir, stdin, stdout

    def poll(self):
        if self.returncode is None and not self._running():
            try:
                status = self.zygote.exit_status(self.uid)
            except ZygoteError:
                status = None
            self.returncode = -signal.SIGKILL if status is None else status
        return self.returncode

    def close(self) -> None:
        """Kill what is left of it, close the pipes and remove its folder."""
        self.zygote.release(self.uid)
        for pipe in (self.stdin, self.stdout):
            try:
                pipe.close()
            except OSError:  # a write end whose reader died
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


