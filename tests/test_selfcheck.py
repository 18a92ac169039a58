"""``lossutils check`` on a notebook copied out of the course, with no master or release at hand."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lossutils.cli import main
from lossutils.grading.selfcheck import _assignment_checked

COURSE = Path(__file__).resolve().parents[1] / "course"
RELEASE = COURSE / "01-likelihood" / "01-likelihood.ipynb"


def _points(path: Path) -> dict[str, float]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return {
        c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]["points"]
        for c in cells
        if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("grade")
    }


@pytest.mark.grading
def test_a_downloaded_notebook_is_checked_against_its_own_test_cells(tmp_path):
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    copy = downloads / "likelihood (1).ipynb"  # renamed by the browser: the name says nothing
    shutil.copy(RELEASE, copy)
    # A process of its own, run where there is no solutions/ or course/ folder: the kernel and
    # verification processes it starts end with it, not with this test session.
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from lossutils.cli import main; "
         f"sys.exit(main(['check', {str(copy)!r}, '--timeout', '30']))"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    out = done.stdout
    assert done.returncode == 1, done.stderr  # the untouched release earns nothing
    assert f"checked {copy} as assignment 01-likelihood, against its own test cells\n" in out
    assert "not run: the hidden tests (only the grader has them)\n" in out
    assert "not run: the comparison of your test cells with the released ones" in out
    points = _points(RELEASE)
    for grade_id, max_score in points.items():
        assert re.search(rf"^{grade_id} +0 / {max_score:g}  diagnosis: not_implemented$", out,
                         re.MULTILINE), grade_id
    assert f"autograded total: 0 / {sum(points.values()):g}\n" in out


def test_a_notebook_that_checks_an_earlier_exercise_again_is_recognised(tmp_path):
    # 07 trains with the rmsprop_step of 06 and checks it again in its own test cell.
    copy = tmp_path / "download.ipynb"
    shutil.copy(COURSE / "07-linear-classifiers" / "07-linear-classifiers.ipynb", copy)
    assert _assignment_checked(str(copy)) == "07-linear-classifiers"
    shutil.copy(COURSE / "06-optimization" / "06-optimization.ipynb", copy)
    assert _assignment_checked(str(copy)) == "06-optimization"


def test_a_notebook_that_is_no_course_notebook_needs_an_assignment(tmp_path, monkeypatch, capsys):
    other = tmp_path / "notes.ipynb"
    other.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                 "nbformat_minor": 5}))
    monkeypatch.chdir(tmp_path)
    assert main(["check", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"cannot tell which assignment {other} belongs to" in err
    assert "its test cells check no exercise of this lossutils; pass --assignment" in err


def test_an_assignment_id_must_be_a_plain_name(tmp_path, monkeypatch, capsys):
    other = tmp_path / "notes.ipynb"
    other.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                 "nbformat_minor": 5}))
    monkeypatch.chdir(tmp_path)
    assert main(["check", str(other), "--assignment", "../elsewhere"]) == 2
    assert "'../elsewhere' is not an assignment id" in capsys.readouterr().err
