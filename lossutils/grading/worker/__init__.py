"""Grade one submitted notebook: the pure worker function of the grading pipeline.

:func:`grade_submission` takes a :class:`~lossutils.grading.task.Task` (where the notebook is,
the master's cells, the limits and the seed) and returns a
:class:`~lossutils.grading.task.Result` (per-cell scores, diagnoses, problems, and the rendered
feedback). It never touches the gradebook or the output folder, so a local process pool, a
sandboxed process or a Dask worker can run it and hand the result back to the one coordinator
that writes everything.

The notebook part drives nbgrader's own preprocessors in nbgrader's order (``ClearOutput``,
``DeduplicateIds``, ``OverwriteCells``, ``CheckCellMetadata``, ``Execute``, ``LimitOutput``) and
scores every grade cell with :func:`nbgrader.utils.determine_grade`. What it adds: defensive
reading, restoration of deleted test cells, warnings removed from stderr before scoring, a
reason for every zero that is not a wrong answer, and feedback without hidden tests.

The steps, one module each: :mod:`.read` (the file, defensively), :mod:`.sanitize` (nbgrader's
sanitize steps, test cells restored), :mod:`.execute` (a fresh sandboxed kernel),
:mod:`.score` (nbgrader's scores and the checkers' diagnoses) and :mod:`.feedback` (the
student's page). Verification (:mod:`lossutils.grading.verify`) then decides the final score
of every checked exercise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import tempfile
import time

from ..discover import file_hash
from ..limited import Exhausted, run_limited
from ..problems import Problem, status_of
from ..task import Result, Task
from ..verify import DEFAULT_LIMITS as VERIFY_LIMITS
from ..verify import apply_verification
from .execute import (
    budget_detail,
    clip_outputs,
    drop_active_outputs,
    execute,
    kernel_zygote_for,
    strip_warnings,
)
from .feedback import exporter, feedback_html, plain_feedback
from .hidden import find_leaks, hidden_lines
from .read import read_notebook
from .sanitize import sanitize
from .score import score_cells

__all__ = ["FEEDBACK_MEMORY_BYTES", "FEEDBACK_SECONDS", "failure_result", "grade_submission",
           "prepare_process", "start_zygotes", "submission_seed"]

#: Time and memory the feedback page of one submission may take to render: a page is
#: rendered from what the notebook printed, which the student chose.
FEEDBACK_SECONDS, FEEDBACK_MEMORY_BYTES = 60.0, 2 * 2**30


def submission_seed(seed: int, task: Task, digest: str) -> int:
    """The seed of one submission's hidden checks: derived from the run's ``seed``, whose it
    is and its bytes (``digest``), so the kernel learns nothing it could use.

    The kernel runs the student's code, so whatever seed it gets, the student can read. This
    one is worth nothing to them: any change to the notebook (an answer table for its cases,
    say) draws other cases, and the run's seed, from which it cannot be told back, never
    enters a sandbox.

    Examples
    --------
    >>> from lossutils.grading.task import MasterNotebook
    >>> task = Task("ada", "a1", "a1", None, MasterNotebook("h", {}, None, ()), 60, 7)
    >>> submission_seed(7, task, "ab12") == submission_seed(7, task, "ab12")
    True
    >>> submission_seed(7, task, "ab12") == submission_seed(7, task, "ab13")
    False
    """
    message = "\0".join((task.student, task.assignment, task.notebook, digest)).encode()
    mac = hmac.new(str(int(seed)).encode(), message, hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") >> 1


def prepare_process() -> None:
    """Pay a worker process's fixed costs once, before its first task: nbgrader's imports and
    the feedback page's HTML exporter (templates, most of a second)."""
    import nbclient  # noqa: F401
    import nbformat  # noqa: F401
    import nbgrader.preprocessors  # noqa: F401

    exporter()


def start_zygotes(preload) -> None:
    """Start this thread's kernel zygote and verification zygote for masters importing
    ``preload`` (where forking is supported), as the first submission would."""
    from ..verify.channel import verification_zygote

    kernel_zygote_for(True, list(preload))
    verification_zygote(VERIFY_LIMITS, [f"import {name}" for name in preload])


def grade_submission(task: Task) -> Result:
    """Grade one submitted notebook.

    The function is pure in the sense that matters for distribution: everything it needs is in
    the task, everything it produces is in the result (both plain dataclasses that pickle); it
    writes only inside a private temporary folder that it removes, and it starts a fresh
    kernel, so no state passes from one submission to the next.

    Parameters
    ----------
    task : Task
        The submission, its master and the limits (see :class:`~lossutils.grading.task.Task`).

    Returns
    -------
    Result
        Scores per grade cell, problems, status, the executed notebook and the feedback page
        (see :class:`~lossutils.grading.task.Result`).

    Notes
    -----
    Scores follow :func:`nbgrader.utils.determine_grade`: a test cell earns its points unless
    its output holds an error or stderr text (Python warnings are removed first); a manually
    graded answer left as released scores 0, otherwise it waits for a human. Cells that never
    ran (the kernel died or an uninterruptible cell timed out) score 0, unlike stock nbgrader.
    The final score of every checked exercise is the one verified outside the student's kernel
    (:func:`~lossutils.grading.verify.apply_verification`).
    """
    start = time.monotonic()
    deadline = start + task.budget
    result = Result(task.student, task.assignment, task.notebook, task.seed, task.master.hash)
    nb = None
    leaks: list[tuple[int, int]] = []
    try:
        nb, result.hash = read_notebook(task, result.problems)
        if nb is not None:
            nb, resources = _sanitized(nb, task, result.problems)
        if nb is None:
            result.cells = score_cells(None, task.master, set(), executed=False)
        else:
            seed = submission_seed(task.seed, task, result.hash)
            done = _run(nb, task, resources, result, seed, deadline)
            result.cells = score_cells(nb, task.master, done, executed=True)
            # disagreement with the kernel's scores is flagged as suspected tampering
            result.scan = apply_verification(
                result.cells, result.problems, nb, task.master.cells, seed=seed,
                sandbox=task.sandbox, call_timeout=task.timeout, deadline=deadline,
            )
            _flag_budget(result, task)
            leaks = find_leaks(nb, hidden_lines(task.master.cells), seed)
            if leaks:
                cells = sorted({index + 1 for index, _ in leaks})
                result.problems.append(Problem("hidden-exposed", (
                    f"{len(leaks)} output(s) of cell(s) {', '.join(map(str, cells[:10]))} "
                    "showed hidden test code or the grading seed; removed from the "
                    "feedback")[:500]))
    except Exception as exc:  # a grader bug must cost one submission, never the batch
        result.problems.append(Problem("grader-error", f"{type(exc).__name__}: {exc}"[:500]))
        result.cells = score_cells(None, task.master, set(), executed=False)
        nb = None
    result.status = status_of(result.problems)
    result.score = sum(r.score or 0.0 for r in result.cells)
    result.max_score = sum(r.max_score for r in result.cells)
    _keep_outputs(nb, task, result, leaks)
    result.seconds = round(time.monotonic() - start, 3)
    return result


def _flag_budget(result: Result, task: Task) -> None:
    """One ``timeout`` problem for a budget that ran out during verification (the kernel
    adds its own when it ran out there)."""
    if any(p.code == "timeout" and "budget" in p.detail for p in result.problems):
        return
    stopped = [r.grade_id for r in result.cells
               if r.verified is not None and (r.verified.error or "").startswith("budget:")]
    if stopped:
        result.problems.append(Problem("timeout", budget_detail(
            task, f"the verification of {stopped[0]}")))


def _sanitized(nb, task: Task, problems: list[Problem]):
    """nbgrader's sanitize steps; ``(None, None)`` for forged metadata, with the reason."""
    resources = {"nbgrader": {"notebook": task.notebook, "assignment": task.assignment,
                              "student": task.student, "db_url": None}}
    try:
        return sanitize(nb, task, problems, resources)
    except Exception as exc:  # nbgrader's metadata validator raises on forged metadata
        problems.append(Problem(
            "wrong-format",
            "nbgrader cell metadata is corrupted "
            f"({(str(exc).strip().splitlines() or ['?'])[0][:200]}); start from a "
            "fresh copy of the released notebook and paste the answers into it",
        ))
        return None, None


def _run(nb, task: Task, resources: dict, result: Result, seed: int,
         deadline: float) -> set[int]:
    """Execute the notebook in a fresh kernel (whose hidden checks get ``seed``), next to the
    master's data files, until ``deadline``; tidy its outputs. Returns the indices of the cells
    that completed."""
    from nbgrader.preprocessors import LimitOutput

    zygote = kernel_zygote_for(task.sandbox, task.master.preload)
    result.kernel = "forked" if zygote is not None else "started"
    with tempfile.TemporaryDirectory(
        prefix="lossutils-grade-", dir=zygote.slots if zygote else None
    ) as workdir:
        for rel, content in task.master.files.items():
            dest = os.path.join(workdir, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as fh:
                fh.write(content)
        try:
            done = execute(nb, task, workdir, result.problems, resources, zygote, seed=seed,
                           deadline=deadline)
        finally:
            if zygote is not None:  # nothing of this kernel may outlive it
                zygote.release_all()
    strip_warnings(nb)
    nb, _ = LimitOutput().preprocess(nb, {})
    clip_outputs(nb, task.max_output_chars)
    drop_active_outputs(nb)
    return done


def _keep_outputs(nb, task: Task, result: Result, leaks) -> None:
    """The executed notebook (when there is one) and the feedback page (without the outputs in
    ``leaks``), as the task asks.

    The page is rendered in a child process with :data:`FEEDBACK_SECONDS` and
    :data:`FEEDBACK_MEMORY_BYTES`: one that needs more gets a plain page saying so, and the
    submission ``over-budget``.
    """
    import nbformat

    if nb is not None and task.keep_notebook:
        result.autograded = nbformat.writes(nb)
    if task.feedback:
        # without a notebook (unreadable, missing, wrong format) the page says why it scored 0
        shown = nb if nb is not None else nbformat.v4.new_notebook()
        try:
            result.feedback_html = run_limited(
                feedback_html, shown, task, result.cells, result.problems, leaks,
                seconds=FEEDBACK_SECONDS, memory_bytes=FEEDBACK_MEMORY_BYTES)
        except Exhausted as exc:
            problem = Problem("over-budget", f"the feedback page was not rendered: {exc}; a "
                                             "plain page with the scores replaces it")
            result.problems.append(problem)
            result.feedback_html = plain_feedback(task, result.cells, result.problems)
        except Exception as exc:  # feedback is a courtesy; the grade stands without it
            result.problems.append(Problem("grader-error", f"feedback failed: {exc}"[:500]))
        result.status = status_of(result.problems)


def failure_result(task: Task, detail: str, code: str = "grader-error") -> Result:
    """The result of a task whose worker process itself died: every cell zero, ``code``
    (``grader-error``, or ``over-budget`` for a submission that took its worker down alone)
    as its status and ``detail`` as its reason."""
    # grading a missing file yields the all-zero cell records of this notebook
    result = grade_submission(dataclasses.replace(task, path=None, feedback=False))
    result.problems = [Problem(code, detail)]
    result.status = code
    result.hash = file_hash(task.path, task.root)
    return result
