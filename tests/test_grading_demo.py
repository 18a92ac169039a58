"""The demo on a real course notebook: every sample gets the score and reason its master implies.

Two assignments (the demo on all of them takes minutes): 05, and 07, whose train exercise is
verified with the student's own loss and optimizer passed by name; the fixture-based tests in
test_grading.py cover the machinery, these the real notebooks and checks together.
"""

import io
import json

import nbformat
import pytest

from lossutils.grading.demo import run_demo
from lossutils.grading.samples import expected_outcome
from tests.conftest import ROOT


@pytest.mark.grading
@pytest.mark.parametrize("assignment", ["05-hinge-svm", "07-linear-classifiers"])
def test_demo_on_a_real_assignment(tmp_path, assignment):
    table = io.StringIO()
    code = run_demo(str(tmp_path / "demo"), source=str(ROOT / "solutions"),
                    assignments=[assignment], timeout=10, stream=table, progress=False)
    results = json.loads((tmp_path / "demo" / "results.json").read_text())["submissions"]
    got = {r["student"]: (r["score"], r["status"]) for r in results}
    master = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb",
                           as_version=4)
    correct = expected_outcome(master, "correct")
    # the points of the master's test cells, summed independently of the generator
    total = sum(float(c.metadata["nbgrader"]["points"]) for c in master.cells
                if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade"))
    assert correct["score"] == total
    assert got["correct"] == (total, "ok")
    assert got["untouched"] == (0.0, "ok")
    assert got["corrupt-json"] == (0.0, "unreadable")
    assert got["kernel-dies"] == (0.0, "kernel-died")
    assert got["missing-notebook"] == (0.0, "missing-notebook")
    assert got["deleted-test-cell"] == (total, "test-cell-restored")
    for student in ("mistake-1", "mistake-2", "infinite-loop"):
        score, status = got[student]
        assert 0 < score < total
        assert status == ("timeout" if student == "infinite-loop" else "ok")
    assert code == 0, table.getvalue()
