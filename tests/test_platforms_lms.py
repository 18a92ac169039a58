"""``lossutils export canvas|moodle``: LMS grade files filled from an nbgrader gradebook.

The templates below are written from each LMS's own exporter and documentation, not from our
code: Canvas from canvas-lms ``lib/gradebook_exporter.rb`` (header ``Student, ID, SIS User ID,
SIS Login ID, Section``, custom columns, ``<title> (<id>)`` per assignment, read-only totals;
an optional posting-policy row; the ``    Points Possible`` row; the test student last; Ruby
CSV quoting; CRLF; the byte order mark of the "include byte order mark" setting) and the
guide "How do I import grades in the Gradebook?"; Moodle from ``grade/export/txt`` and
``lib/csvlib.class.php`` (user fields, ``<Module>: <item> (Real)`` columns, ``Course total
(Real)``, ``Last downloaded from this course``; PHP ``fputcsv``, which quotes any field with a
space; LF; no byte order mark) and the docs "Grade import". The gradebooks are made with
nbgrader's own API, so these tests need no grading run (tests/test_platforms.py fills the
files from a real one).
"""

import csv
import io
import os
import sys
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lossutils.cli import main
from lossutils.platforms._csvcells import CsvCells, sniff_delimiter
from lossutils.platforms.lms import ExportError, fill_template, read_gradebook

# ------------------------------------------------------------------ gradebook (nbgrader's API)

CELLS = {  # assignment -> [(grade cell, points, autograded)]
    "00-fixture": [("test_l2_loss", 2, True), ("test_softmax", 3, True), ("a-shift", 1, False)],
    "02-extra": [("test_extra", 4, True)],
}
# student -> assignment -> grade cell -> score (None: a written answer not graded yet)
SCORES = {
    "ada": {"00-fixture": {"test_l2_loss": 2, "test_softmax": 3, "a-shift": 1},
            "02-extra": {"test_extra": 4}},
    "bob": {"00-fixture": {"test_l2_loss": 0, "test_softmax": 3, "a-shift": None}},
    "zoe": {"00-fixture": {"test_l2_loss": 2, "test_softmax": 0, "a-shift": 0}},
}
# the same students under the ids a Moodle export is matched on, and one with half a point
EMAILS = {f"{s}@example.org": per for s, per in SCORES.items()}
OTHERS = {"S-001": SCORES["ada"],
          "half": {"00-fixture": {"test_l2_loss": 2, "test_softmax": 0.5, "a-shift": 1}}}


def make_gradebook(folder, scores) -> str:
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    path = folder / "gradebook.db"
    # nbgrader's add_submission makes SQLAlchemy warn about its autoflush; the rows are right
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{path}", "lossutils") as gb:
        warnings.simplefilter("ignore", SAWarning)
        for assignment, cells in CELLS.items():
            gb.add_assignment(assignment)
            gb.add_notebook(assignment, assignment)
            for name, points, auto in cells:
                gb.add_grade_cell(name, assignment, assignment, max_score=points,
                                  cell_type="code" if auto else "markdown")
                if not auto:
                    gb.add_solution_cell(name, assignment, assignment)
        for student, per in scores.items():
            gb.add_student(student)
            for assignment, cells in per.items():
                gb.add_submission(assignment, student)
                for name, score in cells.items():
                    grade = gb.find_grade(name, assignment, assignment, student)
                    auto = dict((n, a) for n, _, a in CELLS[assignment])[name]
                    if auto:
                        grade.auto_score = score
                    else:
                        grade.manual_score = score
                    grade.needs_manual_grade = score is None
                gb.db.commit()
    return str(folder)


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory):
    """One gradebook for the module (a new one costs an `alembic` run): every id variant."""
    with pytest.MonkeyPatch.context() as mp:
        # a new nbgrader gradebook runs the `alembic` command of this environment (the
        # Makefile puts it on PATH; a bare pytest may not)
        mp.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        return make_gradebook(tmp_path_factory.mktemp("gradebook"),
                              {**SCORES, **EMAILS, **OTHERS})


def points_of(gradebook, students):
    return {s: p for s, p in read_gradebook(gradebook).items() if s in students}


def test_read_gradebook_sums_auto_and_manual_points(gradebook):
    points = read_gradebook(gradebook)
    assert set(points) == {*SCORES, *EMAILS, *OTHERS}
    assert points["ada"]["00-fixture"].score == 6  # 2 + 3 + a written answer graded 1
    assert points["bob"]["00-fixture"].score == 3
    assert points["bob"]["00-fixture"].pending == ["a-shift"]
    assert points["ada"]["00-fixture"].max_score == 6
    assert points["ada"]["02-extra"].cells == {"test_extra": (4.0, 4.0)}


def test_no_gradebook_is_an_error_and_none_is_created(tmp_path):
    with pytest.raises(ExportError, match="no gradebook at"):
        read_gradebook(str(tmp_path))
    assert not (tmp_path / "gradebook.db").exists()


# ------------------------------------------------------------------ Canvas

CANVAS_HEADER = (
    "Student,ID,SIS User ID,SIS Login ID,Section,Notes,00-fixture (4711),Reading quiz (4712),"
    "Assignments Current Score,Assignments Unposted Current Score,Assignments Final Score,"
    "Assignments Unposted Final Score,Current Score,Unposted Current Score,Final Score,"
    "Unposted Final Score,Current Grade,Unposted Current Grade,Final Grade,Unposted Final Grade"
)
RO = ",".join(["(read only)"] * 12)
CANVAS = (
    "\ufeff" + CANVAS_HEADER + "\r\n"
    # posting-policy row: nil under the student and custom columns, the policy per assignment
    + ",,,,,,Manual Posting,,,,,,,,,,,,,\r\n"
    + "    Points Possible,,,,,,6.00,10.00," + RO + "\r\n"
    + '"Lovelace, Ada",101,S-001,ada,Section A,"likes ""proofs""",,9.50,95.00,95.00,59.38,'
    "59.38,95.00,95.00,59.38,59.38,A,A,F,F\r\n"
    + '"Byron, Bob",102,S-002,bob,Section A,,1.00,7.00,70.00,70.00,50.00,50.00,70.00,70.00,'
    "50.00,50.00,C,C,F,F\r\n"
    + '"Carroll, Carol",103,S-003,carol,"Section A and Section B",,,,,,,,,,,,,,,\r\n'
    + '"Student, Test",999,,,Section A,,,,,,,,,,,,,,,\r\n'
)


def canvas_expected(ada: str, bob: str) -> str:
    """The Canvas template with only the two 00-fixture cells of Ada and Bob changed."""
    return (
        CANVAS.replace('"likes ""proofs""",,9.50', f'"likes ""proofs""",{ada},9.50')
        .replace("Section A,,1.00,7.00", f"Section A,,{bob},7.00")
    )


def test_canvas_template_is_well_formed():
    rows = list(csv.reader(io.StringIO(CANVAS.lstrip("\ufeff"), newline="")))
    assert {len(r) for r in rows} == {20}


def test_canvas_fills_the_assignment_column_and_nothing_else(gradebook):
    text, report = fill_template("canvas", points_of(gradebook, SCORES), CANVAS)
    assert text == canvas_expected("6", "3")  # BOM, CRLF, quoting, other rows all kept
    assert report.columns == {"00-fixture": "00-fixture (4711)"}
    assert report.not_in_file == ["zoe"]
    assert report.no_column == ["02-extra"]
    assert [line.split(" (")[0] for line in report.without_grade] == ["Carroll, Carol"]
    assert report.skipped == ["Canvas's test student ('Student, Test')"]
    assert any("a-shift" in w and "bob" in w for w in report.warnings)  # not graded by hand yet
    assert report.unmatched


def test_canvas_other_keys_and_explicit_columns(gradebook):
    points = points_of(gradebook, SCORES)
    # SIS User ID holds ids the gradebook does not know: nobody matches, everybody is named
    _, report = fill_template("canvas", points, CANVAS, key="sis-user-id",
                              assignments=["00-fixture"])
    assert report.filled == 0
    assert sorted(report.not_in_file) == ["ada", "bob", "zoe"]
    assert len(report.without_grade) == 3
    # an explicit column wins over names
    text, report = fill_template("canvas", points, CANVAS, columns={"00-fixture": "Notes"},
                                 assignments=["00-fixture"])
    assert report.columns == {"00-fixture": "Notes"}
    assert '"Lovelace, Ada",101,S-001,ada,Section A,"6",,9.50' in text  # quoted as it was


def test_canvas_per_exercise_columns(gradebook):
    template = (
        "Student,ID,SIS User ID,SIS Login ID,Section,00-fixture: l2_loss (1),"
        "00 Fixture - Softmax (2),00-fixture: a-shift (3)\n"
        "    Points Possible,,,,,2.00,3.00,1.00\n"
        "\"Lovelace, Ada\",101,S-001,ada,A,,,\n"
        "\"Byron, Bob\",102,S-002,bob,A,,,\n"
    )
    text, report = fill_template("canvas", points_of(gradebook, SCORES), template,
                                 per_exercise=True, assignments=["00-fixture"])
    assert text.splitlines()[2:] == ['"Lovelace, Ada",101,S-001,ada,A,2,3,1',
                                     '"Byron, Bob",102,S-002,bob,A,0,3,0']
    assert report.no_column == []
    assert report.warnings
    assert "bob 00-fixture: a-shift" in report.warnings[0]


def test_canvas_points_possible_that_differ_are_a_warning(gradebook):
    template = CANVAS.replace("6.00,10.00", "7.00,10.00")
    _, report = fill_template("canvas", points_of(gradebook, SCORES), template)
    assert any("Points Possible" in w and "7.00" in w and "6" in w for w in report.warnings)


def test_canvas_semicolons_and_decimal_commas(gradebook):
    points = points_of(gradebook, ["half"])
    # a German-locale export: ';' separated, decimal commas (canvas-lms CSVWithI18n)
    template = (
        "Student;ID;SIS User ID;SIS Login ID;Section;00-fixture (4711)\r\n"
        "    Points Possible;;;;;6,00\r\n"
        "\"Lovelace, Ada\";101;S-001;half;A;2,50\r\n"
    )
    text, _ = fill_template("canvas", points, template)
    assert text.endswith("\"Lovelace, Ada\";101;S-001;half;A;3,5\r\n")


def test_an_ambiguous_column_or_key_is_reported_and_left_alone(gradebook):
    template = (
        "Student,ID,SIS User ID,SIS Login ID,Section,00-fixture (1),00 fixture (2)\n"
        "\"Lovelace, Ada\",101,S-001,ada,A,,\n"
        "\"Lovelace, Ada (2)\",105,S-005,ada,A,,\n"
    )
    text, report = fill_template("canvas", points_of(gradebook, SCORES), template)
    assert text == template
    assert any("2 columns match" in a for a in report.ambiguous)
    assert report.unmatched


def test_not_a_canvas_file(gradebook):
    with pytest.raises(ExportError, match="not a Canvas gradebook export"):
        fill_template("canvas", points_of(gradebook, SCORES), "Name,Email\nAda,a@b\n")
    with pytest.raises(ExportError, match="no column 'SIS Login ID'"):
        fill_template("canvas", points_of(gradebook, SCORES), "Student,ID,Section,X (1)\n")


# ------------------------------------------------------------------ Moodle

MOODLE = (
    '"First name","Last name","ID number",Institution,Department,"Email address",'
    '"Assignment: 00-fixture (Real)","Quiz: Reading quiz (Real)","Course total (Real)",'
    '"Last downloaded from this course"\n'
    "Ada,Lovelace,S-001,FAU,CS,Ada@Example.org,-,8.00,8.00,1764000000\n"
    "Bob,Byron,S-002,FAU,CS,bob@example.org,1.00,-,1.00,1764000000\n"
    'Carol,Carroll,S-003,"FAU Erlangen",CS,carol@example.org,-,-,-,1764000000\n'
)


def test_moodle_fills_the_real_column_only(gradebook):
    text, report = fill_template("moodle", points_of(gradebook, EMAILS), MOODLE)
    assert text == (
        MOODLE.replace("Ada@Example.org,-,8.00", "Ada@Example.org,6,8.00")
        .replace("bob@example.org,1.00,-", "bob@example.org,3,-")
    )  # e-mail matched whatever the case; "Course total" and the timestamp untouched
    assert report.columns == {"00-fixture": "Assignment: 00-fixture (Real)"}
    assert report.not_in_file == ["zoe@example.org"]
    assert report.no_column == ["02-extra"]
    assert [w.split(" ")[0] for w in report.without_grade] == ["Carol"]


def test_moodle_idnumber_key_and_tabs(gradebook):
    points = points_of(gradebook, ["S-001"])
    template = MOODLE.replace(",", "\t").replace('"', "")
    text, report = fill_template("moodle", points, template, key="idnumber",
                                 assignments=["00-fixture"])
    assert "Ada\tLovelace\tS-001\tFAU\tCS\tAda@Example.org\t6\t8.00" in text
    assert report.filled == 1


def test_moodle_translated_headers_need_the_key_column(gradebook):
    template = MOODLE.replace("Email address", "E-Mail-Adresse").replace("Assignment:", "Aufgabe:")
    with pytest.raises(ExportError, match="no column 'Email address'"):
        fill_template("moodle", points_of(gradebook, EMAILS), template)
    text, report = fill_template("moodle", points_of(gradebook, EMAILS), template,
                                 key_column="E-Mail-Adresse", assignments=["00-fixture"])
    assert report.columns == {"00-fixture": "Aufgabe: 00-fixture (Real)"}
    assert "Ada@Example.org,6,8.00" in text


# ------------------------------------------------------------------ the command


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_export_command_writes_the_file_and_exits_1_when_something_is_unmatched(
    gradebook, tmp_path, capsys
):
    template = tmp_path / "canvas.csv"
    template.write_bytes(CANVAS.encode("utf-8"))
    out = tmp_path / "import.csv"
    code, text, _ = run_cli(["export", "canvas", gradebook, "--template", str(template),
                             "--out", str(out)], capsys)
    assert code == 1
    assert out.read_bytes() == canvas_expected("6", "3").encode("utf-8")
    assert template.read_bytes() == CANVAS.encode("utf-8")
    for expected in ("graded but not in the Canvas file: zoe", "no column for 02-extra",
                     "without a grade: Carroll, Carol (carol): 00-fixture"):
        assert expected in text


def test_export_command_exits_0_when_everything_matched(gradebook, tmp_path, capsys):
    template = tmp_path / "canvas.csv"
    students = sorted(read_gradebook(gradebook))
    template.write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section,00-fixture (4711)\r\n"
        + "".join(f"{s},{i},,{s},A,\r\n" for i, s in enumerate(students)),
        encoding="utf-8", newline="",
    )
    out = tmp_path / "import.csv"
    code, text, _ = run_cli(["export", "canvas", gradebook, "--template", str(template), "--out",
                             str(out), "--assignment", "00-fixture"], capsys)
    assert code == 0, text
    assert "unmatched" not in text
    assert f"{len(students)} grade(s) written" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key", "email"], "--key 'email' is not a canvas key"),
        (["--column", "00-fixture"], "write TARGET=HEADER"),
        (["--column", "00-fixture=Nope"], "has no such column"),
        (["--assignment", "99-none"], "no submissions for 99-none"),
        (["--encoding", "nope"], "unknown --encoding"),
    ],
)
def test_export_command_usage_errors_exit_2_and_write_nothing(gradebook, tmp_path, capsys,
                                                              args, message):
    template = tmp_path / "canvas.csv"
    template.write_text(CANVAS, encoding="utf-8")
    out = tmp_path / "import.csv"
    code, _, err = run_cli(["export", "canvas", gradebook, "--template", str(template),
                            "--out", str(out), *args], capsys)
    assert code == 2
    assert message in err
    assert not out.exists()


def test_export_refuses_a_template_that_is_not_utf8_or_its_own_output(gradebook, tmp_path,
                                                                      capsys):
    template = tmp_path / "moodle.csv"
    template.write_bytes(MOODLE.replace("FAU Erlangen", "Universit\xe4t").encode("cp1252"))
    code, _, err = run_cli(["export", "moodle", gradebook, "--template", str(template),
                            "--out", str(tmp_path / "o.csv")], capsys)
    assert code == 2
    assert "is not utf-8 (byte 0xe4" in err
    assert "--encoding" in err
    code, _, err = run_cli(["export", "moodle", gradebook, "--template", str(template),
                            "--out", str(template)], capsys)
    assert code == 2
    assert "must not be the template" in err


# ------------------------------------------------------------------ the CSV layer


def test_csv_cells_keep_what_they_do_not_change():
    text = 'a,"b\r\nc",d\rx,"y""z",\n"q"'  # quoted newline, CR and LF endings, no final newline
    cells = CsvCells(text, ",")
    assert cells.rows == [["a", "b\r\nc", "d"], ["x", 'y"z', ""], ["q"]]
    assert cells.render() == text
    cells.set(1, 2, "1,5")  # needs quotes
    cells.set(2, 0, "r")  # was quoted: stays quoted
    assert cells.render() == 'a,"b\r\nc",d\rx,"y""z","1,5"\n"r"'


def test_csv_cells_reject_broken_quoting():
    from lossutils.platforms._csvcells import CsvError

    with pytest.raises(CsvError, match="never closed"):
        CsvCells('a,"b\nc\n', ",")
    with pytest.raises(CsvError, match="after the closing quote"):
        CsvCells('a,"b"c\n', ",")


# no lone "\r": the csv module writes it unquoted, and then reads its own output differently
fields = st.text(alphabet=st.sampled_from(list('ab ,;"\n\t1.')), max_size=6)


@given(
    st.lists(st.lists(fields, min_size=1, max_size=4), min_size=1, max_size=5),
    st.sampled_from([",", ";", "\t"]),
    st.sampled_from(["\r\n", "\n"]),
    st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
)
def test_csv_cells_read_what_the_csv_module_writes_and_give_it_back(rows, delimiter, newline,
                                                                    quoting):
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=newline, quoting=quoting).writerows(rows)
    text = buf.getvalue()
    cells = CsvCells(text, delimiter)
    assert cells.render() == text
    assert cells.rows == list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def test_sniffed_delimiters():
    assert sniff_delimiter(CANVAS) == ","
    assert sniff_delimiter(MOODLE.replace(",", ";")) == ";"
    assert sniff_delimiter(MOODLE.replace(",", "\t")) == "\t"
