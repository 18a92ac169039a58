"""The coordinator's writes as results arrive, and the output folder they go to.

For each result, its executed notebook and feedback page are written at once
(:func:`write_result_files`); its gradebook rows and then its ledger row wait for the results
of the last second and are committed with them in one transaction each (:class:`Batch`). A run
killed at any instant therefore loses at most that last second, never a grade half-written.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .discover import UsageError
from .masters import COURSE_ID
from .state import State
from .task import Result

__all__ = ["Batch", "commit", "lock_output", "make_output", "write_course_files",
           "write_result_files"]

#: What a result carries that the ledger does not keep (written as files instead).
_LIGHT_DROP = ("autograded", "feedback_html")


def _write_atomic(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(data, encoding="utf-8")
    tmp.replace(path)


def make_output(out: str, mode: int = 0o700) -> None:
    """Create the output folder with ``mode``: by default private, since it holds the masters
    (``source/``, hidden tests and model answers), the gradebook and every student's work. A
    folder that exists keeps its mode."""
    if os.path.isdir(out):
        return
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    os.mkdir(out, 0o700)  # never more open than asked, not even until the chmod
    os.chmod(out, mode)


def write_course_files(out: str, source: str, assignments, db_url: str) -> None:
    """Make the output folder an nbgrader course root, so formgrader and export run there, and
    give its feedback pages their copy of MathJax."""
    from lossutils._mathjax import copy_mathjax

    from .worker.feedback import MATHJAX

    copy_mathjax(os.path.join(out, MATHJAX))
    for assignment in assignments:
        dest = Path(out, "source", assignment)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(Path(source, assignment), dest, ignore=shutil.ignore_patterns(".*"))
    config = (
        '"""Written by `lossutils grade`: run `nbgrader formgrader` or `nbgrader export` here."""\n'
        "c = get_config()  # noqa: F821\n"
        "c.CourseDirectory.root = '.'\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        "c.CourseDirectory.source_directory = 'source'\n"
        "c.CourseDirectory.autograded_directory = 'autograded'\n"
        "c.CourseDirectory.feedback_directory = 'feedback'\n"
        f"c.CourseDirectory.db_url = {db_url!r}\n"
        "# the formgrader shows students' notebooks: HTML in their outputs cleaned, no\n"
        "# JavaScript or widget output run, markdown shown with its raw HTML as text\n"
        "c.HTMLExporter.sanitize_html = True\n"
        "c.HTMLExporter.filters = {'markdown2html': 'lossutils.grading.pages.markdown2html'}\n"
    )
    _write_atomic(Path(out, "nbgrader_config.py"), config)


def write_result_files(out: str, result: Result) -> dict:
    """Write a result's notebook and feedback page; return the rest of it as the ledger keeps
    it (:meth:`Result.to_plain` without the two, with the feedback page's path)."""
    rel = Path(result.student, result.assignment)
    for folder, text, ext in (
        ("autograded", result.autograded, ".ipynb"),
        ("feedback", result.feedback_html, ".html"),
    ):
        path = Path(out, folder, rel, result.notebook + ext)
        if text is not None:
            _write_atomic(path, text)
        else:  # a regrade that no longer produces it: drop the stale copy
            path.unlink(missing_ok=True)
    # formgrader lists a submission as autograded only when its autograded folder exists, so
    # an unreadable one gets the folder and a note instead of a notebook
    note = Path(out, "autograded", rel, result.notebook + ".problem.txt")
    if result.autograded is None:
        _write_atomic(note, "".join(f"{p.code}: {p.detail}\n" for p in result.problems))
    else:
        note.unlink(missing_ok=True)
    light = {k: v for k, v in result.to_plain().items() if k not in _LIGHT_DROP}
    light["feedback"] = (
        os.path.join("feedback", rel, result.notebook + ".html")
        if result.feedback_html is not None
        else None
    )
    return light


def commit(gb, state: State, items: list) -> None:
    """Gradebook rows, then ledger rows, of ``(light result, key, timestamp)`` items.

    A result with a ``grader-error`` is kept in the ledger under no key, so the next run grades
    it again (a grader failure is not the submission's grade). A student whose name is markup
    to a browser is not entered in the gradebook: nbgrader's formgrader shows names unescaped.
    """
    from .discover import unsafe_name
    from .gradebook import record_results

    record_results(gb, [(light, timestamp) for light, _, timestamp in items
                        if unsafe_name(light["student"]) is None])
    state.put_many([(light, "" if any(p["code"] == "grader-error" for p in light["problems"])
                     else key) for light, key, _ in items])


class Batch:
    """Results whose files are written, waiting for their gradebook and ledger transaction.

    A result waits at most ``wait`` seconds, and at most ``size`` results wait: the
    coordinator's cost per result falls with the batch (one commit instead of three per
    notebook), while a killed run still loses at most the last second of grades. ``bar`` (a
    :class:`~lossutils.grading.progress.Progress`) is updated after every commit.
    """

    def __init__(self, out: str, gb, state: State, bar, size=64, wait=1.0):
        self.out, self.gb, self.state, self.bar = out, gb, state, bar
        self.size, self.wait = size, wait
        self.items: list = []
        self.first = 0.0
        self.done = 0
        self.label = ""

    def add(self, result: Result, key: str, timestamp, label: str) -> None:
        """Write the result's files now; commit it with the batch."""
        if not self.items:
            self.first = time.monotonic()
        self.items.append((write_result_files(self.out, result), key, timestamp))
        self.label = label
        if len(self.items) >= self.size:
            self.flush()

    def time_left(self) -> float | None:
        """Seconds until the waiting results are due, ``None`` when none wait."""
        if not self.items:
            return None
        return max(0.0, self.first + self.wait - time.monotonic())

    def flush(self, due_only: bool = False) -> None:
        """Commit the waiting results (only once they are due, with ``due_only``)."""
        if not self.items or (due_only and self.time_left() > 0):
            return
        commit(self.gb, self.state, self.items)
        self.done += len(self.items)
        self.items = []
        self.bar.update(self.done, self.label)


def lock_output(out: str):
    """Hold the output folder for this run (one ``lossutils grade`` per folder); close the
    returned handle to release it."""
    import fcntl

    handle = open(os.path.join(out, ".lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UsageError(
            f"another `lossutils grade` is writing to {out}; wait for it or use another --out"
        ) from None
    return handle
