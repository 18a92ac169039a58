"""Score a graded notebook as nbgrader does."""

from __future__ import annotations

import re

from ..task import CellRecord, MasterNotebook

__all__ = ["score_cells", "without_diagnosis"]

_DIAGNOSIS = re.compile(r"\[check: [^;\]]+; diagnosis: [^\]]+\]")

# Enough for every traceback line nbgrader keeps; bounds what one cell can put in the result.
_MAX_TEXT = 20_000


def without_diagnosis(text: str) -> str:
    """``text`` without the checkers' tags (``[check: <id>; diagnosis: <id>]``): noise in a
    message a student reads, and never read as a diagnosis (the report's come from
    verification, since a kernel's output is the student's to forge).

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
                    # no check or diagnosis from here: the kernel's output is the student's
                    # to forge; verification sets the trusted ones
                    record.message = without_diagnosis(_test_message(cell) or "") or None
        elif record.kind == "manual":
            record.comment = "No response."
        records.append(record)
    return records
