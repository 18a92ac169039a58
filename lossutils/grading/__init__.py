"""Batch autograding around nbgrader: parallel, resumable, with reasons and reports.

The pipeline has one pure function at its heart, :func:`lossutils.grading.worker.grade_submission`,
which grades one notebook from a plain-data task and returns a plain-data result; the
coordinator (:mod:`lossutils.grading.run`) discovers submissions, hands tasks to worker
processes, and alone writes the gradebook, ``grades.csv``, ``results.json``, the feedback and the
report. See ``docs/grading.md`` for the instructor's guide.

Nothing here is imported by ``import lossutils``; nbgrader and friends load on first use.
Every change the grader makes to a dependency's internals is in :mod:`._patches`.
"""

from ._patches import block_rfc3987_syntax

__all__ = ["grade"]

block_rfc3987_syntax()


def __getattr__(name: str):
    # `lossutils.grading.grade` without importing the coordinator with the package
    if name == "grade":
        from .run import grade

        return grade
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
