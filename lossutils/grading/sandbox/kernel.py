"""Jupyter kernels in the sandbox: the kernel manager nbclient uses, and the ready wait.

:class:`SandboxedKernelManager` starts a Jupyter kernel in the sandbox (or forks it from a
:class:`~lossutils.grading.sandbox.zygote.KernelZygote`); it talks to the grader over Unix
sockets (``transport="ipc"``) in a folder shared with the sandbox, because the kernel's
loopback TCP ports live in another network namespace.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping

from .bwrap import DEFAULT_LIMITS, SEED_ENV, Limits, prepare_workdir, sandbox_argv, sandbox_uid
from .processes import kill_strays
from .zygote import ForkedKernel, KernelZygote

__all__ = ["SandboxedKernelManager", "sandbox_kernel_manager", "wait_until_ready"]


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
            zygote, uid = km.sandbox_zygote, km.sandbox_uid
            workdir = os.path.realpath(kwargs.get("cwd") or km._ipc_dir)
            prepare_workdir(km._ipc_dir, uid)
            if workdir != os.path.realpath(km._ipc_dir):
                prepare_workdir(workdir, uid)
            env = {k: str(v) for k, v in km.sandbox_env.items()}
            if km.sandbox_seed is not None:
                env[SEED_ENV] = str(int(km.sandbox_seed))
            kernel_args = list(cmd[cmd.index("-f"):])
            pid = zygote.fork(uid, workdir, kernel_args, env)
            self.process = ForkedKernel(pid, uid, zygote)
            self.pid, self.pgid, self.cwd = pid, None, workdir
            return self.connection_info

    class _Sandboxed(base):
        sandbox_limits: Limits = DEFAULT_LIMITS
        sandbox_seed: int | None = None
        sandbox_env: dict = {}  # noqa: RUF012 (read-only default, replaced per subclass)
        sandbox_enabled: bool = True
        sandbox_zygote: KernelZygote | None = None

        def __init__(self, **kwargs):
            parent = self.sandbox_zygote.slots if self.sandbox_zygote else None
            self._ipc_dir = tempfile.mkdtemp(prefix="lossutils-kernel-", dir=parent)
            self.sandbox_uid = sandbox_uid() if self.sandbox_enabled else -1
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
            return sandbox_argv(cmd, workdir=workdir, limits=self.sandbox_limits,
                                seed=self.sandbox_seed, env=self.sandbox_env,
                                rw_binds=[self._ipc_dir], uid=self.sandbox_uid)

        async def _async_interrupt_kernel(self):
            await super()._async_interrupt_kernel()
            if self.sandbox_enabled:
                kill_strays(self.sandbox_uid)

        interrupt_kernel = _async_interrupt_kernel

        async def _async_cleanup_resources(self, restart=False):
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                if self.sandbox_zygote is not None:
                    self.sandbox_zygote.release(self.sandbox_uid)
                shutil.rmtree(self._ipc_dir, ignore_errors=True)

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

