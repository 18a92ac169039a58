"""Tests of the grading pipeline on a fixture master (tests/fixtures/grading).

The fixture follows the course's notebook conventions with two autograded exercises and one
written answer; its test cells call a stand-in ``check`` with the real checkers' message format,
so these tests do not depend on the state of the real notebooks. Expected scores are derived
here from the fixture's own cell metadata, never from a grading run.
"""

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from lossutils.grading.discover import UsageError, find_submissions
from lossutils.grading.masters import load_master
from lossutils.grading.problems import Problem
from lossutils.grading.progress import Progress
from lossutils.grading.report import student_rows
from lossutils.grading.state import State
from lossutils.grading.task import Result
from lossutils.grading.worker import grade_submission
from tests.conftest import (
    ASSIGNMENT,
    MASTER,
    SOURCE,
    VENV_BIN,
    fixture_points,
    fixture_task,
    free_port,
    unsandboxed_flag,
)


def _expected() -> dict[str, tuple[float, str]]:
    p = fixture_points()
    total = sum(p.values())
    l2, sm = p["test_l2_loss"], p["test_softmax"]
    return {
        "correct": (total, "ok"),
        "untouched": (0.0, "ok"),
        "mistake-1": (total - l2, "ok"),  # l2_loss without the 1/2
        "mistake-2": (total - sm, "ok"),  # softmax without the max shift
        "infinite-loop": (total - l2, "timeout"),  # l2_loss's cell never finishes
        "kernel-dies": (0.0, "kernel-died"),  # dies in the first exercise, before any test
        "corrupt-json": (0.0, "unreadable"),
        "invalid-utf8": (0.0, "unreadable"),
        "missing-notebook": (0.0, "missing-notebook"),
        "deleted-test-cell": (total, "test-cell-restored"),
        "edited-test-cell": (total, "test-cell-restored"),
        "warns": (total, "ok"),  # correct code that prints a UserWarning keeps its points
        "not-a-notebook": (0.0, "wrong-format"),
    }


def _write_samples(folder: Path) -> None:
    from lossutils.grading.samples import generate_samples

    generate_samples(str(SOURCE), str(folder))
    correct = json.loads((folder / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())
    for cell in correct["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "l2_loss":
            source = "".join(cell["source"])
            cell["source"] = source.replace(
                "    return",
                "    import warnings\n"
                "    warnings.warn('this API is deprecated', UserWarning)\n    return",
                1,
            )
    (folder / "warns" / ASSIGNMENT).mkdir(parents=True)
    (folder / "warns" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").write_text(json.dumps(correct))
    (folder / "not-a-notebook" / ASSIGNMENT).mkdir(parents=True)
    (folder / "not-a-notebook" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").write_text("[1, 2, 3]")


# ---------------------------------------------------------------- fast unit tests, no kernels


BAD_UTF8 = b'{"nbformat": 4, "cells": [], "x": "\xff"}'


@pytest.mark.parametrize(
    ("content", "code", "detail"),
    [
        (b'{"cells": [', "unreadable", r"corrupt JSON: .* \(line 1, column 12\)"),
        (
            BAD_UTF8,
            "unreadable",
            rf"not valid UTF-8 \(byte 0xff at offset {BAD_UTF8.index(0xFF)}\)",
        ),
        (b"[1, 2]", "wrong-format", r"not a Jupyter notebook \(top level is a JSON list"),
        (
            b'{"nbformat": 2, "worksheets": []}',
            "wrong-format",
            r"unsupported notebook format "
            r"version 2",
        ),
        (
            b'{"nbformat": 4, "nbformat_minor": 5, "cells": 7}',
            "wrong-format",
            r"invalid notebook structure",
        ),
    ],
)
def test_unreadable_files_get_a_reason_and_zero(tmp_path, content, code, detail):
    path = tmp_path / "nb.ipynb"
    path.write_bytes(content)
    result = grade_submission(fixture_task(path))
    assert result.status == code
    assert pytest.approx(result.score) == 0.0
    assert result.max_score == sum(fixture_points().values()) + 1.0  # + the written answer
    [problem] = result.problems
    assert problem.code == code
    assert re.search(detail, problem.detail), problem.detail


def test_too_large_and_missing_files(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_bytes(b" " * 200)
    big = grade_submission(fixture_task(path, max_bytes=100))
    assert big.status == "unreadable"
    assert big.problems[0].detail == "the file is 200 bytes, over the 100-byte limit"
    missing = grade_submission(fixture_task(None))
    assert missing.status == "missing-notebook"
    assert all(c.score == 0.0 for c in missing.cells)


def test_load_master_reads_points_and_hides_nothing():
    master = load_master(ASSIGNMENT, str(SOURCE)).notebooks[ASSIGNMENT]
    graded = {c.name: c.points for c in master.cells if c.grade}
    assert graded == {**fixture_points(), "a-shift": 1.0}
    test = next(c for c in master.cells if c.name == "test_l2_loss")
    # the grader restores the hidden tests; the release text has none
    assert "hidden=True" in test.source
    assert "hidden=True" not in test.release_source


@pytest.mark.grading
def test_gradebook_schema_version_read_in_process_matches_alembic(monkeypatch):
    import nbgrader.api

    from lossutils.grading import _patches

    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    stock = (_patches._STOCK_ALEMBIC_VERSION or [nbgrader.api.get_alembic_version])[0]
    assert stock is not _patches.alembic_head
    assert _patches.alembic_head() == stock()


def test_head_revision_of_a_migration_folder(tmp_path):
    from lossutils.grading._patches import head_revision

    def migration(name, revision, down):
        down = "None" if down is None else f"'{down}'"
        (tmp_path / f"{name}.py").write_text(
            f'"""{name}"""\nrevision = "{revision}"\ndown_revision = {down}\n'
        )

    migration("first", "aa01", None)
    migration("second", "bb02", "aa01")
    migration("third", "cc03", "bb02")
    assert head_revision(str(tmp_path)) == "cc03"
    migration("branch", "dd04", "bb02")  # two heads: not ours to choose
    assert head_revision(str(tmp_path)) is None
    (tmp_path / "branch.py").write_text("revision = compute()\n")  # unreadable: ask alembic
    assert head_revision(str(tmp_path)) is None


def test_find_submissions_layouts(tmp_path):
    masters = {"a1": ["a1"], "a2": ["a2"]}
    nested = tmp_path / "submitted"
    (nested / "ada" / "a1").mkdir(parents=True)
    (nested / "ada" / "a1" / "a1.ipynb").write_text("{}")
    (nested / "bob" / "a1").mkdir(parents=True)  # folder without the notebook
    (nested / "bob" / "zz").mkdir(parents=True)  # no master for it
    entries, notes = find_submissions(str(nested), masters)
    assert [(e.student, e.path is not None) for e in entries] == [
        ("ada", True),
        ("bob", False),
    ]
    assert notes == ["skipped folders with no master: zz"]

    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "carol.ipynb").write_text("{}")
    with pytest.raises(UsageError, match="the assignment is ambiguous; pass --assignment"):
        find_submissions(str(flat), masters)
    entries, notes = find_submissions(str(flat), masters, "a2")
    assert [(e.student, e.assignment) for e in entries] == [("carol", "a2")]
    entries, notes = find_submissions(str(flat), {"a1": ["a1"]})
    assert notes[0].startswith("flat folder: assuming assignment a1 (the only master is a1)")
    with pytest.raises(UsageError, match="no master for assignment 'a9'"):
        find_submissions(str(flat), masters, "a9")


def test_state_replaces_and_student_rows_sum():
    state = State(":memory:")
    base = {
        "assignment": "a1",
        "notebook": "a1",
        "max_score": 5.0,
        "problems": [],
        "status": "ok",
        "cells": [],
    }
    state.put(dict(base, student="ada", score=1.0), "k1")
    state.put(dict(base, student="ada", score=4.0), "k2")  # a regrade replaces, never adds
    state.put(
        dict(
            base,
            student="bob",
            score=0.0,
            status="timeout",
            problems=[{"code": "timeout", "detail": "cell 3 ran too long"}],
        ),
        "k3",
    )
    results = list(state.results())
    assert [(r["student"], r["score"]) for r in results] == [("ada", 4.0), ("bob", 0.0)]
    rows = student_rows(results, ["a1"])
    assert rows[0]["total"] == "4"
    assert rows[0]["status"] == "ok"
    assert rows[1]["status"] == "timeout"
    assert rows[1]["reason"] == "a1: cell 3 ran too long"


def _record_with_nbgraders_api(gb, result, timestamp):
    """The reference for the gradebook writer: nbgrader's own calls, one result at a time."""
    student, assignment, notebook = result["student"], result["assignment"], result["notebook"]
    from sqlalchemy.exc import SAWarning

    gb.update_or_create_student(student)
    extra = {"timestamp": timestamp} if timestamp else {}
    with warnings.catch_warnings():  # nbgrader's add_submission flushes a half-built row
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_submission(assignment, student, **extra)
    for cell in result["cells"]:
        grade = gb.find_grade(cell["grade_id"], notebook, assignment, student)
        grade.auto_score = cell["score"]
        grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        if cell["kind"] == "manual":
            comment = gb.find_comment(cell["grade_id"], notebook, assignment, student)
            comment.auto_comment = cell["comment"]
    gb.find_submission_notebook(notebook, assignment, student).flagged = result["status"] != "ok"
    gb.db.commit()


def _gradebook_rows(path):
    """Everything a grade run writes, keyed by names instead of the random row ids."""
    db = sqlite3.connect(path)
    joins = (
        "JOIN submitted_notebook sn ON x.notebook_id = sn.id "
        "JOIN notebook n ON sn.notebook_id = n.id "
        "JOIN submitted_assignment sa ON sn.assignment_id = sa.id "
        "JOIN assignment a ON sa.assignment_id = a.id "
        "JOIN base_cell c ON x.cell_id = c.id"
    )
    try:
        return {
            "students": sorted(db.execute("SELECT id FROM student")),
            "submissions": sorted(
                db.execute(
                    "SELECT sa.student_id, a.name, sa.timestamp FROM submitted_assignment sa "
                    "JOIN assignment a ON sa.assignment_id = a.id"
                )
            ),
            "notebooks": sorted(
                db.execute(
                    "SELECT sa.student_id, a.name, n.name, sn.flagged FROM submitted_notebook sn "
                    "JOIN notebook n ON sn.notebook_id = n.id "
                    "JOIN submitted_assignment sa ON sn.assignment_id = sa.id "
                    "JOIN assignment a ON sa.assignment_id = a.id"
                )
            ),
            "grades": sorted(
                db.execute(
                    "SELECT sa.student_id, a.name, n.name, c.name, x.auto_score, x.manual_score, "
                    f"x.needs_manual_grade, x.extra_credit FROM grade x {joins}"
                )
            ),
            "comments": sorted(
                db.execute(
                    "SELECT sa.student_id, a.name, n.name, c.name, x.auto_comment, "
                    f"x.manual_comment FROM comment x {joins}"
                ),
                key=repr,
            ),
        }
    finally:
        db.close()


def test_batched_gradebook_writes_equal_nbgraders_own_calls(tmp_path, monkeypatch):
    from nbgrader.api import Gradebook

    from lossutils.grading import gradebook
    from lossutils.grading.gradebook import record_results
    from lossutils.grading.masters import COURSE_ID

    monkeypatch.setattr(gradebook, "IN_LIMIT", 2)  # the batches below span several IN lists

    source = tmp_path / "source"
    shutil.copytree(SOURCE / ASSIGNMENT, source / ASSIGNMENT)
    other = source / "01-other"
    other.mkdir()
    shutil.copy(MASTER, other / "01-other.ipynb")
    master_db = tmp_path / "master.db"
    cells = {}
    for name in (ASSIGNMENT, "01-other"):
        info = load_master(name, str(source), f"sqlite:///{master_db}")
        cells[name] = [c for c in info.notebooks[name].cells if c.grade]
    batched, reference = tmp_path / "batched.db", tmp_path / "reference.db"
    shutil.copy(master_db, batched)
    shutil.copy(master_db, reference)

    def result(student, assignment, shift, status="ok"):
        return {
            "student": student,
            "assignment": assignment,
            "notebook": assignment,
            "status": status,
            "cells": [
                {
                    "grade_id": c.name,
                    "kind": "manual" if c.solution else "test",
                    "score": (i + shift) % 3 * 0.5,
                    "comment": f"{student} {shift}" if c.solution else None,
                }
                for i, c in enumerate(cells[assignment])
            ],
        }

    when = "2026-11-20 09:30:00.000000 UTC"
    rounds = [
        [  # new students; one with both assignments in the same batch
            (result("ada", ASSIGNMENT, 0), when),
            (result("ada", "01-other", 1), None),
            (result("bob", ASSIGNMENT, 2, status="timeout"), "2026-11-21 10:00:00 Europe/Paris"),
        ],
        [  # regrades (one twice in the batch: the last wins), a newcomer, a new timestamp
            (result("ada", ASSIGNMENT, 1, status="kernel-died"), "2026-11-22 08:00:00 UTC"),
            (result("bob", ASSIGNMENT, 0), None),
            (result("bob", ASSIGNMENT, 1), None),
            (result("cy", "01-other", 2), "not a time"),
        ],
    ]
    gbs = {path: Gradebook(f"sqlite:///{path}", COURSE_ID) for path in (batched, reference)}
    try:
        for number, batch in enumerate(rounds):
            record_results(gbs[batched], batch)
            for res, stamp in batch:
                stamp = stamp if stamp != "not a time" else None  # unreadable: left out
                _record_with_nbgraders_api(gbs[reference], res, stamp)
            if number == 0:  # a human grades ada's written answer between the runs
                for gb in gbs.values():
                    manual = next(c.name for c in cells[ASSIGNMENT] if c.solution)
                    gb.find_grade(manual, ASSIGNMENT, ASSIGNMENT, "ada").manual_score = 0.75
                    gb.db.commit()
        # a batch that fails part-way leaves the gradebook as it was
        before = _gradebook_rows(batched)
        broken = result("cy", ASSIGNMENT, 1)
        broken["cells"][0]["grade_id"] = "no-such-cell"
        with pytest.raises(KeyError):
            record_results(gbs[batched], [(result("dee", ASSIGNMENT, 0), None), (broken, None)])
        assert _gradebook_rows(batched) == before
    finally:
        for gb in gbs.values():
            gb.close()
    got, want = _gradebook_rows(batched), _gradebook_rows(reference)
    assert got == want
    # and the reference itself says what the writer must do
    assert [s for (s,) in got["students"]] == ["ada", "bob", "cy"]
    ada = [g for g in got["grades"] if g[:2] == ("ada", ASSIGNMENT)]
    assert [g[5] for g in ada].count(0.75) == 1  # the human's score survives the regrade
    assert all(g[6] for g in ada if g[5] == 0.75)
    flagged = {(nb[0], nb[1]): nb[3] for nb in got["notebooks"]}
    assert flagged[("ada", ASSIGNMENT)]
    assert not flagged[("bob", ASSIGNMENT)]
    stamps = {(s[0], s[1]): s[2] for s in got["submissions"]}
    assert stamps[("ada", ASSIGNMENT)].startswith("2026-11-22 08:00:00")
    assert stamps[("bob", ASSIGNMENT)].startswith("2026-11-21 09:00:00")
    assert stamps[("cy", "01-other")] is None


def test_results_wait_for_the_gradebook_in_bounded_batches(tmp_path, monkeypatch):
    from lossutils.grading import persist

    commits = []
    monkeypatch.setattr(persist, "commit", lambda gb, state, items: commits.append(items))

    def result(i):
        return Result(f"s{i}", "a", "a", seed=1, master_hash="m", status="unreadable",
                      problems=[Problem("unreadable", f"file {i}")])

    batch = persist.Batch(str(tmp_path), None, None, Progress(6, None), size=2, wait=3600)
    assert batch.time_left() is None
    for i in range(5):
        batch.add(result(i), f"k{i}", None, f"s{i}")
    assert [[key for _, key, _ in items] for items in commits] == [["k0", "k1"], ["k2", "k3"]]
    assert (tmp_path / "autograded" / "s4" / "a" / "a.problem.txt").read_text() == (
        "unreadable: file 4\n"
    )  # the files are written at once, only the database rows wait
    assert 0 < batch.time_left() <= 3600
    batch.flush(due_only=True)  # not yet due
    assert len(commits) == 2
    assert batch.done == 4
    batch.wait = 0
    batch.flush(due_only=True)
    assert [key for _, key, _ in commits[-1]] == ["k4"]
    assert batch.done == 5
    assert all("autograded" not in light for items in commits for light, _, _ in items)
    batch.flush()  # nothing waits: no empty transaction
    assert len(commits) == 3
    assert batch.time_left() is None


def _ledger(path, n, students_per_row=1):
    """A ledger of ``n`` synthetic results (10 cells each, every 7th with a problem)."""
    from lossutils.grading.state import LedgerResults

    state = State(str(path))
    keys = set()
    for i in range(n):
        student = f"student-{i // students_per_row:05d}"
        assignment = f"a{i % students_per_row}"
        bad = i % 7 == 0
        result = {
            "student": student, "assignment": assignment, "notebook": assignment,
            "score": 0.0 if bad else 9.0, "max_score": 10.0,
            "status": "timeout" if bad else "ok",
            "problems": [{"code": "timeout", "detail": f"cell {i} ran too long"}] if bad else [],
            "cells": [{"grade_id": f"ex{c}", "kind": "test" if c < 9 else "manual",
                       "score": 0.0 if bad else 1.0, "max_score": 1.0, "check": f"check{c}",
                       "diagnosis": "sign-error" if c == 3 and i % 2 else None,
                       "message": "x" * 200, "comment": None} for c in range(10)],
        }
        state.put(result, f"k{i}")
        keys.add((student, assignment, assignment))
    state.close()
    return LedgerResults(str(path), keys)


def test_ledger_results_stream_only_this_runs_submissions_in_order(tmp_path):
    from lossutils.grading.state import LedgerResults

    every = _ledger(tmp_path / "state.sqlite", 6, students_per_row=2)
    assert len(every) == 6
    some = LedgerResults(every.path, {("student-00002", "a1", "a1"), ("student-00000", "a0", "a0"),
                                      ("nobody", "a0", "a0")})
    assert [(r["student"], r["assignment"]) for r in some] == [("student-00000", "a0"),
                                                              ("student-00002", "a1")]
    assert len(some) == 2
    assert list(some) == list(some)  # iterable again: each pass reads the ledger afresh


def test_streamed_outputs_equal_the_outputs_of_a_list(tmp_path):
    from lossutils.grading.report import write_outputs

    streamed = _ledger(tmp_path / "state.sqlite", 30, students_per_row=3)
    run = {"seed": 1, "timeout": 10}
    masters = {"a0": {}, "a1": {}, "a2": {}}
    (tmp_path / "s").mkdir()
    (tmp_path / "l").mkdir()
    write_outputs(str(tmp_path / "s"), streamed, masters, run)
    write_outputs(str(tmp_path / "l"), list(reversed(list(streamed))), masters, run)
    for name in ("grades.csv", "results.json", "report.html"):
        assert (tmp_path / "s" / name).read_text() == (tmp_path / "l" / name).read_text(), name
    data = json.loads((tmp_path / "s" / "results.json").read_text())
    assert data["run"] == run
    assert len(data["submissions"]) == 30
    rows = list(csv.DictReader((tmp_path / "s" / "grades.csv").read_text().splitlines()))
    assert len(rows) == 10
    assert rows[0]["status"] == "timeout"  # student-00000's first notebook had the problem
    report = (tmp_path / "s" / "report.html").read_text()
    assert "10 students, 30 notebooks" in report
    assert "cell 21 ran too long" in report


_PEAKS = """
import json, sys, tracemalloc
from lossutils.grading.report import write_outputs
from lossutils.grading.state import LedgerResults

peaks = []
for path, keys, out in json.loads(sys.argv[1]):
    results = LedgerResults(path, {tuple(k) for k in keys})
    tracemalloc.start()
    write_outputs(out, results, {"a0": {}}, {"seed": 1, "timeout": 10})
    peaks.append(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
print(json.dumps(peaks))
"""


def test_writing_the_outputs_of_a_class_takes_flat_memory(tmp_path):
    # measured in a fresh interpreter: no thread of another test allocates meanwhile
    runs = []
    for n in (10, 100, 2000):  # 10: matplotlib's first figure fills caches once
        results = _ledger(tmp_path / f"state-{n}.sqlite", n)
        (tmp_path / f"out-{n}").mkdir()
        runs.append([results.path, sorted(results.keys), str(tmp_path / f"out-{n}")])
    done = subprocess.run([sys.executable, "-c", _PEAKS, json.dumps(runs)],
                          capture_output=True, text=True, check=True)
    _, small, large = json.loads(done.stdout)
    one_result = len(json.dumps(next(iter(_ledger(tmp_path / "one.sqlite", 1)))))
    # 1,900 more results may cost what 50 results held at once would, not more
    assert large - small < 50 * one_result, (small, large, one_result)


def test_progress_prints_deciles_when_not_a_terminal():
    import io

    buf = io.StringIO()
    bar = Progress(20, buf)
    for done in range(21):
        bar.update(done)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[-1].startswith("[" + "#" * 30 + "] 20/20 100%")


def test_expected_outcomes_follow_the_masters_points():
    import nbformat

    from lossutils.grading.samples import expected_outcome

    nb = nbformat.read(MASTER, as_version=4)
    p = fixture_points()
    assert expected_outcome(nb, "mistake", "softmax")["score"] == p["test_l2_loss"]
    assert expected_outcome(nb, "correct")["max_score"] == sum(p.values())


# ---------------------------------------------------------------- end to end, with kernels


@pytest.fixture(scope="module")
def graded(tmp_path_factory, sandboxed):
    """Every sample graded once, in-process coordinator with two workers."""
    from lossutils.grading.run import grade

    base = tmp_path_factory.mktemp("graded")
    _write_samples(base / "submitted")
    summary = grade(
        str(base / "submitted"),
        str(base / "out"),
        source=str(SOURCE),
        workers=2,
        timeout=8,
        seed=7,
        sandbox=sandboxed,
        progress=None,
    )
    return base / "out", summary


@pytest.mark.grading
def test_every_sample_gets_its_expected_score_and_reason(graded):
    out, summary = graded
    expected = _expected()
    got = {r["student"]: (r["score"], r["status"]) for r in summary["results"]}
    assert got == expected
    assert summary["exit_code"] == 1  # some submissions failed to grade normally
    with open(out / "grades.csv", newline="", encoding="utf-8") as fh:
        rows = {row["student"]: row for row in csv.DictReader(fh)}
    assert set(rows) == set(expected)
    for student, (score, status) in expected.items():
        assert float(rows[student][ASSIGNMENT]) == score
        # the status column lists every code, the deciding one first; the static scan adds
        # review-suggested where a solution cell calls os._exit
        codes = rows[student]["status"].split(",")
        assert codes[0] == status
        assert ("review-suggested" in codes) == (student == "kernel-dies")
        assert bool(rows[student]["reason"]) == (status != "ok")
    assert "ran past the 8 s limit" in rows["infinite-loop"]["reason"]
    assert "kernel died while running cell 4 (l2_loss)" in rows["kernel-dies"]["reason"]
    results = json.loads((out / "results.json").read_text())
    assert results["run"]["seed"] == 7
    assert {r["seed"] for r in results["submissions"]} == {7}


@pytest.mark.grading
def test_only_verified_diagnoses_reach_results_and_report(graded):
    out, summary = graded
    by_student = {r["student"]: r for r in summary["results"]}
    cell = next(c for c in by_student["mistake-1"]["cells"] if c["grade_id"] == "test_l2_loss")
    # the fixture's stand-in check prints the course checker's tag, but is not the course's
    # checker, so nothing verifies it: a tag in a kernel's output is the student's to forge
    assert (cell["check"], cell["diagnosis"]) == (None, None)
    assert "The Gaussian derivation gives 1/2" in cell["message"]
    assert "[check:" not in cell["message"]
    report = (out / "report.html").read_text()
    assert "missing-half" not in report
    assert "corrupt JSON" in report  # the zeros that are not wrong answers, with reasons
    assert (out / "report-exercises.png").read_bytes()[:4] == b"\x89PNG"


def test_report_leaves_the_callers_matplotlib_alone(tmp_path):
    """grade() may run in an instructor's notebook: drawing the report must not switch their
    backend or touch their pyplot figures."""
    script = f"""
import json, matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
mine = plt.figure()
from lossutils.grading.report import write_outputs
cell = {{"kind": "test", "grade_id": "t1", "score": 0.0, "max_score": 1.0,
         "check": "l2_loss", "diagnosis": "missing-half"}}
r = {{"student": "ada", "assignment": "a1", "notebook": "a1", "score": 0.0, "max_score": 1.0,
      "status": "ok", "problems": [], "cells": [cell]}}
write_outputs({str(tmp_path)!r}, [r], {{"a1": {{}}}}, {{"seed": 1, "timeout": 5}})
print(json.dumps([matplotlib.get_backend(), plt.get_fignums(), plt.gcf() is mine]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(done.stdout) == ["svg", [1], True]
    for name in ("report-exercises.png", "report-diagnoses.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.grading
@pytest.mark.parametrize(
    ("student", "message", "tag"),
    [
        # fails the visible check already
        ("mistake-1", "The Gaussian derivation gives 1/2 of the sum of squares.",
         "[check: l2_loss; diagnosis: missing-half]"),
        # passes the visible check (small logits) and fails only the hidden one (huge logits)
        ("mistake-2", "exp overflowed: subtract the row maximum first.",
         "[check: softmax; diagnosis: no-max-shift]"),
    ],
)
def test_feedback_shows_the_message_but_no_hidden_test(graded, student, message, tag):
    out, summary = graded
    page = (out / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert message in page
    # the checker's tag is for the instructor's report, not for the student
    for secret in ("hidden=True", "BEGIN HIDDEN TESTS", "Traceback", "ipykernel_", tag):
        assert secret not in page
    # the instructor's copy keeps them: the removal above is deliberate, not an accident
    autograded = out / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert "hidden=True" in autograded.read_text()
    if student == "mistake-2":
        [result] = [r for r in summary["results"] if r["student"] == student]
        [cell] = [c for c in result["cells"] if c["grade_id"] == "test_softmax"]
        assert "hidden" not in cell["message"]


@pytest.mark.grading
def test_gradebook_holds_one_submission_per_student(graded):
    out, _summary = graded
    db = sqlite3.connect(out / "gradebook.db")
    rows = db.execute(
        "SELECT student.id, COUNT(*) FROM submitted_assignment JOIN student "
        "ON submitted_assignment.student_id = student.id GROUP BY student.id"
    ).fetchall()
    assert dict(rows) == dict.fromkeys(_expected(), 1)
    scores = dict(
        db.execute(
            "SELECT student.id, SUM(grade.auto_score) FROM grade "
            "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
            "JOIN submitted_assignment "
            "ON submitted_notebook.assignment_id = submitted_assignment.id "
            "JOIN student ON submitted_assignment.student_id = student.id "
            "GROUP BY student.id"
        ).fetchall()
    )
    assert {s: v or 0.0 for s, v in scores.items()} == {
        s: score for s, (score, _) in _expected().items()
    }


@pytest.mark.grading
def test_formgrader_api_lists_the_submissions(graded, tmp_path):
    out, _ = graded
    port, token = free_port(), "grading-test-token"
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
    )
    server = subprocess.Popen(
        [
            str(VENV_BIN / "jupyter"),
            "server",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--ServerApp.token={token}",
            "--ServerApp.port_retries=0",
        ],
        cwd=out,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/formgrader/api/submissions/{ASSIGNMENT}"
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        deadline = time.monotonic() + 600  # a guard against a server that never answers
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    listed = json.load(response)
                break
            except OSError:
                assert server.poll() is None, "jupyter server exited"
                assert time.monotonic() < deadline, "formgrader did not answer within 600 s"
                time.sleep(0.5)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert {s["student"] for s in listed} == set(_expected())
    assert all(s["autograded"] for s in listed)
    scores = {s["student"]: s["code_score"] for s in listed}
    assert scores["mistake-2"] == _expected()["mistake-2"][0]


def _ledger_students(path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {student for (student,) in db.execute("SELECT student FROM results")}
    except sqlite3.OperationalError:  # the table is not created yet
        return set()
    finally:
        db.close()


def _with_endless_last(samples, submitted: Path, quick: dict[str, str]) -> str:
    """Copy the ``quick`` samples (new name -> sample) and, graded last, the endless loop.

    One worker grades in student order, so the loop starts only when every quick submission
    is done, and a cell timeout far beyond the test's patience means it cannot finish first:
    whenever a result is back, the run provably has work left. Returns the loop's name.
    """
    for name, sample in quick.items():
        samples.copy(sample, submitted, name)
    endless = "zz-infinite-loop"
    assert sorted([*quick, endless])[-1] == endless
    samples.copy("infinite-loop", submitted, endless)
    return endless


@pytest.mark.grading
def test_ctrl_c_keeps_what_was_graded_and_exits_130(tmp_path, samples, sandboxed):
    """Ctrl-C (SIGINT to the terminal's process group) mid-run: the results already back are
    persisted, the coordinator says how to go on and exits with 130, and the next run grades
    only the rest."""
    submitted = tmp_path / "submitted"
    quick = {f"{s}-{copy}": s for s in ("correct", "untouched", "mistake-1", "mistake-2")
             for copy in range(2)}
    endless = _with_endless_last(samples, submitted, quick)
    out = tmp_path / "out"
    # (a fixed seed: the naive softmax of mistake-2 passes the hidden check under about 1
    # random seed in 30)
    command = [str(VENV_BIN / "lossutils"), "grade", str(submitted), "--out", str(out),
               "--source", str(SOURCE), "--workers", "1", "--seed", "7",
               *unsandboxed_flag(sandboxed)]
    feedback = out / "feedback"
    hang = time.monotonic() + 900  # a guard against a hung run, not a speed limit
    # (as a context manager, which closes the pipes whatever happens)
    with subprocess.Popen([*command, "--timeout", "3600"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as run:
        try:
            pages: set[str] = set()  # students with a feedback page
            while len(pages) < 2:
                assert run.poll() is None, "the grading run ended before it could be interrupted"
                assert time.monotonic() < hang, "no result in 15 minutes"
                time.sleep(0.05)
                pages = {p.parent.parent.name for p in feedback.glob("*/*/*.html")}
            os.killpg(run.pid, signal.SIGINT)
            _, err = run.communicate(timeout=600)  # (a hang guard)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    assert run.returncode == 130, err
    assert "interrupted: the grades persisted so far are kept" in err
    assert "Traceback" not in err
    kept = _ledger_students(out / "state.sqlite")
    # The coordinator writes a result's page, then takes the result in, one at a time and in
    # student order here: every result but the last with a page was in before the interrupt.
    assert set(sorted(pages)[:-1]) <= kept
    assert endless not in kept  # the rest was not graded
    gb = sqlite3.connect(out / "gradebook.db")
    in_gradebook = gb.execute("SELECT student_id FROM submitted_assignment").fetchall()
    gb.close()
    assert {s for (s,) in in_gradebook} == kept

    # the loop now ends at a 5 s cell timeout: a grading failure, hence exit code 1
    again = subprocess.run([*command, "--timeout", "5"], capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 1, again.stderr
    summary = json.loads((out / "results.json").read_text())
    assert summary["run"]["reused"] == len(kept)
    assert summary["run"]["graded_this_run"] == len(quick) + 1 - len(kept)
    expected = _expected()
    got = {r["student"]: (r["score"], r["status"]) for r in summary["submissions"]}
    assert got == {**{name: expected[s] for name, s in quick.items()},
                   endless: expected["infinite-loop"]}


@pytest.mark.grading
def test_killed_run_resumes_with_every_grade_exactly_once(tmp_path, samples, sandboxed):
    from lossutils.grading.run import grade

    submitted = tmp_path / "submitted"
    quick = {s: s for s in ("correct", "untouched", "mistake-1", "mistake-2", "kernel-dies")}
    endless = _with_endless_last(samples, submitted, quick)
    out = tmp_path / "out"
    run = subprocess.Popen(
        [str(VENV_BIN / "lossutils"), "grade", str(submitted), "--out", str(out), "--source",
         str(SOURCE), "--workers", "1", "--timeout", "3600", "--seed", "3",
         *unsandboxed_flag(sandboxed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ledger = out / "state.sqlite"
    hang = time.monotonic() + 900  # a guard against a hung run, not a speed limit
    try:
        while not (ledger.exists() and _ledger_students(ledger)):
            assert run.poll() is None, "the grading run ended before it could be killed"
            assert time.monotonic() < hang, "no result in 15 minutes"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):  # (none left if the run failed)
            os.killpg(run.pid, signal.SIGKILL)  # the coordinator and its workers, mid-run
        run.wait()
    before = _ledger_students(ledger)
    assert before
    assert endless not in before

    # the loop now ends at a 5 s cell timeout; a run without --seed would draw a fresh seed
    summary = grade(str(submitted), str(out), source=str(SOURCE), workers=2, timeout=5,
                    seed=3, sandbox=sandboxed, progress=None)
    assert summary["seed"] == 3
    assert summary["reused"] == len(before)
    assert summary["graded"] == len(quick) + 1 - len(before)
    expected = _expected()
    got = {r["student"]: (r["score"], r["status"]) for r in summary["results"]}
    assert got == {**{s: expected[s] for s in quick}, endless: expected["infinite-loop"]}
    gb = sqlite3.connect(out / "gradebook.db")
    counts = gb.execute(
        "SELECT student_id, COUNT(*) FROM submitted_assignment GROUP BY student_id"
    ).fetchall()
    assert dict(counts) == dict.fromkeys(got, 1)
    grades = gb.execute("SELECT COUNT(*) FROM grade").fetchone()[0]
    gb.close()
    # one row per grade cell (2 tests + 1 answer) and student
    assert grades == len(got) * 3
    # a third run has nothing left to do, and --regrade redoes exactly one student
    again = grade(str(submitted), str(out), source=str(SOURCE), workers=1,
                  sandbox=sandboxed, progress=None, regrade=["untouched"])
    assert (again["graded"], again["reused"]) == (1, len(got) - 1)


def test_fast_feedback_exporter_highlights_code_like_nbconvert():
    """The feedback page's exporter (cached highlighting, no BeautifulSoup pass) renders the
    code of graded cells, magics cells included, exactly as nbconvert's own HTMLExporter."""
    import nbformat
    from nbconvert.exporters import HTMLExporter

    from lossutils.grading._patches import _fast_html_exporter

    nb = nbformat.v4.new_notebook()
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    graded = nbformat.v4.new_code_cell("def f(x):\n    return x ** 2  # square\n")
    graded.metadata["nbgrader"] = {"grade_id": "f", "solution": True, "grade": False}
    magics = nbformat.v4.new_code_cell("%%bash\necho $HOME | tr a-z A-Z\n")
    magics.metadata["magics_language"] = "bash"
    figure = nbformat.v4.new_code_cell("plot()")
    figure.outputs = [nbformat.v4.new_output(
        "display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})]
    again = nbformat.v4.new_code_cell(graded.source, metadata=graded.metadata)
    text = nbformat.v4.new_markdown_cell("## Loss\n\nThe *mean* of $(y - \\hat y)^2$ [^1]\n\n"
                                         "![logo](attachment:logo.png)")
    text.attachments = {"logo.png": {"image/png": "iVBORw0KGgo="}}
    other = nbformat.v4.new_markdown_cell(  # the same text with another picture
        text.source, attachments={"logo.png": {"image/png": "R0lGODlhAQABAAAAACw="}})
    repeated = nbformat.v4.new_markdown_cell(text.source, attachments=text.attachments)
    nb.cells = [graded, magics, figure, again, text, other, repeated]
    fast_exporter = _fast_html_exporter()()
    fast, _ = fast_exporter.from_notebook_node(nbformat.from_dict(nb))
    again, _ = fast_exporter.from_notebook_node(nbformat.from_dict(nb))  # from the cache
    stock, _ = HTMLExporter().from_notebook_node(nbformat.from_dict(nb))

    def code_blocks(page):  # (language, highlighted HTML); BeautifulSoup trims class values
        return re.findall(r'<div class="\s*highlight hl-([^"]*)"><pre>(.*?)</pre>', page, re.S)

    assert len(code_blocks(stock)) == 4
    assert code_blocks(fast) == code_blocks(again) == code_blocks(stock)
    assert len(re.findall(r"<img alt=\"No description has been provided for this image\"",
                          fast)) == 1

    from bs4 import BeautifulSoup  # nbconvert's dependency: normalise as its last pass does

    def markdown(page):  # the rendered text cells, also cached by source
        return [BeautifulSoup(fragment, "html.parser").decode().strip() for fragment in
                re.findall(r'data-mime-type="text/markdown">(.*?)</div>', page, re.S)]

    assert len(markdown(stock)) == 3
    assert markdown(fast) == markdown(again) == markdown(stock)
    assert "R0lGODlhAQABAAAAACw=" in markdown(stock)[1]  # the attachment made the difference
    assert markdown(stock)[0] != markdown(stock)[1]


def test_workers_warm_up_with_the_imports_of_the_masters_being_graded(tmp_path):
    from lossutils.grading.masters import list_masters, preload_for

    other = tmp_path / "01-other"
    other.mkdir()
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": ["import scipy.special\n", "from sympy import symbols\n"]}
    (other / "01-other.ipynb").write_text(json.dumps(
        {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    shutil.copytree(SOURCE / ASSIGNMENT, tmp_path / ASSIGNMENT)
    (tmp_path / "02-broken").mkdir()
    (tmp_path / "02-broken" / "02-broken.ipynb").write_text("{not json")
    masters = list_masters(str(tmp_path))
    # the fixture imports os and numpy in its set-up cell
    assert preload_for(str(tmp_path), [ASSIGNMENT], masters) == ["os", "numpy"]
    assert preload_for(str(tmp_path), [ASSIGNMENT, "01-other", "02-broken"], masters) == [
        "os", "numpy", "scipy.special", "sympy"]


@pytest.mark.parametrize("change", [
    None,
    {"points": "three"},                      # wrong type: the schema says so
    {"grade_id": ""},                         # nbgrader's own rule
    {"schema_version": 1},                    # too old
    {"grade": True, "points": None},          # not a number
    {"cell_type": "markdown"},                # a warning only, in both
])
def test_metadata_check_agrees_with_nbgraders(change):
    import copy

    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator

    from lossutils.grading._patches import _schema_once_validator

    nb = nbformat.read(str(MASTER), as_version=4)
    if change is not None:
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
        cell.metadata["nbgrader"].update(change)

    def outcome(validator):
        try:
            validator.validate_nb(copy.deepcopy(nb))
        except Exception as exc:  # the type and text nbgrader's own check would raise
            return type(exc), str(exc)
        return None

    stock = outcome(MetadataValidator())
    assert outcome(_schema_once_validator()) == stock
    assert (stock is None) == (change in (None, {"cell_type": "markdown"}))


def test_forged_cell_metadata_is_named_with_the_fix(tmp_path):
    nb = json.loads(MASTER.read_text())
    cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution"))
    cell["metadata"]["nbgrader"]["points"] = "three"
    path = tmp_path / "forged.ipynb"
    path.write_text(json.dumps(nb))
    result = grade_submission(fixture_task(path))
    assert result.status == "wrong-format"
    assert pytest.approx(result.score) == 0.0
    # (the master's hidden tests differ from the release's: those cells count as edited)
    [problem] = [p for p in result.problems if p.code == "wrong-format"]
    assert problem.detail == (
        "nbgrader cell metadata is corrupted ('three' is not of type 'number'); start from a "
        "fresh copy of the released notebook and paste the answers into it")
