"""Score a graded notebook as nbgrader does, with the checkers' diagnoses read from it."""

from __future__ import annotations

import re

from ..task import CellRecord, MasterNotebook

__all__ = ["parse_diagnosis", "score_cells", "without_diagnosis"]

_DIAGNOSIS = re.compile(r"\[check: ([^;\]]+); diagnosis: ([^\]]+)\]")
# Enough for every traceback line nbgrader keeps; bounds what one cell can put in the result.
_MAX_TEXT = 20_000


def parse_diagnosis(text: str) -> tuple[str, str] | None:
    """Return ``(check id, diagnosis)`` from the last checker tag in ``text``, if any.

    The checkers end the text of every failure with ``[check: <id>; diagnosis: <mistake id
    or none>]`` (in a notebook, :class:`lossutils.checks.CheckFailed` shows the message
    without it); the grader counts these tags for the instructor's report and removes them
    from the message it keeps (:func:`without_diagnosis`).

    Parameters
    ----------
    text : str
        Output of a test cell (an error message or a stream).

    Returns
    -------
    tuple of str or None
        The check id and the diagnosis (``"none"`` when the checker recognised no mistake), or
        ``None`` when ``text`` holds no tag.

    Examples
    --------
    >>> parse_diagnosis("overflow [check: softmax; diagnosis: no-max-shift]")
    ('softmax', 'no-max-shift')
    >>> parse_diagnosis("NameError: name 'softmax' is not defined") is None
    True
    """
    found = _DIAGNOSIS.findall(text)
    if not found:
        return None
    check_id, diagnosis = found[-1]
    return check_id.strip(), diagnosis.strip()



def without_diagnosis(text: str) -> str:
    """``text`` without the checkers' tags (see :func:`parse_diagnosis`).

    Examples
    --------
    >>> without_diagnosis("CheckFailed: overflow [check: softmax; diagnosis: no-max-shift]")
    'CheckFailed: overflow'
    """
    return _DIAGNOSIS.sub("", text).rstrip()


def _test_message(cell) -> str | None:
    """The student-facing message of a failed test cell: the exception, never its traceback."""
    for out in cell.outputs:
        if out.output_type == "error":
            return f"{out.ename}: {out.evalue}"[:_MAX_TEXT]
    for out in cell.outputs:
        if out.output_type == "stream" and out.name == "stderr":
            return out.text[:_MAX_TEXT]
    return None


def score_cells(nb, master: MasterNotebook, done: set[int], executed: bool) -> list[CellRecord]:
    """One record per master grade cell, scored as nbgrader's SaveAutoGrades would."""
    from nbgrader import utils

    by_id = {}
    for index, cell in enumerate(nb.cells if nb is not None else []):
        if utils.is_grade(cell):
            by_id[cell.metadata.nbgrader["grade_id"]] = (index, cell)
    records = []
    for mc in master.cells:
        if not mc.grade:
            continue
        record = CellRecord(mc.name, "manual" if mc.solution or mc.cell_type != "code" else "test",
                            float(mc.points))
        if mc.name in by_id and executed:
            index, cell = by_id[mc.name]
            if cell.cell_type == "code" and index not in done:
                record.message = "not run: execution stopped before this cell"
            else:
                score, _ = utils.determine_grade(cell)
                record.score = None if score is None else float(score)
                if utils.is_solution(cell):
                    unchanged = cell.metadata.nbgrader.get("checksum") == utils.compute_checksum(
                        cell
                    )
                    record.comment = "No response." if unchanged else None
                elif cell.cell_type == "code" and record.score < record.max_score:
                    record.message = _test_message(cell)
                    tag = parse_diagnosis(record.message or "")
                    if tag is not None:
                        record.check, record.diagnosis = tag
                        # the tag is for the report; feedback shows the message without it
                        record.message = without_diagnosis(record.message)
        elif record.kind == "manual":
            record.comment = "No response."
        records.append(record)
    return records
