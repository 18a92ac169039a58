"""The bubblewrap command line: what a sandboxed process sees, and its limits.

:func:`sandbox_argv` wraps a command so that it runs

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

Where bubblewrap cannot run (not installed, or user namespaces forbidden),
:func:`require_sandbox` raises :class:`SandboxUnavailable`, whose message names the
``--unsandboxed`` flag.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .processes import processes_of

__all__ = [
    "DEFAULT_LIMITS",
    "SEED_ENV",
    "UNSANDBOXED_FLAG",
    "Limits",
    "SandboxUnavailable",
    "is_under",
    "lossutils_path",
    "prepare_workdir",
    "python_paths",
    "require_sandbox",
    "sandbox_argv",
    "sandbox_available",
    "sandbox_uid",
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


#: The limits of a notebook's kernel unless the caller sets others.
DEFAULT_LIMITS = Limits()


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


def is_under(path: str, roots: Iterable[str]) -> bool:
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
    ro = [p for p in ro if not is_under(p, [q for q in ro if q != p])]
    rw = sorted({os.path.realpath(p) for p in rw})
    args: list[str] = []
    made: set[str] = set()
    mounted: list[str] = []
    for path, flag in sorted([(p, "--ro-bind") for p in ro] + [(p, "--bind") for p in rw],
                             key=lambda item: item[0].count("/")):
        for parent in _ancestors(path):
            if parent not in made and not is_under(parent, mounted):
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


def sandbox_uid() -> int:
    """A fresh user id for one sandbox (only when the grader is root), or -1 to keep ours.

    A random id from a range no distribution assigns, so two sandboxes share neither a process
    budget (RLIMIT_NPROC counts per user) nor the right to signal each other.
    """
    if os.geteuid() != 0:
        return -1
    return 1_000_000_000 + secrets.randbelow(1_000_000_000)


def sandbox_argv(
    argv: Sequence[str],
    *,
    workdir: str,
    limits: Limits = DEFAULT_LIMITS,
    seed: int | None = None,
    env: Mapping[str, str] | None = None,
    with_lossutils: bool = True,
    ro_binds: Sequence[str] = (),
    rw_binds: Sequence[str] = (),
    uid: int | None = None,
    zygote: bool = False,
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
    zygote : bool, default False
        For a kernel zygote (:class:`~lossutils.grading.sandbox.zygote.KernelZygote`): it
        stays root inside, with the capabilities it needs to give each forked process its own
        user id and namespaces, and has no CPU limit (each fork sets its own).

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
    bwrap = shutil.which("bwrap") or "bwrap"
    if uid is None:
        uid = -1 if zygote else sandbox_uid()
    nproc = limits.max_processes
    if uid < 0 and not zygote:  # (the zygote is root, exempt; each kernel sets its own)
        # Without a uid of its own the limit counts every process of the grader's user.
        nproc += len(processes_of(os.getuid()))
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
    if not with_lossutils and is_under(lossutils_path(), ro):
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
    return args


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
        argv = sandbox_argv([sys.executable, "-I", "-c", "import socket, os; print(os.getuid())"],
                            workdir=workdir, with_lossutils=False)
        try:
            done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
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

