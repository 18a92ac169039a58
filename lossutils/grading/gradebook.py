"""Write worker results into nbgrader's gradebook, as nbgrader's autograde would.

Only the coordinator calls this. Scores and comments go where ``SaveAutoGrades`` puts them
(``auto_score``, ``needs_manual_grade``, ``auto_comment``); a manual score a grader already gave
is never overwritten, so regrading after manual grading keeps the human's work. Submissions with
a problem are marked ``flagged`` so they stand out in formgrader.

Results are written in batches, one transaction per batch, through nbgrader's own ORM classes
(so the rows are exactly those of ``Gradebook.add_submission``), but without its per-call
commits and per-cell queries: stock calls cost about 80 ms and three commits per notebook, which
would cap a run at about twelve notebooks a second however many workers feed it.
"""

from __future__ import annotations

import warnings

__all__ = ["record_results"]


def _timestamp(text: str | None):
    if not text:
        return None
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(text)
    except (ValueError, OverflowError):
        return None


#: Most values in one SQL ``IN (...)`` list (SQLite allows 32,766 parameters per statement).
IN_LIMIT = 500


def _chunks(items):
    items, size = sorted(items), IN_LIMIT
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Writer:
    """One batch: the rows it loaded or created, so nothing is looked up twice.

    Everything the batch touches that already exists is loaded up front in a few ``IN``
    queries, and new rows are only added to the session, so no query runs between the first
    change and the commit (nbgrader's calls flush the session before every query).
    """

    def __init__(self, gb):
        self.gb = gb
        self.db = gb.db
        self.assignments: dict = {}
        self.students: dict = {}
        #: (assignment, student) -> (submission row,
        #: {notebook name: (submitted notebook, {cell: grade}, {cell: comment})})
        self.submissions: dict = {}

    def preload(self, keys: set) -> None:
        """Load the students and submissions of these ``(assignment, student)`` pairs."""
        from nbgrader.api import (
            Assignment,
            BaseCell,
            Comment,
            Grade,
            Notebook,
            Student,
            SubmittedAssignment,
            SubmittedNotebook,
        )

        by_id = {}
        for chunk in _chunks({student for _, student in keys}):
            for student in self.db.query(Student).filter(Student.id.in_(chunk)):
                self.students[student.id] = student
            for row, name in (
                self.db.query(SubmittedAssignment, Assignment.name)
                .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id)
                .filter(SubmittedAssignment.student_id.in_(chunk))
            ):
                if (name, row.student_id) in keys:
                    by_id[row.id] = {}
                    self.submissions[name, row.student_id] = (row, by_id[row.id])
        notebooks = {}
        for chunk in _chunks(by_id):
            for nb, name in (
                self.db.query(SubmittedNotebook, Notebook.name)
                .join(Notebook, Notebook.id == SubmittedNotebook.notebook_id)
                .filter(SubmittedNotebook.assignment_id.in_(chunk))
            ):
                notebooks[nb.id] = by_id[nb.assignment_id][name] = (nb, {}, {})
        for model, slot in ((Grade, 1), (Comment, 2)):
            for chunk in _chunks(notebooks):
                for item, cell in (
                    self.db.query(model, BaseCell.name)
                    .join(BaseCell, BaseCell.id == model.cell_id)
                    .filter(model.notebook_id.in_(chunk))
                ):
                    notebooks[item.notebook_id][slot][cell] = item

    def student(self, name: str):
        from nbgrader.api import Student

        if name not in self.students:
            self.students[name] = Student(id=name)
            self.db.add(self.students[name])
        return self.students[name]

    def assignment(self, name: str):
        if name not in self.assignments:
            self.assignments[name] = self.gb.find_assignment(name)
        return self.assignments[name]

    def submission(self, assignment: str, student: str, when) -> dict:
        """``{notebook name: (submitted notebook, {cell: grade}, {cell: comment})}``."""
        key = (assignment, student)
        if key not in self.submissions:
            self.submissions[key] = self._add(assignment, student)
        row, notebooks = self.submissions[key]
        if when is not None:
            row.timestamp = when
        return notebooks

    def _add(self, assignment: str, student: str):
        """A new submission mirroring the assignment, as ``Gradebook.add_submission`` builds it."""
        from nbgrader.api import Comment, Grade, SubmittedAssignment, SubmittedNotebook

        master = self.assignment(assignment)
        row = SubmittedAssignment(assignment=master, student=self.student(student))
        notebooks = {}
        for notebook in master.notebooks:
            nb = SubmittedNotebook(notebook=notebook, assignment=row)
            grades, comments = {}, {}
            for cell in notebook.grade_cells:
                grades[cell.name] = Grade(cell_id=cell.id, notebook=nb)
            for cell in notebook.solution_cells:
                comments[cell.name] = Comment(cell_id=cell.id, notebook=nb)
            for cell in notebook.task_cells:
                comments[cell.name] = Comment(cell_id=cell.id, notebook=nb)
                grades[cell.name] = Grade(cell_id=cell.id, notebook=nb)
            notebooks[notebook.name] = (nb, grades, comments)
        self.db.add(row)
        return row, notebooks

    def record(self, result: dict, timestamp: str | None) -> None:
        from nbgrader.api import MissingEntry

        notebooks = self.submission(
            result["assignment"], result["student"], _timestamp(timestamp)
        )
        if result["notebook"] not in notebooks:
            raise MissingEntry(
                f"the gradebook's assignment {result['assignment']} has no notebook "
                f"{result['notebook']}"
            )
        nb, grades, comments = notebooks[result["notebook"]]
        for cell in result["cells"]:
            grade = grades[cell["grade_id"]]
            grade.auto_score = cell["score"]
            grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
            if cell["kind"] == "manual":
                comments[cell["grade_id"]].auto_comment = cell["comment"]
        nb.flagged = result["status"] != "ok"


def record_results(gb, batch) -> None:
    """Store graded notebooks in an open :class:`nbgrader.api.Gradebook`, in one transaction.

    Either every result of the batch is committed or (on any error, which is raised) none is.

    Parameters
    ----------
    gb : nbgrader.api.Gradebook
        The gradebook, already holding the assignments (see
        :func:`lossutils.grading.masters.load_master`).
    batch : iterable of (dict, str or None)
        Pairs of a result of :func:`lossutils.grading.worker.grade_submission` (its ``student``,
        ``assignment``, ``notebook``, ``status`` and ``cells`` are used) and the submission
        time from nbgrader's ``timestamp.txt``. A student may appear more than once.
    """
    from sqlalchemy.exc import SAWarning

    batch = list(batch)
    writer = _Writer(gb)
    try:
        with warnings.catch_warnings(), gb.db.no_autoflush:
            # SQLAlchemy warns when a flush meets a half-built submission (nbgrader's own
            # add_submission triggers the same warning); the rows committed are complete.
            warnings.simplefilter("ignore", SAWarning)
            writer.preload({(result["assignment"], result["student"]) for result, _ in batch})
            for result, timestamp in batch:
                writer.record(result, timestamp)
        gb.db.commit()
    except BaseException:
        gb.db.rollback()
        raise
