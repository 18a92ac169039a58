"""Tasks and results: typed, picklable (a process pool and Dask move them), and written out in
the JSON form that results.json and the ledger have always had."""

import dataclasses
import json
import pickle
import subprocess
import sys

import pytest

from lossutils.grading.problems import Problem, status_of
from lossutils.grading.task import (
    CellRecord,
    Master,
    MasterCell,
    MasterNotebook,
    Result,
    make_task,
)
from lossutils.grading.verify.scan import Finding
from lossutils.grading.verify.session import VerifiedScore

# The keys of a result in results.json (docs/grading.md), before kernel and scan.
RESULT_KEYS = {"student", "assignment", "notebook", "seed", "master_hash", "hash", "status",
               "problems", "cells", "score", "max_score", "autograded", "feedback_html",
               "seconds"}
CELL_KEYS = {"grade_id", "kind", "max_score", "score", "check", "diagnosis", "message",
             "comment"}


def _master() -> Master:
    cell = MasterCell("test_f", "code", True, "abc", "check('f', f)", 2.0, True, False, False,
                      "check('f', f)")
    notebook = MasterNotebook("h1", {"data.csv": b"1,2\n"}, {"name": "python3"}, (cell,),
                              ("numpy",))
    other = dataclasses.replace(notebook, cells=())
    return Master("a1", "h1", notebook.files, {"a1": notebook, "extra": other})


def _result() -> Result:
    verified = VerifiedScore("test_f", False, "f: 0/3 cases passed", "no_max_shift",
                             exercises=["f"])
    cell = CellRecord("test_f", "test", 2.0, 0.0, message="AssertionError: no",
                      kernel_score=2.0, verified=verified)
    return Result("ada", "a1", "a1", 7, "h1", hash="f00", status="tampering-suspected",
                  problems=[Problem("tampering-suspected", "test_f: ...")], cells=[cell],
                  score=0.0, max_score=2.0, kernel="forked",
                  scan=[Finding("f", 1, "exit", "ends the interpreter")], seconds=1.5)


def test_a_task_picks_its_notebook_of_the_master():
    task = make_task(student="ada", assignment="a1", notebook="a1", path=None, master=_master(),
                     timeout=5, seed=1)
    assert task.master.cells[0].name == "test_f"
    graded_as = make_task(student="ada", assignment="a1", notebook="mine", path=None,
                          master=_master(), master_notebook="extra", timeout=5, seed=1)
    assert graded_as.master.cells == ()
    with pytest.raises(TypeError, match="unexpected keyword argument 'timout'"):
        make_task(student="ada", assignment="a1", notebook="a1", path=None, master=_master(),
                  timout=5, seed=1)


def test_tasks_and_results_survive_pickling_whole():
    task = make_task(student="ada", assignment="a1", notebook="a1", path="/x/ada.ipynb",
                     master=_master(), timeout=5, seed=1, sandbox=False)
    assert pickle.loads(pickle.dumps(task)) == task
    result = _result()
    back = pickle.loads(pickle.dumps(result))
    assert back == result
    assert back.cells[0].verified.diagnosis == "no_max_shift"


def test_a_result_is_written_with_the_keys_results_json_always_had():
    plain = json.loads(json.dumps(_result().to_plain()))
    assert set(plain) == RESULT_KEYS | {"kernel", "scan"}
    assert set(plain["cells"][0]) == CELL_KEYS | {"kernel_score", "verified"}
    assert plain["cells"][0]["verified"]["diagnosis"] == "no_max_shift"
    assert plain["problems"] == [{"code": "tampering-suspected", "detail": "test_f: ..."}]
    assert plain["scan"][0]["pattern"] == "exit"
    # a notebook that never ran: no kernel, no scan, cells without verification
    bare = Result("bob", "a1", "a1", 7, "h1", cells=[CellRecord("test_f", "test", 2.0)])
    plain = bare.to_plain()
    assert set(plain) == RESULT_KEYS
    assert set(plain["cells"][0]) == CELL_KEYS


def test_the_status_is_the_first_problem_in_order_of_precedence():
    problems = [Problem("review-suggested", "x"), Problem("kernel-died", "y"),
                Problem("test-cell-restored", "z")]
    assert status_of(problems) == "kernel-died"
    with pytest.raises(ValueError, match="unknown problem code 'kernel-dead'"):
        Problem("kernel-dead", "y")


def test_the_package_offers_grade_without_importing_the_coordinator_first():
    code = ("import sys, lossutils.grading as grading\n"
            "assert 'lossutils.grading.run' not in sys.modules\n"
            "from lossutils.grading.run import grade\n"
            "assert grading.grade is grade\n")
    subprocess.run([sys.executable, "-c", code], check=True)
