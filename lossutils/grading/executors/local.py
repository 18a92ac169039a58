"""The local executor: a pool of worker processes on this machine (the default).

Each worker process imports nbgrader once (:func:`~lossutils.grading.worker.prepare_process`),
ignores Ctrl-C (the coordinator handles it and stops the pool) and exits on its own when the
coordinator dies, so a ``kill -9`` leaves no orphan grading for nobody.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import threading
import time

__all__ = ["LocalPool"]


def _init_worker(parent: int) -> None:
    """Per-process set-up: the heavy imports once, and no orphans if the coordinator dies."""
    import logging

    from ..worker import prepare_process

    # Ctrl-C is the coordinator's to handle; it stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    prepare_process()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:  # coordinator killed (kill -9): stop grading for it
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _warm_up() -> None:
    """A no-op task: submitting it makes the pool start a worker (and its imports) now."""


def _start_zygotes(preload: list[str]) -> None:
    """A warm-up task: start this worker's kernel and verification zygotes now.

    Best effort: the first submission starts (or restarts) whatever this could not.
    """
    from ..worker import start_zygotes

    try:
        start_zygotes(preload)
    except Exception:  # the grading path reports its own failures
        pass


class LocalPool(cf.ProcessPoolExecutor):
    """A process pool of ``workers`` grading processes, started with ``spawn``.

    Parameters
    ----------
    workers : int
        Worker processes (one per core is the default of ``lossutils grade``).
    """

    def __init__(self, workers: int):
        # the processes the pool will start are the children this process gains from now on
        self._before = set(multiprocessing.active_children())
        super().__init__(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                         initializer=_init_worker, initargs=(os.getpid(),))
        self.workers = workers

    def warm_up(self) -> None:
        """Start every worker (and its imports) now, while the coordinator prepares the run."""
        for _ in range(self.workers):
            self.submit(_warm_up)

    def start_zygotes(self, preload: list[str]) -> None:
        """Have every worker start its zygotes for masters importing ``preload`` now."""
        for _ in range(self.workers):
            self.submit(_start_zygotes, preload)

    def stop(self) -> None:
        """Cancel what has not started and terminate the workers, busy or not (Ctrl-C).

        A kernel a worker started sees its parent go and exits on its own (ipykernel's
        parent poller).
        """
        workers = [p for p in multiprocessing.active_children() if p not in self._before]
        self.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
