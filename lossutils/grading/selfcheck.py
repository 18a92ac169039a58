"""``lossutils check NOTEBOOK``: a student's self-check, graded exactly as the grader would.

The notebook is graded by the same worker function as a batch run, against the master when the
course root has one (hidden tests included) and otherwise against the released notebook in
``course/`` (visible tests only; the output says which). Nothing is written anywhere.
"""

from __future__ import annotations

import os
import secrets

from .discover import UsageError
from .masters import list_masters, load_master
from .task import Result, make_task

__all__ = ["self_check"]


def _pick_assignment(notebook: str, roots: list[str], assignment: str | None):
    stem = os.path.splitext(os.path.basename(notebook))[0]
    parent = os.path.basename(os.path.dirname(os.path.abspath(notebook)))
    for root in roots:
        masters = list_masters(root)
        if assignment is not None:
            if assignment in masters:
                return root, assignment
            continue
        for guess in (stem, parent):
            if guess in masters:
                return root, guess
    wanted = assignment or stem
    raise UsageError(
        f"cannot tell which assignment {notebook} belongs to (looked for "
        f"{wanted!r} in {', '.join(r + '/' for r in roots)}); pass --assignment"
    )


def self_check(
    notebook: str,
    *,
    course_root: str = ".",
    assignment: str | None = None,
    timeout: int = 60,
    seed: int | None = None,
) -> tuple[Result, str]:
    """Grade one notebook in place of the batch grader and return the worker's result.

    Parameters
    ----------
    notebook : str
        The student's notebook.
    course_root : str
        Folder holding ``solutions/`` (instructors) and/or ``course/`` (students).
    assignment : str, optional
        The assignment id; default the notebook's file or folder name.
    timeout : int
        Seconds each cell may run.
    seed : int, optional
        Seed for the hidden checks; default a random one.

    Returns
    -------
    result : Result
        What :func:`lossutils.grading.worker.grade_submission` made of it.
    against : {"master", "release"}
        Whether it was graded against the master (hidden tests included) or the release.

    Raises
    ------
    UsageError
        If the notebook does not exist or its assignment cannot be found.
    """
    from .sandbox import sandbox_available
    from .worker import grade_submission

    if not os.path.isfile(notebook):
        raise UsageError(f"{notebook} does not exist")
    roots = [os.path.join(course_root, "solutions"), os.path.join(course_root, "course")]
    root, assignment = _pick_assignment(notebook, roots, assignment)
    master = load_master(assignment, root)
    stem = os.path.splitext(os.path.basename(notebook))[0]
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
    return grade_submission(task), "master" if root == roots[0] else "release"
