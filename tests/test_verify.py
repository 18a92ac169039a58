"""Verification outside the kernel: honest answers pass, every attack earns nothing.

The submissions come from tests/redteam/attacks.py, generated from the release notebook of
03-cross-entropy. To keep the module fast the master is trimmed to two test cells: the
attacked ``softmax`` and the honest ``cross_entropy`` next to it, which must keep its points.
"""

import copy
import json
import time

import numpy as np
import pytest

from lossutils.grading.problems import Problem
from lossutils.grading.sandbox import Limits
from lossutils.grading.task import CellRecord
from lossutils.grading.verify import (
    CheckCall,
    VerifiedScore,
    apply_verification,
    check_calls,
    code_to_verify,
    reconcile,
    strip_magics,
    verify_submission,
)
from lossutils.grading.verify import _runner as runner
from tests.conftest import ROOT, load_attacks

MASTER = ROOT / "solutions" / "03-cross-entropy" / "03-cross-entropy.ipynb"
RELEASE = ROOT / "course" / "03-cross-entropy" / "03-cross-entropy.ipynb"
KEEP = {"setup", "softmax", "test_softmax", "cross_entropy", "test_cross_entropy"}
SEED = 424242

attacks = load_attacks()



def _trimmed(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    nb["cells"] = [c for c in nb["cells"]
                   if c["metadata"].get("nbgrader", {}).get("grade_id") in KEEP]
    return nb


class Books:
    """The trimmed master (verification plan) and the full master and release (submissions)."""

    def __init__(self):
        self.full = attacks.load(MASTER)
        self.master = _trimmed(self.full)
        self.release = attacks.load(RELEASE)

    def submission(self, cells=None):
        return attacks.submission(self.release, self.full, cells)


@pytest.fixture(scope="module")
def books():
    return Books()


def _cell(grade_id, source, *, solution=False, grade=False, cell_type="code"):
    return {"cell_type": cell_type, "source": source, "metadata": {"nbgrader": {
        "grade_id": grade_id, "solution": solution, "grade": grade}}}


# --------------------------------------------------------------------------- plain parts


def test_check_calls_reads_only_literal_check_calls_of_test_cells():
    master = {"cells": [
        _cell("softmax", 'check("softmax", softmax)', solution=True),
        _cell("test_softmax", 'from lossutils.checks import check\n'
              'check("softmax", softmax)\n### BEGIN HIDDEN TESTS\n'
              'check("softmax", softmax, hidden=True)\n### END HIDDEN TESTS'),
        _cell("test_odd", 'check(name, softmax)\ncheck("x", f())\nassert True', grade=True),
    ]}
    master["cells"][1]["metadata"]["nbgrader"]["grade"] = True
    assert check_calls(master) == {"test_softmax": [
        CheckCall("softmax", "softmax", False), CheckCall("softmax", "softmax", True)]}


def test_check_calls_reads_every_earlier_step_a_derivation_step_is_given():
    master = {"cells": [_cell("test_bce", 'from lossutils.checks import check\n'
                              'check("bce_logits.bce", bce, given=(log_sigmoid, log_one_minus))',
                              grade=True)]}
    assert check_calls(master) == {"test_bce": [CheckCall(
        "bce_logits.bce", "bce", False, (("given", "log_sigmoid"), ("given", "log_one_minus")))]}


def test_check_calls_only_where_check_is_the_course_checker():
    def test_cell(grade_id, source):
        return _cell(grade_id, source, grade=True)

    master = {"cells": [
        test_cell("test_a", 'check("softmax", softmax)'),
        _cell("setup", "from lossutils.checks import check"),
        test_cell("test_b", 'check("softmax", softmax)'),
        _cell("own", "def check(name, fn, hidden=False):\n    pass"),
        test_cell("test_c", 'check("softmax", softmax)'),
        test_cell("test_d", 'from lossutils.checks import check\ncheck("one_hot", one_hot)'),
        test_cell("test_e", 'check = print\ncheck("one_hot", one_hot)'),
        test_cell("test_f", 'from lossutils.checks import check as check\n'
                  'check("log_softmax", log_softmax)'),
    ]}
    assert list(check_calls(master)) == ["test_b", "test_d", "test_f"]
    fixture = ROOT / "tests" / "fixtures" / "grading" / "solutions" / "00-fixture"
    assert check_calls(attacks.load(fixture / "00-fixture.ipynb")) == {}


def test_check_calls_are_read_once_per_master_and_safe_to_change():
    """Each worker parses a master once; what one caller does with the calls (a list per
    test cell) cannot change what the next caller gets, and another master is read anew."""
    def master(exercise):
        cell = _cell("test_x", f'from lossutils.checks import check\ncheck("{exercise}", f)',
                     grade=True)
        return {"cells": [cell]}

    first = check_calls(master("softmax"))
    first["test_x"].append(CheckCall("tampered", "g", False))
    first["test_y"] = []
    assert check_calls(master("softmax")) == {"test_x": [CheckCall("softmax", "f", False)]}
    assert check_calls(master("one_hot")) == {"test_x": [CheckCall("one_hot", "f", False)]}


def test_check_calls_of_the_real_master_cover_every_exercise():
    calls = check_calls(attacks.load(MASTER))
    assert set(calls) == {"test_one_hot", "test_softmax", "test_log_softmax",
                          "test_cross_entropy", "test_cross_entropy_grad",
                          # the steps of the notebook's two derivations
                          "test_dlogsoftmax", "test_ce_grad", "test_dsoftmax_ii",
                          "test_dsoftmax_ij", "test_jacobian"}
    assert all([c.hidden for c in cs] == [False, True] for cs in calls.values())


@pytest.mark.parametrize(("source", "expected"), [
    ("x = 1\n", "x = 1\n"),
    ("s = '''\n%not a magic\n'''", "s = '''\n%not a magic\n'''"),
    ("%matplotlib inline\ndef f():\n    !ls\n    return 1",
     "pass\ndef f():\n    pass\n    return 1"),
    ("out = !ls\nx = 2", "pass\nx = 2"),
    ("%%timeit\nf()", None),
    ("def f(:\n", None),
])
def test_strip_magics(source, expected):
    assert strip_magics(source) == expected


def test_code_to_verify_takes_student_solutions_and_added_cells_never_locked_ones(books):
    nb = books.submission({"softmax": "def softmax(x):\n    return x\n"})
    nb["cells"].append({"cell_type": "code", "metadata": {}, "source":
                        "helper = 1\ntrain_for_an_hour()\nimport math\n"
                        "def twice(x):\n    return 2 * x\n"})
    nb["cells"].append({"cell_type": "code", "metadata": {}, "source": "plot(results)\n"})
    # A forged copy of a locked cell and a duplicate of a solution id are ignored.
    nb["cells"].append(_cell("setup", "import os\nos._exit(3)"))
    nb["cells"].append(_cell("softmax", "def softmax(x):\n    return 2 * x", solution=True))
    prelude, cells = code_to_verify(nb, books.full)
    # numpy, and the SymPy symbols the derivation steps are built from
    assert prelude[:2] == ["import numpy as np", "import sympy as sp"]
    assert prelude[2:]
    assert all(" = sp." in line for line in prelude[2:])
    labels = [label for label, _ in cells]
    added = f"cell {len(nb['cells']) - 4}"
    assert labels == ["one_hot", "softmax", "log_softmax", "cross_entropy", "dlogsoftmax",
                      "ce_grad", "dsoftmax_ii", "dsoftmax_ij", "jacobian",
                      "cross_entropy_grad", added]
    # Only the definitions of a cell the student added run; a cell without any is left out.
    assert dict(cells)[added] == "helper = 1\nimport math\ndef twice(x):\n    return 2 * x"
    # Only the master's solution ids count: the trimmed master has two.
    assert [label for label, _ in code_to_verify(nb, books.master)[1]][:2] == [
        "softmax", "cross_entropy"]
    assert dict(cells)["softmax"] == "def softmax(x):\n    return x\n"


def test_an_added_cell_with_an_unhashable_literal_key_is_read(books):
    # {[1]: 2} parses, and ast.literal_eval raises TypeError on it, not ValueError
    nb = books.submission()
    nb["cells"].append({"cell_type": "code", "metadata": {},
                        "source": "table = {[1]: 2}\ndef twice(x):\n    return 2 * x"})
    _, cells = code_to_verify(nb, books.full)
    assert cells[-1][1] == "def twice(x):\n    return 2 * x"


def test_prelude_holds_the_given_helpers_the_student_uses_and_nothing_else(books):
    uses = ("def softmax(logits):\n"
            "    return softmax_naive(logits - logits.max(axis=-1, keepdims=True))\n")
    prelude, _ = code_to_verify(books.submission({"softmax": uses}), books.full)
    assert prelude[0] == "import numpy as np"
    # besides the derivations' SymPy symbols, only the helper the student's softmax calls
    assert [p.split("(")[0] for p in prelude[1:] if " = sp." not in p
            and p != "import sympy as sp"] == ["def softmax_naive"]
    master = {"cells": [
        _cell("setup", "import numpy as np\nimport matplotlib.pyplot as plt\nimport os\n"
              "from lossutils import softmax as ref\nLIMIT = 10\nrng = np.random.default_rng(0)\n"
              "def helper(x):\n    return os.sep + str(x)\nplt.plot([1])"),
        _cell("f", "def f(x):\n    pass", solution=True),
    ]}
    student = {"cells": [_cell("f", "def f(x):\n    return helper(LIMIT), ref, rng, plt",
                               solution=True)]}
    assert code_to_verify(student, master)[0] == [
        "import os", "LIMIT = 10", "def helper(x):\n    return os.sep + str(x)"]


def test_sympy_codec_round_trip_and_limits():
    sp = pytest.importorskip("sympy")
    y, y_hat = sp.symbols("y y_hat", real=True)
    beta = sp.Symbol("beta", positive=True)
    expr = sp.log(2 * sp.pi) / 2 - sp.log(beta) / 2 + beta * (y - y_hat) ** 2 / 2
    back = runner.decode_sympy(json.loads(json.dumps(runner.encode_sympy(expr))))
    assert sp.simplify(back - expr) == 0
    assert back.free_symbols == expr.free_symbols
    bomb = runner.encode_sympy(((y + y_hat + beta) ** 12) ** 12)
    with pytest.raises(runner.SympyTooComplex, match="polynomial degree above 24"):
        runner.decode_sympy(bomb)
    with pytest.raises(ValueError, match="unsupported SymPy node 'Function'"):
        runner.decode_sympy({"f": "Function", "args": []})
    with pytest.raises(runner.SympyTooComplex, match="too long or malformed"):
        runner.decode_sympy({"int": "9" * 100})


def test_verified_score_to_plain_is_json():
    score = VerifiedScore("test_softmax", False, "m", None, "timeout: x", ["softmax"])
    assert json.loads(json.dumps(score.to_plain()))["error"] == "timeout: x"


def _record(grade_id, score, max_score=3.0, kind="test"):
    return CellRecord(grade_id, kind, max_score, score)


def test_reconcile_takes_the_verified_score_and_flags_disagreement_either_way():
    records = [_record("test_a", 3.0), _record("test_b", 3.0), _record("test_c", 0.0),
               _record("test_d", 2.0, 2.0), _record("answer", None, 3.0, "manual"),
               _record("test_unchecked", 1.0, 1.0), _record("test_e", 0.0),
               _record("test_f", 3.0)]
    # a cell the kernel never reached says nothing about the answer: no disagreement
    records[6].message = "not run: execution stopped before this cell"
    records[2].message = ("Traceback (most recent call last):\n"
                          "NameError: name 'c_vectorized' is not defined")
    verified = {
        "test_a": VerifiedScore("test_a", True, "a: 13/13 cases passed"),
        "test_b": VerifiedScore("test_b", False, "b: 0/13 cases passed; case 1 failed.\nmore",
                                "no_max_shift"),
        "test_c": VerifiedScore("test_c", True, "c: 14/14 cases passed"),
        "test_d": VerifiedScore("test_d", False, error="timeout: the solution code ran past "
                                "the time limit"),
        "answer": VerifiedScore("answer", False),
        "test_e": VerifiedScore("test_e", True, "e: 9/9 cases passed"),
        # never judged: the submission's budget ran out first (its own timeout says so)
        "test_f": VerifiedScore("test_f", False, error="budget: the submission as a whole "
                                "ran out of its time budget"),
    }
    problems = reconcile(records, verified)
    assert [r.score for r in records] == [3.0, 0.0, 3.0, 0.0, None, 1.0, 3.0, 0.0]
    assert [r.kernel_score for r in records] == [3.0, 3.0, 0.0, 2.0, None, None, 0.0, 3.0]
    assert records[1].verified.diagnosis == "no_max_shift"
    assert records[1].to_plain()["verified"]["diagnosis"] == "no_max_shift"
    assert "verified" not in records[5].to_plain()
    assert records[3].message.startswith("timeout")
    assert problems == [
        Problem("tampering-suspected", "test_b: the notebook's test gave 3/3, "
                "verification outside the kernel 0: b: 0/13 cases passed; case 1 failed."),
        # failed in the kernel, passed outside it: the kernel ran other code, or code that
        # behaves otherwise there
        Problem("tampering-suspected", "test_c: the notebook's test gave 0/3, "
                "verification outside the kernel 3: c: 14/14 cases passed; the notebook's "
                "test failed with: NameError: name 'c_vectorized' is not defined (a name "
                "defined only in a later cell?)"),
        Problem("verification-failed", "test_d: timeout: the solution code ran "
                "past the time limit"),
        Problem("tampering-suspected", "test_d: the notebook's test gave 2/2, "
                "verification outside the kernel 0: timeout: the solution code ran past the "
                "time limit"),
        Problem("verification-failed", "test_f: budget: the submission as a whole ran out "
                "of its time budget"),
    ]


# --------------------------------------------------------------------------- in the sandbox


# Far beyond the 3 s call timeout: a loop stopped before it was stopped by the call timeout,
# however loaded the machine.
WALL_SECONDS = 600


def _verify(nb, master, **kw):
    kw.setdefault("call_timeout", 3)
    kw.setdefault("limits", Limits(memory_bytes=2**30, cpu_seconds=30,
                                   wall_seconds=WALL_SECONDS, max_processes=16,
                                   max_output_bytes=4_000_000))
    return verify_submission(nb, master, seed=SEED, **kw)


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_honest_release_and_blank_release(books):
    master = books.master
    done = _verify(books.submission(), master)
    assert {k: v.passed for k, v in done.items()} == {"test_softmax": True,
                                                     "test_cross_entropy": True}
    assert done["test_softmax"].error is None
    blank = _verify(books.release, master)
    assert not any(v.passed for v in blank.values())
    assert "NotImplementedError" in blank["test_softmax"].message


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_a_wrong_answer_keeps_the_checkers_diagnosis(books):
    naive = ("def softmax(logits):\n    e = np.exp(logits)\n"
             "    return e / e.sum(axis=-1, keepdims=True)\n")
    done = _verify(books.submission({"softmax": naive}), books.master)
    assert not done["test_softmax"].passed
    assert done["test_softmax"].error is None
    # The same diagnosis as the checker gives in the kernel, judged in the trusted process.
    from lossutils.checks import run_check

    ns = {"np": np}
    exec(naive, ns)
    expected = run_check("softmax", ns["softmax"], hidden=False)
    assert done["test_softmax"].diagnosis == expected.diagnosis is not None
    assert done["test_cross_entropy"].passed


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_an_endless_cell_costs_only_its_own_exercise(books):
    # As in the kernel: the looping cell is interrupted at the time limit, and the cells after
    # it still load, so the honest neighbour keeps its points.
    looping = "while True:\n    pass\n\ndef softmax(logits):\n    return logits\n"
    done = _verify(books.submission({"softmax": looping}), books.master)
    assert not done["test_softmax"].passed
    assert done["test_cross_entropy"].passed


def _code_attacks(tmp_path_factory):
    base = tmp_path_factory.mktemp("redteam")
    other = base / "other.ipynb"
    other.write_text(json.dumps(attacks.honest(attacks.load(RELEASE), attacks.load(MASTER))))
    (base / "out").mkdir()
    return base, attacks.code_attacks(solutions_dir=str(ROOT / "solutions"),
                                      outside_file=str(base / "pwned.txt"),
                                      other_submission=str(other),
                                      output_dir=str(base / "out"))


@pytest.fixture(scope="module",
                params=["started", pytest.param("forked", marks=pytest.mark.needs_root)])
def attack_results(books, tmp_path_factory, request):
    """Every code attack verified once: name -> (attack, results, seconds).

    Twice: with a verification process started per submission, and forked from the
    verification zygote (where the grader runs as root).
    """
    from lossutils.grading.verify import channel

    base, found = _code_attacks(tmp_path_factory)
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "started":
            mp.setenv("LOSSUTILS_NO_ZYGOTE", "1")
        for attack in found:
            start = time.monotonic()
            done = _verify(books.submission(attack.cells), books.master)
            results[attack.name] = (attack, done, time.monotonic() - start)
    if request.param == "forked":
        assert channel.ZYGOTE_FAILED == []
    return base, results


@pytest.mark.grading
@pytest.mark.needs_bwrap
@pytest.mark.needs_root
def test_verification_forks_from_a_zygote_that_never_imported_lossutils(books):
    from lossutils.grading.sandbox import bwrap
    from lossutils.grading.sandbox import zygote as zygote_module

    done = _verify(books.submission(), books.master)
    assert all(score.passed for score in done.values())
    # Other tests of the session may have left verification zygotes of other masters: each
    # must be free of lossutils.
    zygotes = [z for (_, _, bare), z in zygote_module._ZYGOTES.items() if bare]
    assert zygotes
    probe = "import sys; sys.exit(7 if any(m.startswith('lossutils') for m in sys.modules) else 3)"
    for zygote in zygotes:
        assert "numpy" in zygote.preloaded
        assert not any(name.split(".")[0] == "lossutils" for name in zygote.preloaded)
        runner = zygote.spawn(bwrap.sandbox_uid(), probe)
        try:
            assert runner.wait(timeout=10) == 3  # nothing of lossutils in the forked process
        finally:
            runner.close()


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_no_attack_earns_a_point_and_honest_neighbours_keep_theirs(attack_results):
    _, results = attack_results
    assert len(results) >= 20
    for name, (attack, done, seconds) in results.items():
        assert not done["test_softmax"].passed, name
        if not attack.kills_process:
            assert done["test_cross_entropy"].passed, (name, done)
        # Loops, forks and hogs are stopped by the call timeout, not by the wall limit.
        assert seconds < WALL_SECONDS, (name, seconds)


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_nothing_outside_the_sandbox_was_written(attack_results):
    base, _ = attack_results
    assert not (base / "pwned.txt").exists()
    assert list((base / "out").iterdir()) == []


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_failures_of_the_process_are_reported_as_errors(attack_results):
    _, results = attack_results
    expected = {"infinite-loop": "timeout", "fork-bomb": "timeout", "os-exit-call": "crashed",
                "os-exit-top": "crashed", "forge-protocol": "protocol"}
    for name, kind in expected.items():
        error = results[name][1]["test_softmax"].error
        assert str(error).startswith(kind), (name, error)
    for name, text in {"memory-bomb": "MemoryError", "network": "OSError",
                       "sys-exit": "SystemExit", "keyboard-interrupt": "KeyboardInterrupt",
                       "reference-direct": "ModuleNotFoundError",
                       "read-solutions": "FileNotFoundError"}.items():
        score = results[name][1]["test_softmax"]
        assert score.error is None, (name, score)
        assert text in score.message, (name, score)


@pytest.mark.grading
@pytest.mark.needs_bwrap
def test_apply_verification_folds_everything_into_a_worker_result(books):
    nb = books.submission({"softmax": "np.allclose = lambda *a, **k: True\n"
                                      "def softmax(logits):\n    return logits\n"})
    cells = [_record("test_softmax", 3.0), _record("test_cross_entropy", 3.0)]
    problems = []
    findings = apply_verification(cells, problems, nb, books.master, seed=SEED, call_timeout=3)
    assert sum(c.score for c in cells) == 3.0
    assert [p.code for p in problems] == ["tampering-suspected", "review-suggested"]
    assert problems[0].detail.endswith("; scan: module-attribute-assignment (softmax line 1)")
    assert findings[0].pattern == "module-attribute-assignment"
    assert findings[0].cell == "softmax"
