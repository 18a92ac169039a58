"""``lossutils export canvas|moodle``: the gradebook's points, filled into an LMS grade export.

Both LMSs recommend the same safe practice: export the LMS gradebook, change the grade
columns, import the file back. :func:`fill_template` does the middle step: it reads the
points of every graded submission from an nbgrader gradebook (``lossutils grade`` writes one,
manual grades from nbgrader's formgrader included), matches the students of the export on a
stated key, and writes the points into the matching assignment columns (or one column per
exercise). Every other column, row, quote, line ending and the byte order mark stay as the
LMS wrote them. Students and columns that cannot be matched are reported by name, never
dropped silently.

Layouts, from each LMS's own code and documentation:

* **Canvas** (``GradebookExporter`` / ``GradebookImporter`` in canvas-lms, and the guide "How
  do I import grades in the Gradebook?"): a header row ``Student, ID, [SIS User ID], SIS Login
  ID, [Integration ID], [Root Account], Section, <custom columns>, <Assignment title> (<id>),
  ..., <read-only totals>``; an optional row of posting policies ("Manual Posting"); the row
  ``    Points Possible`` (``(read only)`` under computed columns); then one row per student,
  the test student last. UTF-8, optionally with a byte order mark; ``,`` or, where the
  locale's decimal separator is a comma, ``;``. Students are matched by Canvas ID, SIS User
  ID or SIS Login ID, and a decimal comma is read as a point.
* **Moodle** (``grade/export/txt`` and ``grade/import/csv``, docs "Grade export" / "Grade
  import"): a header row of user fields (``First name``, ``Last name``, ``ID number``,
  ``Institution``, ``Department``, ``Email address``, ... as chosen in the export form), one
  column per grade item named ``<Module>: <item> (Real)`` (``<item> (Real)`` for manual items),
  ``Course total (Real)`` and ``Last downloaded from this course``; one row per student; no
  byte order mark; comma, semicolon, tab or colon separated. The import maps one column to a
  user field (email, username or ID number) and each grade column to a grade item.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field

from ._csvcells import CsvCells, CsvError

__all__ = ["KEYS", "ExportError", "Report", "export", "fill_template", "read_gradebook"]

#: The key options of each LMS: flag value -> the header of the column holding it.
KEYS = {
    "canvas": {
        "sis-login-id": "SIS Login ID",
        "sis-user-id": "SIS User ID",
        "canvas-id": "ID",
        "integration-id": "Integration ID",
    },
    "moodle": {"email": "Email address", "username": "Username", "idnumber": "ID number"},
}
DEFAULT_KEY = {"canvas": "sis-login-id", "moodle": "email"}

# Computed columns of a Canvas export (canvas-lms GradebookImporter's list; "Unposted ..."
# variants and per-group totals contain these words too).
_CANVAS_COMPUTED = ("Current Score", "Current Points", "Current Grade", "Final Score",
                    "Final Points", "Final Grade", "Override Score", "Override Grade",
                    "Override Status")
_CANVAS_STUDENT_COLUMNS = ("Student", "LastName", "FirstName", "ID", "SIS User ID",
                           "SIS Login ID", "Integration ID", "Root Account", "Section")
_CANVAS_TITLE_ID = re.compile(r"^(?P<title>.*\S)\s*\((?P<id>\d+)\)$")
_MOODLE_REAL = re.compile(r"^(?P<item>.*\S)\s*\(Real\)$")


class ExportError(ValueError):
    """Nothing was written: the gradebook or the template cannot be used; the message says why."""


def canonical(name: str) -> str:
    """Letters and digits of ``name``, lower case: how names are compared.

    Examples
    --------
    >>> canonical("03 Cross-Entropy") == canonical("03-cross-entropy")
    True
    """
    return "".join(c for c in unicodedata.normalize("NFKC", name).casefold() if c.isalnum())


def exercise_name(grade_id: str) -> str:
    """The name of an exercise in column titles: a test cell's id without ``test_``.

    Examples
    --------
    >>> exercise_name("test_softmax"), exercise_name("answer-why-nll")
    ('softmax', 'answer-why-nll')
    """
    return grade_id.removeprefix("test_")


@dataclass
class Points:
    """One student's points for an assignment, and per grade cell (name -> (score, max))."""

    score: float
    max_score: float
    cells: dict[str, tuple[float, float]]
    pending: list[str]  # written answers still waiting for a manual grade


def read_gradebook(location: str) -> dict[str, dict[str, Points]]:
    """Every submission's points in an nbgrader gradebook: ``{student: {assignment: Points}}``.

    Parameters
    ----------
    location : str
        A ``lossutils grade`` output folder (its ``gradebook.db``), an SQLite file, or an
        SQLAlchemy URL.

    Raises
    ------
    ExportError
        If there is no gradebook there (a new empty one is never created).
    """
    from nbgrader.api import Gradebook

    from ..grading.masters import COURSE_ID

    if "://" in location:
        url = location
    else:
        path = os.path.join(location, "gradebook.db") if os.path.isdir(location) else location
        if not os.path.isfile(path):
            raise ExportError(
                f"no gradebook at {location}: give the output folder of `lossutils grade` "
                "(it holds gradebook.db), a gradebook .db file or a database URL"
            )
        url = "sqlite:///" + os.path.abspath(path)
    found: dict[str, dict[str, Points]] = {}
    with Gradebook(url, COURSE_ID) as gb:
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                cells, pending = {}, []
                for notebook in submission.notebooks:
                    for grade in notebook.grades:
                        cells[grade.name] = (float(grade.score or 0.0), float(grade.max_score))
                        if grade.needs_manual_grade:
                            pending.append(grade.name)
                found.setdefault(submission.student.id, {})[assignment.name] = Points(
                    float(submission.score or 0.0), float(submission.max_score), cells, pending
                )
    return found


@dataclass
class Report:
    """What :func:`fill_template` did and what it could not match."""

    columns: dict[str, str] = field(default_factory=dict)  # target -> header it filled
    filled: int = 0  # cells written
    students_matched: int = 0
    not_in_file: list[str] = field(default_factory=list)  # graded students absent from the file
    without_grade: list[str] = field(default_factory=list)  # "name (key): target, ..."
    no_column: list[str] = field(default_factory=list)  # targets without a column
    ambiguous: list[str] = field(default_factory=list)  # duplicate keys or columns
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # rows that are not students, by design

    @property
    def unmatched(self) -> bool:
        """True when anything was left unmatched (the command's exit status 1)."""
        return bool(self.not_in_file or self.without_grade or self.no_column or self.ambiguous)


@dataclass
class _Layout:
    """Where things are in a template: header row, student rows, key, name and grade columns."""

    header: list[str]
    student_rows: list[int]
    key_column: int
    name_columns: list[int]
    gradeable: dict[int, list[str]]  # column -> names it may stand for (canonical)
    points_possible: dict[int, str]  # Canvas: column -> points possible as exported
    skipped: list[str]


def _index(header: list[str], name: str, lms: str) -> int:
    try:
        return header.index(name)
    except ValueError:
        raise ExportError(
            f"the {lms} file has no column {name!r} (its columns: "
            f"{', '.join(repr(h) for h in header[:12])}{', ...' if len(header) > 12 else ''}); "
            "choose another --key, or name the column with --key-column"
        ) from None


def _canvas_layout(rows: list[list[str]], key_header: str) -> _Layout:
    header = [h.strip() for h in rows[0]]
    if len(header) < 4 or ("Student" not in header[0] and header[:2] != ["LastName", "FirstName"]):
        raise ExportError(
            "this is not a Canvas gradebook export: its first column should be 'Student' (or "
            "'LastName', 'FirstName'); export the gradebook from Canvas (Grades > Export)"
        )
    key = _index(header, key_header, "Canvas")
    names = [0, 1] if header[:2] == ["LastName", "FirstName"] else [0]
    points_possible: dict[int, str] = {}
    students, skipped = [], []
    sis = [header.index(h) for h in ("SIS User ID", "SIS Login ID") if h in header]
    for i, row in enumerate(rows[1:], start=1):
        if not any(v.strip() for v in row):
            continue
        if "Points Possible" in row[0]:
            points_possible = dict(enumerate(row))
        elif all(re.fullmatch(r"\s*(Muted|Manual Posting.*)?\s*", v, re.I) for v in row):
            continue  # the posting-policy row
        elif row[0].strip() == "Student, Test" and not any(
            row[c].strip() for c in sis if c < len(row)
        ):
            # Canvas's test student (Student View) has no SIS login: never graded by us
            skipped.append("Canvas's test student ('Student, Test')")
        else:
            students.append(i)
    gradeable: dict[int, list[str]] = {}
    for col, title in enumerate(header):
        if title in _CANVAS_STUDENT_COLUMNS or any(word in title for word in _CANVAS_COMPUTED):
            continue
        if "read only" in points_possible.get(col, ""):
            continue
        match = _CANVAS_TITLE_ID.match(title)
        if match:  # custom columns have no id; only assignments can hold points
            gradeable[col] = [canonical(match["title"])]
    return _Layout(header, students, key, names, gradeable, points_possible, skipped)


def _moodle_layout(rows: list[list[str]], key_header: str) -> _Layout:
    header = [h.strip() for h in rows[0]]
    key = _index(header, key_header, "Moodle")
    names = [i for i, h in enumerate(header) if h in ("First name", "Last name", "Surname")]
    students = [i for i, row in enumerate(rows[1:], start=1) if any(v.strip() for v in row)]
    gradeable: dict[int, list[str]] = {}
    for col, title in enumerate(header):
        match = _MOODLE_REAL.match(title)
        if not match or canonical(match["item"]) == "coursetotal":
            continue
        item = match["item"]
        # "<Module>: <item>" for activities; the item's own name may contain ": " too
        candidates = [canonical(item)]
        if ": " in item:
            candidates.append(canonical(item.split(": ", 1)[1]))
        gradeable[col] = candidates
    return _Layout(header, students, key, names, gradeable, {}, [])


def _number_format(rows: list[list[str]], columns, delimiter: str):
    """How the file writes numbers: the decimal separator its grade cells already use."""
    comma = point = 0
    for row in rows[1:]:
        for col in columns:
            value = row[col].strip() if col < len(row) else ""
            comma += bool(re.fullmatch(r"-?\d+,\d+", value))
            point += bool(re.fullmatch(r"-?\d+\.\d+", value))
    decimal = "," if comma > point or (comma == point and delimiter == ";") else "."

    def fmt(value: float) -> str:
        text = f"{round(value, 2):.2f}".rstrip("0").rstrip(".")
        return text.replace(".", decimal)

    return fmt


def fill_template(
    lms: str,
    points: dict[str, dict[str, Points]],
    template: str,
    *,
    key: str | None = None,
    key_column: str | None = None,
    per_exercise: bool = False,
    assignments=None,
    columns: dict[str, str] | None = None,
    delimiter: str | None = None,
) -> tuple[str, Report]:
    """Fill the grade columns of an LMS export with the gradebook's points.

    Parameters
    ----------
    lms : {"canvas", "moodle"}
        Which layout the template has.
    points : dict
        ``{student id: {assignment: Points}}`` (:func:`read_gradebook`).
    template : str
        The LMS export, decoded.
    key : str, optional
        Which LMS column holds the ids of the gradebook (:data:`KEYS`; default
        :data:`DEFAULT_KEY`).
    key_column : str, optional
        The header of that column, when the LMS names it otherwise (a translated Moodle).
    per_exercise : bool
        One column per exercise (``<assignment>: <exercise>``) instead of per assignment.
    assignments : iterable of str, optional
        Export only these assignments (default: every assignment with a submission).
    columns : dict, optional
        Explicit target -> header, for columns whose names do not match.
    delimiter : str, optional
        Field separator; default sniffed.

    Returns
    -------
    text : str
        The template with the grade cells filled.
    report : Report
        What was filled and everything left unmatched.
    """
    key = key or DEFAULT_KEY[lms]
    if key not in KEYS[lms]:
        raise ExportError(f"--key {key!r} is not a {lms} key; use one of {', '.join(KEYS[lms])}")
    try:
        cells = CsvCells(template, delimiter)
    except CsvError as exc:
        raise ExportError(f"the {lms} file is not valid CSV: {exc}") from None
    rows = cells.rows
    if not rows:
        raise ExportError(f"the {lms} file is empty")
    layout = (_canvas_layout if lms == "canvas" else _moodle_layout)(
        rows, key_column or KEYS[lms][key]
    )
    report = Report(skipped=list(layout.skipped))
    targets = _targets(points, assignments, per_exercise)
    where = _place(targets, layout, dict(columns or {}), lms, report)
    report.columns = {t: layout.header[c] for t, c in where.items()}
    _check_points_possible(points, targets, where, layout, report)

    by_key = _rows_by_key(rows, layout, key, cells, report)
    students = {_fold(s, key): s for s in points}
    report.not_in_file = sorted(s for f, s in students.items() if f not in by_key)
    fmt = _number_format(rows, where.values(), cells.delimiter)
    pending: list[str] = []
    for value, found in sorted(by_key.items(), key=lambda kv: kv[1][0]):
        if len(found) > 1:  # reported as ambiguous
            continue
        r = found[0]
        student = students.get(value)
        mine = points.get(student, {}) if student is not None else {}
        missing = []
        for target, col in where.items():
            assignment, cell = targets[target]
            got = mine.get(assignment)
            if got is None or (cell is not None and cell not in got.cells):
                missing.append(target)
                continue
            try:
                cells.set(r, col, fmt(got.cells[cell][0] if cell else got.score))
            except IndexError:
                missing.append(f"{target} (the row is shorter than the header)")
                continue
            report.filled += 1
            waiting = [c for c in got.pending if cell is None or c == cell]
            if waiting:
                pending.append(f"{student} {assignment}: {', '.join(waiting)}")
        report.students_matched += len(missing) < len(where)
        if missing:
            report.without_grade.append(
                f"{_display(rows[r], layout)} ({rows[r][layout.key_column].strip()}): "
                + ", ".join(missing)
            )
    if pending:
        report.warnings.append(
            "written answers not graded by hand yet (counted as 0; grade them in nbgrader's "
            "formgrader and export again): " + "; ".join(pending)
        )
    return cells.render(), report


def _targets(points, assignments, per_exercise: bool) -> dict[str, tuple[str, str | None]]:
    """What to export: target name -> (assignment, grade cell, or None for the assignment)."""
    wanted = sorted({a for per in points.values() for a in per})
    if assignments:
        unknown = sorted(set(assignments) - set(wanted))
        if unknown:
            raise ExportError(
                f"the gradebook has no submissions for {', '.join(unknown)} "
                f"(it has: {', '.join(wanted) or 'none'})"
            )
        wanted = sorted(set(assignments))
    targets: dict[str, tuple[str, str | None]] = {}
    for assignment in wanted:
        if not per_exercise:
            targets[assignment] = (assignment, None)
            continue
        names = sorted({c for per in points.values() if assignment in per
                        for c in per[assignment].cells})
        for cell in names:
            targets[f"{assignment}: {exercise_name(cell)}"] = (assignment, cell)
    return targets


def _place(targets, layout: _Layout, explicit: dict, lms: str, report: Report) -> dict[str, int]:
    """The column of each target: named with --column, else the one whose title matches."""
    where: dict[str, int] = {}
    for target, (assignment, cell) in targets.items():
        if target in explicit:
            header = explicit.pop(target)
            if header not in layout.header:
                raise ExportError(
                    f"--column {target}={header!r}: the {lms} file has no such column"
                )
            where[target] = layout.header.index(header)
            continue
        names = {canonical(target)}
        if cell is not None:
            names.add(canonical(assignment + cell))
        hits = [c for c, titles in layout.gradeable.items() if names & set(titles)]
        if len(hits) == 1:
            where[target] = hits[0]
        elif hits:
            report.ambiguous.append(
                f"{target}: {len(hits)} columns match ("
                + "; ".join(repr(layout.header[c]) for c in hits)
                + f"); choose one with --column '{target}=<column>'"
            )
        else:
            report.no_column.append(target)
    if explicit:
        raise ExportError(
            f"--column names {', '.join(explicit)}, which the gradebook does not export "
            f"(targets: {', '.join(targets) or 'none'})"
        )
    taken: dict[int, list[str]] = {}
    for target, col in where.items():
        taken.setdefault(col, []).append(target)
    for col, names in taken.items():
        if len(names) > 1:
            report.ambiguous.append(
                f"column {layout.header[col]!r} matches {', '.join(names)}; name each with --column"
            )
            for target in names:
                del where[target]
    return where


def _check_points_possible(points, targets, where, layout: _Layout, report: Report) -> None:
    """Warn where Canvas's "Points Possible" differs from the notebook's points."""
    for target, col in where.items():
        possible = layout.points_possible.get(col, "").strip().replace(",", ".")
        assignment, cell = targets[target]
        ours = {p[assignment].cells[cell][1] if cell else p[assignment].max_score
                for p in points.values()
                if assignment in p and (cell is None or cell in p[assignment].cells)}
        try:
            differs = bool(possible and ours) and abs(float(possible) - max(ours)) > 1e-9
        except ValueError:  # not a number (a letter-grade column): Canvas decides
            continue
        if differs:
            report.warnings.append(
                f"{target}: Canvas's 'Points Possible' for {layout.header[col]!r} is "
                f"{possible}, the notebook's maximum is {max(ours):g}"
            )


def _display(row: list[str], layout: _Layout) -> str:
    name = " ".join(row[i].strip() for i in layout.name_columns if i < len(row)).strip()
    return name or "(no name)"


def _rows_by_key(rows, layout: _Layout, key: str, cells: CsvCells, report: Report):
    """Student rows by their (folded) key; rows without a key and repeated keys reported."""
    by_key: dict[str, list[int]] = {}
    for r in layout.student_rows:
        row = rows[r]
        value = row[layout.key_column].strip() if layout.key_column < len(row) else ""
        if not value:
            report.without_grade.append(
                f"{_display(row, layout)} (line {cells.line(r)}): "
                f"no {layout.header[layout.key_column]}"
            )
            continue
        by_key.setdefault(_fold(value, key), []).append(r)
    for found in by_key.values():
        if len(found) > 1:
            report.ambiguous.append(
                f"{layout.header[layout.key_column]} {rows[found[0]][layout.key_column].strip()!r}"
                f" is on {len(found)} rows (lines {', '.join(str(cells.line(r)) for r in found)})"
            )
    return by_key


def _fold(value: str, key: str) -> str:
    # e-mail addresses do not differ by case; the other ids are compared exactly
    return value.strip().casefold() if key == "email" else value.strip()


def export(
    lms: str,
    gradebook: str,
    template: str,
    out: str,
    *,
    encoding: str = "utf-8",
    stream=None,
    **options,
) -> int:
    """Read the gradebook, fill the template, write ``out``, print the report; return the
    exit status (0 everything matched, 1 something unmatched; :class:`ExportError` when
    nothing could be written).

    ``options`` are those of :func:`fill_template`.
    """
    import sys

    stream = stream or sys.stdout
    if os.path.abspath(out) == os.path.abspath(template):
        raise ExportError("--out must not be the template: keep the LMS export as it came")
    try:
        with open(template, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ExportError(f"cannot read the template {template}: {exc.strerror}") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ExportError(
            f"{template} is not {encoding} (byte {raw[exc.start]:#04x} at offset {exc.start}); "
            "pass --encoding with the encoding the LMS exported (for example cp1252)"
        ) from None
    except LookupError:
        raise ExportError(f"unknown --encoding {encoding!r}") from None
    filled, report = fill_template(lms, read_gradebook(gradebook), text, **options)
    with open(out, "wb") as fh:
        fh.write(filled.encode(encoding))
    name = lms.capitalize()
    w = stream.write
    w(f"{name}: {report.filled} grade(s) written for {report.students_matched} student(s)\n")
    for target, header in report.columns.items():
        w(f"  {target} -> {header!r}\n")
    for line in report.skipped:
        w(f"skipped: {line}\n")
    for line in report.warnings:
        w(f"warning: {line}\n")
    for target in report.no_column:
        w(f"unmatched: no column for {target}; name one with --column '{target}=<column>'\n")
    for line in report.ambiguous:
        w(f"unmatched: {line}\n")
    for student in report.not_in_file:
        w(f"unmatched: graded but not in the {name} file: {student}\n")
    for line in report.without_grade:
        w(f"unmatched: in the {name} file without a grade: {line}\n")
    w(f"wrote {out}" + (" (some grades left out: see 'unmatched' above)\n" if report.unmatched
                        else "\n"))
    return 1 if report.unmatched else 0
