"""Tests of the ``lossutils`` command line: arguments, exit codes, messages, self-check."""

import csv
import re

import pytest

from lossutils.cli import main
from tests.conftest import ASSIGNMENT, SOURCE, fixture_points, unsandboxed_flag


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("release", "grade", "check", "demo"):
        assert command in out


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["grade", "somewhere", "--workers", "0"])
    assert exc.value.code == 2
    assert "must be a positive integer, got 0" in capsys.readouterr().err


def test_grade_reports_a_missing_folder(tmp_path, capsys, sandboxed):
    code = main(
        [
            "grade",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "out"),
            "--source",
            str(SOURCE),
            *unsandboxed_flag(sandboxed),
        ]
    )
    assert code == 2
    *warning, error = capsys.readouterr().err.splitlines()
    assert error == f"lossutils grade: error: {tmp_path / 'nowhere'} is not a folder of submissions"
    assert len(warning) == (not sandboxed)  # --unsandboxed says what it means, and nothing else


def test_check_reports_a_missing_notebook(capsys):
    assert main(["check", "no-such-notebook.ipynb"]) == 2
    assert "no-such-notebook.ipynb does not exist" in capsys.readouterr().err


@pytest.mark.grading
def test_flat_folder_infers_the_assignment_and_exit_code_1(tmp_path, capsys, sandboxed):
    flat = tmp_path / "lms-download"
    flat.mkdir()
    (flat / "ada.ipynb").write_bytes(b'{"cells": [')
    (flat / "bob.ipynb").write_bytes(b"\xff\xfe not utf-8")
    out = tmp_path / "out"
    code = main(["grade", str(flat), "--out", str(out), "--source", str(SOURCE), "--workers", "1",
                 *unsandboxed_flag(sandboxed)])
    assert code == 1  # neither submission could be graded normally
    stdout = capsys.readouterr().out
    assert (
        f"flat folder: assuming assignment {ASSIGNMENT} (the only master is {ASSIGNMENT})" in stdout
    )
    with open(out / "grades.csv", newline="", encoding="utf-8") as fh:
        rows = {row["student"]: row for row in csv.DictReader(fh)}
    assert rows["ada"]["status"] == "unreadable"
    assert rows["ada"]["reason"].startswith(f"{ASSIGNMENT}: corrupt JSON")
    assert rows["bob"]["reason"] == f"{ASSIGNMENT}: not valid UTF-8 (byte 0xff at offset 0)"


@pytest.mark.grading
def test_check_prints_points_and_diagnoses(capsys, samples):
    points = fixture_points()
    root = SOURCE.parent  # holds solutions/
    correct = main(
        ["check", str(samples.notebook("correct")), "--course-root", str(root), "--timeout", "20"]
    )
    out = capsys.readouterr().out
    assert correct == 0
    l2 = points["test_l2_loss"]
    assert re.search(rf"^test_l2_loss +{l2:g} / {l2:g}$", out, re.MULTILINE)
    assert f"autograded total: {points['test_l2_loss'] + points['test_softmax']:g} / " in out

    wrong = main(
        [
            "check",
            str(samples.notebook("mistake-1")),
            "--course-root",
            str(root),
            "--timeout",
            "20",
        ]
    )
    out = capsys.readouterr().out
    assert wrong == 1
    # the fixture's stand-in checker prints the course checker's tag, but nothing verifies it
    # outside the kernel, so it gives no diagnosis: a kernel's output is the student's to forge
    assert re.search(rf"^test_l2_loss +0 / {l2:g}$", out, re.MULTILINE)
    assert "The Gaussian derivation gives 1/2 of the sum of squares." in out
    assert f"autograded total: {points['test_softmax']:g} / " in out


def test_release_options_go_to_lossutils_release(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["release", "--help"])
    assert exc.value.code == 0
    assert "--check" in capsys.readouterr().out  # an option only lossutils.release defines
