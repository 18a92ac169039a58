"""What travels between the coordinator and the workers: a :class:`Task` out, a :class:`Result`
back.

Both are plain dataclasses of strings, numbers, bytes and lists, so they pickle for a local
process pool and for a Dask cluster alike. A task carries everything a worker needs (the
submitted file's path, the master's cells and data files, the limits and the seed): a worker
never opens the gradebook or the output folder. A result carries everything the coordinator
writes; :meth:`Result.to_plain` is its form in ``results.json`` and the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .problems import Problem

if TYPE_CHECKING:
    from .verify.scan import Finding
    from .verify.session import VerifiedScore

__all__ = ["CellRecord", "Master", "MasterCell", "MasterNotebook", "Result", "Task", "make_task"]


@dataclass(frozen=True)
class MasterCell:
    """One nbgrader cell of a master notebook, as nbgrader's gradebook stores it.

    ``source`` is the master's (hidden tests included), ``release_source`` the text students
    received; ``points`` is None for a cell that carries none.
    """

    name: str
    cell_type: str
    locked: bool
    checksum: str | None
    source: str
    points: float | None
    grade: bool
    solution: bool
    task: bool
    release_source: str


@dataclass(frozen=True)
class MasterNotebook:
    """What a task carries of its master: one notebook, with its assignment's data files."""

    #: sha256 over every file of the assignment's master folder
    hash: str
    #: the assignment's other files (relative path to bytes), copied next to each submission
    files: dict[str, bytes]
    kernelspec: dict | None
    #: in master order, so that restored cells land where the author put them
    cells: tuple[MasterCell, ...]
    #: the modules the notebook imports at the top level (what a kernel zygote preloads)
    preload: tuple[str, ...] = ()


@dataclass(frozen=True)
class Master:
    """One assignment as the grader knows it: see :func:`~lossutils.grading.masters.load_master`."""

    assignment: str
    hash: str
    files: dict[str, bytes]
    notebooks: dict[str, MasterNotebook]


@dataclass(frozen=True)
class Task:
    """One submitted notebook to grade, with everything the worker needs.

    Attributes
    ----------
    student, assignment, notebook : str
        Whose, which assignment, which notebook (its name without ``.ipynb``).
    path : str or None
        The submitted file; None when the student's folder lacks it.
    root : str or None
        The submissions folder: no folder between it and ``path`` may be a symbolic link.
    refused : tuple of str or None
        ``(kind, reason)`` when the coordinator refused the submitted path for a worker that
        cannot look at it (see :class:`~lossutils.grading.discover.Refused`).
    master : MasterNotebook
        The master notebook the submission is graded against.
    timeout : int
        Seconds each cell may run (and each call of a student's function in verification, and
        the checker's judging of what it returned).
    seed : int
        The run's grading seed; the hidden checks of this submission draw their cases from a
        seed derived from it and the submitted bytes (see
        :func:`~lossutils.grading.worker.submission_seed`), which is all the kernel sees.
    max_bytes : int
        Largest file read; a larger one is ``unreadable``.
    max_output_chars : int
        Longest text kept per output.
    budget : float
        Seconds the submission may take as a whole: its kernel and its verification together.
    cell_output_bytes, output_bytes : int
        Output the grader keeps of one cell, and of the whole notebook; the rest is cut (and
        the feedback says so).
    feedback : bool
        Render the feedback page.
    keep_notebook : bool
        Return the executed notebook.
    sandbox : bool
        Run student code in the sandbox (False only for ``--unsandboxed`` grading).
    """

    student: str
    assignment: str
    notebook: str
    path: str | None
    master: MasterNotebook
    timeout: int
    seed: int
    root: str | None = None
    refused: tuple[str, str] | None = None
    max_bytes: int = 20_000_000
    max_output_chars: int = 20_000
    budget: float = 600.0
    cell_output_bytes: int = 4 * 2**20
    output_bytes: int = 16 * 2**20
    feedback: bool = True
    keep_notebook: bool = True
    sandbox: bool = True


def make_task(
    *,
    student: str,
    assignment: str,
    notebook: str,
    path: str | None,
    master: Master,
    master_notebook: str | None = None,
    **settings,
) -> Task:
    """The task of one submitted notebook, graded against ``master_notebook`` of ``master``
    (default: the notebook of the same name); ``settings`` are :class:`Task`'s other fields."""
    return Task(student=student, assignment=assignment, notebook=notebook, path=path,
                master=master.notebooks[master_notebook or notebook], **settings)


@dataclass
class CellRecord:
    """The grade of one nbgrader grade cell of a submission.

    Attributes
    ----------
    grade_id : str
        The cell's nbgrader grade id.
    kind : {"test", "manual"}
        An autograded test cell, or an answer graded by hand.
    max_score : float
        Its points.
    score : float or None
        What it earned; None for an answer that waits for a human.
    check, diagnosis : str or None
        The checker's tag of a failed test cell (``[check: ...; diagnosis: ...]``).
    message : str or None
        Why a test cell did not earn its points (the exception, never the traceback).
    comment : str or None
        nbgrader's automatic comment (``"No response."`` for an answer left as released).
    kernel_score : float or None
        Set by verification: what the notebook's own test run gave.
    verified : VerifiedScore or None
        Set by verification: its verdict, which ``score`` now is.
    """

    grade_id: str
    kind: Literal["test", "manual"]
    max_score: float
    score: float | None = 0.0
    check: str | None = None
    diagnosis: str | None = None
    message: str | None = None
    comment: str | None = None
    kernel_score: float | None = None
    verified: VerifiedScore | None = None

    def to_plain(self) -> dict:
        """JSON-ready; the two verification fields only once verification set them."""
        plain = {"grade_id": self.grade_id, "kind": self.kind, "max_score": self.max_score,
                 "score": self.score, "check": self.check, "diagnosis": self.diagnosis,
                 "message": self.message, "comment": self.comment}
        if self.verified is not None:
            plain["kernel_score"] = self.kernel_score
            plain["verified"] = self.verified.to_plain()
        return plain


@dataclass
class Result:
    """What grading one submitted notebook produced.

    Attributes
    ----------
    student, assignment, notebook : str
        As in the task.
    seed : int
        The seed of the hidden checks.
    master_hash : str
        The master the submission was graded against.
    hash : str
        sha256 of the submitted file (``missing``, ``size:<n>`` or ``unknown`` when it was not
        read).
    status : str
        ``ok`` or the first problem code (:func:`~lossutils.grading.problems.status_of`).
    problems : list of Problem
        Every reason it lost points other than a wrong answer.
    cells : list of CellRecord
        One per grade cell of the master, in master order.
    score, max_score : float
        Their sums.
    kernel : {"forked", "started"} or None
        How its kernel was made, when one ran.
    scan : list of Finding or None
        The static scan's findings, when verification ran.
    autograded : str or None
        The executed notebook (hidden tests included: instructor only).
    feedback_html : str or None
        The student's feedback page.
    seconds : float
        Wall-clock time the worker spent.
    """

    student: str
    assignment: str
    notebook: str
    seed: int
    master_hash: str
    hash: str = "unknown"
    status: str = "ok"
    problems: list[Problem] = field(default_factory=list)
    cells: list[CellRecord] = field(default_factory=list)
    score: float = 0.0
    max_score: float = 0.0
    kernel: Literal["forked", "started"] | None = None
    scan: list[Finding] | None = None
    autograded: str | None = None
    feedback_html: str | None = None
    seconds: float = 0.0

    def to_plain(self) -> dict:
        """The JSON form of ``results.json`` and the ledger (``kernel`` and ``scan`` only when
        set)."""
        plain = {"student": self.student, "assignment": self.assignment,
                 "notebook": self.notebook, "seed": self.seed, "master_hash": self.master_hash,
                 "hash": self.hash, "status": self.status,
                 "problems": [p.to_plain() for p in self.problems],
                 "cells": [c.to_plain() for c in self.cells], "score": self.score,
                 "max_score": self.max_score, "autograded": self.autograded,
                 "feedback_html": self.feedback_html, "seconds": self.seconds}
        if self.kernel is not None:
            plain["kernel"] = self.kernel
        if self.scan is not None:
            plain["scan"] = [f.to_plain() for f in self.scan]
        return plain
