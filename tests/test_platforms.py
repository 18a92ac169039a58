"""Gradescope and PrairieLearn autograders, and LMS files from a real grading run.

The demo's sample submissions of the fixture assignment (tests/fixtures/grading) are graded
once with ``lossutils grade``; then the real ``run_autograder`` from a built Gradescope zip runs
on each of them in a Gradescope folder layout, and the PrairieLearn entry point on a ``/grade``
layout. Both must give the points per exercise ``lossutils grade`` gave, write only the fields
each platform documents, and keep hidden checks out of what students see.

The field sets are written from the platforms' documentation, not from our code: Gradescope's
"Autograder Specifications" (gradescope/autograder_samples, docs/specs.md) and PrairieLearn's
"External Grading" (docs/externalGrading.md, "Grading results").
"""

import concurrent.futures as cf
import csv
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lossutils.platforms._single import Exercise, Outcome
from lossutils.platforms.gradescope import gradescope_results
from lossutils.platforms.prairielearn import MAX_BYTES, fit, prairielearn_results
from tests.conftest import ASSIGNMENT, SOURCE

NOTEBOOK = f"{ASSIGNMENT}.ipynb"
TIMEOUT = 4  # seconds per cell: the fixture's cells take milliseconds; the endless loop 4 s

# Gradescope, "Output format": every key results.json and a test may have.
GS_TOP = {"score", "execution_time", "output", "output_format", "test_output_format",
          "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests",
          "leaderboard"}
GS_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output",
           "output_format", "tags", "visibility", "extra_data"}
GS_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
GS_FORMATS = {"text", "html", "simple_format", "md", "ansi"}
# PrairieLearn, "Grading results".
PL_TOP = {"gradable", "score", "message", "output", "images", "tests", "format_errors"}
PL_TEST = {"name", "description", "points", "max_points", "message", "output", "images"}


# ------------------------------------------------------------------ fast: results from outcomes


def _outcome(**overrides) -> Outcome:
    exercise = Exercise("test_softmax", "softmax", 0.0, 3.0, True, True,
                        "softmax: 13/13 cases passed",
                        "passed the checks in your notebook but not the hidden checks",
                        detail="CheckFailed: softmax: case 7 (hidden) failed. input: [1e4]")
    fields = dict(assignment=ASSIGNMENT, notebook=NOTEBOOK, status="ok", score=0.0,
                  max_score=3.0, exercises=[exercise], written=[("a-shift", 1.0)])
    return Outcome(**{**fields, **overrides})


def _gs_visible_text(results: dict) -> str:
    shown = [results.get("output", "")]
    for test in results["tests"]:
        if test.get("visibility", results.get("visibility", "visible")) == "visible":
            shown += [test.get("name", ""), test.get("output", "")]
    return "\n".join(shown)


def check_gradescope_fields(results: dict) -> None:
    assert set(results) <= GS_TOP
    assert isinstance(results["score"], float)
    assert isinstance(results["execution_time"], int)
    for key in ("output_format", "test_output_format", "test_name_format"):
        assert results.get(key, "text") in GS_FORMATS
    assert results.get("stdout_visibility", "hidden") in GS_VISIBILITY
    for test in results["tests"]:
        assert set(test) <= GS_TEST
        assert test.get("visibility", "visible") in GS_VISIBILITY
        assert test.get("status", "passed") in {"passed", "failed"}
        assert ("score" in test) == ("max_score" in test)
        assert "score" in test or "status" in test


def check_prairielearn_fields(results: dict) -> None:
    assert set(results) <= PL_TOP
    assert len(json.dumps(results).encode()) <= MAX_BYTES
    if results.get("gradable", True) is False:
        assert results["format_errors"]
        assert "score" not in results  # not a zero: no score at all
        return
    assert 0.0 <= results["score"] <= 1.0
    for test in results["tests"]:
        assert set(test) <= PL_TEST
        assert 0.0 <= test["points"] <= test["max_points"]


def test_gradescope_keeps_hidden_outcomes_until_published():
    results = gradescope_results(_outcome())
    check_gradescope_fields(results)
    visible = _gs_visible_text(results)
    assert "case 7" not in json.dumps(results)  # the instructor's detail goes nowhere
    assert "hidden checks" not in visible.replace("hidden checks drawn at grading time", "")
    [graded] = [t for t in results["tests"] if "score" in t]
    assert graded["visibility"] == "after_published"
    assert (graded["score"], graded["max_score"]) == (0.0, 3.0)
    [mine] = [t for t in results["tests"] if t.get("visibility") == "visible"]
    assert mine["status"] == "passed"
    assert "a-shift (1 point)" in results["output"]
    assert "graded by hand" in results["output"]
    assert "sandbox" not in results["output"]
    assert results["output_format"] == "text"  # a student's text is never rendered as HTML


def test_gradescope_says_when_the_notebook_ran_unsandboxed():
    assert "without the grader's sandbox" in gradescope_results(_outcome(sandboxed=False))[
        "output"]


def test_exercises_without_hidden_checks_are_visible_at_once():
    outcome = _outcome()
    outcome.exercises[0].has_hidden = False
    [test] = gradescope_results(outcome)["tests"]
    assert test["visibility"] == "visible"
    assert test["score"] == 0.0


def test_prairielearn_results_and_not_gradable_files():
    results = prairielearn_results(_outcome(score=1.5))
    check_prairielearn_fields(results)
    assert results["score"] == 0.5
    assert "case 7" not in json.dumps(results)
    bad = prairielearn_results(_outcome(status="unreadable", messages=[
        "unreadable: corrupt JSON: Expecting ',' delimiter (line 3, column 5)"]))
    check_prairielearn_fields(bad)
    assert bad["gradable"] is False
    assert "corrupt JSON" in bad["format_errors"][0]


def test_fit_cuts_the_longest_texts_until_the_results_are_small_enough():
    results = {"gradable": True, "score": 0.0, "message": "m" * 50_000,
               "tests": [{"name": "t", "points": 0, "max_points": 1, "output": "é" * 80_000,
                          "message": "short"}]}
    fit(results)
    check_prairielearn_fields(results)
    assert results["tests"][0]["message"] == "short"
    assert results["tests"][0]["output"].endswith("(cut)")


def test_a_diagnosis_is_shown_only_in_the_checks_own_words():
    from lossutils.checks import get_exercise
    from lossutils.platforms._single import _verdict

    cell = {"score": 0.0, "max_score": 3.0, "check": "softmax", "diagnosis": "overflow"}
    mine = {"score": 3.0, "max_score": 3.0}
    [overflow] = [m for m in get_exercise("softmax").mistakes if m.id == "overflow"]
    assert overflow.message in _verdict(cell, mine, True)
    # an id the kernel's output made up is not in the catalogue: nothing of it is shown
    forged = dict(cell, diagnosis="secret input [1e4, 7.5]")
    assert "1e4" not in _verdict(forged, mine, True)
    # verification outside the kernel decides over what the kernel printed
    verified = dict(forged, verified={"exercises": ["softmax"], "diagnosis": "overflow"})
    assert overflow.message in _verdict(verified, mine, True)


# ------------------------------------------------------------------ real runs


def _samples(folder: Path) -> dict[str, Path]:
    """The demo's samples of the fixture, plus one that prints a lot and raises long errors."""
    from lossutils.grading.samples import generate_samples

    generate_samples(str(SOURCE), str(folder), [ASSIGNMENT], extras=False)
    loud = json.loads((folder / "correct" / ASSIGNMENT / NOTEBOOK).read_text())
    for cell in loud["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") in ("l2_loss", "softmax"):
            name = cell["metadata"]["nbgrader"]["grade_id"]
            cell["source"] = (
                f"print('x' * 3_000_000)\n"
                f"def {name}(*args):\n    raise ValueError('y' * 500_000)\n"
            )
    (folder / "loud" / ASSIGNMENT).mkdir(parents=True)
    (folder / "loud" / ASSIGNMENT / NOTEBOOK).write_text(json.dumps(loud))
    return {p.name: p / ASSIGNMENT / NOTEBOOK for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def graded(tmp_path_factory, sandboxed):
    """Every sample graded once by ``lossutils grade``: the reference."""
    from lossutils.grading.run import grade

    base = tmp_path_factory.mktemp("platforms")
    samples = _samples(base / "submitted")
    grade(str(base / "submitted"), str(base / "out"), source=str(SOURCE), workers=2,
          timeout=TIMEOUT, seed=11, progress=None, sandbox=sandboxed)
    results = json.loads((base / "out" / "results.json").read_text())
    cells = {r["student"]: {c["grade_id"]: c for c in r["cells"] if c["kind"] == "test"}
             for r in results["submissions"]}
    return base, samples, cells, {r["student"]: r for r in results["submissions"]}


def _run_all(jobs) -> list:
    """Run the platform subprocesses two at a time (each grades with two workers)."""
    with cf.ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda job: subprocess.run(**job), jobs))


@pytest.fixture(scope="module")
def gradescope(graded, tmp_path_factory):
    """The real run_autograder of a built zip, on every sample in a Gradescope layout."""
    from lossutils.cli import main

    _, samples, _, _ = graded
    root = tmp_path_factory.mktemp("gradescope")
    zip_path = root / "autograder.zip"
    assert main(["gradescope", ASSIGNMENT, "--source", str(SOURCE), "--out", str(zip_path),
                 "--timeout", str(TIMEOUT)]) == 0
    # the zip's own wheel, installed without dependencies, is the lossutils that grades
    with zipfile.ZipFile(zip_path) as zf:
        [wheel] = [n for n in zf.namelist() if n.endswith(".whl")]
        zf.extract(wheel, root)
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--target", str(site), str(root / wheel)],
                   check=True, capture_output=True, timeout=300)
    jobs = []
    for name, notebook in samples.items():
        if name == "loud":
            continue
        folder = root / name
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(folder / "source")
        (folder / "run_autograder").write_bytes((folder / "source" / "run_autograder").read_bytes())
        (folder / "submission").mkdir()
        # Gradescope keeps the uploaded file name: one sample arrives under another name
        upload = "my answers.ipynb" if name == "mistake-1" else NOTEBOOK
        (folder / "submission" / upload).write_bytes(notebook.read_bytes())
        env = dict(os.environ, LOSSUTILS_AUTOGRADER_ROOT=str(folder),
                   LOSSUTILS_PYTHON=sys.executable, PYTHONPATH=str(site))
        jobs.append(dict(args=["bash", str(folder / "run_autograder")], env=env, cwd=folder,
                         capture_output=True, text=True, timeout=900))
    done = _run_all(jobs)
    runs = {}
    for job, proc in zip(jobs, done, strict=True):
        name = Path(job["cwd"]).name
        assert proc.returncode == 0, proc.stderr
        runs[name] = (json.loads((Path(job["cwd"]) / "results" / "results.json").read_text()),
                      proc.stdout)
    return zip_path, site, runs


@pytest.fixture(scope="module")
def prairielearn(graded, tmp_path_factory):
    """The PrairieLearn entry point on every sample in a /grade layout."""
    _, samples, _, _ = graded
    root = tmp_path_factory.mktemp("prairielearn")
    jobs = []
    for name, notebook in samples.items():
        folder = root / name
        (folder / "tests").mkdir(parents=True)
        (folder / "student").mkdir()
        (folder / "tests" / ASSIGNMENT).symlink_to(SOURCE / ASSIGNMENT)
        (folder / "student" / NOTEBOOK).write_bytes(notebook.read_bytes())
        jobs.append(dict(args=[sys.executable, "-m", "lossutils.platforms.prairielearn",
                               "--root", str(folder), "--timeout", str(TIMEOUT)],
                         cwd=folder, capture_output=True, text=True, timeout=900))
    done = _run_all(jobs)
    runs = {}
    for job, proc in zip(jobs, done, strict=True):
        assert proc.returncode == 0, proc.stderr
        path = Path(job["cwd"]) / "results" / "results.json"
        runs[Path(job["cwd"]).name] = json.loads(path.read_text())
    return runs


def _gs_points(results: dict) -> dict[str, float]:
    points: dict[str, float] = {}
    for test in results["tests"]:
        if "score" in test:
            points[test["name"]] = points.get(test["name"], 0.0) + test["score"]
    return points


@pytest.mark.grading
def test_the_zip_is_what_gradescope_documents(gradescope):
    zip_path, site, _ = gradescope
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        assert {"setup.sh", "run_autograder", f"solutions/{ASSIGNMENT}/{NOTEBOOK}"} <= names
        for script in ("setup.sh", "run_autograder"):
            assert stat.S_IMODE(zf.getinfo(script).external_attr >> 16) & 0o111
            assert zf.read(script).startswith(b"#!/usr/bin/env bash\n")
            check = subprocess.run(["bash", "-n"], input=zf.read(script), capture_output=True)
            assert check.returncode == 0, check.stderr
        setup = zf.read("setup.sh").decode()
    [wheel] = [n for n in names if n.endswith(".whl")]
    assert f'pip install "/autograder/source/{wheel}[course]"' in setup
    assert "bubblewrap" in setup
    # pip installed the wheel: package and metadata with the course extra
    [info] = list(site.glob("lossutils-*.dist-info"))
    metadata = (info / "METADATA").read_text()
    assert "Provides-Extra: course" in metadata
    assert "Requires-Dist: nbgrader" in metadata
    assert (site / "lossutils" / "platforms" / "gradescope.py").is_file()


@pytest.mark.grading
def test_run_autograder_gives_the_points_of_lossutils_grade(graded, gradescope):
    _, _, cells, _ = graded
    _, _, runs = gradescope
    assert set(runs) == set(cells) - {"loud"}
    for name, (results, log) in runs.items():
        check_gradescope_fields(results)
        expected = {gid.removeprefix("test_"): c["score"] for gid, c in cells[name].items()}
        assert _gs_points(results) == expected, name
        assert results["score"] == sum(expected.values()), name
        assert "seed" in log  # the instructor's log on stdout


@pytest.mark.grading
def test_run_autograder_keeps_hidden_checks_from_students(graded, gradescope):
    _, _, cells, _ = graded
    _, _, runs = gradescope
    for name, (results, _) in runs.items():
        visible = _gs_visible_text(results)
        for secret in ("hidden=True", "BEGIN HIDDEN TESTS", "Traceback"):
            assert secret not in json.dumps(results), name
        tests = {t["name"]: t for t in results["tests"]}
        for gid, cell in cells[name].items():
            mine = tests[f"{gid.removeprefix('test_')}: the checks in your notebook"]
            assert mine["visibility"] == "visible"
            if mine["status"] == "passed" and cell["message"]:
                # failed only in the hidden checks: not a word of that failure is visible
                assert cell["message"][:60] not in visible, name
    # mistake-2 passes the visible softmax check and fails the hidden one (huge logits)
    results, _ = runs["mistake-2"]
    by_name = {(t["name"], t["visibility"]): t for t in results["tests"]}
    assert by_name[("softmax: the checks in your notebook", "visible")]["status"] == "passed"
    assert by_name[("softmax", "after_published")]["score"] == 0.0
    assert "no-max-shift" not in json.dumps(results)
    assert "nan" not in _gs_visible_text(results)


@pytest.mark.grading
def test_run_autograder_reports_problems_with_the_file(gradescope):
    _, _, runs = gradescope
    assert "corrupt JSON" in runs["corrupt-json"][0]["output"]
    assert "kernel died" in runs["kernel-dies"][0]["output"]
    assert "ran past the 4 s limit" in runs["infinite-loop"][0]["output"]
    assert "Graded my answers.ipynb" in runs["mistake-1"][0]["output"]
    assert "graded by hand" in runs["correct"][0]["output"]


def test_run_autograder_without_a_notebook_or_with_a_broken_setup(tmp_path):
    from lossutils.platforms.gradescope import CONFIG, run

    (tmp_path / "source" / "solutions").mkdir(parents=True)
    os.symlink(SOURCE / ASSIGNMENT, tmp_path / "source" / "solutions" / ASSIGNMENT)
    (tmp_path / "source" / CONFIG).write_text(json.dumps(
        {"assignment": ASSIGNMENT, "notebook": ASSIGNMENT, "timeout": TIMEOUT}))
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "notes.txt").write_text("no notebook here")
    log = io.StringIO()
    assert run(str(tmp_path), stream=log) == 0
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    check_gradescope_fields(results)
    assert results["score"] == 0.0
    assert f"submit exactly one notebook, {NOTEBOOK}" in results["output"]
    # a grader that cannot even read its configuration still answers Gradescope
    (tmp_path / "source" / CONFIG).write_text("{")
    assert run(str(tmp_path), stream=log) == 0
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    check_gradescope_fields(results)
    assert "autograder itself failed" in results["output"]
    assert "JSONDecodeError" in log.getvalue()


@pytest.mark.grading
def test_prairielearn_gives_the_points_of_lossutils_grade(graded, prairielearn):
    _, _, cells, reference = graded
    for name, results in prairielearn.items():
        check_prairielearn_fields(results)
        if reference[name]["status"] == "unreadable":
            assert results["gradable"] is False, name
            assert "corrupt JSON" in results["format_errors"][0]
            continue
        got = {t["name"]: t["points"] for t in results["tests"]}
        expected = {gid.removeprefix("test_"): c["score"] for gid, c in cells[name].items()}
        assert got == expected, name
        possible = sum(c["max_score"] for c in cells[name].values())
        assert results["score"] == pytest.approx(sum(expected.values()) / possible)
    assert prairielearn["kernel-dies"]["gradable"] is True  # ran, and earned what it earned


@pytest.mark.grading
def test_prairielearn_keeps_hidden_details_and_huge_output_out(graded, prairielearn):
    _, _, cells, _ = graded
    mistake = json.dumps(prairielearn["mistake-2"])
    assert cells["mistake-2"]["test_softmax"]["message"][:60] not in mistake
    assert "nan" not in mistake
    [softmax] = [t for t in prairielearn["mistake-2"]["tests"] if t["name"] == "softmax"]
    assert "not the hidden checks" in softmax["message"]
    loud = prairielearn["loud"]
    assert len(json.dumps(loud).encode()) <= MAX_BYTES
    assert loud["score"] == 0.0
    assert "yyyy" in json.dumps(loud)  # the student's own error, shortened


def test_prairielearn_without_a_notebook_is_not_gradable(tmp_path):
    from lossutils.platforms.prairielearn import run

    (tmp_path / "tests").mkdir()
    os.symlink(SOURCE / ASSIGNMENT, tmp_path / "tests" / ASSIGNMENT)
    (tmp_path / "student").mkdir()
    # a link to the master is not the student's notebook (graded, it would earn every point)
    os.symlink(SOURCE / ASSIGNMENT / NOTEBOOK, tmp_path / "student" / NOTEBOOK)

    def results():
        assert run(str(tmp_path), stream=io.StringIO()) == 0
        found = json.loads((tmp_path / "results" / "results.json").read_text())
        check_prairielearn_fields(found)
        assert found["gradable"] is False
        return found

    assert "submit exactly one notebook" in results()["format_errors"][0]
    # too large to read: refused before anything runs, as `lossutils grade` would
    (tmp_path / "student" / NOTEBOOK).unlink()
    with open(tmp_path / "student" / NOTEBOOK, "wb") as fh:
        fh.truncate(20_000_001)
    assert "over the 20000000-byte limit" in results()["format_errors"][0]


def test_a_grader_failure_costs_no_prairielearn_attempt():
    results = prairielearn_results(_outcome(status="grader-error"))
    check_prairielearn_fields(results)
    assert results["gradable"] is False
    assert "grader itself failed" in results["message"]


# ------------------------------------------------------------------ LMS files from the run


@pytest.mark.grading
def test_lms_files_from_a_graded_run(graded, tmp_path):
    from lossutils.cli import main

    base, _, cells, reference = graded
    students = sorted(reference)
    template = tmp_path / "canvas.csv"
    rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", f"{ASSIGNMENT} (1)",
             f"{ASSIGNMENT}: softmax (2)", "Current Score"],
            ["    Points Possible", "", "", "", "", "6.00", "3.00", "(read only)"]]
    rows += [[f"Student {i}", str(i), f"S{i}", s, "A", "", "", "12.5"]
             for i, s in enumerate(students)]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    template.write_text(buf.getvalue(), encoding="utf-8", newline="")
    out = tmp_path / "import.csv"
    code = main(["export", "canvas", str(base / "out"), "--template", str(template),
                 "--out", str(out), "--column", f"{ASSIGNMENT}: softmax={ASSIGNMENT}: softmax (2)",
                 "--per-exercise"])
    assert code == 1  # l2_loss and a-shift have no column: reported, the rest written
    got = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert got[:2] == rows[:2]
    for row, original in zip(got[2:], rows[2:], strict=True):
        student = row[3]
        assert row[:5] + row[7:] == original[:5] + original[7:]  # foreign columns untouched
        assert row[5] == ""  # the per-assignment column is not a target of --per-exercise
        assert float(row[6]) == cells[student]["test_softmax"]["score"]
    # per assignment: the gradebook's points (written answers wait for a human: 0)
    code = main(["export", "canvas", str(base / "out"), "--template", str(template),
                 "--out", str(out)])
    assert code == 0
    got = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    for row in got[2:]:
        assert float(row[5]) == reference[row[3]]["score"]
