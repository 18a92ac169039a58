"""Write worker results into nbgrader's gradebook, as nbgrader's autograde would.

Only the coordinator calls this. Scores and comments go where ``SaveAutoGrades`` puts them
(``auto_score``, ``needs_manual_grade``, ``auto_comment``); a manual score a grader already gave
is never overwritten, so regrading after manual grading keeps the human's work. Submissions with
a problem are marked ``flagged`` so they stand out in formgrader.
"""

from __future__ import annotations

import warnings

__all__ = ["record_result"]


def _timestamp(text: str | None):
    if not text:
        return None
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(text)
    except (ValueError, OverflowError):
        return None


def record_result(gb, result: dict, timestamp: str | None = None) -> None:
    """Store one graded notebook in an open :class:`nbgrader.api.Gradebook` and commit.

    Parameters
    ----------
    gb : nbgrader.api.Gradebook
        The gradebook, already holding the assignment (see
        :func:`lossutils.grading.masters.load_master`).
    result : dict
        A result of :func:`lossutils.grading.worker.grade_submission`.
    timestamp : str, optional
        The submission time from nbgrader's ``timestamp.txt``.
    """
    from sqlalchemy.exc import SAWarning

    student, assignment, notebook = result["student"], result["assignment"], result["notebook"]
    gb.update_or_create_student(student)
    when = _timestamp(timestamp)
    with warnings.catch_warnings():
        # nbgrader 0.9's update_or_create_submission triggers SQLAlchemy 2 autoflush warnings
        # about its own half-built objects; the rows it commits are complete and correct.
        warnings.simplefilter("ignore", SAWarning)
        if when is not None:
            gb.update_or_create_submission(assignment, student, timestamp=when)
        else:
            gb.update_or_create_submission(assignment, student)
    for cell in result["cells"]:
        grade = gb.find_grade(cell["grade_id"], notebook, assignment, student)
        grade.auto_score = cell["score"]
        grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        if cell["kind"] == "manual":
            comment = gb.find_comment(cell["grade_id"], notebook, assignment, student)
            comment.auto_comment = cell["comment"]
    submission_nb = gb.find_submission_notebook(notebook, assignment, student)
    submission_nb.flagged = result["status"] != "ok"
    gb.db.commit()
