"""The derivation exercises, graded step by step (``lossutils.checks._derivation``).

For every step: an answer written differently from the master passes (also on hidden points,
for any grading seed); every catalogued mistake is rejected with its diagnosis; the generic
diagnoses (a lost sum, a foreign symbol, a wrong type, a factor, a constant) are recognised;
a step that follows from a wrong earlier step passes; and no message ever contains the
expected expression. The answers below are written here, the way a student would type them
in the notebook, never taken from the checker.
"""

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import sympy as sp

from lossutils.checks import CheckFailed, check, exercises, get_exercise, run_check
from lossutils.checks._symeval import Budget, TooComplex, evaluate

STEPS = [name for name in exercises() if getattr(get_exercise(name), "takes_value", False)]


def _symbols():
    """The symbols as the notebooks define them."""
    s = SimpleNamespace()
    s.p = sp.Symbol("p", positive=True)
    s.M = sp.Symbol("M", integer=True, positive=True)
    s.m = sp.Symbol("m", integer=True, positive=True)
    s.y = sp.IndexedBase("y")
    s.x = sp.IndexedBase("x")
    s.mu = sp.Symbol("mu", real=True)
    s.sigma = sp.Symbol("sigma", positive=True)
    s.yhat = sp.IndexedBase("yhat")
    s.beta = sp.Symbol("beta", positive=True)
    s.b = sp.Symbol("b", positive=True)
    s.c = sp.Symbol("c", real=True)
    s.K = sp.Symbol("K", integer=True, positive=True)
    return s


S = _symbols()


def _sum(body):
    return sp.Sum(body, (S.m, 1, S.M))


def _mean_x():
    return _sum(S.x[S.m]) / S.M


def _sq():
    return _sum((S.yhat[S.m] - S.y[S.m]) ** 2)


def _gauss_density():
    return sp.sqrt(S.beta / (2 * sp.pi)) * sp.exp(-S.beta * (S.y[S.m] - S.yhat[S.m]) ** 2 / 2)


def _abs():
    return _sum(sp.Abs(S.yhat[S.m] - S.y[S.m]))


# --------------------------------------------------------------------------- right answers

# Each written differently from the master where a different form exists.
CORRECT = {
    "bernoulli_mle.log_lik": sp.log(sp.Product(S.p ** S.y[S.m] * (1 - S.p) ** (1 - S.y[S.m]),
                                               (S.m, 1, S.M))),
    "bernoulli_mle.score": _sum((S.y[S.m] - S.p) / (S.p * (1 - S.p))),
    "bernoulli_mle.p_hat": 1 - _sum(1 - S.y[S.m]) / S.M,
    "gaussian_mle.gauss_log_lik": _sum(sp.log(sp.exp(-(S.x[S.m] - S.mu) ** 2 / (2 * S.sigma**2))
                                              / S.sigma)) + 17,
    "gaussian_mle.dlog_dmu": (_sum(S.x[S.m]) - S.M * S.mu) / S.sigma**2,
    "gaussian_mle.mu_hat": _sum(S.x[S.m] / S.M),
    "gaussian_mle.dlog_dsigma": (_sum((S.x[S.m] - S.mu) ** 2) - S.M * S.sigma**2) / S.sigma**3,
    "gaussian_mle.sigma2_hat": _sum(S.x[S.m] ** 2) / S.M - _mean_x() ** 2,
    "gaussian_precision.nll_beta": -_sum(sp.log(_gauss_density())),
    "gaussian_precision.dnll_dbeta": (S.beta * _sq() - S.M) / (2 * S.beta),
    "gaussian_precision.beta_hat": 1 / (_sq() / S.M),
    "laplace_l1.laplace_nll": -_sum(sp.log(sp.exp(-sp.Abs(S.y[S.m] - S.yhat[S.m]) / S.b)
                                           / (2 * S.b))),
    "laplace_l1.l1_slope": _sum((S.c - S.y[S.m]) / sp.Abs(S.c - S.y[S.m])),
    "laplace_l1.c_hat": S.y[(S.M + 1) / 2],
}

# (step, diagnosis, wrong answer): every catalogued mistake, then generic ones.
BUGGY = [
    ("bernoulli_mle.log_lik", "likelihood_not_log",
     sp.Product(S.p ** S.y[S.m] * (1 - S.p) ** (1 - S.y[S.m]), (S.m, 1, S.M))),
    ("bernoulli_mle.log_lik", "negated",
     -_sum(S.y[S.m] * sp.log(S.p)) - _sum((1 - S.y[S.m]) * sp.log(1 - S.p))),
    ("bernoulli_mle.log_lik", "swapped",
     _sum(S.y[S.m] * sp.log(1 - S.p) + (1 - S.y[S.m]) * sp.log(S.p))),
    ("bernoulli_mle.log_lik", "missing_tails", sp.log(S.p) * _sum(S.y[S.m])),
    ("bernoulli_mle.log_lik", "lost_sum",
     S.y[S.m] * sp.log(S.p) + (1 - S.y[S.m]) * sp.log(1 - S.p)),
    ("bernoulli_mle.log_lik", "factor",
     _sum(S.y[S.m] * sp.log(S.p, 10) + (1 - S.y[S.m]) * sp.log(1 - S.p, 10))),
    ("bernoulli_mle.log_lik", "factor_m",
     _sum(S.y[S.m] * sp.log(S.p) + (1 - S.y[S.m]) * sp.log(1 - S.p)) / S.M),
    ("bernoulli_mle.score", "chain_rule_sign",
     _sum(S.y[S.m]) / S.p + _sum(1 - S.y[S.m]) / (1 - S.p)),
    ("bernoulli_mle.score", "negated", _sum((S.p - S.y[S.m]) / (S.p * (1 - S.p)))),
    ("bernoulli_mle.score", "not_differentiated",
     _sum(sp.log(S.p ** S.y[S.m] * (1 - S.p) ** (1 - S.y[S.m])))),
    ("bernoulli_mle.p_hat", "tails", _sum(1 - S.y[S.m]) / S.M),
    ("bernoulli_mle.p_hat", "inverted", S.M / _sum(S.y[S.m])),
    ("bernoulli_mle.p_hat", "count", _sum(S.y[S.m])),
    ("bernoulli_mle.p_hat", "bessel", _sum(S.y[S.m]) / (S.M - 1)),
    ("bernoulli_mle.p_hat", "contains_parameter", S.p * _sum(S.y[S.m]) / S.M),
    ("gaussian_mle.gauss_log_lik", "sigma_as_variance",
     _sum(-sp.log(2 * sp.pi * S.sigma) / 2 - (S.x[S.m] - S.mu) ** 2 / (2 * S.sigma))),
    ("gaussian_mle.gauss_log_lik", "missing_half",
     -S.M * sp.log(S.sigma) - _sum((S.x[S.m] - S.mu) ** 2) / S.sigma**2),
    ("gaussian_mle.gauss_log_lik", "dropped_log_sigma",
     -_sum((S.x[S.m] - S.mu) ** 2) / (2 * S.sigma**2)),
    ("gaussian_mle.gauss_log_lik", "missing_sqrt",
     _sum(-sp.log(2 * sp.pi * S.sigma**2) - (S.x[S.m] - S.mu) ** 2 / (2 * S.sigma**2))),
    ("gaussian_mle.gauss_log_lik", "negated",
     S.M * sp.log(S.sigma) + _sum((S.x[S.m] - S.mu) ** 2) / (2 * S.sigma**2)),
    ("gaussian_mle.gauss_log_lik", "lost_sum",
     -sp.log(S.sigma) - (S.x[S.m] - S.mu) ** 2 / (2 * S.sigma**2)),
    ("gaussian_mle.dlog_dmu", "inner_sign", _sum(S.mu - S.x[S.m]) / S.sigma**2),
    ("gaussian_mle.dlog_dmu", "missing_variance", _sum(S.x[S.m]) - S.M * S.mu),
    ("gaussian_mle.dlog_dmu", "sigma_not_squared", _sum(S.x[S.m] - S.mu) / S.sigma),
    ("gaussian_mle.dlog_dmu", "factor", 2 * _sum(S.x[S.m] - S.mu) / S.sigma**2),
    ("gaussian_mle.mu_hat", "sum_not_mean", _sum(S.x[S.m])),
    ("gaussian_mle.mu_hat", "bessel", _sum(S.x[S.m]) / (S.M - 1)),
    ("gaussian_mle.mu_hat", "squares", _sum(S.x[S.m] ** 2 / S.M)),
    ("gaussian_mle.mu_hat", "contains_parameter", _sum(S.x[S.m] - S.mu) / S.M),
    ("gaussian_mle.dlog_dsigma", "missing_log_term", _sum((S.x[S.m] - S.mu) ** 2) / S.sigma**3),
    ("gaussian_mle.dlog_dsigma", "log_term_once",
     _sum((S.x[S.m] - S.mu) ** 2) / S.sigma**3 - 1 / S.sigma),
    ("gaussian_mle.dlog_dsigma", "power_rule",
     _sum((S.x[S.m] - S.mu) ** 2) / S.sigma**2 - S.M / S.sigma),
    ("gaussian_mle.dlog_dsigma", "wrt_variance",
     (_sum((S.x[S.m] - S.mu) ** 2) - S.M * S.sigma**2) / (2 * S.sigma**4)),
    ("gaussian_mle.sigma2_hat", "bessel",
     _sum((S.x[S.m] - _mean_x()) ** 2) / (S.M - 1)),
    ("gaussian_mle.sigma2_hat", "std_not_variance",
     sp.sqrt(_sum(S.x[S.m] ** 2) / S.M - _mean_x() ** 2)),
    ("gaussian_mle.sigma2_hat", "second_moment", _sum(S.x[S.m] ** 2) / S.M),
    ("gaussian_mle.sigma2_hat", "absolute", _sum(sp.Abs(S.x[S.m] - _mean_x())) / S.M),
    ("gaussian_precision.nll_beta", "std_instead_of_variance",
     S.M * sp.log(2 * sp.pi) / 2 - S.M * sp.log(S.beta) + S.beta**2 * _sq() / 2),
    ("gaussian_precision.nll_beta", "precision_as_variance",
     S.M * sp.log(2 * sp.pi * S.beta) / 2 + _sq() / (2 * S.beta)),
    ("gaussian_precision.nll_beta", "missing_half",
     S.M * sp.log(2 * sp.pi / S.beta) / 2 + S.beta * _sq()),
    ("gaussian_precision.nll_beta", "dropped_constant",
     S.beta * _sq() / 2 - S.M * sp.log(S.beta) / 2),
    ("gaussian_precision.nll_beta", "negated", _sum(sp.log(_gauss_density()))),
    ("gaussian_precision.nll_beta", "lost_sum", -sp.log(_gauss_density())),
    ("gaussian_precision.dnll_dbeta", "negated", S.M / (2 * S.beta) - _sq() / 2),
    ("gaussian_precision.dnll_dbeta", "missing_log_term", _sq() / 2),
    ("gaussian_precision.dnll_dbeta", "log_term_once", _sq() / 2 - 1 / (2 * S.beta)),
    ("gaussian_precision.dnll_dbeta", "missing_half", _sq() - S.M / (2 * S.beta)),
    ("gaussian_precision.beta_hat", "variance_not_precision", _sq() / S.M),
    ("gaussian_precision.beta_hat", "std", sp.sqrt(S.M) / sp.sqrt(_sq())),
    ("gaussian_precision.beta_hat", "bessel", (S.M - 1) / _sq()),
    ("gaussian_precision.beta_hat", "missing_m", 1 / _sq()),
    ("gaussian_precision.beta_hat", "contains_parameter", S.M / (S.beta * _sq())),
    ("laplace_l1.laplace_nll", "missing_two", S.M * sp.log(S.b) + _abs() / S.b),
    ("laplace_l1.laplace_nll", "squared", S.M * sp.log(2 * S.b) + _sq() / S.b),
    ("laplace_l1.laplace_nll", "scale_multiplies", S.M * sp.log(2 * S.b) + S.b * _abs()),
    ("laplace_l1.laplace_nll", "dropped_normaliser", _abs() / S.b),
    ("laplace_l1.laplace_nll", "negated", -S.M * sp.log(2 * S.b) - _abs() / S.b),
    ("laplace_l1.l1_slope", "negated", _sum(sp.sign(S.y[S.m] - S.c))),
    ("laplace_l1.l1_slope", "l2_gradient", S.M * S.c - _sum(S.y[S.m])),
    ("laplace_l1.l1_slope", "constant_slope", S.M),
    ("laplace_l1.c_hat", "mean", _sum(S.y[S.m]) / S.M),
    ("laplace_l1.c_hat", "off_by_one", S.y[(S.M - 1) / 2]),
    ("laplace_l1.c_hat", "midrange", (S.y[1] + S.y[S.M]) / 2),
    ("laplace_l1.c_hat", "index_range", S.y[S.M + 1]),
    ("gaussian_mle.sigma2_hat", "index_range", sp.Sum((S.x[S.m] - _mean_x()) ** 2,
                                                       (S.m, 0, S.M - 1)) / S.M),
]


# --------------------------------------------------------------------------- the tests


def test_every_step_has_a_right_answer_and_three_catalogued_mistakes():
    assert set(CORRECT) == set(STEPS)
    for name in STEPS:
        assert len(get_exercise(name).mistakes) >= 3, name


@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
@pytest.mark.parametrize("name", STEPS)
def test_a_right_answer_in_another_form_passes(name, hidden, capsys):
    check(name, CORRECT[name], hidden=hidden)
    out = capsys.readouterr()
    assert out.out.startswith(f"{name}: correct (checked at ")
    assert out.err == ""


@pytest.mark.parametrize("seed", [1, 987654321])
@pytest.mark.parametrize("name", STEPS)
def test_a_right_answer_passes_for_any_grading_seed(name, seed):
    assert run_check(name, CORRECT[name], hidden=True, seed=seed).passed


@pytest.mark.parametrize(("name", "diagnosis", "answer"),
                         [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in BUGGY])
def test_a_wrong_answer_is_diagnosed(name, diagnosis, answer):
    with pytest.raises(CheckFailed) as info:
        check(name, answer)
    assert info.value.diagnosis == diagnosis, str(info.value)
    message = str(info.value)
    assert message.endswith(f"[check: {name}; diagnosis: {diagnosis}]")
    catalogue = {m.id: m.message for m in get_exercise(name).mistakes}
    if diagnosis in catalogue:
        assert f"Diagnosis: {catalogue[diagnosis]}" in message
    hidden = run_check(name, answer, hidden=True, seed=5)
    assert hidden.diagnosis == diagnosis


@pytest.mark.parametrize("name", STEPS)
def test_every_catalogued_mistake_has_a_wrong_answer(name):
    covered = {d for n, d, _ in BUGGY if n == name}
    assert {m.id for m in get_exercise(name).mistakes} <= covered


@pytest.mark.parametrize("name", STEPS)
def test_catalogued_mistakes_differ_from_the_answer(name):
    # A model that agreed with the answer would diagnose nothing and hide a bug in it.
    exercise = get_exercise(name)
    for mistake in exercise.mistakes:
        for model in mistake.models:
            result = run_check(name, model(exercise.derivation.ns))
            assert not result.passed, (name, mistake.id)
            assert result.diagnosis == mistake.id, (name, mistake.id, result.message)


def _wrong_answers(name):
    """The catalogue's models, the test's wrong answers and some random wrong ones."""
    exercise = get_exercise(name)
    ns = exercise.derivation.ns
    truth = exercise.truth()
    answers = [model(ns) for m in exercise.mistakes for model in m.models]
    answers += [answer for n, _, answer in BUGGY if n == name]
    used = [getattr(ns, u) for u in exercise.step.uses
            if u not in exercise.derivation.symbols.indexed]
    answers += [truth + 1, 3 * truth, truth**2, truth + used[0], sp.exp(truth),
                [truth], (truth, truth), sp.Eq(used[0], truth), str(truth), None, 2.5,
                sp.Symbol("theta") * truth]
    return answers


def _forms(expr) -> set:
    forms = {str(expr), sp.latex(expr), sp.srepr(expr), sp.sstr(expr)}
    for rewrite in (sp.simplify, sp.expand, sp.factor):
        try:
            other = rewrite(expr)
        except StopIteration:  # sympy's sum_simplify fails on some nested sums
            continue
        forms |= {str(other), sp.latex(other)}
    return {f for f in forms if len(f) > 3}


@pytest.mark.parametrize("name", STEPS)
def test_no_message_shows_the_expected_expression(name):
    forms = _forms(get_exercise(name).truth())
    for answer in _wrong_answers(name):
        for hidden in (False, True):
            message = run_check(name, answer, hidden=hidden).message
            for form in forms:
                assert form not in message, (name, form, message)


@pytest.mark.parametrize("name", STEPS)
def test_wrong_types_and_symbols_get_a_message_saying_what_was_expected(name):
    exercise = get_exercise(name)
    allowed = exercise.allowed()
    for answer, diagnosis in [(None, "not_set"), ("p * x", "wrong_type"),
                              ([sp.Integer(1)], "wrong_type"), (0.5, "wrong_type"),
                              (sp.Eq(sp.Symbol("q"), 1), "wrong_type"),
                              (sp.Symbol("theta") + 1, "foreign_symbols")]:
        result = run_check(name, answer)
        assert result.diagnosis == diagnosis, (answer, result.message)
        assert allowed in result.message


def test_the_list_from_sp_solve_is_named():
    result = run_check("bernoulli_mle.p_hat", [_sum(S.y[S.m]) / S.M])
    assert "sp.solve returns a list" in result.message


def test_an_unevaluated_derivative_is_named():
    result = run_check("bernoulli_mle.score", sp.Derivative(_sum(S.y[S.m] * sp.log(S.p)), S.p))
    assert result.diagnosis == "unsupported"
    assert ".doit()" in result.message


def test_symbols_with_other_assumptions_are_the_same_symbols():
    p, M, m, y = sp.Symbol("p"), sp.Symbol("M"), sp.Symbol("j"), sp.IndexedBase("y")
    answer = sp.Sum(y[m] / p - (1 - y[m]) / (1 - p), (m, 1, M))
    assert run_check("bernoulli_mle.score", answer).passed


def test_a_step_that_follows_from_a_wrong_earlier_step_passes():
    wrong = _sum(S.y[S.m] * sp.log(S.p) + (1 - S.y[S.m]) * sp.log(1 + S.p))  # log(1 + p)
    assert not run_check("bernoulli_mle.log_lik", wrong).passed
    score = sp.diff(wrong, S.p)
    result = run_check("bernoulli_mle.score", score, given=wrong)
    assert result.passed
    assert "follows correctly from your log_lik" in result.message
    # without the earlier step, or from a different one, it is wrong
    assert not run_check("bernoulli_mle.score", score).passed
    assert not run_check("bernoulli_mle.score", score, given=wrong + S.p**2).passed
    # the root of a wrong score: sum y/p = sum (1 - y) / (2 (1 - p))
    half = _sum(S.y[S.m] / S.p - (1 - S.y[S.m]) / (2 * (1 - S.p)))
    k = _sum(S.y[S.m])
    assert run_check("bernoulli_mle.p_hat", 2 * k / (S.M + k), given=half).passed
    assert not run_check("bernoulli_mle.p_hat", 2 * k / (S.M + k)).passed
    assert not run_check("bernoulli_mle.p_hat", k / (S.M + k), given=half).passed


def test_a_right_earlier_step_gives_no_credit_to_a_wrong_root():
    score = _sum(S.y[S.m] / S.p - (1 - S.y[S.m]) / (1 - S.p))
    result = run_check("bernoulli_mle.p_hat", _sum(S.y[S.m]) / (S.M + 1), given=score)
    assert not result.passed


def test_the_variance_follows_from_a_wrong_derivative_in_sigma():
    # -M/(2 sigma) instead of -M/sigma: the root is sigma^2 = 2 * the variance estimate
    wrong = -S.M / (2 * S.sigma) + _sum((S.x[S.m] - S.mu) ** 2) / S.sigma**3
    answer = 2 * _sum((S.x[S.m] - _mean_x()) ** 2) / S.M
    assert run_check("gaussian_mle.sigma2_hat", answer, given=wrong).passed
    assert not run_check("gaussian_mle.sigma2_hat", answer).passed


def test_a_huge_expression_is_refused_within_the_budget():
    # 2**26 terms if expanded; the evaluator never expands, and the node count is bounded
    product = sp.Mul(*[(S.y[i] + S.p) for i in range(1, 27)], evaluate=False)
    result = run_check("bernoulli_mle.log_lik", product)
    assert not result.passed
    tower = sp.Mul(sp.Pow(sp.Integer(2), sp.Integer(10**30), evaluate=False), S.p,
                   evaluate=False)
    assert not run_check("bernoulli_mle.log_lik", tower).passed
    deep = S.p
    for _ in range(3000):
        deep = sp.Add(deep, S.p, evaluate=False)
    assert run_check("bernoulli_mle.log_lik", deep).diagnosis == "too_large"


def test_evaluation_stops_when_the_budget_runs_out():
    nested = _sum(_sum(_sum(S.x[S.m])))
    env = {"M": 8, "x": {i: 1.0 for i in range(1, 9)}}
    with pytest.raises(TooComplex):
        evaluate(nested, env, Budget(1000))
    assert evaluate(nested, env, Budget(10_000)) == 8**3


# --------------------------------------------------------------------------- the release

ROOT = Path(__file__).resolve().parent.parent

# How the results are usually written by hand, in the notebooks' LaTeX, code and words: a
# release holding one of them gives the step away as surely as SymPy's own spelling would.
BY_HAND = {
    "bernoulli_mle.log_lik": [r"k\log p+(M-k)\log(1-p)", r"y_m\log p+(1-y_m)\log(1-p)",
                              "p^{\\,k}(1-p)^{M-k}"],
    "bernoulli_mle.score": [r"\frac{k}{p}-\frac{M-k}{1-p}"],
    "bernoulli_mle.p_hat": [r"\frac{k}{M}", "k/M", "fraction of heads"],
    "gaussian_mle.gauss_log_lik": [r"-M\log\sigma-\frac{1}{2\sigma^2}"],
    "gaussian_mle.dlog_dmu": [r"\frac{1}{\sigma^2}\sum_m(x_m-\mu)"],
    "gaussian_mle.mu_hat": [r"\hat\mu=\frac{1}{M}"],
    "gaussian_mle.dlog_dsigma": [r"-\frac{M}{\sigma}+"],
    "gaussian_mle.sigma2_hat": [r"\hat\sigma^2=\frac{1}{M}", "np.var("],
    "gaussian_precision.nll_beta": [r"\frac{M}{2}\log(2\pi)-\frac{M}{2}\log\beta",
                                    r"\frac{M}{2}\log2\pi-\frac{M}{2}\log\beta"],
    "gaussian_precision.dnll_dbeta": [r"-\frac{M}{2\beta}"],
    "gaussian_precision.beta_hat": [r"\frac{M}{\sum", "inverseofthemeansquared"],
    "laplace_l1.laplace_nll": [r"M\log(2b)+"],
    "laplace_l1.l1_slope": [r"\sum_m\operatorname{sign}(c-y_m)"],
    "laplace_l1.c_hat": ["y_{K+1}", "y[K+1]", "median", "np.median("],
}


def _squeezed(text: str) -> str:
    return "".join(text.split())


@functools.cache
def _release_text(notebook: str) -> str:
    nb = json.loads((ROOT / "course" / notebook / f"{notebook}.ipynb").read_text("utf-8"))
    return _squeezed("\n".join("".join(c["source"]) for c in nb["cells"]))


def test_every_step_has_hand_written_forms_to_look_for():
    assert set(BY_HAND) == set(STEPS)


@pytest.mark.parametrize("name", STEPS)
def test_the_release_holds_no_expected_expression(name):
    exercise = get_exercise(name)
    text = _release_text(exercise.notebook)
    forms = _forms(exercise.truth()) | set(BY_HAND[name])
    for form in forms:
        assert _squeezed(form) not in text, (name, form)
