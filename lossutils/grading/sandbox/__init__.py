"""Run untrusted student code in a bubblewrap sandbox with resource limits.

Every process that runs student code (the nbgrader kernel and the verification process of
:mod:`lossutils.grading.verify`) is started through :func:`sandbox_argv`, or forked, with the
isolation described in :class:`KernelZygote`, from a zygote started that way. It wraps a command
line so that it runs

- without network (``--unshare-net``: only a private loopback exists),
- in its own pid, IPC and UTS namespaces, killed when the grader dies,
- on a file system built from an allow list: the system directories (``/usr``, ``/etc``), the
  Python installation and, for the kernel, the installed ``lossutils`` package, all
  read-only; a private ``/tmp``; and one writable work folder holding only that submission.
  The repository (``solutions/``, ``course/``), the gradebook, the output folder, other
  submissions and home directories are simply not there;
- with an environment scrubbed to a minimum plus ``LOSSUTILS_GRADING_SEED``;
- as a fresh unprivileged user id (when the grader runs as root), under ``setrlimit`` limits on
  address space, CPU time, processes, file size and core dumps (:class:`Limits`).

The grader reads at most :attr:`Limits.max_output_bytes` of what such a process prints
(:func:`run_sandboxed`). :class:`SandboxedKernelManager` starts a Jupyter kernel in the
sandbox; it talks to the grader over Unix sockets (``transport="ipc"``) in a folder shared with
the sandbox, because the kernel's loopback TCP ports live in another network namespace.

Where bubblewrap cannot run (not installed, or user namespaces forbidden),
:func:`require_sandbox` raises :class:`SandboxUnavailable`, whose message names the
``--unsandboxed`` flag. See ``SECURITY.md`` for the threat model.
"""

from __future__ import annotations

import atexit
import errno
import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KernelZygote",
    "Limits",
    "SandboxUnavailable",
    "SandboxedKernelManager",
    "SandboxedRun",
    "ZygoteError",
    "close_zygotes",
    "exit_signal",
    "kernel_zygote",
    "kill_strays",
    "kill_tree",
    "kill_user",
    "require_sandbox",
    "run_sandboxed",
    "sandbox_argv",
    "sandbox_available",
    "sandbox_kernel_manager",
    "zygote_supported",
]

SEED_ENV = "LOSSUTILS_GRADING_SEED"
UNSANDBOXED_FLAG = "--unsandboxed"

# Runs inside the sandbox before the payload: set the limits, then become an unprivileged user
# (dropping every capability) and exec the payload. Limits are set first because lowering
# them needs no privilege and the uid switch is what makes RLIMIT_NPROC bite: root is exempt.
# A session of its own keeps a kernel's SIGINT to its process group (ipykernel interrupts
# that way) from reaching bwrap, whose death would take the sandbox down.
_SHIM = """\
import os, resource, sys
uid, aspace, cpu, nproc, fsize, nofile = (int(v) for v in sys.argv[1:7])
for res, value in ((resource.RLIMIT_AS, aspace), (resource.RLIMIT_DATA, aspace),
                   (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_FSIZE, fsize),
                   (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(res, (value, value))
# SIGXCPU at the soft limit says why; SIGKILL at the hard one if it is ignored.
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2) if cpu >= 0 else (cpu, cpu))
if uid >= 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
os.setsid()
os.execv(sys.argv[7], sys.argv[7:])
"""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed process tree.

    Parameters
    ----------
    memory_bytes : int
        Address space per process (``RLIMIT_AS`` and ``RLIMIT_DATA``).
    cpu_seconds : int
        CPU time per process (``RLIMIT_CPU``); the process gets SIGXCPU, then SIGKILL.
    wall_seconds : float
        Wall-clock time the grader waits for the whole process (:func:`run_sandboxed`).
    max_processes : int
        Processes and threads of the sandbox's user (``RLIMIT_NPROC``).
    max_output_bytes : int
        What the grader reads of stdout and of stderr; the rest is discarded.
    file_size_bytes : int
        Largest file the process may write (``RLIMIT_FSIZE``).
    tmp_bytes : int
        Size of the private ``/tmp`` (a tmpfs).
    open_files : int
        Open file descriptors per process (``RLIMIT_NOFILE``).

    Examples
    --------
    >>> Limits(memory_bytes=2**30).memory_bytes
    1073741824
    >>> Limits(cpu_seconds=0)
    Traceback (most recent call last):
    ...
    ValueError: Limits.cpu_seconds must be a positive number, got 0.
    """

    memory_bytes: int = 2 * 2**30
    cpu_seconds: int = 120
    wall_seconds: float = 300.0
    max_processes: int = 64
    max_output_bytes: int = 1_000_000
    file_size_bytes: int = 64 * 2**20
    tmp_bytes: int = 256 * 2**20
    open_files: int = 256

    def __post_init__(self):
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}.")


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot run here, so student code would run with the grader's rights."""

    def __init__(self, reason: str):
        super().__init__(
            f"the grading sandbox is not available: {reason}. Student code would run with "
            "your rights, your network and read access to solutions/ and the gradebook. "
            "Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and allow user "
            "namespaces, or run the grader inside a throw-away container and pass "
            f"{UNSANDBOXED_FLAG} to grade without the sandbox."
        )
        self.reason = reason


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts
    return [str(Path(*parts[:i])) for i in range(2, len(parts))]


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def python_paths() -> list[str]:
    """Folders of the running Python: the base installation, the environment, site-packages.

    Examples
    --------
    >>> sys.base_prefix in python_paths()
    True
    """
    import site
    import sysconfig

    found = [sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))]
    found += [sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    found += site.getsitepackages()
    return [p for p in dict.fromkeys(os.path.realpath(p) for p in found) if os.path.isdir(p)]


def lossutils_path() -> str:
    """The folder of the installed ``lossutils`` package (an editable install's source too)."""
    import lossutils

    return os.path.dirname(os.path.realpath(lossutils.__file__))


def _bind_args(ro: Sequence[str], rw: Sequence[str]) -> list[str]:
    """bwrap arguments binding ``ro`` read-only and ``rw`` writable at the same paths.

    bwrap creates missing parent folders with mode 0700, which an unprivileged user cannot
    traverse; they are created explicitly with mode 0755 instead.
    """
    ro = sorted({os.path.realpath(p) for p in ro if os.path.exists(p)})
    # A folder inside another read-only folder is already visible.
    ro = [p for p in ro if not _under(p, [q for q in ro if q != p])]
    rw = sorted({os.path.realpath(p) for p in rw})
    args: list[str] = []
    made: set[str] = set()
    mounted: list[str] = []
    for path, flag in sorted([(p, "--ro-bind") for p in ro] + [(p, "--bind") for p in rw],
                             key=lambda item: item[0].count("/")):
        for parent in _ancestors(path):
            if parent not in made and not _under(parent, mounted):
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        args += [flag, path, path]
        mounted.append(path)
    return args


def _symlink_or_bind(path: str) -> list[str]:
    """Reproduce ``/bin`` etc.: a symlink on merged-/usr systems, else a read-only bind."""
    if os.path.islink(path):
        return ["--symlink", os.readlink(path), path]
    if os.path.isdir(path):
        return ["--ro-bind", path, path]
    return []


def _sandbox_uid() -> int:
    """A fresh user id for one sandbox (only when the grader is root), or -1 to keep ours.

    A random id from a range no distribution assigns, so two sandboxes share neither a process
    budget (RLIMIT_NPROC counts per user) nor the right to signal each other.
    """
    if os.geteuid() != 0:
        return -1
    return 1_000_000_000 + secrets.randbelow(1_000_000_000)


def _processes_of(uid: int) -> dict[int, tuple[int, bytes]]:
    """``{pid: (parent pid, state letter)}`` of every process owned by ``uid``, from /proc."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # the process ended while we looked
            continue
        # The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
        state, parent = stat[stat.rindex(b")") + 2:].split()[:2]
        found[int(entry.name)] = (int(parent), state)
    return found


def _user_processes(uid: int) -> list[int]:
    """Pids of the live (not zombie) processes owned by ``uid``."""
    return [pid for pid, (_, state) in _processes_of(uid).items() if state not in (b"Z", b"X")]


@dataclass(frozen=True)
class _Plan:
    argv: list[str]
    uid: int


def sandbox_argv(
    argv: Sequence[str],
    *,
    workdir: str,
    limits: Limits = Limits(),
    seed: int | None = None,
    env: Mapping[str, str] | None = None,
    with_lossutils: bool = True,
    ro_binds: Sequence[str] = (),
    rw_binds: Sequence[str] = (),
    uid: int | None = None,
) -> list[str]:
    """Wrap ``argv`` so that it runs in the sandbox.

    Parameters
    ----------
    argv : sequence of str
        The command; ``argv[0]`` must be an absolute path visible inside the sandbox
        (``sys.executable`` is).
    workdir : str
        The one writable folder (same path inside), the working directory; it should hold
        only this submission. When the grader runs as root, it and ``rw_binds`` are handed
        (``chown``) to the sandbox's fresh user id.
    limits : Limits
        Resource limits.
    seed : int, optional
        Value of ``LOSSUTILS_GRADING_SEED`` inside.
    env : mapping, optional
        Extra environment variables (everything else is cleared).
    with_lossutils : bool, default True
        Make the installed ``lossutils`` package visible (the kernel needs it for the test
        cells; the verification process must not have it).
    ro_binds, rw_binds : sequence of str
        Further folders or files to expose read-only or writable, at the same paths.
    uid : int, optional
        User id to run as (root graders only); a fresh random one by default.

    Returns
    -------
    list of str
        The command line to pass to :class:`subprocess.Popen` (use ``start_new_session=True``
        so that the whole tree can be signalled).

    Examples
    --------
    >>> with tempfile.TemporaryDirectory() as work:
    ...     cmd = sandbox_argv([sys.executable, "-c", "pass"], workdir=work)
    >>> cmd[0].endswith("bwrap"), "--unshare-net" in cmd, cmd[-2:]
    (True, True, ['-c', 'pass'])
    """
    return _plan(argv, workdir=workdir, limits=limits, seed=seed, env=env,
                 with_lossutils=with_lossutils, ro_binds=ro_binds, rw_binds=rw_binds,
                 uid=uid).argv


def _plan(argv, *, workdir, limits, seed, env, with_lossutils, ro_binds, rw_binds, uid,
          zygote=False):
    bwrap = shutil.which("bwrap") or "bwrap"
    if uid is None:
        uid = -1 if zygote else _sandbox_uid()
    nproc = limits.max_processes
    if uid < 0 and not zygote:  # (the zygote is root, exempt; each kernel sets its own)
        # Without a uid of its own the limit counts every process of the grader's user.
        nproc += len(_processes_of(os.getuid()))
    ro = ["/usr", "/etc", *python_paths(), *ro_binds]
    if with_lossutils:
        ro.append(lossutils_path())
    workdir = os.path.realpath(workdir)
    args = [bwrap, "--die-with-parent", "--unshare-net", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if os.geteuid() != 0:
        args.append("--unshare-user")
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        args += _symlink_or_bind(top)
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(int(limits.tmp_bytes)), "--perms", "1777", "--tmpfs", "/tmp"]
    args += _bind_args(ro, [workdir, *rw_binds])
    if not with_lossutils and _under(lossutils_path(), ro):
        # Installed inside site-packages: cover it with an empty read-only folder.
        args += ["--perms", "0555", "--tmpfs", lossutils_path(), "--remount-ro",
                 lossutils_path()]
    if uid >= 0 or zygote:
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    if zygote:
        # to give each forked kernel its own mount and IPC namespace (see _zygote.py)
        args += ["--cap-add", "CAP_SYS_ADMIN"]
    home = "/tmp"
    environment = {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "IPYTHONDIR": "/tmp/ipython",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        # One BLAS thread per sandbox: workers already use every core, and threads count
        # against RLIMIT_NPROC.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if with_lossutils and os.path.dirname(lossutils_path()) not in python_paths():
        # An editable or PYTHONPATH install: point the sandbox at the same package the grader
        # imported, whatever made it importable out here.
        environment["PYTHONPATH"] = os.path.dirname(lossutils_path())
    if seed is not None:
        environment[SEED_ENV] = str(int(seed))
    environment.update(env or {})
    args.append("--clearenv")
    for key, value in environment.items():
        args += ["--setenv", key, value]
    args += ["--chdir", workdir, "--"]
    for path in (workdir, *rw_binds):
        prepare_workdir(path, uid)
    nofile = limits.open_files
    # The zygote lives as long as its worker: no CPU limit (-1, RLIM_INFINITY); each kernel
    # it forks sets its own.
    cpu = -1 if zygote else int(limits.cpu_seconds)
    args += [sys.executable, "-I", "-S", "-c", _SHIM, str(uid), str(int(limits.memory_bytes)),
             str(cpu), str(int(nproc)), str(int(limits.file_size_bytes)),
             str(int(nofile)), *argv]
    return _Plan(args, uid)


def prepare_workdir(workdir: str, uid: int) -> None:
    """Hand ``workdir`` and everything in it to the sandbox's user (a no-op without one)."""
    if uid < 0:
        return
    os.chown(workdir, uid, uid)
    for root, dirs, files in os.walk(workdir):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


@functools.cache
def _probe() -> str | None:
    """Why the sandbox cannot run here, or None when it works (cached for the process)."""
    if shutil.which("bwrap") is None:
        return "the bwrap program (Debian package bubblewrap) is not installed"
    with tempfile.TemporaryDirectory(prefix="lossutils-probe-") as workdir:
        plan = _plan([sys.executable, "-I", "-c", "import socket, os; print(os.getuid())"],
                     workdir=workdir, limits=Limits(), seed=None, env=None,
                     with_lossutils=False, ro_binds=(), rw_binds=(), uid=None)
        try:
            done = subprocess.run(plan.argv, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap could not be started ({exc})"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"bwrap failed ({detail[-1] if detail else f'exit code {done.returncode}'})"
    return None


def sandbox_available() -> bool:
    """Whether bubblewrap really runs a sandboxed Python here (probed once per process).

    Examples
    --------
    >>> isinstance(sandbox_available(), bool)
    True
    """
    return _probe() is None


def require_sandbox() -> None:
    """Raise :class:`SandboxUnavailable` (naming ``--unsandboxed``) unless the sandbox works."""
    reason = _probe()
    if reason is not None:
        raise SandboxUnavailable(reason)


# --------------------------------------------------------------------------- one-shot runs


@dataclass
class SandboxedRun:
    """The result of :func:`run_sandboxed`: exit status, capped output, and what went wrong.

    ``returncode`` is the exit status; :func:`exit_signal` tells which signal ended the
    process (9: killed, e.g. at the wall-clock limit; 24: the CPU limit). ``stdout`` and
    ``stderr`` hold at most ``Limits.max_output_bytes`` each; ``truncated`` says whether more
    was printed.
    """

    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0


def exit_signal(returncode: int) -> int | None:
    """The signal that ended a sandboxed process, or None if it exited.

    bwrap reports a child killed by signal N as exit status 128 + N.

    Examples
    --------
    >>> exit_signal(128 + 9), exit_signal(-24), exit_signal(1)
    (9, 24, None)
    """
    if returncode < 0:
        return -returncode
    if 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def kill_strays(uid: int) -> int:
    """SIGKILL the processes a sandboxed kernel forked, sparing the kernel; return how many.

    Every process of the sandbox runs as its own fresh ``uid``; the kernel is the one whose
    parent (bwrap) is not. Its descendants (a fork bomb, a runaway ``!command``) die when a
    cell is interrupted instead of spinning on until the notebook ends.
    """
    if uid < 0:
        return 0
    owned = {pid: parent for pid, (parent, _) in _processes_of(uid).items()}
    killed = 0
    for pid, parent in owned.items():
        if parent in owned:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` (started with ``start_new_session=True``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass
    except PermissionError:  # not our group after all: kill the one process we own
        proc.kill()


def run_sandboxed(
    argv: Sequence[str],
    *,
    workdir: str,
    limits: Limits = Limits(),
    seed: int | None = None,
    stdin: bytes = b"",
    sandbox: bool = True,
    **kwargs,
) -> SandboxedRun:
    """Run ``argv`` to completion in the sandbox, reading at most the output limit.

    Parameters
    ----------
    argv : sequence of str
        The command (``argv[0]`` an absolute path).
    workdir : str
        Private writable folder (see :func:`sandbox_argv`).
    limits : Limits
        Resource limits; ``wall_seconds`` bounds the whole run.
    seed : int, optional
        ``LOSSUTILS_GRADING_SEED`` inside.
    stdin : bytes
        Sent to the process's standard input.
    sandbox : bool, default True
        False runs ``argv`` directly (only for ``--unsandboxed`` grading): no isolation, but
        the same wall-clock and output limits.
    **kwargs
        Passed to :func:`sandbox_argv`.

    Returns
    -------
    SandboxedRun
    """
    if sandbox:
        plan = _plan(argv, workdir=workdir, limits=limits, seed=seed,
                     env=kwargs.pop("env", None),
                     with_lossutils=kwargs.pop("with_lossutils", True),
                     ro_binds=kwargs.pop("ro_binds", ()), rw_binds=kwargs.pop("rw_binds", ()),
                     uid=kwargs.pop("uid", None))
        cmd, env = plan.argv, None
    else:
        cmd = list(argv)
        env = dict(os.environ, **({SEED_ENV: str(seed)} if seed is not None else {}))
    if kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=workdir, env=env,
                            start_new_session=True)
    out, err, truncated, timed_out = _communicate(proc, stdin, limits)
    return SandboxedRun(proc.returncode, out, err, timed_out, truncated,
                        round(time.monotonic() - start, 3))


def _communicate(proc, stdin: bytes, limits: Limits):
    """Feed stdin, read both pipes up to the cap, enforce the wall clock, reap the tree."""
    deadline = time.monotonic() + limits.wall_seconds
    cap = int(limits.max_output_bytes)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks = {out_fd: bytearray(), err_fd: bytearray()}
    truncated = timed_out = False
    try:
        proc.stdin.write(stdin)
        proc.stdin.close()
    except (BrokenPipeError, OSError):  # the process does not read its input
        pass
    with selectors.DefaultSelector() as sel:
        for pipe in (proc.stdout, proc.stderr):
            sel.register(pipe, selectors.EVENT_READ)
        open_pipes = 2
        while open_pipes:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(timeout=min(left, 1.0)):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                buf = chunks[key.fd]
                room = cap - len(buf)
                if len(data) > room:
                    truncated = True
                buf += data[:max(room, 0)]
    kill_tree(proc)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    return bytes(chunks[out_fd]), bytes(chunks[err_fd]), truncated, timed_out


# --------------------------------------------------------------------------- kernel zygote


class ZygoteError(RuntimeError):
    """The kernel zygote could not start or fork a kernel."""


def kill_user(uid: int, patience: float = 5.0) -> bool:
    """SIGKILL every process of ``uid`` until none is left; False if some survived ``patience``.

    A process forking while it is killed can leave a child behind for one round; the loop goes
    on until a scan finds nothing (``RLIMIT_NPROC`` bounds how many there can be).
    """
    if uid <= 0:
        raise ValueError(f"refusing to kill every process of uid {uid}")
    deadline = time.monotonic() + patience
    while True:
        pids = _user_processes(uid)
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


def _slots_base() -> str:
    for base in (os.environ.get("LOSSUTILS_SLOTS_DIR"), "/var/tmp", "/var/cache"):
        if base and os.path.isdir(base) and not _under(os.path.realpath(base), ["/tmp"]):
            return base
    raise ZygoteError("no folder outside /tmp for the kernels' work folders; set "
                      "LOSSUTILS_SLOTS_DIR to one")


def zygote_supported() -> bool:
    """Whether kernels can be forked from a zygote here: sandboxed grading as root."""
    return os.geteuid() == 0 and os.environ.get("LOSSUTILS_NO_ZYGOTE", "") in ("", "0")


def _kept_under_tmp(paths: Iterable[str]) -> list[str]:
    """The folders of ``paths`` under /tmp, outermost only: what a forked process must see
    again over its own fresh /tmp (a checkout or virtual environment living there).

    Examples
    --------
    >>> _kept_under_tmp(["/usr/lib", "/tmp/x/.venv", "/tmp/x/.venv/lib", "/tmp/x/lossutils"])
    ['/tmp/x/.venv', '/tmp/x/lossutils']
    """
    under = sorted({os.path.normpath(p) for p in paths if _under(os.path.normpath(p), ["/tmp"])})
    kept: list[str] = []
    for path in under:
        if path != "/tmp" and not _under(path, kept):
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

    def __init__(self, limits: Limits = Limits(), preload: Sequence[str] = (), *,
                 bare: bool = False):
        if os.geteuid() != 0:
            raise ZygoteError("the kernel zygote needs a root grader (fresh user ids)")
        self.limits = limits
        self.preload = tuple(preload)
        self.bare = bare
        # not under /tmp: each kernel mounts a private /tmp over the zygote's
        self.slots = tempfile.mkdtemp(prefix="lossutils-slots-", dir=_slots_base())
        os.chmod(self.slots, 0o711)
        self._home = tempfile.mkdtemp(prefix="zygote-", dir=self.slots)
        self.users: set[int] = set()
        self._inner: dict[int, int] = {}  # uid -> pid of its process inside the sandbox
        self.keep = _kept_under_tmp([*python_paths(), *([] if bare else [lossutils_path()])])
        if bare:
            from . import _zygote

            with open(_zygote.__file__, encoding="utf-8") as fh:
                argv = [sys.executable, "-I", "-c", fh.read(), "--bare", *self.preload]
        else:
            argv = [sys.executable, "-m", "lossutils.grading.sandbox._zygote", *self.preload]
        plan = _plan(argv, workdir=self._home, limits=limits, seed=None, env=None,
                     with_lossutils=not bare, ro_binds=(), rw_binds=[self.slots], uid=None,
                     zygote=True)
        self.process = subprocess.Popen(plan.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
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
        uid = _sandbox_uid()
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
        if not _under(os.path.realpath(workdir), [os.path.realpath(self.slots)]):
            raise ZygoteError(f"{workdir} is not under the zygote's folder {self.slots}")
        self.release_all()
        self._inner.clear()  # every earlier process is gone: their statuses no longer matter
        self.users.add(uid)
        reply = self._request(self._fork_message(uid, workdir, kernel_args, env, run=run))
        self._inner[uid] = int(reply["pid"])
        pids = _user_processes(uid)
        if len(pids) != 1:
            raise ZygoteError(f"expected one new kernel process of uid {uid}, found {len(pids)}")
        return pids[0]

    def spawn(self, uid: int, source: str, start_timeout: float = 10.0) -> _ForkedRunner:
        """Fork a process as ``uid`` that runs the Python ``source`` on two pipes to this one.

        For the verification runner: what :class:`subprocess.Popen` with ``stdin=PIPE,
        stdout=PIPE`` would give, without a Python start-up. The pipes are named pipes in a
        fresh folder of ``uid`` under :attr:`slots`, which :meth:`_ForkedRunner.close` removes.
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
                    if time.monotonic() > deadline or not _runs_as(pid, uid):
                        raise ZygoteError("the forked process did not open its pipes") from None
                    time.sleep(0.001)
            os.set_blocking(writer, True)
            return _ForkedRunner(pid, uid, self, workdir, os.fdopen(writer, "wb"),
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


_ZYGOTES: dict = {}
atexit.register(lambda: close_zygotes())


def kernel_zygote(limits: Limits = Limits(), preload: Sequence[str] = (), *,
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
    import threading

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


# --------------------------------------------------------------------------- Jupyter kernels


def _kernel_manager_base():
    from jupyter_client.manager import AsyncKernelManager

    return AsyncKernelManager


class _LazyKernelManager(type):
    """Build :class:`SandboxedKernelManager` on first use, so importing this module stays cheap."""

    _cls = None

    def _build(cls):
        if _LazyKernelManager._cls is None:
            _LazyKernelManager._cls = _make_kernel_manager_class()
        return _LazyKernelManager._cls

    def __call__(cls, *args, **kwargs):
        return cls._build()(*args, **kwargs)

    def __instancecheck__(cls, obj):
        return isinstance(obj, cls._build())

    def __subclasscheck__(cls, sub):
        return issubclass(sub, cls._build())


class SandboxedKernelManager(metaclass=_LazyKernelManager):
    """A ``jupyter_client`` kernel manager whose kernel runs in the sandbox.

    Calling it builds an instance of a subclass of ``jupyter_client.AsyncKernelManager`` (the
    class nbclient uses) that

    - talks to the kernel over Unix sockets (``transport="ipc"``) in a private folder bound
      into the sandbox: with ``--unshare-net`` the kernel's loopback is not the grader's;
    - prefixes the kernel command with :func:`sandbox_argv`, the working directory nbclient
      passes (``cwd``) becoming the sandbox's one writable folder.

    Use :func:`sandbox_kernel_manager` to get a class with the limits and the seed bound, for
    nbclient's ``kernel_manager_class``.
    """


def _runs_as(pid: int, uid: int) -> bool:
    """Whether ``pid`` is alive and still of ``uid``: a zygote's child, once reaped, leaves its
    pid free for reuse."""
    try:
        if os.stat(f"/proc/{pid}").st_uid != uid:
            return False
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")


class _ForkedKernel:
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
        return _runs_as(self.pid, self.uid)

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


async def wait_until_ready(client, timeout: float | None = None) -> None:
    """Wait for a new kernel to answer, with no fixed pause: ``wait_for_ready`` for nbclient.

    Ready means the kernel answered a ``kernel_info_request`` on the shell channel and a first
    message arrived on IOPub, which proves the IOPub subscription is connected (ZeroMQ drops
    what is published before it is; ipykernel greets each new subscriber with
    ``iopub_welcome``). Without an IOPub message within 0.2 s the request is sent again.
    jupyter_client's own wait does the same and then drains IOPub until 0.2 s pass without a
    message: an idle pause paid by every submission, which on a machine whose cores are all
    grading is a core doing nothing.

    Messages left on IOPub are harmless: nbclient keeps only the messages whose parent is the
    request it is waiting for.
    """
    from queue import Empty

    deadline = time.monotonic() + (float("inf") if timeout is None else timeout)

    async def next_message(channel, seconds: float):
        until = min(deadline, time.monotonic() + seconds)
        try:
            return await channel.get_msg(timeout=max(0.0, until - time.monotonic()))
        except Empty:
            return None

    while True:
        request = client.kernel_info()
        reply = None
        while reply is None and (msg := await next_message(client.shell_channel, 1.0)):
            if (msg["parent_header"].get("msg_id") == request
                    and msg["msg_type"] == "kernel_info_reply"):
                reply = msg
        if reply is not None and await next_message(client.iopub_channel, 0.2) is not None:
            client._handle_kernel_info_reply(reply)
            return
        if not await client._async_is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")


class _ForkedRunner(_ForkedKernel):
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


def _make_kernel_manager_class():
    base = _kernel_manager_base()
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.provisioning import LocalProvisioner

    class _ReadyClient(AsyncKernelClient):
        """nbclient's kernel client, waiting for a new kernel without fixed pauses."""

        def _context_default(self):
            # The client connects before the kernel binds its sockets: retry every 10 ms, not
            # ZeroMQ's default 100 ms. (The client makes a context of its own; the kernel
            # manager's, set the same way below, serves only the manager's control socket.)
            import zmq

            context = super()._context_default()
            context.setsockopt(zmq.RECONNECT_IVL, 10)
            return context

        async def wait_for_ready(self, timeout=None):
            await wait_until_ready(self, timeout)

    class _ZygoteProvisioner(LocalProvisioner):
        """Launch by asking the zygote to fork, instead of running the kernel command."""

        async def launch_kernel(self, cmd, **kwargs):
            km = self.parent
            zygote, uid = km.sandbox_zygote, km._sandbox_uid
            workdir = os.path.realpath(kwargs.get("cwd") or km._ipc_dir)
            prepare_workdir(km._ipc_dir, uid)
            if workdir != os.path.realpath(km._ipc_dir):
                prepare_workdir(workdir, uid)
            env = {k: str(v) for k, v in km.sandbox_env.items()}
            if km.sandbox_seed is not None:
                env[SEED_ENV] = str(int(km.sandbox_seed))
            kernel_args = list(cmd[cmd.index("-f"):])
            pid = zygote.fork(uid, workdir, kernel_args, env)
            self.process = _ForkedKernel(pid, uid, zygote)
            self.pid, self.pgid, self.cwd = pid, None, workdir
            return self.connection_info

    class _Sandboxed(base):
        sandbox_limits: Limits = Limits()
        sandbox_seed: int | None = None
        sandbox_env: dict = {}  # noqa: RUF012 (read-only default, replaced per subclass)
        sandbox_enabled: bool = True
        sandbox_zygote: KernelZygote | None = None

        def __init__(self, **kwargs):
            parent = self.sandbox_zygote.slots if self.sandbox_zygote else None
            self._ipc_dir = tempfile.mkdtemp(prefix="lossutils-kernel-", dir=parent)
            self._sandbox_uid = _sandbox_uid() if self.sandbox_enabled else -1
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("connection_file", os.path.join(self._ipc_dir, "kernel.json"))
            kwargs.setdefault("ip", os.path.join(self._ipc_dir, "kernel"))
            kwargs.setdefault("client_factory", _ReadyClient)
            super().__init__(**kwargs)
            import zmq

            # The manager's own control socket (interrupt and shutdown messages) may also
            # connect to a kernel that is still starting: retry every 10 ms there too.
            self.context.setsockopt(zmq.RECONNECT_IVL, 10)

        async def _async_pre_start_kernel(self, **kw):
            if self.sandbox_zygote is not None and self.provisioner is None:
                self.provisioner = _ZygoteProvisioner(
                    kernel_id=self.kernel_id or kw.get("kernel_id") or secrets.token_hex(16),
                    kernel_spec=self.kernel_spec, parent=self)
            return await super()._async_pre_start_kernel(**kw)

        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if not self.sandbox_enabled:
                return cmd
            # A signal from here reaches bwrap (or the zygote), not the kernel in its own
            # session: interrupt over the control channel instead.
            self.kernel_spec.interrupt_mode = "message"
            if self.sandbox_zygote is not None:
                return cmd  # the zygote forks the kernel; the command only carries arguments
            workdir = os.path.realpath((self._launch_args or {}).get("cwd") or self._ipc_dir)
            plan = _plan(cmd, workdir=workdir, limits=self.sandbox_limits,
                         seed=self.sandbox_seed, env=self.sandbox_env, with_lossutils=True,
                         ro_binds=(), rw_binds=[self._ipc_dir], uid=self._sandbox_uid)
            return plan.argv

        async def _async_interrupt_kernel(self):
            await super()._async_interrupt_kernel()
            if self.sandbox_enabled:
                kill_strays(self._sandbox_uid)

        interrupt_kernel = _async_interrupt_kernel

        async def _async_cleanup_resources(self, restart=False):
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                if self.sandbox_zygote is not None:
                    self.sandbox_zygote.release(self._sandbox_uid)
                shutil.rmtree(self._ipc_dir, ignore_errors=True)

    _Sandboxed.__name__ = _Sandboxed.__qualname__ = "SandboxedKernelManager"
    _Sandboxed.__module__ = __name__
    return _Sandboxed


def sandbox_kernel_manager(
    *,
    limits: Limits = Limits(),
    seed: int | None = None,
    env: Mapping[str, str] | None = None,
    sandbox: bool = True,
    zygote: KernelZygote | None = None,
):
    """A kernel-manager class for nbclient whose kernels run in the sandbox.

    Parameters
    ----------
    limits : Limits
        Resource limits of the kernel (``wall_seconds`` is not used: nbclient's cell timeout
        applies).
    seed : int, optional
        ``LOSSUTILS_GRADING_SEED`` inside the kernel.
    env : mapping, optional
        Extra environment variables inside the kernel (e.g. ``NBGRADER_EXECUTION``).
    sandbox : bool, default True
        False keeps the Unix-socket transport but runs the kernel unsandboxed
        (``--unsandboxed`` grading only).
    zygote : KernelZygote, optional
        Fork each kernel from this zygote (its sandbox and limits) instead of starting a
        sandbox and a Python per kernel; the working folder nbclient passes must then lie
        under ``zygote.slots``.

    Returns
    -------
    type
        A subclass of ``jupyter_client.AsyncKernelManager``, e.g. for
        ``NotebookClient(nb, kernel_manager_class=...)`` or nbgrader's ``Execute``.

    Examples
    --------
    >>> km_class = sandbox_kernel_manager(seed=7)
    >>> km_class.sandbox_seed, km_class.__name__
    (7, 'SandboxedKernelManager')
    """
    base = SandboxedKernelManager._build()
    return type("SandboxedKernelManager", (base,), {
        "sandbox_limits": limits, "sandbox_seed": seed, "sandbox_env": dict(env or {}),
        "sandbox_enabled": sandbox, "sandbox_zygote": zygote if sandbox else None,
        "__module__": __name__,
    })
