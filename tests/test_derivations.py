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
import re
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
    s.i, s.j, s.k = sp.symbols("i j k", integer=True, positive=True)
    s.z = sp.IndexedBase("z")
    s.xs = sp.Symbol("x", real=True)  # 04's point x (a plain symbol there)
    s.mu_p, s.mu_q = sp.symbols("mu_p mu_q", real=True)
    s.sigma_p, s.sigma_q = sp.symbols("sigma_p sigma_q", positive=True)
    s.zs, s.t = sp.symbols("z t", real=True)  # 04's logit and target
    s.w = sp.Symbol("w", real=True)
    s.gamma = sp.Symbol("gamma", positive=True)
    s.grad = sp.IndexedBase("grad")
    s.g_mean = sp.Symbol("g_mean", real=True)
    s.gs = sp.Symbol("g", real=True)  # 06's constant gradient
    s.eta = sp.Symbol("eta", positive=True)
    s.kk = sp.Symbol("k", integer=True, positive=True)
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


def _softmax(index, bound=None):
    """softmax(z)_index; the sum runs over j, or over ``bound`` where j is a free index."""
    bound = S.j if bound is None else bound
    return sp.exp(S.z[index]) / sp.Sum(sp.exp(S.z[bound]), (bound, 1, S.K))


def _gauss(x, mu, sigma):
    return sp.exp(-(x - mu) ** 2 / (2 * sigma**2)) / (sigma * sp.sqrt(2 * sp.pi))


def _sigmoid(z):
    return 1 / (1 + sp.exp(-z))


def _bce():
    return -(S.t * sp.log(_sigmoid(S.zs)) + (1 - S.t) * sp.log(1 - _sigmoid(S.zs)))


def _hinge(m):
    return sp.Max(0, 1 - S.y[m] * S.w * S.x[m])


def _active(m):
    return sp.Piecewise((1, S.y[m] * S.w * S.x[m] < 1), (0, True))


def _ema_sum(weight):
    return sp.Sum(weight * S.grad[S.i], (S.i, 1, S.kk))


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
    "softmax_ce.dlogsoftmax": sp.diff(S.z[S.k] - sp.log(sp.Sum(sp.exp(S.z[S.j]), (S.j, 1, S.K))),
                                      S.z[S.i]),
    "softmax_ce.ce_grad": _softmax(S.i) * sp.Sum(S.y[S.k], (S.k, 1, S.K)) - S.y[S.i],
    "softmax_jacobian.dsoftmax_ii": sp.diff(_softmax(S.i, S.k), S.z[S.i]),
    "softmax_jacobian.dsoftmax_ij": sp.diff(_softmax(S.i, S.k), S.z[S.j]),
    "softmax_jacobian.jacobian": sp.Piecewise((_softmax(S.i, S.k) - _softmax(S.i, S.k) ** 2,
                                               sp.Eq(S.i, S.j)),
                                              (-_softmax(S.i, S.k) * _softmax(S.j, S.k), True)),
    "gaussian_kl.log_ratio": sp.log(_gauss(S.xs, S.mu_p, S.sigma_p) / _gauss(S.xs, S.mu_q,
                                                                               S.sigma_q)),
    "gaussian_kl.expected_sq": S.sigma_p**2 + S.mu_p**2 - 2 * S.mu_p * S.mu_q + S.mu_q**2,
    "gaussian_kl.kl": (sp.log(S.sigma_q) - sp.log(S.sigma_p)
                       + ((S.mu_q - S.mu_p) ** 2 + S.sigma_p**2 - S.sigma_q**2)
                       / (2 * S.sigma_q**2)),
    "bce_logits.log_sigmoid": sp.log(_sigmoid(S.zs)),
    "bce_logits.log_one_minus": sp.log(1 - _sigmoid(S.zs)),
    "bce_logits.bce": _bce(),
    "bce_logits.bce_stable": (sp.Max(S.zs, 0) - S.t * S.zs
                              + sp.log(1 + sp.exp(-sp.Abs(S.zs)))),
    "svm_slack.xi_opt": sp.Piecewise((1 - S.y[S.m] * S.w * S.x[S.m],
                                      S.y[S.m] * S.w * S.x[S.m] < 1), (0, True)),
    "svm_slack.svm_objective": S.w**2 / 2 + S.gamma * _sum(_hinge(S.m)),
    "hinge_kink.hinge_slope": -S.x[S.m] * S.y[S.m],
    "hinge_kink.subgradient_sum": _sum(-S.y[S.m] * S.x[S.m] * _active(S.m)),
    "adam_bias.m_k": sp.Sum((1 - S.mu) * S.mu ** (S.kk - S.i) * S.grad[S.i], (S.i, 1, S.kk)),
    "adam_bias.expected_m_k": ((1 - S.mu) * sp.Sum(S.mu ** (S.kk - S.i) * S.g_mean,
                                                   (S.i, 1, S.kk))).doit(),
    "adam_bias.correction": -1 / (S.mu**S.kk - 1),
    "momentum_limit.v_k": -S.eta * S.gs * sp.Sum(S.mu**S.i, (S.i, 0, S.kk - 1)),
    "momentum_limit.v_limit": S.eta * S.gs / (S.mu - 1),
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
     _sum(-sp.log(S.sigma) - (S.x[S.m] - S.mu) ** 2 / (2 * S.sigma))),
    ("gaussian_mle.gauss_log_lik", "exponent_sign",
     _sum(sp.log(1 / S.sigma) + (S.x[S.m] - S.mu) ** 2 / (2 * S.sigma**2)) - 5),
    ("gaussian_mle.gauss_log_lik", "likelihood_not_log",
     sp.Product(_gauss(S.x[S.m], S.mu, S.sigma), (S.m, 1, S.M))),
    ("gaussian_mle.dlog_dsigma", "power_rule_factor",
     -S.M / S.sigma + _sum((S.x[S.m] - S.mu) ** 2) / (2 * S.sigma**3)),
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
    ("softmax_ce.dlogsoftmax", "missing_delta", -_softmax(S.i)),
    ("softmax_ce.dlogsoftmax", "sign", _softmax(S.i) - sp.KroneckerDelta(S.i, S.k)),
    ("softmax_ce.dlogsoftmax", "softmax_jacobian",
     sp.diff(_softmax(S.k), S.z[S.i])),
    ("softmax_ce.dlogsoftmax", "index", sp.KroneckerDelta(S.i, S.k) - _softmax(S.k)),
    ("softmax_ce.dlogsoftmax", "lost_sum", S.z[S.j] - _softmax(S.i)),
    ("softmax_ce.ce_grad", "negated", S.y[S.i] - _softmax(S.i)),
    ("softmax_ce.ce_grad", "missing_label", _softmax(S.i)),
    ("softmax_ce.ce_grad", "true_class_only", _softmax(S.i) - 1),
    ("softmax_ce.ce_grad", "unnormalised", sp.exp(S.z[S.i]) - S.y[S.i]),
    ("softmax_jacobian.dsoftmax_ii", "numerator_only", _softmax(S.i, S.k)),
    ("softmax_jacobian.dsoftmax_ii", "quotient_sign",
     _softmax(S.i, S.k) * (1 + _softmax(S.i, S.k))),
    ("softmax_jacobian.dsoftmax_ii", "unsquared_denominator",
     (sp.exp(S.z[S.i]) * sp.Sum(sp.exp(S.z[S.j]), (S.j, 1, S.K)) - sp.exp(2 * S.z[S.i]))
     / sp.Sum(sp.exp(S.z[S.j]), (S.j, 1, S.K))),
    ("softmax_jacobian.dsoftmax_ij", "zero", 0),
    ("softmax_jacobian.dsoftmax_ij", "sign", _softmax(S.i, S.k) * _softmax(S.j, S.k)),
    ("softmax_jacobian.dsoftmax_ij", "one_factor", -_softmax(S.j, S.k)),
    ("softmax_jacobian.jacobian", "diagonal_only",
     sp.KroneckerDelta(S.i, S.j) * _softmax(S.i, S.k)),
    ("softmax_jacobian.jacobian", "off_diagonal_only",
     -_softmax(S.i, S.k) * _softmax(S.j, S.k)),
    ("softmax_jacobian.jacobian", "sign",
     _softmax(S.i, S.k) * (_softmax(S.j, S.k) - sp.KroneckerDelta(S.i, S.j))),
    ("softmax_jacobian.jacobian", "no_delta", _softmax(S.i, S.k) * (1 - _softmax(S.j, S.k))),
    ("gaussian_kl.log_ratio", "swapped",
     sp.log(_gauss(S.xs, S.mu_q, S.sigma_q)) - sp.log(_gauss(S.xs, S.mu_p, S.sigma_p))),
    ("gaussian_kl.log_ratio", "variance_as_std",
     sp.log(S.sigma_q / S.sigma_p) - (S.xs - S.mu_p) ** 2 / (2 * S.sigma_p)
     + (S.xs - S.mu_q) ** 2 / (2 * S.sigma_q)),
    ("gaussian_kl.log_ratio", "missing_half",
     sp.log(S.sigma_q / S.sigma_p) - (S.xs - S.mu_p) ** 2 / S.sigma_p**2
     + (S.xs - S.mu_q) ** 2 / S.sigma_q**2),
    ("gaussian_kl.log_ratio", "dropped_normalisers",
     (S.xs - S.mu_q) ** 2 / (2 * S.sigma_q**2) - (S.xs - S.mu_p) ** 2 / (2 * S.sigma_p**2)),
    ("gaussian_kl.log_ratio", "normalisers_flipped",
     sp.log(S.sigma_p / S.sigma_q) - (S.xs - S.mu_p) ** 2 / (2 * S.sigma_p**2)
     + (S.xs - S.mu_q) ** 2 / (2 * S.sigma_q**2)),
    ("gaussian_kl.expected_sq", "wrong_distribution",
     S.sigma_q**2 + (S.mu_q - S.mu_p) ** 2),
    ("gaussian_kl.expected_sq", "missing_shift", S.sigma_p**2),
    ("gaussian_kl.expected_sq", "cross_term",
     (S.sigma_p + S.mu_p - S.mu_q) ** 2),
    ("gaussian_kl.expected_sq", "std_not_variance", S.sigma_p + (S.mu_q - S.mu_p) ** 2),
    ("gaussian_kl.kl", "swapped",
     sp.log(S.sigma_p / S.sigma_q) + (S.sigma_q**2 + (S.mu_q - S.mu_p) ** 2)
     / (2 * S.sigma_p**2) - sp.Rational(1, 2)),
    ("gaussian_kl.kl", "missing_half",
     sp.log(S.sigma_q / S.sigma_p) + (S.sigma_p**2 + (S.mu_q - S.mu_p) ** 2)
     / (2 * S.sigma_q**2)),
    ("gaussian_kl.kl", "log_ratio_flipped",
     sp.log(S.sigma_p / S.sigma_q) + (S.sigma_p**2 + (S.mu_q - S.mu_p) ** 2)
     / (2 * S.sigma_q**2) - sp.Rational(1, 2)),
    ("gaussian_kl.kl", "std_for_variance",
     sp.log(S.sigma_q / S.sigma_p) + (S.sigma_p**2 + (S.mu_q - S.mu_p) ** 2)
     / (2 * S.sigma_q) - sp.Rational(1, 2)),
    ("bce_logits.log_sigmoid", "missing_log", _sigmoid(S.zs)),
    ("bce_logits.log_sigmoid", "sign_inside", -sp.log(1 + sp.exp(S.zs))),
    ("bce_logits.log_sigmoid", "sign_outside", sp.log(1 + sp.exp(-S.zs))),
    ("bce_logits.log_sigmoid", "factor", sp.log(_sigmoid(S.zs), 2)),
    ("bce_logits.log_one_minus", "same_as_log_sigmoid", -sp.log(1 + sp.exp(-S.zs))),
    ("bce_logits.log_one_minus", "sign_outside", sp.log(1 + sp.exp(S.zs))),
    ("bce_logits.log_one_minus", "log_of_difference", 1 - sp.log(_sigmoid(S.zs))),
    ("bce_logits.bce", "negated", -_bce()),
    ("bce_logits.bce", "targets_swapped",
     -((1 - S.t) * sp.log(_sigmoid(S.zs)) + S.t * sp.log(1 - _sigmoid(S.zs)))),
    ("bce_logits.bce", "missing_tz", sp.log(1 + sp.exp(S.zs))),
    ("bce_logits.bce_stable", "negated", S.t * S.zs - sp.log(1 + sp.exp(S.zs))),
    ("bce_logits.bce_stable", "targets_swapped",
     -((1 - S.t) * sp.log(_sigmoid(S.zs)) + S.t * sp.log(1 - _sigmoid(S.zs)))),
    ("bce_logits.bce_stable", "missing_tz", sp.Max(S.zs, 0) + sp.log(1 + sp.exp(-sp.Abs(S.zs)))),
    ("bce_logits.bce_stable", "unstable", sp.log(1 + sp.exp(S.zs)) - S.t * S.zs),
    ("bce_logits.bce_stable", "unstable", _bce()),
    ("svm_slack.xi_opt", "no_max", 1 - S.y[S.m] * S.w * S.x[S.m]),
    ("svm_slack.xi_opt", "perceptron", sp.Max(0, -S.y[S.m] * S.w * S.x[S.m])),
    ("svm_slack.xi_opt", "sign", sp.Max(0, 1 + S.y[S.m] * S.w * S.x[S.m])),
    ("svm_slack.xi_opt", "missing_label", sp.Max(0, 1 - S.w * S.x[S.m])),
    ("svm_slack.svm_objective", "missing_half", S.w**2 + S.gamma * _sum(_hinge(S.m))),
    ("svm_slack.svm_objective", "no_max",
     S.w**2 / 2 + S.gamma * _sum(1 - S.y[S.m] * S.w * S.x[S.m])),
    ("svm_slack.svm_objective", "gamma_misplaced", S.gamma * S.w**2 / 2 + _sum(_hinge(S.m))),
    ("svm_slack.svm_objective", "mean", S.w**2 / 2 + S.gamma * _sum(_hinge(S.m) / S.M)),
    ("svm_slack.svm_objective", "lost_sum", S.w**2 / 2 + S.gamma * _hinge(S.m)),
    ("hinge_kink.hinge_slope", "sign", S.y[S.m] * S.x[S.m]),
    ("hinge_kink.hinge_slope", "missing_x", -S.y[S.m]),
    ("hinge_kink.hinge_slope", "missing_label", -S.x[S.m]),
    ("hinge_kink.hinge_slope", "wrt_margin", -1),
    ("hinge_kink.subgradient_sum", "sign", _sum(S.y[S.m] * S.x[S.m] * _active(S.m))),
    ("hinge_kink.subgradient_sum", "perceptron_active_set",
     _sum(sp.Piecewise((-S.y[S.m] * S.x[S.m], S.y[S.m] * S.w * S.x[S.m] < 0), (0, True)))),
    ("hinge_kink.subgradient_sum", "all_samples", -_sum(S.y[S.m] * S.x[S.m])),
    ("hinge_kink.subgradient_sum", "kink",
     -_sum(S.y[S.m] * S.x[S.m] * sp.Heaviside(1 - S.y[S.m] * S.w * S.x[S.m], 2))),
    ("adam_bias.m_k", "reversed_weights", (1 - S.mu) * _ema_sum(S.mu ** (S.i - 1))),
    ("adam_bias.m_k", "missing_one_minus_mu", _ema_sum(S.mu ** (S.kk - S.i))),
    ("adam_bias.m_k", "exponent_off_by_one", (1 - S.mu) * _ema_sum(S.mu ** (S.kk - S.i + 1))),
    ("adam_bias.expected_m_k", "unbiased", S.g_mean),
    ("adam_bias.expected_m_k", "power_of_one_minus_mu", S.g_mean * (1 - S.mu) ** S.kk),
    ("adam_bias.expected_m_k", "missing_one", S.g_mean * S.mu**S.kk),
    ("adam_bias.expected_m_k", "off_by_one", S.g_mean - S.g_mean * S.mu ** (S.kk + 1)),
    ("adam_bias.correction", "multiplies_one_minus_mu", 1 - S.mu),
    ("adam_bias.correction", "not_inverted", 1 - S.mu**S.kk),
    ("adam_bias.correction", "power_outside", (1 - S.mu) ** -S.kk),
    ("adam_bias.correction", "no_power", 1 / (1 - S.mu)),
    ("momentum_limit.v_k", "sign", S.eta * S.gs * (1 - S.mu**S.kk) / (1 - S.mu)),
    ("momentum_limit.v_k", "off_by_one", -S.eta * S.gs * (1 - S.mu ** (S.kk + 1)) / (1 - S.mu)),
    ("momentum_limit.v_k", "no_geometric_sum", -S.eta * S.gs * S.kk),
    ("momentum_limit.v_k", "average_form", -S.eta * S.gs * (1 - S.mu**S.kk)),
    ("momentum_limit.v_limit", "sign", S.eta * S.gs / (1 - S.mu)),
    ("momentum_limit.v_limit", "one_step", -S.eta * S.gs),
    ("momentum_limit.v_limit", "series_from_mu", -S.eta * S.gs * S.mu / (1 - S.mu)),
    ("momentum_limit.v_limit", "plus", -S.eta * S.gs / (1 + S.mu)),
    ("momentum_limit.v_limit", "foreign_symbols",
     -S.eta * S.gs * (1 - S.mu**S.kk) / (1 - S.mu)),
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
    for answer, diagnosis in [(None, "not_implemented"), ("p * x", "wrong_type"),
                              ([sp.Integer(1)], "wrong_type"), (0.5j, "wrong_type"),
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
    assert run_check("gaussian_mle.sigma2_hat", answer, given=(wrong, _mean_x())).passed
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
    "softmax_ce.dlogsoftmax": [r"\delta_{ki}-\hat y_i"],
    "softmax_ce.ce_grad": [r"\hat y_i-y_i", r"\operatorname{softmax}(\mathbf z)-\mathbf y",
                           "softmax(logits)-one_hot(labels)", "predictionminustarget"],
    "softmax_jacobian.dsoftmax_ii": [r"\hat y_i(1-\hat y_i)"],
    "softmax_jacobian.dsoftmax_ij": [r"-\hat y_i\hat y_j"],
    "softmax_jacobian.jacobian": [
        r"\operatorname{diag}(\hat{\mathbf y})-\hat{\mathbf y}\hat{\mathbf y}^\top",
        r"\hat y_i(\delta_{ij}-\hat y_j)"],
    "gaussian_kl.log_ratio": [r"\log\frac{\sigma_q}{\sigma_p}-\frac{(x-\mu_p)^2}"],
    "gaussian_kl.expected_sq": [r"\sigma_p^2+(\mu_p-\mu_q)^2"],
    "gaussian_kl.kl": [r"\frac{\sigma_p^2+(\mu_p-\mu_q)^2}{2\sigma_q^2}-\frac12"],
    "bce_logits.log_sigmoid": [r"\log\sigma(z)=-\log(1+e^{-z})", "-np.logaddexp(0,-z)"],
    "bce_logits.log_one_minus": [r"\log(1-\sigma(z))=\log\sigma(-z)", "-np.logaddexp(0,z)"],
    "bce_logits.bce": [r"s(z)-tz"],
    "bce_logits.bce_stable": [r"\max(z,0)-tz+\log", "np.maximum(z,0)-t*z"],
    "svm_slack.xi_opt": [r"\xi_m^{\star}=\max(0,", r"\xi_m^\star=\max(0,"],
    "svm_slack.svm_objective": [r"\tfrac12\lVert\mathbf{w}\rVert^2+\gamma\sum_{m=1}^M\max",
                                r"+\gamma\sum_{m=1}^M\max\!\big(0,\,1-y_m(\mathbf w^\top"],
    "hinge_kink.hinge_slope": [r"-y_mx_m"],
    "hinge_kink.subgradient_sum": [r"\partialh(1)=[-1,0]", r"-\sum_{m=1}^{M}y_mx_m\,H"],
    "adam_bias.m_k": [r"(1-\mu)\sum_{i=1}^{k}\mu^{k-i}"],
    "adam_bias.expected_m_k": [r"(1-\mu^k)\,\mathbb E[\mathbf g]", r"(1-\mu^k)\,\bar g"],
    "adam_bias.correction": [r"\frac{1}{1-\mu^k}", "1/(1-mu**k)"],
    "momentum_limit.v_k": [r"\frac{1-\mu^k}{1-\mu}"],
    "momentum_limit.v_limit": [r"\frac{\eta}{1-\mu}", r"-\frac{\eta}{1-\mu}\,\mathbf g"],
}


def _squeezed(text: str) -> str:
    return "".join(text.split())


@functools.cache
def _release_text(notebook: str) -> str:
    nb = json.loads((ROOT / "course" / notebook / f"{notebook}.ipynb").read_text("utf-8"))
    # the cells, and their ids, which the feedback pages show too
    return _squeezed("\n".join("".join(c["source"]) + c.get("id", "")
                                + str(c["metadata"].get("nbgrader", {}).get("grade_id", ""))
                                for c in nb["cells"]))


def test_every_step_has_hand_written_forms_to_look_for():
    assert set(BY_HAND) == set(STEPS)


@pytest.mark.parametrize("name", STEPS)
def test_the_release_holds_no_expected_expression(name):
    exercise = get_exercise(name)
    text = _release_text(exercise.notebook)
    forms = _forms(exercise.truth()) | set(BY_HAND[name])
    for form in forms:
        assert _squeezed(form) not in text, (name, form)


def test_every_step_is_documented_with_its_contract():
    text = (ROOT / "docs" / "exercises.md").read_text(encoding="utf-8")
    for name in STEPS:
        assert f"| `{name}` | `{get_exercise(name).step.name}` |" in text, name


# --------------------------------------------------------------------------- the points

# The one-line exercises named when the derivations were introduced; any other exercise whose
# model solution is a single returned expression counts too (see _one_expression).
ONE_LINERS = {"log_likelihood", "negative_log_likelihood", "bernoulli_mle", "l2_loss",
              "l2_loss_grad", "l1_loss", "l1_loss_grad", "hinge_loss", "one_hot", "sgd_step"}


def _one_expression(source: str) -> bool:
    """Whether a solution cell's function returns one expression and does nothing else.

    Docstrings, conversions of the inputs (``x = np.asarray(x)``), ``with np.errstate(...)``
    and input validation (``if ...: raise``) do not count as work.
    """
    import ast

    function = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef))
    statements = []
    pending = list(function.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.With):
            pending = node.body + pending
        elif not _no_work(node):
            statements.append(node)
    return len(statements) == 1 and isinstance(statements[0], ast.Return)


def _no_work(node) -> bool:
    import ast

    docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    validation = isinstance(node, ast.If) and all(isinstance(s, ast.Raise) for s in node.body)
    conversion = (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                  and ast.unparse(node.value.func) == "np.asarray")
    return docstring or validation or conversion


def _exercises_and_points(nb: dict):
    """(grade id, points, kind) of every autograded exercise: "step" or "function"."""
    cells = {c["metadata"].get("nbgrader", {}).get("grade_id"): c for c in nb["cells"]}
    for grade_id, cell in cells.items():
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        source = "".join(cell["source"])
        kind = "step" if re.search(r'check\("[a-z_0-9]+\.', source) else "function"
        solution = cells.get(grade_id.removeprefix("test_"))
        yield grade_id, float(meta["points"]), kind, "".join(solution["source"])


@pytest.mark.parametrize("notebook", sorted({get_exercise(n).notebook for n in STEPS}))
def test_one_expression_exercises_earn_at_most_a_quarter_of_the_points(notebook):
    nb = json.loads((ROOT / "solutions" / notebook / f"{notebook}.ipynb").read_text("utf-8"))
    total = one = 0.0
    for grade_id, points, kind, solution in _exercises_and_points(nb):
        total += points
        if kind == "function" and (grade_id.removeprefix("test_") in ONE_LINERS
                                   or _one_expression(solution)):
            one += points
            assert points == 1, f"{grade_id}: a one-expression exercise is worth 1 point"
    assert one <= total / 4, (notebook, one, total)


def test_the_one_expression_rule_recognises_the_one_liners():
    assert _one_expression("def f(p):\n    '''doc'''\n    p = np.asarray(p)\n"
                           "    with np.errstate(divide='ignore'):\n"
                           "        return np.sum(np.log(p))")
    assert _one_expression("def f(y, c):\n    if y.min() < 0:\n        raise ValueError('no')\n"
                           "    return np.eye(c)[y]")
    assert not _one_expression("def f(z):\n    e = np.exp(z - z.max())\n    return e / e.sum()")


@pytest.mark.parametrize("notebook", [f"0{i}" for i in range(1, 7)])
def test_every_notebook_has_two_derivations_of_several_steps(notebook):
    derivations = {}
    for name in STEPS:
        exercise = get_exercise(name)
        if exercise.notebook.startswith(notebook):
            derivations.setdefault(exercise.derivation.id, []).append(name)
    assert len(derivations) >= 2
    assert all(len(steps) >= 2 for steps in derivations.values())


def test_a_form_undefined_at_the_data_is_decided_symbolically():
    # y (y - 1) / (y (y - 1)) is 1 wherever it is defined, and undefined for every flip in
    # {0, 1}: numerically it cannot be judged, symbolically it is the right estimate
    answer = _sum(_undefined_at_flips(S.y[S.m])) / S.M
    assert evaluate(answer, {"M": 2, "y": {1: 0.0, 2: 1.0}}, Budget(100)) != 0.5  # nan
    result = run_check("bernoulli_mle.p_hat", answer)
    assert result.passed, result.message
    wrong = _sum(_undefined_at_flips(1)) / S.M  # 1 wherever it is defined
    assert not run_check("bernoulli_mle.p_hat", wrong).passed


def _undefined_at_flips(factor):
    """``factor * (y^2 - y) / (y^2 - y)``, kept as typed (SymPy would cancel it)."""
    y = S.y[S.m]
    zero = y**2 - y
    return sp.Mul(factor, zero, sp.Pow(zero, -1, evaluate=False), evaluate=False)


@pytest.mark.parametrize(("name", "earlier", "answer", "given"), [
    # the shift missing from E_p[(x - mu_q)^2]: the closed form built on it
    ("gaussian_kl.kl", "gaussian_kl.expected_sq",
     sp.log(S.sigma_q / S.sigma_p) + S.sigma_p**2 / (2 * S.sigma_q**2) - sp.Rational(1, 2),
     S.sigma_p**2),
    # the geometric sum without (1 - mu): the correction built on it
    ("adam_bias.correction", "adam_bias.expected_m_k", (1 - S.mu) / (1 - S.mu**S.kk),
     S.g_mean * (1 - S.mu**S.kk) / (1 - S.mu)),
    # the geometric sum with 1 + mu: its limit is the wrong limit, taken correctly
    ("momentum_limit.v_limit", "momentum_limit.v_k", -S.eta * S.gs / (1 + S.mu),
     -S.eta * S.gs * (1 - S.mu**S.kk) / (1 + S.mu)),
    # a hinge without the max: the objective built on it
    ("svm_slack.svm_objective", "svm_slack.xi_opt",
     S.w**2 / 2 + S.gamma * _sum(1 - S.y[S.m] * S.w * S.x[S.m]),
     1 - S.y[S.m] * S.w * S.x[S.m]),
])
def test_a_step_built_on_a_wrong_earlier_step_passes(name, earlier, answer, given):
    assert not run_check(earlier, given).passed
    result = run_check(name, answer, given=given)
    assert result.passed, result.message


def test_the_symbolic_second_opinion_is_bounded():
    from lossutils.checks._derivation import _expanded_terms

    binomials = sp.Mul(*[(S.y[i] + S.p) for i in range(1, 21)], evaluate=False)
    assert _expanded_terms(binomials) >= 2000  # would expand into 2**20 terms
    assert 8 <= _expanded_terms((S.p + 1) ** 3 * (S.M + S.p)) <= 16  # an upper bound
    # undefined at every point (0/0 for flips in {0, 1}) and far too big to expand: refused
    # without simplifying
    answer = sp.Add(_sum(_undefined_at_flips(S.y[S.m])) / S.M, binomials,
                    sp.Mul(-1, binomials, evaluate=False), evaluate=False)
    assert not run_check("bernoulli_mle.p_hat", answer).passed


# --------------------------------------------------------------------------- follow-through

_HALF = sp.Rational(1, 2)


@pytest.mark.parametrize(("name", "answer", "given"), [
    # a log-likelihood without the data: its derivative, and the root of that
    ("bernoulli_mle.score", S.p - _HALF, S.p**2 / 2 - S.p / 2),
    ("bernoulli_mle.p_hat", _HALF, S.p - _HALF),
    ("gaussian_mle.dlog_dmu", -S.mu, -(S.mu**2 + S.sigma**2) / 2),
    ("gaussian_mle.mu_hat", sp.Integer(0), -S.mu),
    ("gaussian_mle.dlog_dsigma", -S.sigma, -(S.mu**2 + S.sigma**2) / 2),
    ("gaussian_mle.sigma2_hat", sp.Integer(0), (-S.sigma, sp.Integer(0))),
    # no slack at all, and the objective built on it
    ("svm_slack.svm_objective", S.w**2 / 2, sp.Integer(0)),
    # an expected square made up so that the closed form comes out as 0
    ("gaussian_kl.kl", sp.Integer(0),
     sp.Mul(0, S.sigma_q**2, evaluate=False) + S.sigma_q**2 * (1 + 2 * sp.log(S.sigma_p
                                                                          / S.sigma_q))),
    # log sigmoid(z) = 0
    ("bce_logits.bce", (1 - S.t) * S.zs, (sp.Integer(0), sp.Integer(0))),
    ("bce_logits.bce", (1 - S.t) * S.zs, (sp.Integer(0), -sp.log(1 + sp.exp(S.zs)))),
])
def test_a_made_up_earlier_step_earns_no_follow_through(name, answer, given):
    result = run_check(name, answer, given=given)
    assert not result.passed, result.message
    assert "follows correctly" not in result.message


def test_a_catalogued_slip_in_an_earlier_step_still_lets_the_next_one_follow():
    # the chain-rule sign lost in the score: the root of that score, honestly solved
    k = _sum(S.y[S.m])
    slipped = _sum(S.y[S.m] / S.p + (1 - S.y[S.m]) / (1 - S.p))
    assert run_check("bernoulli_mle.score", slipped).diagnosis == "chain_rule_sign"
    # k/p = -(M - k)/(1 - p) has no root in (0, 1): nothing to follow
    assert not run_check("bernoulli_mle.p_hat", k / (k - S.M), given=slipped).passed
    # the missing tails: log L = sum y log p, whose derivative follows
    heads = _sum(S.y[S.m] * sp.log(S.p))
    assert run_check("bernoulli_mle.log_lik", heads).diagnosis == "missing_tails"
    assert run_check("bernoulli_mle.score", _sum(S.y[S.m] / S.p), given=heads).passed
    # a shift missing from E_p[(x - mu_q)^2] does not depend on the means, and still counts
    assert run_check("gaussian_kl.expected_sq", S.sigma_p**2).diagnosis == "missing_shift"


def test_the_binary_cross_entropy_follows_from_both_earlier_steps():
    log_sig = -sp.log(1 + sp.exp(-S.zs))
    wrong_b = 1 + sp.log(1 + sp.exp(-S.zs))  # log(1 - sigmoid) taken as 1 - log sigmoid
    assert run_check("bce_logits.log_one_minus", wrong_b).diagnosis == "log_of_difference"
    built = -(S.t * log_sig + (1 - S.t) * wrong_b)
    result = run_check("bce_logits.bce", built, given=(log_sig, wrong_b))
    assert result.passed, result.message
    assert "log_one_minus" in result.message
    # the rewrite log(1 - sigmoid) = log sigmoid - z applied to a right (a) ignores the (b)
    # the student gave: it is the right loss, so it passes on its own, but a wrong (a) with
    # the rewrite does not follow from the student's (b)
    wrong_a = -sp.log(1 + sp.exp(S.zs))  # log sigmoid(-z), catalogued
    right_b = -sp.log(1 + sp.exp(S.zs))
    rewrite = -(S.t * wrong_a + (1 - S.t) * (wrong_a - S.zs))
    assert not run_check("bce_logits.bce", rewrite, given=(wrong_a, right_b)).passed
    mine = -(S.t * wrong_a + (1 - S.t) * right_b)
    assert run_check("bce_logits.bce", mine, given=(wrong_a, right_b)).passed


def test_the_variance_follows_from_the_students_own_mean():
    slipped = _sum(S.x[S.m]) / (S.M - 1)  # catalogued: bessel
    assert run_check("gaussian_mle.mu_hat", slipped).diagnosis == "bessel"
    right = -S.M / S.sigma + _sum((S.x[S.m] - S.mu) ** 2) / S.sigma**3
    answer = _sum((S.x[S.m] - slipped) ** 2) / S.M
    result = run_check("gaussian_mle.sigma2_hat", answer, given=(right, slipped))
    assert result.passed, result.message
    assert "mu_hat" in result.message
    # without the student's mean, the right mean is used: the same answer is wrong
    assert not run_check("gaussian_mle.sigma2_hat", answer, given=(right, None)).passed


# Parts of an answer, as written in words, that a message must not spell out: the answer of
# the step itself, or the answer of an earlier step of the same exercise.
LEAKS = {
    "hinge_kink.hinge_slope": ["-y x", "-y_m x_m", "= y_m x_m", "by y_m x_m"],
    "hinge_kink.subgradient_sum": ["-y_m x_m"],
    "svm_slack.xi_opt": ["1 - y_m w x_m where"],
    "svm_slack.svm_objective": ["max(0, 1 - y_m w x_m)"],
    "gaussian_mle.dlog_dsigma": ["-M/sigma", "-M / sigma"],
    "bce_logits.log_one_minus": ["exp(-z) / (1 + exp(-z))", "sigmoid(-z)"],
    "gaussian_kl.kl": ["-1/2", "log(sigma_q / sigma_p)", "2 sigma_q^2"],
}


@pytest.mark.parametrize("name", sorted(LEAKS))
def test_no_diagnosis_spells_out_part_of_an_answer(name):
    messages = [m.message for m in get_exercise(name).mistakes]
    messages += [run_check(name, answer).message for n, _, answer in BUGGY if n == name]
    for message in messages:
        for part in LEAKS[name]:
            assert part not in message, (name, part, message)


@pytest.mark.parametrize(("name", "answer", "diagnosis", "says", "never"), [
    # x is the variable of the expectation in 04, not a parameter to solve for
    ("gaussian_kl.kl", sp.log(S.sigma_q / S.sigma_p) + (S.xs - S.mu_q) ** 2 / (2 * S.sigma_q**2),
     "contains_parameter", "expectation", "solve your condition"),
    # the variance from the estimated mean: the student's own mu_hat, not a condition for mu
    ("gaussian_mle.sigma2_hat", _sum((S.x[S.m] - S.mu) ** 2) / S.M, "contains_parameter",
     "mu_hat", "solve your condition"),
    ("gaussian_mle.mu_hat", _sum(S.x[S.m] - S.mu) / S.M, "contains_parameter",
     "solve your condition for mu", "your estimate"),
    # a term that does not depend on x, but on the sigmas: named as such
    ("gaussian_kl.log_ratio", sp.log(S.sigma_q / S.sigma_p) - (S.xs - S.mu_p) ** 2
     / (2 * S.sigma_p**2) + (S.xs - S.mu_q) ** 2 / (2 * S.sigma_q**2) + 1, "constant_off",
     "does not depend on x", "the parameters"),
    # 0, typed or left by cancellation: no "constant factor (about 0)"
    ("bernoulli_mle.log_lik", sp.Integer(0), "zero", "is 0", "factor"),
    ("bernoulli_mle.log_lik", _sum(S.y[S.m] * sp.log(S.p))
     - _sum(S.y[S.m] * sp.log(S.p)) * (1 + sp.Float(1e-70)), "zero", "is 0", "about"),
    # 05's symbols are bound to w_s, m_s, M_s (M and y are its data)
    ("svm_slack.svm_objective", S.w**2 / 2 + S.y[S.m], "lost_sum", "(m_s, 1, M_s)",
     "(m, 1, M)"),
    ("svm_slack.svm_objective", sp.Symbol("theta"), "foreign_symbols", "x_s[m_s]", "(m, 1, M)"),
    # one sample's slope typed as a sum: no advice to write a sum
    ("hinge_kink.hinge_slope", _sum(-S.y[S.m] * S.x[S.m]), "foreign_symbols", "one sample",
     "sp.Sum"),
])
def test_hints_fit_the_exercise(name, answer, diagnosis, says, never):
    result = run_check(name, answer)
    assert result.diagnosis == diagnosis, result.message
    assert says in result.message, result.message
    assert never not in result.message, result.message


def _bound(source: str) -> set:
    """Names a code cell binds at its top level (assignments, definitions, loops, imports)."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: such cells bind nothing the checks use
        return set()
    names = set()
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.For):
            targets = [node.target]
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


@pytest.mark.parametrize("notebook", sorted({get_exercise(n).notebook for n in STEPS}))
def test_no_cell_rebinds_a_derivation_symbol_or_step(notebook):
    # Re-running a check (or an earlier section) after a later cell rebound its name fails
    # in a way the student cannot read: "svm_objective is a function", or a numpy section
    # meeting a SymPy symbol. Each name is bound by one cell only.
    nb = json.loads((ROOT / "solutions" / notebook / f"{notebook}.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    steps = {m.group(1) for source in code
             for m in re.finditer(r'check\("[a-z_0-9]+\.[a-z_0-9]+", (\w+)', source)}
    symbols = set()
    for source in code:
        if re.search(r"sp\.(Symbol|symbols|IndexedBase)\(", source):
            symbols |= _bound(source)
    for name in sorted(steps | symbols):
        cells = [i for i, source in enumerate(code) if name in _bound(source)]
        assert len(cells) == 1, (notebook, name, cells)


def test_an_integral_left_with_erf_is_named_with_a_way_out():
    # what sp.integrate returns before simplification: erf terms that cancel at infinity
    answer = sp.Add(S.sigma_p**2 + (S.mu_p - S.mu_q) ** 2, sp.erf(S.mu_p / S.sigma_p),
                    -sp.erf(S.mu_p / S.sigma_p), evaluate=False)
    result = run_check("gaussian_kl.expected_sq", answer)
    assert result.diagnosis == "unsupported"
    assert "sp.simplify" in result.message
    assert "by hand" in result.message
