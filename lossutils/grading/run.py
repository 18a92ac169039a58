"""The coordinator of ``lossutils grade``: tasks out to workers, results into every output.

One process (this one) owns the output folder: it prepares the masters and the gradebook, skips
what the ledger shows as already graded from the same bytes, sends the rest as plain-data tasks
to a pool of worker processes (each imports nbgrader once and starts a fresh kernel per
submission), and as each result arrives writes the instructor's executed notebook and the
feedback page; then, for the results of the last second (at most 64) together, the gradebook
rows in one transaction and finally the ledger rows in another. At the end (also after Ctrl-C)
it writes ``grades.csv``, ``results.json`` and ``report.html`` from the ledger.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import secrets
import sys
import threading
import time

from ._patches import switched_off
from .discover import UsageError, file_hash, find_submissions
from .executors.local import LocalPool
from .masters import COURSE_ID, list_masters, load_master, preload_for
from .persist import Batch, lock_output, make_output, write_course_files
from .problems import FAILURES, printable
from .progress import Progress
from .sandbox import require_sandbox
from .state import LedgerResults, State
from .task import make_task

__all__ = ["grade"]




def grade(
    submissions: str,
    out: str = "grading-work",
    *,
    source: str = "solutions",
    assignment: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    timeout: int = 60,
    budget: float = 600,
    db: str | None = None,
    seed: int | None = None,
    regrade=(),
    max_bytes: int = 20_000_000,
    max_output_chars: int = 20_000,
    sandbox: bool = True,
    out_mode: int = 0o700,
    progress=True,
) -> dict:
    """Grade a folder of submissions into ``out``; see ``docs/grading.md``.

    Parameters
    ----------
    submissions : str
        nbgrader's submitted layout or a flat folder of ``<student>.ipynb``.
    out : str
        Output folder (created): gradebook, CSV, JSON, feedback, report, ledger.
    source : str
        Folder with the masters, ``<source>/<assignment>/<notebook>.ipynb``.
    assignment : str, optional
        Grade only this assignment (needed for an ambiguous flat folder).
    workers : int, optional
        Worker processes; default one per core. With ``scheduler``: tasks in flight are
        twice this, default the cluster's worker threads at the start.
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``): run the tasks on its workers
        instead of local processes (see ``docs/distributed.md``).
    timeout : int
        Seconds each cell may run.
    budget : float
        Seconds one submission may take as a whole, its kernel and its verification together:
        what is not done by then scores 0 (status ``timeout``).
    db : str, optional
        SQLAlchemy URL of the gradebook; default ``sqlite:///<out>/gradebook.db``.
    seed : int, optional
        The run's grading seed, from which each submission's hidden cases are drawn (see
        :func:`~lossutils.grading.worker.submission_seed`); default a fresh random one per
        run (recorded in ``results.json``). Give the seed of an earlier run to draw the same
        cases again.
    regrade : iterable of str
        Students to grade again even if nothing changed.
    max_bytes, max_output_chars : int
        Largest notebook file read; longest text kept per output.
    sandbox : bool
        Run student code (kernels and verification) in the bubblewrap sandbox. False only
        for ``--unsandboxed`` grading inside a throw-away container (see SECURITY.md).
    out_mode : int
        Mode of ``out`` when this run creates it: private by default (it holds the masters
        and every student's work).
    progress : bool or file
        Where the progress bar goes: ``True`` (default) for ``sys.stderr`` as it is when the
        run starts, a file, or ``False``/``None`` for nowhere.

    Returns
    -------
    dict
        ``results`` (the light result of every submission found, as a
        :class:`~lossutils.grading.state.LedgerResults`: iterating it streams them from the
        ledger in ``out``, in student order, as long as that folder exists), ``graded``
        (number graded in
        this run), ``reused``, ``failed`` (submissions with a status in :data:`FAILURES`),
        ``notes``, ``seed``, ``interrupted``, ``exit_code`` (0 all graded, 1 some failed,
        130 interrupted) and the output paths.

    Raises
    ------
    UsageError
        Bad folders or arguments; nothing was graded.
    SandboxUnavailable
        ``sandbox`` is true but bubblewrap cannot run here; nothing was graded.
    """
    progress = sys.stderr if progress is True else progress or None
    try:
        switched_off()
    except ValueError as exc:  # a misspelt patch name: say so before anything is graded
        raise UsageError(str(exc)) from None
    if sandbox and scheduler is None:  # a cluster's workers are checked by connect()
        require_sandbox()
    out = os.path.abspath(out)
    make_output(out, out_mode)
    lock = lock_output(out)
    if scheduler is None:
        workers = workers or os.cpu_count() or 1
        # workers start (and import nbgrader) while this process prepares the masters
        pool = LocalPool(workers)
        pool.warm_up()
    else:
        from .executors.dask import connect

        try:
            pool = connect(scheduler, sandboxed=sandbox)
        except BaseException:
            lock.close()
            raise
        workers = workers or pool.workers
    closing = None
    try:
        from nbgrader.api import Gradebook

        from .report import write_outputs

        masters = list_masters(source)
        if not masters:
            raise UsageError(
                f"no masters found in {source}/ (expected <source>/<assignment>/<assignment>.ipynb)"
            )
        entries, notes = find_submissions(submissions, masters, assignment)
        db_url = db or "sqlite:///" + os.path.join(out, "gradebook.db")
        needed = sorted({e["assignment"] for e in entries})
        if scheduler is None and sandbox:
            # the workers start their zygotes while this process prepares the masters
            pool.start_zygotes(preload_for(source, needed, masters))
        info = {a: load_master(a, source, db_url) for a in needed}
        write_course_files(out, source, needed, db_url)
        state = State(os.path.join(out, "state.sqlite"))
        if seed is None:  # never the seed of an earlier run: its feedback may have shown it
            seed = secrets.randbelow(2**31)
        root = os.path.realpath(submissions)
        regrade = set(regrade)
        unknown = regrade - {e["student"] for e in entries}
        if unknown:
            raise UsageError(
                f"--regrade names students with no submission: {', '.join(sorted(unknown))}"
            )
        pending = []
        for entry in entries:
            master = info[entry["assignment"]]
            key = hashlib.sha256(
                f"{file_hash(entry['path'], root)}:{master.hash}".encode()
            ).hexdigest()
            if (
                entry["student"] in regrade
                or state.key(entry["student"], entry["assignment"], entry["notebook"]) != key
            ):
                task = make_task(
                    student=entry["student"],
                    assignment=entry["assignment"],
                    notebook=entry["notebook"],
                    path=entry["path"],
                    root=root,
                    master=master,
                    timeout=timeout,
                    budget=budget,
                    seed=seed,
                    max_bytes=max_bytes,
                    max_output_chars=max_output_chars,
                    sandbox=sandbox,
                )
                pending.append((task, key, entry["timestamp"]))
        started = time.time()
        interrupted = False
        graded = 0
        gb = Gradebook(db_url, COURSE_ID)
        try:
            graded, interrupted, pool = _drive(pending, workers, out, gb, state, progress, pool)
        finally:
            gb.close()
        # the workers exit (and stop their zygotes) while the outputs are written
        closing = threading.Thread(target=pool.shutdown, name="lossutils-pool-shutdown")
        closing.start()
        # streamed from the ledger whenever they are read: memory stays flat for any class
        results = LedgerResults(
            os.path.join(out, "state.sqlite"),
            {(e["student"], e["assignment"], e["notebook"]) for e in entries},
        )
        run = {
            "started": started,
            "finished": time.time(),
            "seed": seed,
            "timeout": timeout,
            "budget": budget,
            "sandboxed": sandbox,
            "graded_this_run": graded,
            "reused": len(entries) - len(pending),
            "interrupted": interrupted,
            "submissions": os.path.abspath(submissions),
            "source": os.path.abspath(source),
            "db_url": db_url,
            "notes": notes,
        }
        paths = write_outputs(out, results, info, run)
        state.close()
    finally:
        if closing is None:
            pool.shutdown(wait=False, cancel_futures=True)
        else:
            closing.join()
        lock.close()
    failed = [r for r in results if r["status"] in FAILURES]
    exit_code = 130 if interrupted else (1 if failed else 0)
    return {
        "results": results,
        "graded": graded,
        "reused": len(entries) - len(pending),
        "failed": failed,
        "notes": notes,
        "seed": seed,
        "interrupted": interrupted,
        "exit_code": exit_code,
        "out": out,
        "db_url": db_url,
        **paths,
    }


def _drive(pending, workers, out, gb, state, progress, pool,
           work=None) -> tuple[int, bool, object]:
    """Run the pending tasks on ``pool``; persist the results in batches as they arrive.

    A worker process that dies (not a kernel: the process itself) breaks the whole pool, and
    every task it was running or holding fails with it. Those tasks are suspects: on a fresh
    pool they are graded again one at a time, so the one that takes a worker down alone is
    known, and gets ``over-budget`` with the reason; the others keep their grades. Returns the
    number of results, whether the run was interrupted, and the pool in use at the end (for
    the caller to shut down). ``work`` is the function a worker runs on each task (default
    :func:`~lossutils.grading.worker.grade_submission`).
    """
    from .worker import failure_result, grade_submission

    work = work or grade_submission
    bar = Progress(len(pending), progress)
    bar.update(0)
    batch = Batch(out, gb, state, bar)
    queue = list(reversed(pending))
    suspects: list = []
    while queue or suspects:
        running: dict = {}
        broken = False
        try:
            while queue or suspects or running:
                # keep a bounded number in flight, so memory stays flat for any class size;
                # a suspect runs alone
                while not broken:
                    if suspects:
                        if running:
                            break
                        item, alone = suspects.pop(), True
                    elif queue and len(running) < 2 * workers:
                        item, alone = queue.pop(), False
                    else:
                        break
                    running[pool.submit(work, item[0])] = (item, alone)
                if not running:
                    break
                finished, _ = cf.wait(
                    running, timeout=batch.time_left(), return_when=cf.FIRST_COMPLETED
                )
                for future in finished:
                    item, alone = running.pop(future)
                    task, key, timestamp = item
                    try:
                        result = future.result()
                    except cf.process.BrokenProcessPool:
                        broken = True
                        if not alone:
                            suspects.append(item)
                            continue
                        result = failure_result(
                            task, "the grading worker process died while grading this "
                            "submission, alone (most likely out of memory)", "over-budget")
                    batch.add(result, key, timestamp,
                              printable(f"{task.student} {task.assignment}"))
                batch.flush(due_only=True)
                if broken and not running:
                    break
            batch.flush()
        except KeyboardInterrupt:
            pool.stop()
            batch.flush()  # the results already here are complete: keep them
            if progress is not None:
                progress.write(
                    "\ninterrupted: the grades persisted so far are kept; run the "
                    "same command again to grade the rest\n"
                )
            return batch.done, True, pool
        except BaseException:
            # the pool may be a fresh one (after a broken pool) that the caller never saw
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        if broken:
            pool.shutdown(wait=True, cancel_futures=True)
            pool = LocalPool(workers)
    return batch.done, False, pool
