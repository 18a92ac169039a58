"""Jupyter kernels in the sandbox: the kernel manager nbclient uses.

:class:`SandboxedKernelManager` starts a Jupyter kernel in the sandbox (or forks it from a
:class:`~lossutils.grading.sandbox.zygote.KernelZygote`); it talks to the grader over Unix
sockets (``transport="ipc"``) in a folder shared with the sandbox, because the kernel's
loopback TCP ports live in another network namespace. It customises jupyter_client only
through its public hooks (a kernel provisioner, ``interrupt_kernel``, ``client_factory``); the
faster wait for a new kernel is a patch (:func:`~lossutils.grading._patches.kernel_client_class`).
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping

from .._patches import fast_reconnect, kernel_client_class
from .bwrap import DEFAULT_LIMITS, SEED_ENV, Limits, prepare_workdir, sandbox_argv, sandbox_uid
from .processes import kill_strays
from .zygote import ForkedKernel, KernelZygote

__all__ = ["SandboxedKernelManager", "sandbox_kernel_manager"]


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
    - launches through a kernel provisioner of its own (jupyter_client's public extension
      point) that prefixes the kernel command with :func:`sandbox_argv`, the working
      directory nbclient passes (``cwd``) becoming the sandbox's one writable folder, or asks
      the zygote to fork the kernel; and that removes the kernel's processes and folder when
      jupyter_client cleans up;
    - after interrupting a cell, kills whatever the kernel forked;
    - gives its client a cap on every ZeroMQ message (``sandbox_max_message_bytes``): a
      kernel that sends a larger one is disconnected instead of filling the grader's memory.

    Use :func:`sandbox_kernel_manager` to get a class with the limits and the seed bound, for
    nbclient's ``kernel_manager_class``.
    """



#: Largest ZeroMQ message a grader's kernel client accepts (a frame, in practice one output).
MAX_MESSAGE_BYTES = 64 * 2**20


@functools.cache
def _bounded_client(base: type, max_bytes: int) -> type:
    """``base`` (a kernel client class) whose sockets refuse messages over ``max_bytes``."""
    import zmq

    class _Bounded(base):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # the client's own context: the option applies to the sockets it makes from now on
            self.context.setsockopt(zmq.MAXMSGSIZE, max_bytes)

    _Bounded.__name__ = _Bounded.__qualname__ = f"Bounded{base.__name__}"
    return _Bounded


def _make_kernel_manager_class():
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning import LocalProvisioner

    class _SandboxProvisioner(LocalProvisioner):
        """Starts the kernel in the sandbox (forked by the zygote, or its command wrapped in
        bwrap) and, when jupyter_client cleans up after it, removes every process and file
        it left."""

        async def launch_kernel(self, cmd, **kwargs):
            km = self.parent
            workdir = os.path.realpath(kwargs.get("cwd") or km.ipc_dir)
            if km.sandbox_zygote is None:
                if km.sandbox_enabled:
                    cmd = sandbox_argv(cmd, workdir=workdir, limits=km.sandbox_limits,
                                       seed=km.sandbox_seed, env=km.sandbox_env,
                                       rw_binds=[km.ipc_dir], uid=km.sandbox_uid)
                return await super().launch_kernel(cmd, **kwargs)
            zygote, uid = km.sandbox_zygote, km.sandbox_uid
            prepare_workdir(km.ipc_dir, uid)
            if workdir != os.path.realpath(km.ipc_dir):
                prepare_workdir(workdir, uid)
            env = {k: str(v) for k, v in km.sandbox_env.items()}
            if km.sandbox_seed is not None:
                env[SEED_ENV] = str(int(km.sandbox_seed))
            # the zygote forks the kernel; the command only carries its arguments
            kernel_args = list(cmd[cmd.index("-f"):])
            pid = zygote.fork(uid, workdir, kernel_args, env)
            self.process = ForkedKernel(pid, uid, zygote)
            self.pid, self.pgid, self.cwd = pid, None, workdir
            return self.connection_info

        async def cleanup(self, restart=False):
            await super().cleanup(restart=restart)
            km = self.parent
            if not restart:
                if km.sandbox_zygote is not None:
                    km.sandbox_zygote.release(km.sandbox_uid)
                shutil.rmtree(km.ipc_dir, ignore_errors=True)

    class _Sandboxed(AsyncKernelManager):
        sandbox_limits: Limits = DEFAULT_LIMITS
        sandbox_seed: int | None = None
        sandbox_env: dict = {}  # noqa: RUF012 (read-only default, replaced per subclass)
        sandbox_enabled: bool = True
        sandbox_zygote: KernelZygote | None = None
        sandbox_max_message_bytes: int = MAX_MESSAGE_BYTES

        def __init__(self, **kwargs):
            parent = self.sandbox_zygote.slots if self.sandbox_zygote else None
            self.ipc_dir = tempfile.mkdtemp(prefix="lossutils-kernel-", dir=parent)
            self.sandbox_uid = sandbox_uid() if self.sandbox_enabled else -1
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("connection_file", os.path.join(self.ipc_dir, "kernel.json"))
            kwargs.setdefault("ip", os.path.join(self.ipc_dir, "kernel"))
            kwargs.setdefault("client_factory",
                              _bounded_client(kernel_client_class(),
                                              self.sandbox_max_message_bytes))
            super().__init__(**kwargs)
            # The manager's own control socket (interrupt and shutdown messages) may also
            # connect to a kernel that is still starting.
            fast_reconnect(self.context)
            if self.sandbox_enabled:
                # A signal from here reaches bwrap (or the zygote), not the kernel in its own
                # session: interrupt over the control channel instead.
                self.kernel_spec.interrupt_mode = "message"
            self.kernel_id = self.kernel_id or secrets.token_hex(16)
            self.provisioner = _SandboxProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)

        async def interrupt_kernel(self):
            await super().interrupt_kernel()
            if self.sandbox_enabled:
                # what the kernel forked (a fork bomb, a runaway !command) dies with the cell
                kill_strays(self.sandbox_uid)

    _Sandboxed.__name__ = _Sandboxed.__qualname__ = "SandboxedKernelManager"
    _Sandboxed.__module__ = __name__
    return _Sandboxed


def sandbox_kernel_manager(
    *,
    limits: Limits = DEFAULT_LIMITS,
    seed: int | None = None,
    env: Mapping[str, str] | None = None,
    sandbox: bool = True,
    zygote: KernelZygote | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
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
    max_message_bytes : int
        Largest message the grader accepts from the kernel; a kernel sending more is
        disconnected (its cell then ends by timeout).

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
        "sandbox_max_message_bytes": max_message_bytes, "__module__": __name__,
    })

