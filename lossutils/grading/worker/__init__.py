"""Grade one submitted notebook: the pure worker function of the grading pipeline.

:func:`grade_submission` takes a *task* (plain data: where the notebook is, the master's cells,
the limits and the seed) and returns a *result* (plain data: per-cell scores, diagnoses,
problems, and the rendered feedback). It never touches the gradebook or the output folder, so a
local process pool, a sandboxed process or a Dask worker can run it and hand the result back to
the one coordinator that writes everything.

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

import os
import tempfile
import time

from ..discover import file_hash
from ..problems import problem, status_of
from ..verify import DEFAULT_LIMITS as VERIFY_LIMITS
from ..verify import apply_verification
from .execute import clip_outputs, execute, kernel_zygote_for, strip_warnings
from .feedback import exporter, feedback_html
from .read import read_notebook
from .sanitize import sanitize
from .score import score_cells

__all__ = ["failure_result", "grade_submission", "make_task", "prepare_process", "start_zygotes"]


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


def make_task(
    *,
    student: str,
    assignment: str,
    notebook: str,
    path: str | None,
    master: dict,
    timeout: int,
    seed: int,
    max_bytes: int = 20_000_000,
    max_output_chars: int = 20_000,
    feedback: bool = True,
    keep_notebook: bool = True,
    sandbox: bool = True,
    master_notebook: str | None = None,
) -> dict:
    """The plain-data task :func:`grade_submission` takes, for one submitted notebook.

    ``master`` is what :func:`lossutils.grading.masters.load_master` returns; the task carries
    the part of it for ``master_notebook`` (default: the notebook of the same name). ``path``
    is None for a missing notebook.
    """
    return {
        "student": student,
        "assignment": assignment,
        "notebook": notebook,
        "path": path,
        "master": {
            "hash": master["hash"],
            "files": master["files"],
            **master["notebooks"][master_notebook or notebook],
        },
        "timeout": timeout,
        "seed": seed,
        "max_bytes": max_bytes,
        "max_output_chars": max_output_chars,
        "feedback": feedback,
        "keep_notebook": keep_notebook,
        "sandbox": sandbox,
    }


def grade_submission(task: dict) -> dict:
    """Grade one submitted notebook and return the result as plain data.

    The function is pure in the sense that matters for distribution: everything it needs is in
    ``task``, everything it produces is in the returned dict (numbers, strings, lists, dicts);
    it writes only inside a private temporary folder that it removes, and it starts a fresh
    kernel, so no state passes from one submission to the next.

    Parameters
    ----------
    task : dict
        ``student``, ``assignment``, ``notebook`` (name without ``.ipynb``), ``path`` (the
        submitted file, or ``None`` when it is missing), ``master`` (from
        :func:`lossutils.grading.masters.load_master`: ``cells``, ``kernelspec``, ``files``,
        ``hash``), ``timeout`` (seconds per cell), ``seed`` (``LOSSUTILS_GRADING_SEED`` for the
        hidden checks), ``max_bytes`` (largest file read), ``max_output_chars`` (per output),
        ``feedback`` (render feedback HTML) and ``keep_notebook`` (return the executed notebook).

    Returns
    -------
    dict
        ``student``, ``assignment``, ``notebook``, ``hash`` (sha256 of the file), ``seed``,
        ``status`` (``"ok"`` or the first problem code), ``problems`` (list of ``{code,
        detail}``), ``cells`` (one record per grade cell: ``grade_id``, ``kind``, ``score``
        (``None`` = needs manual grading), ``max_score``, ``check``, ``diagnosis``,
        ``message``, ``comment``), ``score``, ``max_score``, ``autograded`` (the executed
        notebook as JSON text, hidden tests included: instructor only), ``feedback_html`` and
        ``seconds``.

    Notes
    -----
    Scores follow :func:`nbgrader.utils.determine_grade`: a test cell earns its points unless
    its output holds an error or stderr text (Python warnings are removed first); a manually
    graded answer left as released scores 0, otherwise it waits for a human. Cells that never
    ran (the kernel died or an uninterruptible cell timed out) score 0, unlike stock nbgrader.
    """
    start = time.monotonic()
    problems: list[dict] = []
    master = task["master"]
    result = {
        "student": task["student"],
        "assignment": task["assignment"],
        "notebook": task["notebook"],
        "seed": task["seed"],
        "master_hash": master["hash"],
        "autograded": None,
        "feedback_html": None,
    }
    nb = executed = None
    done: set[int] = set()
    try:
        nb, result["hash"] = read_notebook(task, problems)
        if nb is not None:
            resources = {
                "nbgrader": {
                    "notebook": task["notebook"],
                    "assignment": task["assignment"],
                    "student": task["student"],
                    "db_url": None,
                }
            }
            try:
                nb, resources = sanitize(nb, task, problems, resources)
            except Exception as exc:  # nbgrader's metadata validator raises on forged metadata
                problems.append(
                    problem(
                        "wrong-format",
                        "nbgrader cell metadata is corrupted "
                        f"({(str(exc).strip().splitlines() or ['?'])[0][:200]}); start from a "
                        "fresh copy of the released notebook and paste the answers into it",
                    )
                )
                nb = None
        if nb is not None:
            zygote = kernel_zygote_for(task.get("sandbox", True), master.get("preload", ()))
            result["kernel"] = "forked" if zygote is not None else "started"
            with tempfile.TemporaryDirectory(
                prefix="lossutils-grade-", dir=zygote.slots if zygote else None
            ) as workdir:
                for rel, content in master.get("files", {}).items():
                    dest = os.path.join(workdir, rel)
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    with open(dest, "wb") as fh:
                        fh.write(content)
                try:
                    done = execute(nb, task, workdir, problems, resources, zygote)
                finally:
                    if zygote is not None:  # nothing of this kernel may outlive it
                        zygote.release_all()
            executed = True
            from nbgrader.preprocessors import LimitOutput

            strip_warnings(nb)
            nb, _ = LimitOutput().preprocess(nb, {})
            clip_outputs(nb, task["max_output_chars"])
        records = score_cells(nb, master, done, bool(executed))
        if executed:
            # The final score of every checked exercise is the one verified outside the
            # student's kernel; disagreement is flagged as suspected tampering.
            folded = apply_verification(
                {"cells": records, "problems": problems}, nb, master["cells"],
                seed=task["seed"], sandbox=task.get("sandbox", True),
                call_timeout=task["timeout"],
            )
            result["scan"] = folded["scan"]
    except Exception as exc:  # a grader bug must cost one submission, never the batch
        problems.append(problem("grader-error", f"{type(exc).__name__}: {exc}"[:500]))
        records = score_cells(None, master, set(), False)
        nb = None
    result.setdefault("hash", "unknown")
    result["cells"] = records
    result["problems"] = problems
    result["status"] = status_of(problems)
    result["score"] = sum(r["score"] or 0.0 for r in records)
    result["max_score"] = sum(r["max_score"] for r in records)
    if nb is not None:
        import nbformat

        if task.get("keep_notebook", True):
            result["autograded"] = nbformat.writes(nb)
        if task.get("feedback", True):
            try:
                result["feedback_html"] = feedback_html(nb, task, records, problems)
            except Exception as exc:  # feedback is a courtesy; the grade stands without it
                problems.append(problem("grader-error", f"feedback failed: {exc}"[:500]))
    result["seconds"] = round(time.monotonic() - start, 3)
    return result


def failure_result(task: dict, detail: str) -> dict:
    """The result of a task whose worker process itself died (twice): every cell zero, the
    ``grader-error`` status and ``detail`` as its reason."""
    # grading a missing file yields the all-zero cell records of this notebook
    result = grade_submission(dict(task, path=None, feedback=False))
    result["problems"] = [problem("grader-error", detail)]
    result["status"] = "grader-error"
    result["hash"] = file_hash(task["path"])
    return result
