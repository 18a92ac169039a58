"""The kernel zygote: one sandboxed process that forks a fresh Jupyter kernel per submission.

Run by :class:`lossutils.grading.sandbox.KernelZygote` inside the bubblewrap sandbox, as the
sandbox's root with exactly ``CAP_SETUID``, ``CAP_SETGID`` and ``CAP_SYS_ADMIN``. It imports
ipykernel and the modules the masters import (numpy, matplotlib, lossutils, ...) once, draws one
throw-away figure when matplotlib is among them and gives all Agg renderers one mathtext parser
(two patches of :mod:`lossutils.grading._patches`), then reads one JSON request per
line on stdin and answers one JSON line on stdout. It never runs student code itself: every
kernel is a fork of this clean state that, before it runs anything of the student's,

1. starts a session of its own and closes every inherited descriptor (the request pipe
   included), with stdin/stdout/stderr on ``/dev/null``;
2. enters a mount and an IPC namespace of its own, with a fresh ``/tmp`` (tmpfs), so files,
   System V shared memory and message queues die with it (a Python or ``lossutils`` that
   lives under ``/tmp``, as in a checkout there, is bound again read-only on top);
3. sets the resource limits and becomes the request's fresh unprivileged user id, which drops
   every capability (checked: the kernel refuses to run if any capability is left);
4. re-seeds what was seeded at import time and starts ``IPKernelApp`` on the connection file.

The grader kills every process of that user id after the submission and removes its folder,
so nothing one student's kernel leaves behind exists when the next one is forked.

Protocol (one line each)::

    -> {"op": "ping"}               <- {"ok": true, "preloaded": [...], "threads": 1, "warm": W}
    -> {"op": "fork", "uid": U, "workdir": W, "kernel_args": [...], "env": {...},
        "limits": [aspace, cpu, nproc, fsize, nofile], "tmp_bytes": T, "dry": false,
        "keep": [folders under /tmp to bind again, read-only, over the fresh /tmp]}
    <- {"ok": true, "pid": <pid inside the sandbox>}   or   {"ok": false, "error": "..."}

A ``dry`` fork goes through every isolation step and exits instead of starting the kernel: the
grader's self-test before it trusts the zygote.

**Verification zygote.** Started as ``python -I -c <this file> --bare numpy ...`` in a sandbox
without ``lossutils`` (see :mod:`lossutils.grading.verify`), it imports only the listed modules
and forks verification processes instead of kernels: a fork request with ``"run": {"source":
S, "stdin": FIFO, "stdout": FIFO}`` runs the source S (the verification runner) as
``__main__`` after the same isolation steps, with its standard input and output on the two
named pipes the grader made in the child's folder. ``{"op": "status", "pid": P}`` answers the
exit status of a child that ended, ``{"ok": true, "status": N}`` (negative: killed by signal
-N; null: unknown).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND = 1, 2, 4, 32, 4096
MS_REC, MS_PRIVATE = 16384, 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _private_mounts(tmp_bytes: int, keep=()) -> None:
    """A mount and IPC namespace of this process's own, with an empty /tmp.

    ``keep`` lists folders under /tmp that must stay visible (a Python or ``lossutils`` in a
    checkout there): each is bound again, read-only, from the /tmp the new one covers.
    """
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare")
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    covered = os.open("/tmp", os.O_PATH | os.O_DIRECTORY) if keep else None
    options = f"size={int(tmp_bytes)},mode=1777".encode()
    _check(_libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, options),
           "mount tmpfs on /tmp")
    for path in keep:
        rel = os.path.relpath(path, "/tmp")
        if rel.startswith(".."):
            raise OSError(f"{path} is not under /tmp")
        os.makedirs(path, mode=0o755, exist_ok=True)
        source = f"/proc/self/fd/{covered}/{rel}".encode()
        _check(_libc.mount(source, path.encode(), None, MS_BIND | MS_REC, None),
               f"bind {path}")
        _check(_libc.mount(None, path.encode(), None,
                           MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None),
               f"remount {path} read-only")
    if covered is not None:
        os.close(covered)


def _capabilities_left() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("CapEff:", "CapPrm:")) and int(line.split()[1], 16):
                return int(line.split()[1], 16)
    return 0


def _become_kernel(request: dict, ready_fd: int) -> None:
    """In the forked child: isolate, drop privileges, then run the kernel (never returns)."""
    status = 1
    try:
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, ready_fd)
        os.closerange(ready_fd + 1, 65536)
        _private_mounts(request["tmp_bytes"], request.get("keep", ()))
        aspace, cpu, nproc, fsize, nofile = (int(v) for v in request["limits"])
        for res, value in ((resource.RLIMIT_AS, aspace), (resource.RLIMIT_DATA, aspace),
                           (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_FSIZE, fsize),
                           (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(res, (value, value))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
        os.chdir(request["workdir"])
        uid = int(request["uid"])
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if os.getuid() != uid or os.geteuid() != uid or _capabilities_left():
            raise OSError("the kernel kept privileges after the user switch")
        for path in request.get("keep", ()):
            os.listdir(path)  # still reachable by the kernel's user, or the fork fails
        os.environ.update(request["env"])
        os.environ["PWD"] = request["workdir"]
        # Seeded at import in the zygote: re-seed from the OS, as a fresh process would be.
        if "numpy.random" in sys.modules:
            sys.modules["numpy.random"].seed()
        os.write(ready_fd, b"ok")
        os.close(ready_fd)
        if request.get("dry"):
            os._exit(0)
    except BaseException as exc:  # report why, then die: the grader sees a failed start
        try:
            os.write(ready_fd, f"{type(exc).__name__}: {exc}".encode()[:400])
        finally:
            os._exit(1)
    if request.get("run"):
        _run_source(request["run"])
    try:
        from ipykernel import kernelapp

        sys.argv = ["ipykernel_launcher", *request["kernel_args"]]
        kernelapp.launch_new_instance(argv=request["kernel_args"])
        status = 0
    finally:
        os._exit(status)


def _run_source(run: dict) -> None:
    """In a forked, isolated child: run ``run["source"]`` on the grader's two pipes; exit."""
    status = 1
    try:
        # stdout first: the grader opens its reading end before it opens the writing end of
        # stdin, so once both opens returned, neither side can see a premature end of file
        out = os.open(run["stdout"], os.O_WRONLY)
        into = os.open(run["stdin"], os.O_RDONLY)
        os.dup2(into, 0)
        os.dup2(out, 1)
        os.close(into)
        os.close(out)
        sys.argv = ["-c"]
        exec(compile(run["source"], "<verification>", "exec"), {"__name__": "__main__"})
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        os._exit(status)


def _fork(request: dict) -> dict:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _become_kernel(request, write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        answer = ready.read(512)
    if answer != b"ok":
        return {"ok": False, "error": answer.decode("utf-8", "replace") or "the kernel died"}
    return {"ok": True, "pid": pid}


#: Exit statuses of reaped children, until the grader asks (bounded).
_EXITED: dict[int, int] = {}


def _reap(signum=None, frame=None) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _EXITED[pid] = status
        while len(_EXITED) > 256:
            _EXITED.pop(next(iter(_EXITED)))


def _status(pid: int) -> int | None:
    """Exit code of the child ``pid`` (as :class:`subprocess.Popen` gives it), once it ended."""
    import time

    deadline = time.monotonic() + 2.0
    while pid not in _EXITED and time.monotonic() < deadline:
        _reap()  # its end of file can reach the grader a moment before SIGCHLD reaches us
        if pid not in _EXITED:
            time.sleep(0.005)
    status = _EXITED.pop(pid, None)
    return None if status is None else os.waitstatus_to_exitcode(status)


#: Modules that set themselves up for the IPython instance running when they are imported
#: (widgets' comm targets, the inline backend's figure hooks): imported in the zygote they
#: would miss the kernel's, so each kernel imports them itself.
NOT_PRELOADED = ("IPython", "ipywidgets", "matplotlib_inline", "ipympl", "comm",
                 "widgetsnbextension")


#: What starting an ipykernel imports, so that each forked kernel finds it imported.
KERNEL_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger",
                  "IPython.core.completerlib", "IPython.core.debugger", "IPython.core.oinspect",
                  "IPython.extensions.storemagic", "tornado.platform.asyncio", "faulthandler",
                  "sqlite3")


def _open_files() -> set[str]:
    """What this process's descriptors point to."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return found


def main() -> None:
    """Import the preload list, then serve requests until stdin closes."""
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # as ipykernel_launcher does; IPython puts the cwd back per kernel
    requested = sys.argv[1:]
    bare = requested[:1] == ["--bare"]  # a verification zygote: no kernel, only these modules
    cold = requested[:1] == ["--cold"]  # a kernel zygote whose warm-up left a file open
    if bare or cold:
        requested = requested[1:]
    names = requested
    if not bare:
        os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        names = [*KERNEL_MODULES, *requested]
    import importlib

    preloaded = []
    for name in names:
        if name not in KERNEL_MODULES and name.split(".")[0] in NOT_PRELOADED:
            continue
        try:
            importlib.import_module(name)
            preloaded.append(name)
        except Exception:  # a master's local module or an optional one: the kernel imports it
            pass
    warm = False
    if "matplotlib" in sys.modules and not bare:
        # only a kernel zygote gets here, in a sandbox where lossutils is importable
        from lossutils.grading import _patches

        if not cold:
            before = _open_files()
            try:
                warm = _patches.warm_matplotlib()
            except Exception:  # a figure that cannot be drawn here: kernels warm up themselves
                warm = False
            if _open_files() - before:  # a font cache it does not know: start again, cold
                os.execv(sys.executable, [sys.executable, "-m",
                                          "lossutils.grading.sandbox._zygote", "--cold",
                                          *requested])
        _patches.share_mathtext_parser()
    import threading

    # fork() copies only the calling thread: a preloaded module that started a thread would
    # leave every kernel with a half-copied one. The grader refuses such a zygote.
    threads = threading.active_count()
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "fork":
            try:
                reply = _fork(request)
            except OSError as exc:
                reply = {"ok": False, "error": str(exc)}
        elif request.get("op") == "status":
            reply = {"ok": True, "status": _status(int(request["pid"]))}
        else:
            reply = {"ok": True, "preloaded": preloaded, "threads": threads, "warm": warm}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
