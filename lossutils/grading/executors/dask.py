"""Grading on a Dask cluster: the executor behind ``lossutils grade --scheduler ADDRESS``.

The coordinator (:mod:`lossutils.grading.run`) hands its tasks to an executor and
persists each result as it arrives. :func:`connect` returns a :class:`DaskExecutor`, a
:class:`concurrent.futures.Executor` that runs those same tasks on an existing
``distributed`` cluster instead of local processes. Remote workers need not share the
coordinator's disk, so each task leaves with the submitted file's *bytes* (the master's cells
and data files are already in the task) and the worker grades a private copy of them.

Dask reschedules the task of a worker that dies; a task that keeps killing its workers ends,
after the scheduler's ``distributed.scheduler.allowed-failures`` retries, as an ordinary
``grader-error`` result, so no submission can stall or abort the batch.

Nothing here imports ``distributed`` until :func:`connect` runs: grading without
``--scheduler`` never loads Dask.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass

from ..discover import Refused, UsageError, open_submitted
from ..task import Task

__all__ = ["ClusterError", "DaskExecutor", "PackedTask", "connect", "pack_task", "run_packed"]

INSTALL_HINT = "pip install 'lossutils[dask]'"


class ClusterError(UsageError):
    """The Dask cluster cannot be used (not installed, unreachable, misconfigured workers)."""


@dataclass(frozen=True)
class PackedTask:
    """A task whose submitted file travels with it, for a worker that does not share the
    coordinator's disk.

    ``task`` has no ``path``; ``content`` holds the file's bytes (None when there is no file,
    or when it is over the task's ``max_bytes``, whose ``size`` then travels instead, so that
    the worker reports it exactly as for the real file without it ever being read).
    """

    task: Task
    content: bytes | None
    size: int | None = None


def pack_task(task: Task) -> PackedTask:
    """Make a grading task self-contained: the submitted file travels as bytes, not a path.

    Examples
    --------
    >>> import os, tempfile
    >>> from lossutils.grading.task import MasterNotebook
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "ada.ipynb")
    >>> with open(path, "wb") as fh:
    ...     _ = fh.write(b"0123456789")
    >>> task = Task("ada", "a1", "a1", path, MasterNotebook("h", {}, None, ()), 60, 1,
    ...             max_bytes=100)
    >>> pack_task(task).content
    b'0123456789'
    >>> packed = pack_task(dataclasses.replace(task, max_bytes=4))
    >>> packed.content, packed.size, packed.task.path
    (None, 10, None)
    >>> os.remove(path); os.rmdir(folder)
    """
    bare = dataclasses.replace(task, path=None, root=None)
    if task.path is None:
        return PackedTask(bare, None)
    try:
        fd = open_submitted(task.path, task.root)
    except FileNotFoundError:
        return PackedTask(bare, None)
    except Refused as exc:  # the worker cannot look at the path: it gets the reason
        return PackedTask(dataclasses.replace(bare, refused=(exc.kind, str(exc))), None)
    except OSError as exc:  # O_NOFOLLOW's ELOOP: a link swapped in after the check
        return PackedTask(dataclasses.replace(bare, refused=("symlink", exc.strerror)), None)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > task.max_bytes:
            return PackedTask(bare, None, size)
        return PackedTask(bare, fh.read(task.max_bytes + 1))


def run_packed(fn, packed: PackedTask):
    """On a worker: write the packed file to a private folder and call ``fn(task)`` on it.

    Parameters
    ----------
    fn : callable
        The grading function, ``fn(task) -> result``.
    packed : PackedTask
        A task from :func:`pack_task`.

    Returns
    -------
    Whatever ``fn`` returns for the task rebuilt with a local ``path``.

    Examples
    --------
    >>> from lossutils.grading.task import MasterNotebook
    >>> task = Task("ada", "a1", "a1", None, MasterNotebook("h", {}, None, ()), 60, 1)
    >>> size = lambda task: os.path.getsize(task.path)
    >>> run_packed(size, PackedTask(task, b"abc"))
    3
    >>> run_packed(size, PackedTask(task, None, 9))
    9
    >>> run_packed(lambda task: task.path, PackedTask(task, None)) is None
    True
    """
    import logging

    # as in the local pool's workers: nbgrader's traitlets chatter would fill the worker logs
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    if packed.content is None and packed.size is None:
        return fn(packed.task)
    with tempfile.TemporaryDirectory(prefix="lossutils-dask-") as folder:
        path = os.path.join(folder, "submission.ipynb")
        with open(path, "wb") as fh:
            if packed.content is None:
                # a sparse file of the true size: the size check rejects it before any read
                fh.truncate(packed.size)
            else:
                fh.write(packed.content)
        return fn(dataclasses.replace(packed.task, path=path))


def _prepare_worker(sandboxed: bool) -> dict:
    """Run on every worker at connection: the heavy imports once, and proof the grader works."""
    import nbclient
    import nbgrader

    import lossutils

    from ..sandbox import SandboxUnavailable, require_sandbox
    from ..worker import prepare_process

    prepare_process()
    info = {
        "lossutils": lossutils.__version__,
        "nbgrader": nbgrader.__version__,
        "nbclient": nbclient.__version__,
        "sandbox": None,
    }
    if sandboxed:
        try:
            require_sandbox()
        except SandboxUnavailable as exc:  # as data: the message must reach the coordinator
            info["sandbox"] = str(exc)
    return info


class DaskExecutor(cf.Executor):
    """A :class:`concurrent.futures.Executor` over a ``distributed.Client``.

    Grading tasks (``fn(task)`` with a :class:`~lossutils.grading.task.Task`) are packed with
    :func:`pack_task` on submission, so at most the tasks in flight hold file contents in the
    coordinator's memory; any other call is passed to the cluster unchanged. A result is
    released on the cluster as soon as it has been handed over.

    Parameters
    ----------
    client : distributed.Client
        A connected client; the executor closes it on :meth:`shutdown`.
    address : str
        The scheduler's address, for messages.

    Notes
    -----
    A grading task whose workers all died (``KilledWorker``) resolves to the coordinator's
    ``grader-error`` result for it, not to an exception. Any other failure (a worker without
    ``lossutils``, the scheduler gone) resolves to :class:`ClusterError`: every result
    persisted before it is kept, and the same command grades the rest once the cluster is
    fixed.
    """

    def __init__(self, client, address: str):
        self._client = client
        self._address = address
        self._lock = threading.Lock()
        self._pending: dict = {}  # Dask future -> concurrent.futures future, while in flight
        self._closed = False

    @property
    def workers(self) -> int:
        """Threads across the cluster's workers now (at least 1): how many tasks run at once."""
        info = self._client.scheduler_info(n_workers=-1)["workers"]
        return max(1, sum(w["nthreads"] for w in info.values()))

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        """Schedule ``fn(*args, **kwargs)`` on the cluster; return a concurrent future."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a DaskExecutor after shutdown")
        outer: cf.Future = cf.Future()
        task = args[0] if len(args) == 1 and not kwargs and isinstance(args[0], Task) else None
        if task is not None:
            name = f"lossutils-grade-{task.student}-{task.assignment}-{task.notebook}"
            inner = self._client.submit(
                run_packed, fn, pack_task(task), key=f"{name}-{uuid.uuid4().hex}"
            )
        else:
            inner = self._client.submit(fn, *args, pure=False, **kwargs)
        with self._lock:
            self._pending[inner] = outer
        inner.add_done_callback(lambda done: self._hand_over(done, outer, task))
        return outer

    def _hand_over(self, inner, outer: cf.Future, task: Task | None) -> None:
        """Runs in Dask's callback thread: move the outcome to ``outer``, release ``inner``."""
        with self._lock:
            self._pending.pop(inner, None)
        try:
            if not outer.done():  # a future cancelled by shutdown wants no outcome
                outer.set_result(self._outcome(inner, task))
        except Exception as exc:  # the coordinator must see every failure, never a hang
            if not outer.done():
                outer.set_exception(exc)
        finally:
            inner.release()

    def _outcome(self, inner, task: Task | None):
        from distributed import KilledWorker

        if inner.status == "finished":
            return inner.result()
        if inner.status == "cancelled":
            raise ClusterError(
                f"the Dask scheduler at {self._address} dropped the task {inner.key} "
                "(scheduler restarted or connection lost); the grades persisted so far "
                "are kept: run the same command again to grade the rest"
            )
        error = inner.exception()
        if isinstance(error, KilledWorker) and task is not None:
            from ..worker import failure_result

            return failure_result(
                task,
                f"the Dask worker grading this submission died {error.allowed_failures + 1} "
                f"times (last {error.last_worker.address})",
            )
        raise ClusterError(
            f"a Dask worker of {self._address} failed to run {inner.key}: "
            f"{type(error).__name__}: {error} (does every worker have "
            "`pip install 'lossutils[course]'` and the same versions as this machine?)"
        ) from error

    def stop(self) -> None:
        """Cancel every task in flight and close the client (Ctrl-C)."""
        self.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks, optionally cancel or wait for those in flight, close the client.

        Safe to call more than once.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = dict(self._pending)
        if cancel_futures:
            for outer in pending.values():
                outer.cancel()
            self._client.cancel(list(pending))
        elif wait:
            cf.wait(list(pending.values()))
        self._client.close()


def connect(address: str, *, timeout: float = 10.0, sandboxed: bool = True) -> DaskExecutor:
    """Connect to the Dask scheduler at ``address`` and check that its workers can grade.

    Parameters
    ----------
    address : str
        The scheduler's address, e.g. ``tcp://10.0.0.5:8786``.
    timeout : float
        Seconds to wait for the scheduler.
    sandboxed : bool
        Check that every worker connected now can run the grading sandbox (bubblewrap).

    Returns
    -------
    DaskExecutor
        Ready for :func:`lossutils.grading.run.grade`'s tasks; every worker connected now has
        imported nbgrader and lossutils once (workers that join later do so on their first
        task).

    Raises
    ------
    ClusterError
        ``distributed`` is not installed, the scheduler cannot be reached within ``timeout``,
        a worker cannot import the grader, or (``sandboxed``) a worker cannot run the
        sandbox.
    """
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            f"--scheduler needs Dask's `distributed` package, which is not installed: "
            f"{INSTALL_HINT}"
        ) from None
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, ValueError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s: {exc}"
        ) from None
    try:
        infos = client.run(_prepare_worker, sandboxed)
    except Exception as exc:  # whatever a worker raised: an import or version problem
        client.close()
        raise ClusterError(
            f"a worker of the Dask scheduler at {address} cannot run the grader "
            f"({type(exc).__name__}: {exc}); every worker needs "
            "`pip install 'lossutils[course]'` (and bubblewrap for the sandbox)"
        ) from None
    for worker, info in sorted(infos.items()):
        if info["sandbox"] is not None:
            client.close()
            raise ClusterError(f"Dask worker {worker}: {info['sandbox']}")
    return DaskExecutor(client, address)
