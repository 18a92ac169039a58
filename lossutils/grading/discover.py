"""Find the submissions to grade, in nbgrader's submitted layout or as a flat LMS download."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

__all__ = ["Submission", "UsageError", "file_hash", "find_submissions"]


class UsageError(ValueError):
    """The command line asks for something the folders cannot give; the message says why."""


@dataclass(frozen=True)
class Submission:
    """One submitted notebook found on disk (``path`` None when the student's folder lacks it;
    ``timestamp`` is nbgrader's ``timestamp.txt``)."""

    student: str
    assignment: str
    notebook: str
    path: str | None
    timestamp: str | None = None


def file_hash(path: str | None) -> str:
    """sha256 of a submitted file, or ``"missing"`` (the ledger's record of which bytes were
    graded)."""
    if path is None or not os.path.isfile(path):
        return "missing"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _visible(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def _read_timestamp(folder: str) -> str | None:
    path = os.path.join(folder, "timestamp.txt")
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip() or None
    return None


def _guess_assignment(files: list[str], masters: dict[str, list[str]]):
    """Infer the assignment of a flat folder: the only master, or the one the names mention."""
    if len(masters) == 1:
        only = next(iter(masters))
        return only, f"the only master is {only}"
    mentioned = {a for a in masters for f in files if a in f}
    if len(mentioned) == 1:
        only = mentioned.pop()
        return only, f"the file names mention {only}"
    return None, None


def find_submissions(path: str, masters: dict[str, list[str]], assignment: str | None = None):
    """List the notebooks to grade under ``path``.

    Parameters
    ----------
    path : str
        Either nbgrader's submitted layout, ``<student>/<assignment>/<notebook>.ipynb``, or a
        flat folder of ``<student>.ipynb`` files for one assignment (as an LMS exports them).
    masters : dict
        Assignment id to its notebook names, from
        :func:`lossutils.grading.masters.list_masters`.
    assignment : str, optional
        Grade only this assignment; required for a flat folder unless it can be inferred.

    Returns
    -------
    entries : list of Submission
        One per notebook of each student's assignment, found or missing.
    notes : list of str
        What was assumed or skipped, for the user to read.

    Raises
    ------
    UsageError
        When ``path`` does not exist, holds nothing gradable, or the assignment of a flat folder
        is ambiguous or unknown.
    """
    if not os.path.isdir(path):
        raise UsageError(f"{path} is not a folder of submissions")
    if assignment is not None and assignment not in masters:
        raise UsageError(
            f"no master for assignment {assignment!r}; known: {', '.join(masters) or 'none'}"
        )
    notes: list[str] = []
    names = _visible(path)
    flat = [n for n in names if n.endswith(".ipynb") and os.path.isfile(os.path.join(path, n))]
    entries = []
    if flat:
        if assignment is None:
            assignment, why = _guess_assignment(flat, masters)
            if assignment is None:
                raise UsageError(
                    f"{path} is a flat folder of notebooks but the assignment is ambiguous; "
                    f"pass --assignment (one of: {', '.join(masters)})"
                )
            notes.append(
                f"flat folder: assuming assignment {assignment} ({why}); each "
                "<name>.ipynb is the submission of student <name>"
            )
        notebook = masters[assignment][0]
        if len(masters[assignment]) > 1:
            notes.append(
                f"{assignment} has several notebooks; a flat folder can only hold "
                f"{notebook}, the others count as missing"
            )
        for name in flat:
            student = name[:-6]
            entries.append(Submission(student, assignment, notebook, os.path.join(path, name)))
            for other in masters[assignment][1:]:
                entries.append(Submission(student, assignment, other, None))
        return entries, notes
    unknown = set()
    for student in names:
        student_dir = os.path.join(path, student)
        if not os.path.isdir(student_dir):
            continue
        for asg in _visible(student_dir):
            folder = os.path.join(student_dir, asg)
            if not os.path.isdir(folder) or (assignment is not None and asg != assignment):
                continue
            if asg not in masters:
                unknown.add(asg)
                continue
            timestamp = _read_timestamp(folder)
            for notebook in masters[asg]:
                nb_path = os.path.join(folder, notebook + ".ipynb")
                found = nb_path if os.path.isfile(nb_path) else None
                entries.append(Submission(student, asg, notebook, found, timestamp))
    if unknown:
        notes.append(f"skipped folders with no master: {', '.join(sorted(unknown))}")
    if not entries:
        raise UsageError(
            f"no submissions found in {path}: expected <student>/<assignment>/<notebook>.ipynb "
            "(nbgrader's submitted layout) or a flat folder of <student>.ipynb files"
        )
    return entries, notes
