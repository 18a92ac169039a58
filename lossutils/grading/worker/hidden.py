"""What a kernel must not show a student: the master's hidden tests and its grading seed.

Test cells run without being stored in the kernel's history, but code of the student's that
runs before them (an IPython event hook, an input transformer) still sees every cell's source
as it runs, and the kernel's environment holds its seed. What the student's cells then print
is found here and kept out of the feedback page (the instructor's autograded notebook keeps
it as evidence), and the submission is flagged ``hidden-exposed``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ..task import MasterCell

__all__ = ["find_leaks", "hidden_lines"]

# nbgrader's default delimiters of hidden tests (ClearHiddenTests)
_BEGIN, _END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
# shorter lines (``pass``, ``)``) would match honest output by chance
_SHORTEST = 8


def hidden_lines(cells: Sequence[MasterCell]) -> list[str]:
    """The lines of the master's hidden tests, stripped, as nbgrader delimits them.

    Examples
    --------
    >>> cell = MasterCell("t", "code", True, None, "check(1)\\n### BEGIN HIDDEN TESTS\\n"
    ...                   "check('x', x, hidden=True)\\n### END HIDDEN TESTS\\n", 1.0, True,
    ...                   False, False, "")
    >>> hidden_lines([cell])
    ["check('x', x, hidden=True)"]
    """
    lines: dict[str, None] = {}
    for cell in cells:
        if not cell.grade or cell.solution:
            continue
        inside = False
        for line in cell.source.splitlines():
            marker = line.strip().startswith("#")
            if marker and _BEGIN in line:
                inside = True
            elif marker and _END in line:
                inside = False
            elif inside and len(line.strip()) >= _SHORTEST:
                lines[line.strip()] = None
    return list(lines)


def _shown(out, test_cell: bool) -> str:
    """An output's text as the feedback page would show it."""
    if out.output_type == "stream":
        return str(out.get("text", ""))
    if out.output_type == "error":
        # a test cell's traceback quotes its hidden lines; the feedback shows only the error
        parts = [out.get("ename", ""), out.get("evalue", "")]
        if not test_cell:
            parts += list(out.get("traceback", ()))
        return "\n".join(map(str, parts))
    return "\n".join(v if isinstance(v, str) else json.dumps(v)
                     for v in out.get("data", {}).values())


def find_leaks(nb, lines: Sequence[str], seed: int) -> list[tuple[int, int]]:
    """``(cell index, output index)`` of every output showing a hidden test line or ``seed``."""
    from nbgrader import utils

    number = re.compile(rf"(?<!\d){int(seed)}(?!\d)")
    found = []
    for ci, cell in enumerate(nb.cells):
        test_cell = utils.is_grade(cell) and not utils.is_solution(cell)
        for oi, out in enumerate(cell.get("outputs", [])):
            text = _shown(out, test_cell)
            if number.search(text) or any(line in text for line in lines):
                found.append((ci, oi))
    return found
