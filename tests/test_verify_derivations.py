"""Derivation steps verified outside the kernel: expressions carried out of the sandbox.

The student's cells run in the sandboxed verification process; each step's SymPy expression
comes back as an allow-listed tree (``verify._runner.encode_sympy``) and is judged by the
trusted checker, which must reach the verdict and the diagnosis of the kernel's own check.
The master is notebook 01, trimmed to the coin's derivation.
"""

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import sympy as sp

from lossutils.checks import _symeval, run_check
from lossutils.grading.sandbox import Limits, sandbox_available
from lossutils.grading.verify import _runner as runner
from lossutils.grading.verify import check_calls, code_to_verify, verify_submission

ROOT = Path(__file__).resolve().parent.parent
MASTER = ROOT / "solutions" / "01-likelihood" / "01-likelihood.ipynb"
RELEASE = ROOT / "course" / "01-likelihood" / "01-likelihood.ipynb"
KEEP = {"setup", "coin-symbols", "log_lik", "test_log_lik", "score", "test_score", "p_hat",
        "test_p_hat"}
SEED = 31337

_spec = importlib.util.spec_from_file_location("redteam_attacks", Path(__file__).parent
                                               / "redteam" / "attacks.py")
attacks = sys.modules.setdefault("redteam_attacks", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(attacks)

needs_sandbox = pytest.mark.skipif(not sandbox_available(),
                                   reason="bubblewrap is not available on this machine")


def _trimmed(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    nb["cells"] = [c for c in nb["cells"]
                   if c["metadata"].get("nbgrader", {}).get("grade_id") in KEEP]
    return nb


@pytest.fixture(scope="module")
def books():
    full = attacks.load(MASTER)
    return {"full": full, "master": _trimmed(full), "release": attacks.load(RELEASE)}


def _submission(books, cells=None):
    return attacks.submission(books["release"], books["full"], cells)


def _verify(nb, books):
    return verify_submission(nb, books["master"], seed=SEED, call_timeout=10,
                             limits=Limits(memory_bytes=2**30, cpu_seconds=60,
                                           wall_seconds=120, max_processes=16,
                                           max_output_bytes=4_000_000))


# --------------------------------------------------------------------------- plain parts


def test_the_codec_knows_exactly_the_nodes_the_checker_evaluates():
    evaluated = set(_symeval._FUNCTIONS) | set(_symeval._LOGIC) | {
        "Add", "Mul", "Pow", "Sum", "Product", "Indexed", "Tuple", "ExprCondPair"}
    assert set(runner.SYMPY_FUNCTIONS) == evaluated


def test_check_calls_read_the_earlier_step_as_given(books):
    calls = check_calls(books["master"])
    assert calls["test_p_hat"][0].uses == (("given", "score"),)
    assert calls["test_log_lik"][0].uses == ()


def test_the_prelude_holds_the_symbols_the_answers_are_built_from(books):
    prelude, cells = code_to_verify(_submission(books), books["master"])
    text = "\n".join(prelude)
    assert "import sympy as sp" in text
    assert "p = sp.Symbol('p', positive=True)" in text
    assert "y = sp.IndexedBase('y')" in text
    assert [label for label, _ in cells] == ["log_lik", "score", "p_hat"]


@pytest.mark.parametrize("expr", [
    sp.Sum(sp.IndexedBase("y")[sp.Symbol("m")] * sp.log(sp.Symbol("p")),
           (sp.Symbol("m"), 1, sp.Symbol("M"))),
    sp.Piecewise((sp.Symbol("w"), sp.Symbol("w") < 1), (0, True)),
    sp.Max(0, 1 - sp.Symbol("z")) + sp.Heaviside(sp.Symbol("z"), 0),
    sp.KroneckerDelta(sp.Symbol("i"), sp.Symbol("j")) * sp.exp(sp.Symbol("x")),
])
def test_the_codec_round_trips_the_answers_of_the_derivations(expr):
    back = runner.decode_sympy(json.loads(json.dumps(runner.encode_sympy(expr))))
    assert back == expr


def test_a_decoded_tower_of_powers_is_not_evaluated():
    tower = {"f": "Pow", "args": [{"int": "2"}, {"int": "9" * 30}]}
    expr = runner.decode_sympy(tower)  # would be 10**30 bits if evaluated
    assert isinstance(expr, sp.Pow)


# --------------------------------------------------------------------------- in the sandbox


@pytest.mark.grading
@needs_sandbox
def test_honest_steps_pass_and_untouched_ones_score_nothing(books):
    done = _verify(_submission(books), books)
    assert {k: v.passed for k, v in done.items()} == {"test_log_lik": True, "test_score": True,
                                                     "test_p_hat": True}
    blank = _verify(books["release"], books)
    assert not any(v.passed for v in blank.values())
    assert {v.diagnosis for v in blank.values()} == {"not_implemented"}


@pytest.mark.grading
@needs_sandbox
def test_a_wrong_step_keeps_the_kernels_diagnosis_and_the_next_step_follows(books):
    wrong = ("log_lik = sp.Sum(y[m] * sp.log(p) + (1 - y[m]) * sp.log(1 + p), (m, 1, M))\n")
    score = "score = sp.diff(log_lik, p)\n"
    done = _verify(_submission(books, {"log_lik": wrong, "score": score}), books)
    assert not done["test_log_lik"].passed
    assert done["test_score"].passed  # follows from the student's own log_lik
    assert "follows correctly" in done["test_score"].message
    p, M = sp.Symbol("p", positive=True), sp.Symbol("M", integer=True, positive=True)
    m, y = sp.Symbol("m", integer=True, positive=True), sp.IndexedBase("y")
    kernel = run_check("bernoulli_mle.log_lik",
                       sp.Sum(y[m] * sp.log(p) + (1 - y[m]) * sp.log(1 + p), (m, 1, M)))
    assert done["test_log_lik"].diagnosis == kernel.diagnosis
    assert done["test_log_lik"].message == kernel.message


@pytest.mark.grading
@needs_sandbox
def test_unsupported_huge_and_foreign_answers_get_the_kernels_verdict(books):
    cells = {
        "log_lik": "log_lik = sp.Derivative(sp.Sum(y[m] * sp.log(p), (m, 1, M)), p)\n",
        "score": ("score = p\nfor _ in range(3000):\n"
                  "    score = sp.Add(score, p, evaluate=False)\n"),
        "p_hat": "p_hat = [sp.Sum(y[m], (m, 1, M)) / M]\n",
    }
    done = _verify(_submission(books, cells), books)
    assert done["test_log_lik"].diagnosis == "unsupported"
    assert ".doit()" in done["test_log_lik"].message
    assert done["test_score"].diagnosis == "too_large"
    assert done["test_p_hat"].diagnosis == "wrong_type"
    assert "sp.solve returns a list" in done["test_p_hat"].message
