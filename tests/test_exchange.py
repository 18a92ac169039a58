"""The JupyterHub round trip on one machine, with nbgrader's own commands and exchange folder.

An instructor releases the fixture assignment into a local exchange (``Exchange.root``, a
temporary folder); two students, simulated as one OS user with their own home, Jupyter folders
and ``CourseDirectory.student_id`` (nbgrader's exchange takes the student's name from it
instead of the login name), fetch it, answer (one correctly, one with the softmax mistake) and
submit; the instructor collects, grades with ``lossutils grade`` and releases the feedback with
``nbgrader release_feedback``; each student fetches their feedback. Expected scores come from
the fixture master's points, never from a grading run.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ASSIGNMENT, SOURCE, VENV_BIN, unsandboxed_flag

COURSE = "lossutils"


def _points() -> tuple[dict[str, float], float]:
    """Autograded points per test cell, and every point of the notebook, from the master."""
    cells = json.loads((SOURCE / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text())["cells"]
    graded = [c["metadata"]["nbgrader"] for c in cells if c["metadata"]["nbgrader"].get("grade")]
    auto = {m["grade_id"]: float(m["points"]) for m in graded if not m.get("solution")}
    return auto, sum(float(m["points"]) for m in graded)


def _party(folder: Path, config: str) -> dict:
    """A home of one's own (Jupyter config, data and cache inside it) and an nbgrader config."""
    folder.mkdir(parents=True)
    (folder / "nbgrader_config.py").write_text("c = get_config()  # noqa: F821\n" + config)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "JPY_")) and k not in ("NB_USER", "HOME")}
    env.update(HOME=str(folder), JUPYTER_CONFIG_DIR=str(folder / ".jupyter"),
               JUPYTER_DATA_DIR=str(folder / ".local" / "share" / "jupyter"),
               JUPYTER_RUNTIME_DIR=str(folder / ".runtime"),
               PATH=str(VENV_BIN) + os.pathsep + os.environ.get("PATH", ""))
    return env


def _run(command: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.grading
def test_release_fetch_submit_collect_grade_and_feedback_round_trip(tmp_path, sandboxed):
    from lossutils.grading.samples import generate_samples

    exchange = tmp_path / "exchange"
    exchange.mkdir()
    common = (f"c.CourseDirectory.course_id = {COURSE!r}\n"
              f"c.Exchange.root = {str(exchange)!r}\n")
    instructor = tmp_path / "instructor"
    teacher = _party(instructor, common + (
        "c.CourseDirectory.root = '.'\n"
        "c.CourseDirectory.source_directory = 'solutions'\n"
        "c.CourseDirectory.release_directory = 'course'\n"
        # the students are one OS user here; on a hub each owns their submission
        "c.CollectApp.check_owner = False\n"
    ))
    shutil.copytree(SOURCE / ASSIGNMENT, instructor / "solutions" / ASSIGNMENT)
    nbgrader = str(VENV_BIN / "nbgrader")
    _run([nbgrader, "generate_assignment", ASSIGNMENT], instructor, teacher)
    _run([nbgrader, "release_assignment", ASSIGNMENT], instructor, teacher)

    # the students' answers: the demo's samples, typed into the notebook each one fetched
    samples = tmp_path / "samples"
    generate_samples(str(SOURCE), str(samples), [ASSIGNMENT], extras=False)
    answers = {"alice": "correct", "bob": "mistake-2"}  # bob: softmax without the max shift
    students = {}
    for student, sample in answers.items():
        home = tmp_path / student
        env = _party(home, common + f"c.CourseDirectory.student_id = {student!r}\n")
        students[student] = (home, env)
        _run([nbgrader, "fetch_assignment", ASSIGNMENT], home, env)
        fetched = home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        assert fetched.read_bytes() == (
            instructor / "course" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_bytes()
        shutil.copyfile(samples / sample / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", fetched)
        _run([nbgrader, "submit", ASSIGNMENT], home, env)

    _run([nbgrader, "collect", ASSIGNMENT], instructor, teacher)
    for student in answers:
        assert {p.name for p in (instructor / "submitted" / student / ASSIGNMENT).iterdir()} == {
            f"{ASSIGNMENT}.ipynb", "timestamp.txt", "submission_secret.txt"}

    _run([str(VENV_BIN / "lossutils"), "grade", "submitted", "--out", "grading-work",
          "--timeout", "20", "--seed", "5", *unsandboxed_flag(sandboxed)], instructor, teacher)
    # grading-work is a course root of its own; the exchange settings come with the command
    released = _run([nbgrader, "release_feedback", ASSIGNMENT, f"--Exchange.root={exchange}"],
                    instructor / "grading-work", teacher)
    assert released.count("Releasing feedback for student") == 2

    auto, total = _points()
    expected = {"alice": sum(auto.values()),
                "bob": sum(auto.values()) - auto["test_softmax"]}
    pages = {}
    for student, (home, env) in students.items():
        _run([nbgrader, "fetch_feedback", ASSIGNMENT], home, env)
        [page] = (home / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html")
        pages[student] = page.read_text(encoding="utf-8")
        # the notebook's score (written answers wait for a human) is the first on the page
        first = re.search(r"Score: ([\d.]+) / ([\d.]+)", pages[student])
        assert (float(first[1]), float(first[2])) == (expected[student], total), student
        for secret in ("hidden=True", "BEGIN HIDDEN TESTS", "Traceback"):
            assert secret not in pages[student]
    # bob reads the checker's explanation of his mistake; the tag is for the report only
    # (the fixture's checker is in the notebook, so its text is on both pages as code; the
    # failure's output, which names what softmax returned, is on bob's only)
    assert "softmax returned" in pages["bob"]
    assert "softmax returned" not in pages["alice"]
    assert not any("diagnosis: no-max-shift]" in page for page in pages.values())


def test_release_files_are_copied_only_from_regular_small_files(tmp_path):
    from lossutils.platforms.exchange import add_release_files

    out, submitted = tmp_path / "out", tmp_path / "submitted"
    pages = {}
    for student in ("ann", "ben", "cy"):
        (submitted / student / ASSIGNMENT).mkdir(parents=True)
        page = Path("feedback") / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
        (out / page).parent.mkdir(parents=True)
        (out / page).write_text("<html></html>")
        pages[student] = page
    (tmp_path / "instructor-secret.txt").write_text("the instructor's file")
    for student, secret in (("ann", "a" * 128), ("ben", None), ("cy", "c" * 5000)):
        folder = submitted / student / ASSIGNMENT
        (folder / "timestamp.txt").write_text("2026-01-01 10:00:00.000000 UTC")
        if secret is None:  # a link to a file of the grader's machine: never followed
            (folder / "submission_secret.txt").symlink_to(tmp_path / "instructor-secret.txt")
        else:
            (folder / "submission_secret.txt").write_text(secret)
    (out / "results.json").write_text(json.dumps({
        "run": {"submissions": str(submitted)},
        "submissions": [{"student": s, "assignment": ASSIGNMENT, "feedback": str(p)}
                        for s, p in pages.items()],
    }))
    assert add_release_files(str(out)) == 1
    ann = out / pages["ann"].parent
    assert (ann / "submission_secret.txt").read_text() == "a" * 128
    assert (ann / "timestamp.txt").read_text().startswith("2026-01-01")
    for student in ("ben", "cy"):  # a symlink, and a secret too large to be nbgrader's
        assert not (out / pages[student].parent / "submission_secret.txt").exists()
