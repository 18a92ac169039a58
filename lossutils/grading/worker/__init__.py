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
import os
import tempfile
import time

from ..discover import file_hash
from ..problems import Problem, status_of
from ..task import Result, Task
from ..verify import DEFAULT_LIMITS as VERIFY_LIMITS
from ..verify import apply_verification
from .execute import clip_outputs, execute, kernel_zygote_for, strip_warnings
from .feedback import exporter, feedback_html
from .read import read_notebook
from .sanitize import sanitize
from .score import score_cells

__all__ = ["failure_result", "grade_submission", "prepare_process", "start_zygotes"]


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
    result = Result(task.student, task.assignment, task.notebook, task.seed, task.master.hash)
    nb = None
    try:
        nb, result.hash = read_notebook(task, result.problems)
        if nb is not None:
            nb, resources = _sanitized(nb, task, result.problems)
        if nb is None:
            result.cells = score_cells(None, task.master, set(), executed=False)
        else:
            done = _run(nb, task, resources, result)
            result.cells = score_cells(nb, task.master, done, executed=True)
            # disagreement with the kernel's scores is flagged as suspected tampering
            result.scan = apply_verification(
                result.cells, result.problems, nb, task.master.cells, seed=task.seed,
                sandbox=task.sandbox, call_timeout=task.timeout,
            )
    except Exception as exc:  # a grader bug must cost one submission, never the batch
        result.problems.append(Problem("grader-error", f"{type(exc).__name__}: {exc}"[:500]))
        result.cells = score_cells(None, task.master, set(), executed=False)
        nb = None
    result.status = status_of(result.problems)
    result.score = sum(r.score or 0.0 for r in result.cells)
    result.max_score = sum(r.max_score for r in result.cells)
    _keep_outputs(nb, task, result)
    result.seconds = round(time.monotonic() - start, 3)
    return result


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


def _run(nb, task: Task, resources: dict, result: Result) -> set[int]:
    """Execute the notebook in a fresh kernel, next to the master's data files; tidy its
    outputs. Returns the indices of the cells that completed."""
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
            done = execute(nb, task, workdir, result.problems, resources, zygote)
        finally:
            if zygote is not None:  # nothing of this kernel may outlive it
                zygote.release_all()
    strip_warnings(nb)
    nb, _ = LimitOutput().preprocess(nb, {})
    clip_outputs(nb, task.max_output_chars)
    return done


def _keep_outputs(nb, task: Task, result: Result) -> None:
    """The executed notebook and the feedback page, as the task asks."""
    import nbformat

    if nb is not None and task.keep_notebook:
        result.autograded = nbformat.writes(nb)
    if task.feedback:
        # without a notebook (unreadable, missing, wrong format) the page says why it scored 0
        shown = nb if nb is not None else nbformat.v4.new_notebook()
        try:
            result.feedback_html = feedback_html(shown, task, result.cells, result.problems)
        except Exception as exc:  # feedback is a courtesy; the grade stands without it
            result.problems.append(Problem("grader-error", f"feedback failed: {exc}"[:500]))


def failure_result(task: Task, detail: str) -> Result:
    """The result of a task whose worker process itself died (twice): every cell zero, the
    ``grader-error`` status and ``detail`` as its reason."""
    # grading a missing file yields the all-zero cell records of this notebook
    result = grade_submission(dataclasses.replace(task, path=None, feedback=False))
    result.problems = [Problem("grader-error", detail)]
    result.status = "grader-error"
    result.hash = file_hash(task.path)
    return result
