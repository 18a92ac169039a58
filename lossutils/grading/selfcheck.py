"""``lossutils check NOTEBOOK``: a student's self-check, graded exactly as the grader would.

The notebook is graded by the same worker function as a batch run, against the master when the
course root has one (hidden tests included), else against the released notebook in ``course/``
(visible tests only), else, for a notebook copied out of the course, against its own test cells
(visible tests only, and an edited test cell is not restored). The assignment comes from the
file or folder name, ``--assignment``, or the exercises the notebook's test cells check. The
result says which of these it was. Nothing is written anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from typing import Literal

from .discover import UsageError
from .masters import list_masters, load_master
from .task import Master, Result, make_task

__all__ = ["SelfCheck", "self_check"]

_ASSIGNMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HIDDEN = "the hidden tests (only the grader has them)"


def _find(roots: list[str], guesses: list[str | None]) -> tuple[str, str] | None:
    """``(root, assignment)`` of the first guess with a master or release, else None."""
    for root in roots:
        masters = list_masters(root)
        for guess in guesses:
            if guess in masters:
                return root, guess
    return None


def _assignment_checked(notebook: str) -> str | None:
    """The course notebook whose exercises the test cells of ``notebook`` check, if any.

    A notebook may check again an exercise of an earlier one that it builds on (07 trains with
    06's ``rmsprop_step``), never one of a later notebook: the latest notebook is the one.
    """
    from lossutils.checks import exercises, get_exercise

    from .verify import check_calls

    try:
        with open(notebook, encoding="utf-8") as fh:
            calls = check_calls(json.load(fh))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    known = set(exercises())
    found = {get_exercise(c.exercise).notebook
             for cell in calls.values() for c in cell if c.exercise in known}
    return max(found, default=None)


def _own_master(notebook: str, assignment: str, scratch: str) -> Master:
    """The grader's view of a notebook that is its own master (its test cells, no hidden ones)."""
    if not _ASSIGNMENT_ID.fullmatch(assignment):
        raise UsageError(f"{assignment!r} is not an assignment id (letters, digits, _ . -)")
    folder = os.path.join(scratch, "source", assignment)
    os.makedirs(folder)
    shutil.copyfile(notebook, os.path.join(folder, assignment + ".ipynb"))
    try:
        master = load_master(assignment, os.path.join(scratch, "source"))
    except Exception as exc:  # nbgrader's own error says what is wrong with the notebook
        raise UsageError(f"cannot read {notebook} as a course notebook: {exc}") from None
    own = master.notebooks[assignment]
    if not any(c.grade for c in own.cells):
        raise UsageError(f"{notebook} has no autograded test cells: is it a course notebook?")
    # this notebook is what was released to its owner: its test cells are the reference
    cells = tuple(dataclasses.replace(c, release_source=c.source) for c in own.cells)
    return dataclasses.replace(
        master, notebooks={assignment: dataclasses.replace(own, cells=cells)})


@dataclass
class SelfCheck:
    """What :func:`self_check` found: the worker's result, and against what it was graded.

    ``against`` is ``"master"``, ``"release"``, or ``"notebook"`` (no copy of the course here:
    the notebook's own test cells); ``not_run`` names, in words, the checks that could not run.
    """

    result: Result
    assignment: str
    against: Literal["master", "release", "notebook"]
    not_run: list[str]


def self_check(
    notebook: str,
    *,
    course_root: str = ".",
    assignment: str | None = None,
    timeout: int = 60,
    seed: int | None = None,
) -> SelfCheck:
    """Grade one notebook in place of the batch grader and return the worker's result.

    Parameters
    ----------
    notebook : str
        The student's notebook.
    course_root : str
        Folder holding ``solutions/`` (instructors) and/or ``course/`` (students).
    assignment : str, optional
        The assignment id; default the notebook's file or folder name, or the course notebook
        whose exercises its test cells check.
    timeout : int
        Seconds each cell may run.
    seed : int, optional
        Seed for the hidden checks; default a random one.

    Returns
    -------
    SelfCheck
        The result of :func:`lossutils.grading.worker.grade_submission`, the assignment, what
        it was graded against and what could not run.

    Raises
    ------
    UsageError
        If the notebook does not exist, or is not a course notebook and no assignment of its
        name is found.
    """
    from .sandbox import sandbox_available
    from .worker import grade_submission

    if not os.path.isfile(notebook):
        raise UsageError(f"{notebook} does not exist")
    roots = [os.path.join(course_root, "solutions"), os.path.join(course_root, "course")]
    stem = os.path.splitext(os.path.basename(notebook))[0]
    parent = os.path.basename(os.path.dirname(os.path.abspath(notebook)))
    checked = _assignment_checked(notebook)
    found = _find(roots, [assignment] if assignment is not None else [stem, parent, checked])
    with tempfile.TemporaryDirectory(prefix="lossutils-check-") as scratch:
        if found is not None:
            root, assignment = found
            master = load_master(assignment, root)
            against = "master" if root == roots[0] else "release"
            not_run = [] if against == "master" else [_HIDDEN]
        else:
            assignment = assignment or checked
            if assignment is None:
                raise UsageError(
                    f"cannot tell which assignment {notebook} belongs to: no master or release "
                    f"of that name in {', '.join(r + '/' for r in roots)}, and its test cells "
                    "check no exercise of this lossutils; pass --assignment"
                )
            master = _own_master(notebook, assignment, scratch)
            against = "notebook"
            cells = master.notebooks[assignment].cells
            hidden = any("BEGIN HIDDEN TESTS" in c.source for c in cells if c.grade)
            not_run = [
                *([] if hidden else [_HIDDEN]),
                "the comparison of your test cells with the released ones (no copy of the "
                "course here, so an edited test cell is not restored)",
            ]
    task = make_task(
        student="self-check",
        assignment=assignment,
        notebook=stem,
        path=notebook,
        master=master,
        master_notebook=stem if stem in master.notebooks else next(iter(master.notebooks)),
        timeout=timeout,
        seed=secrets.randbelow(2**31) if seed is None else seed,
        feedback=False,
        keep_notebook=False,
        # A student checking their own notebook on their own machine: sandbox when possible.
        sandbox=sandbox_available(),
    )
    return SelfCheck(grade_submission(task), assignment, against, not_run)
