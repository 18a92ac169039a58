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
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import threading
import time

from .discover import UsageError, find_submissions
from .masters import COURSE_ID, list_masters, load_master
from .sandbox import require_sandbox
from .state import LedgerResults, State

__all__ = ["FAILURES", "Progress", "grade"]

#: Statuses that count as "failed to grade" for the exit code: the submission got a score, but
#: not from running the student's answers to the end. Wrong answers and restored test cells
#: are ordinary grades.
FAILURES = (
    "missing-notebook",
    "unreadable",
    "wrong-format",
    "kernel-died",
    "timeout",
    "verification-failed",
    "grader-error",
)

_LIGHT_DROP = ("autograded", "feedback_html")


class Progress:
    """A plain-text progress bar with an ETA, on a terminal, or one line per 10% elsewhere.

    Parameters
    ----------
    total : int
        Number of submissions to grade in this run.
    stream : file, optional
        Where to draw; ``None`` draws nothing.

    Examples
    --------
    >>> import io
    >>> buf = io.StringIO()
    >>> bar = Progress(4, buf)
    >>> bar.update(2, "ada 02-gaussian-l2")
    >>> "2/4" in buf.getvalue()
    True
    """

    def __init__(self, total: int, stream=None):
        self.total, self.stream, self.start = total, stream, time.monotonic()
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last_decile = -1

    def update(self, done: int, label: str = "") -> None:
        """Redraw after ``done`` submissions; ``label`` names the last one."""
        if self.stream is None or self.total == 0:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        eta_text = "--:--" if eta != eta else f"{int(eta) // 60:02d}:{int(eta) % 60:02d}"
        width = 30
        filled = int(width * done / self.total)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"{100 * done // self.total:3d}%  ETA {eta_text}  {label[:40]}"
        )
        if self._tty:
            self.stream.write("\r" + line.ljust(110))
            if done == self.total:
                self.stream.write("\n")
        else:
            decile = 10 * done // self.total
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(line + "\n")
        self.stream.flush()


def _init_worker(parent: int) -> None:
    """Per-process set-up: the heavy imports once, and no orphans if the coordinator dies."""
    import logging

    # Ctrl-C is the coordinator's to handle; it stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    import nbclient  # noqa: F401
    import nbformat  # noqa: F401
    import nbgrader.preprocessors  # noqa: F401

    from .feedback import _exporter

    _exporter()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:  # coordinator killed (kill -9): stop grading for it
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _warm_up() -> None:
    """A no-op task: submitting it makes the pool start a worker (and its imports) now."""


def _preload(source: str, assignments, masters: dict) -> list[str]:
    """The modules the masters of ``assignments`` import (what their zygotes preload)."""
    from .masters import preload_modules

    found: list[str] = []
    for assignment in assignments:
        for notebook in masters.get(assignment, ()):
            path = os.path.join(source, assignment, notebook + ".ipynb")
            try:
                with open(path, encoding="utf-8") as fh:
                    found += preload_modules(json.load(fh))
            except (OSError, ValueError):  # load_master reports a broken master
                pass
    return list(dict.fromkeys(found))


def _start_zygotes(preload: list[str]) -> None:
    """A warm-up task: start this worker's kernel and verification zygotes now.

    Best effort: the first submission starts (or restarts) whatever this could not.
    """
    from .worker import start_zygotes

    try:
        start_zygotes(preload)
    except Exception:  # the grading path reports its own failures
        pass


def _new_pool(workers: int):
    return cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


def _run_task(task: dict) -> dict:
    from .worker import grade_submission

    return grade_submission(task)


def _file_hash(path: str | None) -> str:
    if path is None or not os.path.isfile(path):
        return "missing"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: str, data: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_course_files(out: str, source: str, assignments, db_url: str) -> None:
    """Make the output folder an nbgrader course root, so formgrader and export run there, and
    give its feedback pages their copy of MathJax."""
    from lossutils._mathjax import copy_mathjax

    from .feedback import MATHJAX

    copy_mathjax(os.path.join(out, MATHJAX))
    for assignment in assignments:
        dest = os.path.join(out, "source", assignment)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(os.path.join(source, assignment), dest, ignore=shutil.ignore_patterns(".*"))
    config = (
        '"""Written by `lossutils grade`: run `nbgrader formgrader` or `nbgrader export` here."""\n'
        "c = get_config()  # noqa: F821\n"
        "c.CourseDirectory.root = '.'\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        "c.CourseDirectory.source_directory = 'source'\n"
        "c.CourseDirectory.autograded_directory = 'autograded'\n"
        "c.CourseDirectory.feedback_directory = 'feedback'\n"
        f"c.CourseDirectory.db_url = {db_url!r}\n"
    )
    _write_atomic(os.path.join(out, "nbgrader_config.py"), config)


def _write_files(out: str, result: dict) -> dict:
    """Write a result's notebook and feedback page; return the result without them."""
    rel = os.path.join(result["student"], result["assignment"])
    for folder, field, ext in (
        ("autograded", "autograded", ".ipynb"),
        ("feedback", "feedback_html", ".html"),
    ):
        path = os.path.join(out, folder, rel, result["notebook"] + ext)
        if result.get(field) is not None:
            _write_atomic(path, result[field])
        elif os.path.exists(path):  # a regrade that no longer produces it: drop the stale copy
            os.remove(path)
    # formgrader lists a submission as autograded only when its autograded folder exists, so
    # an unreadable one gets the folder and a note instead of a notebook
    note = os.path.join(out, "autograded", rel, result["notebook"] + ".problem.txt")
    if result.get("autograded") is None:
        _write_atomic(note, "".join(f"{p['code']}: {p['detail']}\n" for p in result["problems"]))
    elif os.path.exists(note):
        os.remove(note)
    light = {k: v for k, v in result.items() if k not in _LIGHT_DROP}
    light["feedback"] = (
        os.path.join("feedback", rel, result["notebook"] + ".html")
        if result.get("feedback_html") is not None
        else None
    )
    return light


def _commit(gb, state: State, items: list) -> None:
    """Gradebook rows, then ledger rows, of ``(light result, key, timestamp)`` items."""
    from .gradebook import record_results

    record_results(gb, [(light, timestamp) for light, _, timestamp in items])
    state.put_many([(light, key) for light, key, _ in items])


class _Batch:
    """Results whose files are written, waiting for their gradebook and ledger transaction.

    A result waits at most ``wait`` seconds, and at most ``size`` results wait: the
    coordinator's cost per result falls with the batch (one commit instead of three per
    notebook), while a killed run still loses at most the last second of grades.
    """

    def __init__(self, out: str, gb, state: State, bar: Progress, size=64, wait=1.0):
        self.out, self.gb, self.state, self.bar = out, gb, state, bar
        self.size, self.wait = size, wait
        self.items: list = []
        self.first = 0.0
        self.done = 0
        self.label = ""

    def add(self, result: dict, key: str, timestamp, label: str) -> None:
        if not self.items:
            self.first = time.monotonic()
        self.items.append((_write_files(self.out, result), key, timestamp))
        self.label = label
        if len(self.items) >= self.size:
            self.flush()

    def time_left(self) -> float | None:
        """Seconds until the waiting results are due, ``None`` when none wait."""
        if not self.items:
            return None
        return max(0.0, self.first + self.wait - time.monotonic())

    def flush(self, due_only: bool = False) -> None:
        if not self.items or (due_only and self.time_left() > 0):
            return
        _commit(self.gb, self.state, self.items)
        self.done += len(self.items)
        self.items = []
        self.bar.update(self.done, self.label)


def _failure_result(task: dict, detail: str) -> dict:
    """The result of a task whose worker process itself died (twice)."""
    from .worker import grade_submission

    # grading a missing file yields the all-zero cell records of this notebook
    result = grade_submission(dict(task, path=None, feedback=False))
    result["problems"] = [{"code": "grader-error", "detail": detail}]
    result["status"] = "grader-error"
    result["hash"] = _file_hash(task["path"])
    return result


def _lock(out: str):
    import fcntl

    handle = open(os.path.join(out, ".lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UsageError(
            f"another `lossutils grade` is writing to {out}; wait for it or use another --out"
        ) from None
    return handle


def grade(
    submissions: str,
    out: str = "grading-work",
    *,
    source: str = "solutions",
    assignment: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    timeout: int = 60,
    db: str | None = None,
    seed: int | None = None,
    regrade=(),
    max_bytes: int = 20_000_000,
    max_output_chars: int = 20_000,
    sandbox: bool = True,
    progress=sys.stderr,
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
    db : str, optional
        SQLAlchemy URL of the gradebook; default ``sqlite:///<out>/gradebook.db``.
    seed : int, optional
        ``LOSSUTILS_GRADING_SEED`` for the hidden checks; default the seed stored by an earlier
        run into the same ``out``, else a fresh random one (recorded in ``results.json``).
    regrade : iterable of str
        Students to grade again even if nothing changed.
    max_bytes, max_output_chars : int
        Largest notebook file read; longest text kept per output.
    sandbox : bool
        Run student code (kernels and verification) in the bubblewrap sandbox. False only
        for ``--unsandboxed`` grading inside a throw-away container (see SECURITY.md).
    progress : bool or file
        Where the progress bar goes: ``True`` for ``sys.stderr``, a file, or ``False``/``None``
        for nowhere.

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
    if sandbox and scheduler is None:  # a cluster's workers are checked by connect()
        require_sandbox()
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    lock = _lock(out)
    if scheduler is None:
        workers = workers or os.cpu_count() or 1
        # workers start (and import nbgrader) while this process prepares the masters
        pool = _new_pool(workers)
        for _ in range(workers):
            pool.submit(_warm_up)
    else:
        from .distributed import connect

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
        from .worker import make_task

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
            preload = _preload(source, needed, masters)
            for _ in range(workers):
                pool.submit(_start_zygotes, preload)
        info = {a: load_master(a, source, db_url) for a in needed}
        _write_course_files(out, source, needed, db_url)
        state = State(os.path.join(out, "state.sqlite"))
        if seed is None:
            stored = state.get_meta("seed")
            seed = int(stored) if stored is not None else secrets.randbelow(2**31)
        state.set_meta("seed", str(seed))
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
                f"{_file_hash(entry['path'])}:{master['hash']}".encode()
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
                    master=master,
                    timeout=timeout,
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


def _drive(pending, workers, out, gb, state, progress, pool) -> tuple[int, bool, object]:
    """Run the pending tasks on ``pool``; persist the results in batches as they arrive.

    A worker process that dies (not a kernel: the process itself) breaks the whole pool; the
    tasks it took down are retried once on a fresh pool. Returns the number of results, whether
    the run was interrupted, and the pool in use at the end (for the caller to shut down).
    """
    bar = Progress(len(pending), progress)
    bar.update(0)
    batch = _Batch(out, gb, state, bar)
    queue = list(reversed(pending))
    attempts: dict[int, int] = {}
    while queue:
        running: dict = {}
        broken = False
        try:
            while queue or running:
                # keep a bounded number in flight, so memory stays flat for any class size
                while queue and len(running) < 2 * workers and not broken:
                    item = queue.pop()
                    running[pool.submit(_run_task, item[0])] = item
                if not running:
                    break
                finished, _ = cf.wait(
                    running, timeout=batch.time_left(), return_when=cf.FIRST_COMPLETED
                )
                for future in finished:
                    task, key, timestamp = item = running.pop(future)
                    try:
                        result = future.result()
                    except cf.process.BrokenProcessPool:
                        broken = True
                        attempts[id(item)] = attempts.get(id(item), 0) + 1
                        if attempts[id(item)] < 2:
                            queue.append(item)
                            continue
                        result = _failure_result(
                            task, "the grading worker process died twice on this submission"
                        )
                    batch.add(result, key, timestamp, f"{task['student']} {task['assignment']}")
                batch.flush(due_only=True)
                if broken and not running:
                    break
            batch.flush()
        except KeyboardInterrupt:
            _stop(pool)
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
            pool = _new_pool(workers)
    return batch.done, False, pool


def _stop(pool) -> None:
    # the executor has no public way to stop a busy worker; a kernel they started sees its
    # parent go and exits on its own (ipykernel's parent poller). Taken before the shutdown,
    # which forgets the worker processes.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
