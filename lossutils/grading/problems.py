"""The problem codes: every reason a submission loses points other than a wrong answer.

A grading result carries a list of problems (a code and a detail saying which cell and what
exactly); its status is the first of their codes in the order of :data:`PROBLEM_CODES`, or
``ok``. The codes are the ones ``grades.csv``, ``results.json`` and the report show (see the
table in ``docs/grading.md``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["FAILURES", "PROBLEM_CODES", "Problem", "printable", "status_of"]

#: Each code and what it means, in order of precedence. ``test-cell-restored`` and
#: ``review-suggested`` are flags, not failures.
PROBLEM_CODES = {
    "missing-notebook": "the notebook is not in the submission",
    "suspicious-file": "the submitted path is not a file of its own inside the submission "
                       "folder (a symbolic or hard link, a FIFO, a device, a folder), or the "
                       "student's name is markup to a browser: it was not read",
    "unreadable": "the file cannot be read (corrupt JSON, invalid UTF-8, too large)",
    "wrong-format": "the file is not a valid Jupyter notebook of a supported version",
    "kernel-died": "the Python kernel died while running the notebook",
    "timeout": "a cell ran longer than the per-cell time limit, or the submission as a whole "
               "longer than its budget",
    "over-budget": "the submission exhausted a limit of the grader's own side (the time or "
                   "memory its feedback page may take, or it took its grading worker down)",
    "grader-error": "the grader itself failed on this submission (a bug: please report it)",
    "tampering-suspected": "the notebook's own test run and verification outside the kernel "
                           "disagreed (either way); the verified score stands",
    "verification-failed": "the solution code could not be verified outside the kernel "
                           "(timeout, memory, crash, a malformed or oversized reply, a checker "
                           "out of time): the exercise scores 0",
    "test-cell-restored": "a test cell was deleted or edited and has been restored from the master",
    "hidden-exposed": "an output showed hidden test code or the notebook's grading seed; it "
                      "was removed from the feedback",
    "output-truncated": "the notebook's output exceeded what the grader keeps per cell or per "
                        "notebook; the rest was cut, and the feedback says where",
    "review-suggested": "the static scan found code that has no place in an answer "
                        "(see the findings); no points were taken for it",
}

#: Statuses that count as "failed to grade" for the exit code: the submission got a score, but
#: not from running the student's answers to the end. Wrong answers and restored test cells
#: are ordinary grades.
FAILURES = (
    "missing-notebook",
    "suspicious-file",
    "unreadable",
    "wrong-format",
    "kernel-died",
    "timeout",
    "over-budget",
    "verification-failed",
    "grader-error",
)

# C0 controls but newline and tab, DEL and C1, and the bidirectional overrides and isolates:
# what a terminal, a spreadsheet or a reader's eye would take for something else.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character but newline and tab replaced by ``?``.

    Examples
    --------
    >>> printable("red\x1b[31m text\u202e")
    'red?[31m text?'
    """
    return _UNPRINTABLE.sub("?", text)


@dataclass(frozen=True)
class Problem:
    """One reason a submission lost points other than a wrong answer.

    Examples
    --------
    >>> Problem("timeout", "cell 3 ran past the 60 s limit").to_plain()
    {'code': 'timeout', 'detail': 'cell 3 ran past the 60 s limit'}
    >>> Problem("slow", "...")
    Traceback (most recent call last):
    ...
    ValueError: unknown problem code 'slow'; add it to PROBLEM_CODES
    """

    code: str
    detail: str

    def __post_init__(self):
        if self.code not in PROBLEM_CODES:
            raise ValueError(f"unknown problem code {self.code!r}; add it to PROBLEM_CODES")
        # a detail quotes names and messages a student chose; it reaches terminals and CSV
        object.__setattr__(self, "detail", printable(str(self.detail)))

    def to_plain(self) -> dict:
        """As ``results.json`` and the ledger store it."""
        return {"code": self.code, "detail": self.detail}


def status_of(problems: Iterable[Problem]) -> str:
    """The status of a result: its first problem code in order of precedence, else ``ok``.

    Examples
    --------
    >>> status_of([Problem("test-cell-restored", "..."), Problem("timeout", "...")])
    'timeout'
    >>> status_of([])
    'ok'
    """
    order = list(PROBLEM_CODES)
    codes = sorted({p.code for p in problems}, key=order.index)
    return codes[0] if codes else "ok"
