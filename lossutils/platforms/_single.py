"""Grade one student's notebook for an autograder platform (Gradescope, PrairieLearn).

A platform runs the autograder once per submission and shows the student the outcome at once.
This module grades the notebook with ``lossutils grade`` (the same pipeline, checks,
verification and sandbox as a class run) and turns the result into what a platform shows:
points per exercise, and text the student may read.

Hidden checks must not leak into that text. Where the master has hidden tests, the notebook is
graded a second time, in the same run, against the master with its hidden tests removed (the
test cells the student's own copy has). Every student-facing message about an exercise comes
from that second run, where no hidden check ran, or from the checks' own catalogue of mistakes
(through the diagnosis id that verification outside the kernel found); the points come from
the full run. Nothing the student's code printed during a hidden check reaches the student.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field

__all__ = ["Exercise", "Outcome", "grade_notebook", "single_master"]

#: Statuses of a notebook that never ran: the platforms treat it as not gradable, not as 0.
UNREADABLE = ("missing-notebook", "unreadable", "wrong-format")
#: Largest notebook graded (the default of ``lossutils grade --max-mb``).
MAX_NOTEBOOK_BYTES = 20_000_000
#: Longest text kept from one cell's message; every platform gets its summary, not a log.
MAX_MESSAGE = 4000
_VISIBLE_SUFFIX = "--visible-checks"


@dataclass
class Exercise:
    """One autograded test cell, as a platform reports it."""

    grade_id: str
    name: str  # the grade id without "test_"
    points: float  # earned in the full run (hidden checks included)
    max_points: float
    has_hidden: bool  # the master's cell has hidden checks
    visible_passed: bool  # the checks of the student's own copy passed
    visible_output: str  # what those checks said: safe to show at any time
    verdict: str  # the full run in words the student may read (no hidden details)
    detail: str = ""  # the full run's message: instructor only


@dataclass
class Outcome:
    """The graded notebook: points, exercises, problems, and how it ran."""

    assignment: str
    notebook: str | None  # the file graded, relative to the submission folder
    status: str  # "ok", or the deciding problem code of ``lossutils grade``
    score: float = 0.0  # autograded points earned
    max_score: float = 0.0  # autograded points possible
    exercises: list[Exercise] = field(default_factory=list)
    written: list[tuple[str, float]] = field(default_factory=list)  # (grade id, points)
    messages: list[str] = field(default_factory=list)  # for the student, at any time
    hidden_messages: list[str] = field(default_factory=list)  # about the hidden-check run
    instructor: list[str] = field(default_factory=list)  # never shown to the student
    sandboxed: bool = True
    seed: int = 0
    seconds: float = 0.0

    @property
    def gradable(self) -> bool:
        """False when the file could not be read as a notebook (nothing ran)."""
        return self.status not in UNREADABLE and self.status != "no-notebook"


def single_master(source: str, assignment: str) -> str:
    """The one master notebook of ``assignment`` under ``source``; raise ValueError if not one."""
    folder = os.path.join(source, assignment)
    if not os.path.isdir(folder):
        raise ValueError(f"no master folder {folder} (expected <source>/<assignment>/)")
    notebooks = sorted(
        f for f in os.listdir(folder) if f.endswith(".ipynb") and not f.startswith(".")
    )
    if len(notebooks) != 1:
        raise ValueError(
            f"{folder} holds {len(notebooks)} notebooks; a platform autograder grades "
            "assignments of exactly one notebook"
        )
    return notebooks[0][:-6]


def find_notebook(folder: str, notebook: str) -> tuple[str | None, str]:
    """The submitted notebook in ``folder``: ``<notebook>.ipynb`` if present, else the only
    ``.ipynb``; ``(None, why)`` when there is none or the choice is ambiguous."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .ipynb_checkpoints
        # a symlink could name any file of the grader's, the master included: never followed
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.endswith(".ipynb") and not os.path.islink(os.path.join(root, f))]
    exact = [p for p in found if os.path.basename(p) == notebook + ".ipynb"]
    if len(exact) == 1:
        return exact[0], ""
    if len(found) == 1:
        return found[0], ""
    names = ", ".join(os.path.relpath(p, folder) for p in found[:10]) or "none"
    return None, (
        f"submit exactly one notebook, {notebook}.ipynb (found: {names})"
    )


def _visible_master(master: str, dest: str) -> set[str]:
    """Write ``master`` without its hidden tests to ``dest`` (nbgrader's own
    ``ClearHiddenTests``, as in the student's release); return the ids of the cells that had
    hidden tests."""
    import nbformat
    from nbgrader.preprocessors import ClearHiddenTests

    full = nbformat.read(master, as_version=4)
    before = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in full.cells}
    visible, _ = ClearHiddenTests().preprocess(full, {})
    nbformat.write(visible, dest)
    return {
        gid
        for cell in visible.cells
        if (gid := cell.metadata.get("nbgrader", {}).get("grade_id")) and cell.source != before[gid]
    }


def _clip(text: str | None, limit: int = MAX_MESSAGE) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit] + "\n... (cut)"


def _catalogue_advice(check: str | None, diagnosis: str | None) -> str:
    """The checks' own words for a diagnosis id, if it is one of their catalogued mistakes.

    The id comes from verification outside the student's kernel where there was one; either
    way only catalogue text (or a catalogued id) is returned, never text from the kernel.
    """
    if not check or not diagnosis or diagnosis == "none":
        return ""
    from lossutils.checks import get_exercise

    try:
        exercise = get_exercise(check)
    except ValueError:
        return ""
    for mistake in exercise.mistakes:
        if mistake.id == diagnosis:
            return f"Diagnosis ({mistake.id}): {mistake.message}"
    return ""


def _verdict(full: dict, visible: dict, has_hidden: bool) -> str:
    verified = full.get("verified") or {}
    if (full["score"] or 0.0) >= full["max_score"]:
        return "passed every check, hidden ones included" if has_hidden else "passed every check"
    if (visible["score"] or 0.0) < visible["max_score"]:
        first = "failed the checks in your notebook"
    elif has_hidden:
        first = "passed the checks in your notebook but not the hidden checks drawn at grading time"
    else:
        first = "did not pass when checked again outside your notebook"
    if verified.get("error"):
        first += "; your function could not be checked outside the notebook (time or memory " \
                 "limit, or a crash)"
    check = (verified.get("exercises") or [None])[0] if verified else full.get("check")
    advice = _catalogue_advice(check, verified.get("diagnosis") if verified else
                               full.get("diagnosis"))
    return first + (".\n" + advice if advice else ".")


def _visible_output(cell: dict) -> str:
    verified = cell.get("verified") or {}
    if (cell["score"] or 0.0) >= cell["max_score"]:
        return _clip(verified.get("message")) or "passed"
    return _clip(cell.get("message") or verified.get("error") or verified.get("message")) \
        or "failed"


def _problems(result: dict, codes) -> list[str]:
    return [f"{p['code']}: {p['detail']}" for p in result["problems"] if p["code"] in codes]


# What the student may read at once (about their file and the run of their own checks), and
# what stays with the instructor (the scan's findings, suspected tampering, grader bugs).
_STUDENT_CODES = ("missing-notebook", "unreadable", "wrong-format", "kernel-died", "timeout",
                  "test-cell-restored")
_INSTRUCTOR_CODES = ("tampering-suspected", "review-suggested", "verification-failed",
                     "grader-error")


def grade_notebook(
    submission: str,
    *,
    source: str,
    assignment: str,
    timeout: int = 60,
    seed: int | None = None,
    sandbox: bool | None = None,
) -> Outcome:
    """Grade the notebook in the folder ``submission`` against the master of ``assignment``.

    Parameters
    ----------
    submission : str
        Folder with the student's files (a platform's ``submission/`` or ``student/``).
    source : str
        Folder of masters, ``<source>/<assignment>/<notebook>.ipynb``.
    assignment : str
        The assignment id.
    timeout : int
        Seconds each cell may run.
    seed : int, optional
        ``LOSSUTILS_GRADING_SEED`` for the hidden checks; default a fresh random one, so that
        each submission meets new hidden cases.
    sandbox : bool, optional
        Run student code in the bubblewrap sandbox; default: where it works here.

    Returns
    -------
    Outcome
    """
    from ..grading.run import grade
    from ..grading.sandbox import sandbox_available

    start = time.monotonic()
    seed = secrets.randbelow(2**31) if seed is None else seed
    if sandbox is None:
        sandbox = sandbox_available()
    notebook = single_master(source, assignment)
    outcome = Outcome(assignment, None, "ok", sandboxed=sandbox, seed=seed)
    path, why = find_notebook(submission, notebook)
    if path is None:
        outcome.status = "no-notebook"
        outcome.messages.append(why)
        outcome.seconds = time.monotonic() - start
        return outcome
    outcome.notebook = os.path.relpath(path, submission)
    size = os.path.getsize(path)
    if size > MAX_NOTEBOOK_BYTES:  # as `lossutils grade` says it, without copying it twice
        outcome.status = "unreadable"
        outcome.messages.append(
            f"unreadable: the file is {size} bytes, over the {MAX_NOTEBOOK_BYTES}-byte limit")
        outcome.seconds = time.monotonic() - start
        return outcome
    work = tempfile.mkdtemp(prefix="lossutils-platform-")
    try:
        masters = os.path.join(work, "source")
        shutil.copytree(os.path.join(source, assignment), os.path.join(masters, assignment),
                        ignore=shutil.ignore_patterns(".*"))
        visible_id = assignment + _VISIBLE_SUFFIX
        shutil.copytree(os.path.join(masters, assignment), os.path.join(masters, visible_id))
        master = os.path.join(masters, assignment, notebook + ".ipynb")
        hidden = _visible_master(master, os.path.join(masters, visible_id, notebook + ".ipynb"))
        runs = [assignment, visible_id] if hidden else [assignment]
        if not hidden:
            shutil.rmtree(os.path.join(masters, visible_id))
        for run in runs:
            dest = os.path.join(work, "submitted", "student", run)
            os.makedirs(dest)
            shutil.copyfile(path, os.path.join(dest, notebook + ".ipynb"))
        out = os.path.join(work, "out")
        grade(os.path.join(work, "submitted"), out, source=masters, workers=len(runs),
              timeout=timeout, seed=seed, sandbox=sandbox, progress=None)
        with open(os.path.join(out, "results.json"), encoding="utf-8") as fh:
            results = {r["assignment"]: r for r in json.load(fh)["submissions"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    full = results[assignment]
    visible = results.get(visible_id, full)
    outcome.status = full["status"]
    outcome.messages += _problems(visible, _STUDENT_CODES)
    shown = {p["detail"] for p in visible["problems"]}
    outcome.hidden_messages += [
        f"{p['code']}: {p['detail']}" for p in full["problems"]
        if p["code"] in _STUDENT_CODES and p["detail"] not in shown
    ]
    outcome.instructor += _problems(full, _INSTRUCTOR_CODES)
    if any(p["code"] == "grader-error" for p in full["problems"]):
        outcome.messages.append(
            "grader-error: the grader itself failed on this notebook; tell your instructor"
        )
    visible_cells = {c["grade_id"]: c for c in visible["cells"]}
    never_ran = "not run: the file could not be read as a notebook" \
        if outcome.status in UNREADABLE else None
    for cell in full["cells"]:
        if cell["kind"] != "test":
            outcome.written.append((cell["grade_id"], cell["max_score"]))
            continue
        mine = visible_cells.get(cell["grade_id"], cell)
        exercise = Exercise(
            grade_id=cell["grade_id"],
            name=cell["grade_id"].removeprefix("test_"),
            points=float(cell["score"] or 0.0),
            max_points=float(cell["max_score"]),
            has_hidden=cell["grade_id"] in hidden,
            visible_passed=(mine["score"] or 0.0) >= mine["max_score"],
            visible_output=never_ran or _visible_output(mine),
            verdict=never_ran or _verdict(cell, mine, cell["grade_id"] in hidden),
            detail=_clip(cell.get("message") or (cell.get("verified") or {}).get("message")),
        )
        outcome.exercises.append(exercise)
        outcome.score += exercise.points
        outcome.max_score += exercise.max_points
    outcome.seconds = time.monotonic() - start
    return outcome
