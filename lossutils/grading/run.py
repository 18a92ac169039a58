"""The coordinator of ``lossutils grade``: tasks out to workers, results into every output.

One process (this one) owns the output folder. :func:`grade` runs in phases:

1. :func:`_start_executor`: the workers start (a local :class:`~.executors.local.LocalPool`,
   or a Dask cluster) while this process goes on;
2. :func:`_plan`: the masters and the gradebook are prepared, and what the ledger shows as
   already graded from the same bytes is skipped; the rest become tasks;
3. :func:`_drive`: the tasks go out, and as each result arrives its executed notebook and
   feedback page are written; then, for the results of the last second (at most 64)
   together, the gradebook rows in one transaction and the ledger rows in another
   (:class:`~.persist.Batch`);
4. :func:`_finish`: ``grades.csv``, ``results.json`` and ``report.html`` are written from the
   ledger (also after Ctrl-C).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field

from ._patches import switched_off
from .discover import Submission, UsageError, file_hash, find_submissions
from .executors.local import LocalPool
from .masters import COURSE_ID, list_masters, load_master, preload_for
from .persist import Batch, lock_output, make_output, write_course_files
from .problems import FAILURES, printable
from .progress import Progress
from .sandbox import require_sandbox
from .state import LedgerResults, State
from .task import Master, Task, make_task

__all__ = ["GradeOptions", "grade"]


@dataclass(frozen=True)
class GradeOptions:
    """How :func:`grade` grades: each field is also a keyword argument of :func:`grade`.

    Attributes
    ----------
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
    regrade : frozenset of str
        Students to grade again even if nothing changed (any iterable is taken).
    max_bytes, max_output_chars : int
        Largest notebook file read; longest text kept per output.
    sandbox : bool
        Run student code (kernels and verification) in the bubblewrap sandbox. False only
        for ``--unsandboxed`` grading inside a throw-away container (see SECURITY.md).
    out_mode : int
        Mode of ``out`` when this run creates it: private by default (it holds the masters
        and every student's work).

    Examples
    --------
    >>> GradeOptions(timeout=10, regrade=["ada", "ada"]).regrade
    frozenset({'ada'})
    """

    source: str = "solutions"
    assignment: str | None = None
    workers: int | None = None
    scheduler: str | None = None
    timeout: int = 60
    budget: float = 600
    db: str | None = None
    seed: int | None = None
    regrade: frozenset[str] = field(default=frozenset())
    max_bytes: int = 20_000_000
    max_output_chars: int = 20_000
    sandbox: bool = True
    out_mode: int = 0o700

    def __post_init__(self):
        object.__setattr__(self, "regrade", frozenset(self.regrade))


def grade(submissions: str, out: str = "grading-work", *, progress=True, **settings) -> dict:
    """Grade a folder of submissions into ``out``; see ``docs/grading.md``.

    Parameters
    ----------
    submissions : str
        nbgrader's submitted layout or a flat folder of ``<student>.ipynb``.
    out : str
        Output folder (created): gradebook, CSV, JSON, feedback, report, ledger.
    progress : bool or file
        Where the progress bar goes: ``True`` (default) for ``sys.stderr`` as it is when the
        run starts, a file, or ``False``/``None`` for nowhere.
    **settings
        The fields of :class:`GradeOptions`: ``source``, ``assignment``, ``workers``,
        ``scheduler``, ``timeout``, ``budget``, ``db``, ``seed``, ``regrade``, ``max_bytes``,
        ``max_output_chars``, ``sandbox``, ``out_mode``.

    Returns
    -------
    dict
        ``results`` (the light result of every submission found, as a
        :class:`~lossutils.grading.state.LedgerResults`: iterating it streams them from the
        ledger in ``out``, in student order, as long as that folder exists), ``graded``
        (number graded in this run), ``reused``, ``failed`` (submissions with a status in
        :data:`~lossutils.grading.problems.FAILURES`), ``notes``, ``seed``, ``interrupted``,
        ``exit_code`` (0 all graded, 1 some failed, 130 interrupted) and the output paths.

    Raises
    ------
    UsageError
        Bad folders or arguments; nothing was graded.
    SandboxUnavailable
        ``sandbox`` is true but bubblewrap cannot run here; nothing was graded.
    TypeError
        An option that :class:`GradeOptions` does not have.
    """
    options = GradeOptions(**settings)
    stream = sys.stderr if progress is True else progress or None
    try:
        switched_off()
    except ValueError as exc:  # a misspelt patch name: say so before anything is graded
        raise UsageError(str(exc)) from None
    if options.sandbox and options.scheduler is None:  # a cluster's workers: see connect()
        require_sandbox()
    out = os.path.abspath(out)
    make_output(out, options.out_mode)
    lock = lock_output(out)
    try:
        pool, workers = _start_executor(options)
    except BaseException:
        lock.close()
        raise
    closing = state = None
    try:
        plan = _plan(submissions, out, options, pool)
        state = plan.state
        started = time.time()
        from nbgrader.api import Gradebook

        gb = Gradebook(plan.db_url, COURSE_ID)
        try:
            graded, interrupted, pool = _drive(plan.pending, workers, out, gb, state, stream,
                                               pool)
        finally:
            gb.close()
        # the workers exit (and stop their zygotes) while the outputs are written
        closing = threading.Thread(target=pool.shutdown, name="lossutils-pool-shutdown")
        closing.start()
        return _finish(submissions, out, options, plan, started, graded, interrupted)
    finally:
        if state is not None:
            state.close()
        if closing is None:
            pool.shutdown(wait=False, cancel_futures=True)
        else:
            closing.join()
        lock.close()


def _start_executor(options: GradeOptions) -> tuple[cf.Executor, int]:
    """The executor the tasks go to, and how many tasks it runs at once."""
    if options.scheduler is not None:
        from .executors.dask import connect

        pool = connect(options.scheduler, sandboxed=options.sandbox)
        return pool, options.workers or pool.workers
    workers = options.workers or os.cpu_count() or 1
    # workers start (and import nbgrader) while this process prepares the masters
    local = LocalPool(workers)
    local.warm_up()
    return local, workers


@dataclass
class _Plan:
    """What one run grades: the submissions found, their masters, the tasks still to do."""

    entries: list[Submission]
    notes: list[str]
    masters: dict[str, Master]
    db_url: str
    seed: int
    state: State
    #: (task, ledger key, submission time) of every submission to grade in this run
    pending: list[tuple[Task, str, str | None]]


def _plan(submissions: str, out: str, options: GradeOptions, pool) -> _Plan:
    """Find the submissions and their masters, make the output folder a course root, and
    turn what the ledger does not hold yet (or holds from other bytes) into tasks."""
    found = list_masters(options.source)
    if not found:
        raise UsageError(f"no masters found in {options.source}/ (expected "
                         "<source>/<assignment>/<assignment>.ipynb)")
    entries, notes = find_submissions(submissions, found, options.assignment)
    unknown = options.regrade - {e.student for e in entries}
    if unknown:
        raise UsageError(
            f"--regrade names students with no submission: {', '.join(sorted(unknown))}"
        )
    db_url = options.db or "sqlite:///" + os.path.join(out, "gradebook.db")
    needed = sorted({e.assignment for e in entries})
    if isinstance(pool, LocalPool) and options.sandbox:
        # the workers start their zygotes while this process prepares the masters
        pool.start_zygotes(preload_for(options.source, needed, found))
    masters = {a: load_master(a, options.source, db_url) for a in needed}
    write_course_files(out, options.source, needed, db_url)
    state = State(os.path.join(out, "state.sqlite"))
    # never the seed of an earlier run unless asked: its feedback may have shown it
    seed = secrets.randbelow(2**31) if options.seed is None else options.seed
    root = os.path.realpath(submissions)
    pending = []
    for entry in entries:
        master = masters[entry.assignment]
        key = hashlib.sha256(
            f"{file_hash(entry.path, root)}:{master.hash}".encode()).hexdigest()
        if (entry.student in options.regrade
                or state.key(entry.student, entry.assignment, entry.notebook) != key):
            task = make_task(
                student=entry.student, assignment=entry.assignment, notebook=entry.notebook,
                path=entry.path, root=root, master=master, timeout=options.timeout,
                budget=options.budget, seed=seed, max_bytes=options.max_bytes,
                max_output_chars=options.max_output_chars, sandbox=options.sandbox,
            )
            pending.append((task, key, entry.timestamp))
    return _Plan(entries, notes, masters, db_url, seed, state, pending)


def _finish(submissions: str, out: str, options: GradeOptions, plan: _Plan, started: float,
            graded: int, interrupted: bool) -> dict:
    """Write the outputs from the ledger; return :func:`grade`'s summary."""
    from .report import write_outputs

    # streamed from the ledger whenever they are read: memory stays flat for any class
    results = LedgerResults(
        os.path.join(out, "state.sqlite"),
        {(e.student, e.assignment, e.notebook) for e in plan.entries},
    )
    reused = len(plan.entries) - len(plan.pending)
    run = {
        "started": started,
        "finished": time.time(),
        "seed": plan.seed,
        "timeout": options.timeout,
        "budget": options.budget,
        "sandboxed": options.sandbox,
        "graded_this_run": graded,
        "reused": reused,
        "interrupted": interrupted,
        "submissions": os.path.abspath(submissions),
        "source": os.path.abspath(options.source),
        "db_url": plan.db_url,
        "notes": plan.notes,
    }
    paths = write_outputs(out, results, plan.masters, run)
    failed = [r for r in results if r["status"] in FAILURES]
    return {
        "results": results,
        "graded": graded,
        "reused": reused,
        "failed": failed,
        "notes": plan.notes,
        "seed": plan.seed,
        "interrupted": interrupted,
        "exit_code": 130 if interrupted else (1 if failed else 0),
        "out": out,
        "db_url": plan.db_url,
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
