"""Every exercise of :mod:`lossutils.checks` against correct and buggy student solutions.

The solutions are written independently of :mod:`lossutils` (no reference function is
called), the way a student following the notebooks would write them: one correct function
per exercise, and one buggy function per mistake in each exercise's catalogue, which must fail
with that mistake's diagnosis.
"""

import re

import numpy as np
import pytest
import sympy as sp

from lossutils.checks import CheckFailed, check, exercises, get_exercise, run_check

# --------------------------------------------------------------------------- correct solutions


def log_likelihood(probs):
    with np.errstate(divide="ignore"):
        return np.sum(np.log(probs))


def negative_log_likelihood(probs):
    with np.errstate(divide="ignore"):
        return -np.sum(np.log(probs))


def bernoulli_mle(outcomes):
    return np.mean(outcomes)


def gaussian_nll_symbolic(y, y_hat, beta):
    density = sp.sqrt(beta / (2 * sp.pi)) * sp.exp(-beta * (y - y_hat) ** 2 / 2)
    return -sp.log(density)


def gaussian_nll(pred, target, beta):
    m = len(pred)
    constant = m / 2 * np.log(2 * np.pi) - m / 2 * np.log(beta)
    return constant + beta / 2 * np.sum((pred - target) ** 2)


def l2_loss(pred, target):
    return 0.5 * np.sum((pred - target) ** 2)


def l2_loss_grad(pred, target):
    return pred - target


def l1_loss(pred, target):
    return np.sum(np.abs(pred - target))


def l1_loss_grad(pred, target):
    return np.sign(pred - target)


def one_hot(labels, num_classes):
    if np.any((labels < 0) | (labels >= num_classes)):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(logits, labels):
    logp = log_softmax(logits)
    return -np.mean(logp[np.arange(len(labels)), labels])


def cross_entropy_grad(logits, labels):
    grad = softmax(logits)
    grad[np.arange(len(labels)), labels] -= 1
    return grad / len(labels)


def entropy(p):
    safe = np.where(p > 0, p, 1)
    return -np.sum(p * np.log(safe), axis=-1)


def kl_divergence(p, q):
    # p / 0 = inf is the honest ratio where q misses mass of p: silence only that warning
    with np.errstate(divide="ignore"):
        ratio = np.where(p > 0, p / np.where(p > 0, q, 1), 1)
    return np.sum(p * np.log(ratio), axis=-1)


def binary_cross_entropy_with_logits(logits, target):
    return np.mean(np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits))))


def hinge_loss(scores, target):
    return np.mean(np.maximum(0, 1 - target * scores))


def hinge_subgradient(scores, target):
    return np.where(target * scores < 1, -target, 0 * target) / len(scores)


def multiclass_hinge_loss(scores, labels):
    n = len(labels)
    true = scores[np.arange(n), labels][:, None]
    margins = np.maximum(0, scores - true + 1)
    margins[np.arange(n), labels] = 0
    return np.mean(np.sum(margins, axis=1))


def sgd_step(w, grad, lr):
    return w - lr * grad


def momentum_step(w, grad, v, lr, mu):
    v = mu * v - lr * grad
    return w + v, v


def adam_step(w, grad, state, lr=0.001, mu=0.9, rho=0.999, eps=1e-8):
    t = state["t"] + 1
    m = mu * state["m"] + (1 - mu) * grad
    r = rho * state["r"] + (1 - rho) * grad * grad
    m_hat = m / (1 - mu**t)
    r_hat = r / (1 - rho**t)
    return w - lr * m_hat / (np.sqrt(r_hat) + eps), {"t": t, "m": m, "r": r}


def amsgrad_step(w, grad, state, lr=0.001, mu=0.9, rho=0.999, eps=1e-8):
    t = state["t"] + 1
    m = mu * state["m"] + (1 - mu) * grad
    r = rho * state["r"] + (1 - rho) * grad * grad
    r_max = np.maximum(state["r_max"], r / (1 - rho**t))
    new_w = w - lr * (m / (1 - mu**t)) / (np.sqrt(r_max) + eps)
    return new_w, {"t": t, "m": m, "r": r, "r_max": r_max}


# The linear-classifier unit (06's Nesterov, AdaGrad, RMSProp; notebook 07) has its own file,
# test_checks_classifiers.py, which asserts the same for its exercises.
ELSEWHERE = {"nesterov_step", "adagrad_step", "rmsprop_step", "softmax_loss_naive",
             "softmax_loss_vectorized", "svm_loss_naive", "svm_loss_vectorized",
             "numerical_gradient", "train"}
HERE = [name for name in exercises() if name not in ELSEWHERE]
CORRECT = {name: globals()[name] for name in HERE}


# --------------------------------------------------------------------------- buggy solutions


def _naive_softmax(x):
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _xlogy(a, b):
    return np.where(a > 0, a * np.log(np.where(a > 0, b, 1)), 0.0)


def _student_adam(w, grad, state, lr, mu, rho, eps, bug=None):
    """Adam as a student might write it, with one bug switched on."""
    t = state["t"] if bug == "step_counter" else state["t"] + 1
    a, b = (rho, mu) if bug == "moments_swapped" else (mu, rho)
    m = a * state["m"] + (1 - a) * grad
    r = b * state["r"] + (1 - b) * grad**2
    if bug == "bias_correction_multiplies":
        m_hat, r_hat = m * (1 - mu), r * (1 - rho)
    elif bug == "no_bias_correction":
        m_hat, r_hat = m, r
    else:
        m_hat, r_hat = m / (1 - mu**t), r / (1 - rho**t)
    if bug == "eps_inside_sqrt":
        denominator = np.sqrt(r_hat + eps)
    elif bug == "missing_sqrt":
        denominator = r_hat + eps
    else:
        denominator = np.sqrt(r_hat) + eps
    if bug == "stores_corrected_moments":
        m, r = m_hat, r_hat
    return w - lr * m_hat / denominator, {"t": state["t"] + 1, "m": m, "r": r}


def _adam_bug(bug):
    def adam(w, grad, state, lr=0.001, mu=0.9, rho=0.999, eps=1e-8):
        return _student_adam(w, grad, state, lr, mu, rho, eps, bug)

    return adam


def _student_amsgrad(w, grad, state, lr, mu, rho, eps, bug=None):
    if bug in ("step_counter", "no_bias_correction", "bias_correction_multiplies",
               "stores_corrected_moments"):
        new_w, new = _student_adam(w, grad, state, lr, mu, rho, eps, bug)
        return new_w, {**new, "r_max": state["r_max"]}
    t = state["t"] + 1
    m = mu * state["m"] + (1 - mu) * grad
    r = rho * state["r"] + (1 - rho) * grad**2
    m_hat, r_hat = m / (1 - mu**t), r / (1 - rho**t)
    if bug == "max_over_momentum":
        r_max = np.maximum(state["r_max"], m_hat)
        step = r_max / (np.sqrt(r_hat) + eps)
    elif bug == "no_max":
        r_max = np.maximum(state["r_max"], r_hat)
        step = m_hat / (np.sqrt(r_hat) + eps)
    elif bug == "torch_amsgrad":
        r_max = np.maximum(state["r_max"], r)
        step = m_hat / (np.sqrt(r_max / (1 - rho**t)) + eps)
    else:  # max_not_stored
        step = m_hat / (np.sqrt(np.maximum(state["r_max"], r_hat)) + eps)
        r_max = r_hat
    return w - lr * step, {"t": t, "m": m, "r": r, "r_max": r_max}


def _amsgrad_bug(bug):
    def amsgrad(w, grad, state, lr=0.001, mu=0.9, rho=0.999, eps=1e-8):
        return _student_amsgrad(w, grad, state, lr, mu, rho, eps, bug)

    return amsgrad


def _sgd_in_place(w, grad, lr):
    w -= lr * grad
    return w


def _momentum_in_place(w, grad, v, lr, mu):
    v *= mu
    v -= lr * grad
    return w + v, v


def _adam_state_in_place(w, grad, state, lr=0.001, mu=0.9, rho=0.999, eps=1e-8):
    state["t"] += 1
    t = state["t"]
    state["m"] = mu * state["m"] + (1 - mu) * grad
    state["r"] = rho * state["r"] + (1 - rho) * grad**2
    m_hat, r_hat = state["m"] / (1 - mu**t), state["r"] / (1 - rho**t)
    return w - lr * m_hat / (np.sqrt(r_hat) + eps), state


def _one_hot_index_error(labels, num_classes):
    if np.any(labels < 0):
        raise IndexError("negative label")  # the wrong exception for an invalid label
    return np.eye(num_classes)[labels]


def _ll_grad_sign(pred, target):
    return target - pred


def _softmax_no_keepdims(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1)


def _ws(s, y):
    n = len(y)
    margins = np.maximum(0, s - s[np.arange(n), y][:, None] + 1)
    margins[np.arange(n), y] = 0
    return margins


def _sym_std(y, y_hat, beta):
    sigma = 1 / beta
    density = sp.exp(-((y - y_hat) ** 2) / (2 * sigma**2)) / (sp.sqrt(2 * sp.pi) * sigma)
    return -sp.log(density)


def _sym_precision_as_variance(y, y_hat, beta):
    density = sp.exp(-((y - y_hat) ** 2) / (2 * beta)) / sp.sqrt(2 * sp.pi * beta)
    return -sp.log(density)


def _sym_foreign(y, y_hat, beta):
    sigma = sp.Symbol("sigma", positive=True)
    return sp.log(sigma) + (y - y_hat) ** 2 / (2 * sigma**2)


M2 = np.log(2 * np.pi) / 2

BUGGY = [
    # 01-likelihood
    ("log_likelihood", "product_underflow", lambda p: np.log(np.prod(p))),
    ("log_likelihood", "sign_flipped", lambda p: -np.sum(np.log(p))),
    ("log_likelihood", "mean_instead_of_sum", lambda p: np.mean(np.log(p))),
    ("log_likelihood", "log_base", lambda p: np.sum(np.log10(p))),
    ("log_likelihood", "epsilon_clip", lambda p: np.sum(np.log(p + 1e-12))),
    ("log_likelihood", "warns", lambda p: np.sum(np.log(p))),
    ("negative_log_likelihood", "product_underflow", lambda p: -np.log(np.prod(p))),
    ("negative_log_likelihood", "sign_flipped", lambda p: np.sum(np.log(p))),
    ("negative_log_likelihood", "mean_instead_of_sum", lambda p: -np.mean(np.log(p))),
    ("negative_log_likelihood", "log_base", lambda p: -np.sum(np.log2(p))),
    ("negative_log_likelihood", "epsilon_clip", lambda p: -np.sum(np.log(np.clip(p, 1e-15, 1)))),
    ("negative_log_likelihood", "warns", lambda p: -np.sum(np.log(p))),
    ("bernoulli_mle", "fraction_of_tails", lambda o: np.mean(1 - o)),
    ("bernoulli_mle", "count_not_fraction", lambda o: np.sum(o) * 1.0),
    ("bernoulli_mle", "integer_division", lambda o: float(np.sum(o) // len(o))),
    # 02-gaussian-l2
    ("gaussian_nll_symbolic", "std_instead_of_variance", _sym_std),
    ("gaussian_nll_symbolic", "precision_as_variance", _sym_precision_as_variance),
    ("gaussian_nll_symbolic", "missing_half",
     lambda y, yh, b: sp.log(2 * sp.pi) / 2 - sp.log(b) / 2 + b * (y - yh) ** 2),
    ("gaussian_nll_symbolic", "sign_error",
     lambda y, yh, b: sp.log(sp.sqrt(b / (2 * sp.pi)) * sp.exp(-b * (y - yh) ** 2 / 2))),
    ("gaussian_nll_symbolic", "constant_off",
     lambda y, yh, b: sp.log(2 * sp.pi) / 2 + b * (y - yh) ** 2 / 2),
    ("gaussian_nll_symbolic", "foreign_symbols", _sym_foreign),
    ("gaussian_nll_symbolic", "wrong_type", lambda y, yh, b: "beta/2 (y - y_hat)^2"),
    ("gaussian_nll", "std_instead_of_variance",
     lambda p, t, b: len(p) * (M2 - np.log(b)) + b**2 / 2 * np.sum((p - t) ** 2)),
    ("gaussian_nll", "precision_as_variance",
     lambda p, t, b: len(p) * (M2 + np.log(b) / 2) + np.sum((p - t) ** 2) / (2 * b)),
    ("gaussian_nll", "missing_half",
     lambda p, t, b: len(p) * (M2 - np.log(b) / 2) + b * np.sum((p - t) ** 2)),
    ("gaussian_nll", "dropped_constants", lambda p, t, b: b / 2 * np.sum((p - t) ** 2)),
    ("gaussian_nll", "log_beta_sign",
     lambda p, t, b: len(p) * (M2 + np.log(b) / 2) + b / 2 * np.sum((p - t) ** 2)),
    ("gaussian_nll", "mean_instead_of_sum",
     lambda p, t, b: M2 - np.log(b) / 2 + b / 2 * np.mean((p - t) ** 2)),
    ("l2_loss", "missing_half", lambda p, t: np.sum((p - t) ** 2)),
    ("l2_loss", "norm_not_squared", lambda p, t: np.linalg.norm(p - t)),
    ("l2_loss", "mean_instead_of_sum", lambda p, t: 0.5 * np.mean((p - t) ** 2)),
    ("l2_loss_grad", "sign_flipped", _ll_grad_sign),
    ("l2_loss_grad", "extra_factor_two", lambda p, t: 2 * (p - t)),
    ("l2_loss_grad", "mean_instead_of_sum", lambda p, t: (p - t) / len(p)),
    ("l1_loss", "missing_abs", lambda p, t: np.sum(p - t)),
    ("l1_loss", "squared_error", lambda p, t: np.sum((p - t) ** 2)),
    ("l1_loss", "mean_instead_of_sum", lambda p, t: np.mean(np.abs(p - t))),
    ("l1_loss_grad", "sign_flipped", lambda p, t: np.sign(t - p)),
    ("l1_loss_grad", "returns_difference", lambda p, t: p - t),
    ("l1_loss_grad", "extra_factor_two", lambda p, t: 2 * np.sign(p - t)),
    ("l1_loss_grad", "mean_instead_of_sum", lambda p, t: np.sign(p - t) / len(p)),
    # 03-cross-entropy
    ("one_hot", "transposed", lambda y, c: np.eye(c)[y].T),
    ("one_hot", "num_classes_from_data", lambda y, c: np.eye(y.max() + 1)[y]),
    ("one_hot", "wrong_dtype", lambda y, c: one_hot(y, c).astype(int)),
    ("one_hot", "missing_error", lambda y, c: np.eye(c)[y]),
    ("one_hot", "missing_error", _one_hot_index_error),
    ("softmax", "overflow", _naive_softmax),
    ("softmax", "global_max",
     lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum(axis=-1, keepdims=True)),
    ("softmax", "wrong_axis",
     lambda x: np.exp(x - x.max(0, keepdims=True)) / np.exp(x - x.max(0, keepdims=True)).sum(0)),
    ("softmax", "no_keepdims", _softmax_no_keepdims),
    ("softmax", "wrong_dtype", lambda x: softmax(x).astype(np.float64)),
    ("log_softmax", "overflow", lambda x: np.log(_naive_softmax(x))),
    ("log_softmax", "log_of_softmax", lambda x: np.log(softmax(x))),
    ("log_softmax", "epsilon_in_log", lambda x: np.log(softmax(x) + 1e-10)),
    ("log_softmax", "global_max",
     lambda x: x - x.max() - np.log(np.exp(x - x.max()).sum(axis=-1, keepdims=True))),
    ("log_softmax", "shift_not_undone",
     lambda x: x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))),
    ("log_softmax", "wrong_axis", lambda x: log_softmax(x.T).T if x.ndim == 2 else log_softmax(x)),
    ("log_softmax", "no_keepdims",
     lambda x: x - x.max(-1, keepdims=True)
     - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1))),
    ("cross_entropy", "overflow",
     lambda x, y: -np.mean(np.log(_naive_softmax(x)[np.arange(len(y)), y]))),
    ("cross_entropy", "log_of_softmax",
     lambda x, y: -np.mean(np.log(softmax(x)[np.arange(len(y)), y]))),
    ("cross_entropy", "epsilon_in_log",
     lambda x, y: -np.mean(np.log(softmax(x)[np.arange(len(y)), y] + 1e-12))),
    ("cross_entropy", "epsilon_in_log",
     lambda x, y: -np.mean(np.log(np.clip(softmax(x)[np.arange(len(y)), y], 1e-7, 1)))),
    ("cross_entropy", "sum_instead_of_mean",
     lambda x, y: -np.sum(log_softmax(x)[np.arange(len(y)), y])),
    ("cross_entropy", "all_pairs_indexed", lambda x, y: -np.mean(log_softmax(x)[:, y])),
    ("cross_entropy", "labels_as_one_hot", lambda x, y: -np.mean(np.sum(log_softmax(x) * y, 1))),
    ("cross_entropy", "sign_flipped", lambda x, y: np.mean(log_softmax(x)[np.arange(len(y)), y])),
    ("cross_entropy_grad", "overflow",
     lambda x, y: (_naive_softmax(x) - np.eye(x.shape[1], dtype=x.dtype)[y]) / len(y)),
    ("cross_entropy_grad", "missing_mean",
     lambda x, y: softmax(x) - np.eye(x.shape[1], dtype=x.dtype)[y]),
    ("cross_entropy_grad", "sign_flipped",
     lambda x, y: (np.eye(x.shape[1], dtype=x.dtype)[y] - softmax(x)) / len(y)),
    ("cross_entropy_grad", "labels_as_one_hot", lambda x, y: (softmax(x) - y) / len(y)),
    ("cross_entropy_grad", "wrong_dtype",
     lambda x, y: (softmax(x) - np.eye(x.shape[1])[y]) / len(y)),
    # 04-kl-divergence
    ("entropy", "log_zero", lambda p: -np.sum(p * np.log(p), axis=-1)),
    ("entropy", "wrong_axis", lambda p: -np.sum(_xlogy(p, p), axis=0)),
    ("entropy", "sign_flipped", lambda p: np.sum(_xlogy(p, p), axis=-1)),
    ("entropy", "log_base", lambda p: -np.sum(_xlogy(p, p), axis=-1) / np.log(2)),
    ("entropy", "warns", lambda p: -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)),
    ("kl_divergence", "swapped_arguments", lambda p, q: kl_divergence(q, p)),
    ("kl_divergence", "log_zero", lambda p, q: np.sum(p * np.log(p / q), axis=-1)),
    ("kl_divergence", "cross_entropy_instead", lambda p, q: -np.sum(_xlogy(p, q), axis=-1)),
    ("kl_divergence", "sign_flipped", lambda p, q: -kl_divergence(p, q)),
    ("kl_divergence", "wrong_axis", lambda p, q: np.sum(_xlogy(p, p) - _xlogy(p, q))),
    ("kl_divergence", "log_base", lambda p, q: kl_divergence(p, q) / np.log(10)),
    ("kl_divergence", "warns",
     lambda p, q: np.sum(np.where(p > 0, p * np.log(p / q), 0.0), axis=-1)),
    ("binary_cross_entropy_with_logits", "overflow",
     lambda x, t: -np.mean(t * np.log(1 / (1 + np.exp(-x)))
                           + (1 - t) * np.log(1 - 1 / (1 + np.exp(-x))))),
    ("binary_cross_entropy_with_logits", "logits_as_probabilities",
     lambda x, t: -np.mean(t * np.log(x) + (1 - t) * np.log(1 - x))),
    ("binary_cross_entropy_with_logits", "sum_instead_of_mean",
     lambda x, t: np.sum(np.logaddexp(0, x) - x * t)),
    ("binary_cross_entropy_with_logits", "sign_flipped",
     lambda x, t: np.mean(x * t - np.logaddexp(0, x))),
    ("binary_cross_entropy_with_logits", "warns",
     lambda x, t: np.mean(np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x)))
                          - x * t)),
    # 05-hinge-svm
    ("hinge_loss", "missing_max", lambda s, y: np.mean(1 - y * s)),
    ("hinge_loss", "perceptron_margin", lambda s, y: np.mean(np.maximum(0, -y * s))),
    ("hinge_loss", "squared_hinge", lambda s, y: np.mean(np.maximum(0, 1 - y * s) ** 2)),
    ("hinge_loss", "sum_instead_of_mean", lambda s, y: np.sum(np.maximum(0, 1 - y * s))),
    ("hinge_subgradient", "missing_mean", lambda s, y: np.where(y * s < 1, -y, 0 * y)),
    ("hinge_subgradient", "sign_flipped", lambda s, y: np.where(y * s < 1, y, 0 * y) / len(s)),
    ("hinge_subgradient", "wrong_active_set",
     lambda s, y: np.where(y * s < 0, -y, 0 * y) / len(s)),
    ("hinge_subgradient", "target_missing",
     lambda s, y: np.where(y * s < 1, -1.0, 0.0).astype(s.dtype) / len(s)),
    ("multiclass_hinge_loss", "counts_true_class",
     lambda s, y: np.mean(np.sum(np.maximum(0, s - s[np.arange(len(y)), y][:, None] + 1), 1))),
    ("multiclass_hinge_loss", "crammer_singer", lambda s, y: np.mean(np.max(_ws(s, y), 1))),
    ("multiclass_hinge_loss", "divided_by_classes", lambda s, y: np.mean(_ws(s, y))),
    ("multiclass_hinge_loss", "sum_instead_of_mean", lambda s, y: np.sum(_ws(s, y))),
    # 06-optimization
    ("sgd_step", "ascent", lambda w, g, lr: w + lr * g),
    ("sgd_step", "lr_ignored", lambda w, g, lr: w - g),
    ("sgd_step", "returns_step", lambda w, g, lr: -lr * g),
    ("sgd_step", "modifies_input", _sgd_in_place),
    ("momentum_step", "velocity_sign",
     lambda w, g, v, lr, mu: (w - (mu * v + lr * g), mu * v + lr * g)),
    ("momentum_step", "torch_form",
     lambda w, g, v, lr, mu: (w - lr * (mu * v + g), mu * v + g)),
    ("momentum_step", "old_velocity", lambda w, g, v, lr, mu: (w + v, mu * v - lr * g)),
    ("momentum_step", "returns_old_velocity", lambda w, g, v, lr, mu: (w + mu * v - lr * g, v)),
    ("momentum_step", "ema_velocity",
     lambda w, g, v, lr, mu: (w + mu * v - (1 - mu) * lr * g, mu * v - (1 - mu) * lr * g)),
    ("momentum_step", "modifies_input", _momentum_in_place),
    *[("adam_step", bug, _adam_bug(bug)) for bug in (
        "bias_correction_multiplies", "no_bias_correction", "stores_corrected_moments",
        "step_counter", "moments_swapped", "eps_inside_sqrt", "missing_sqrt")],
    ("adam_step", "modifies_input", _adam_state_in_place),
    *[("amsgrad_step", bug, _amsgrad_bug(bug)) for bug in (
        "max_over_momentum", "no_max", "torch_amsgrad", "max_not_stored",
        "bias_correction_multiplies", "no_bias_correction", "stores_corrected_moments",
        "step_counter")],
]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("hidden", [False, True], ids=["visible", "hidden"])
@pytest.mark.parametrize("name", HERE)
def test_correct_solution_passes(name, hidden, capsys):
    check(name, CORRECT[name], hidden=hidden)
    out = capsys.readouterr()
    n = len(get_exercise(name).cases(hidden=hidden))
    assert out.out == f"{name}: {n}/{n} cases passed\n"
    assert out.err == ""


@pytest.mark.parametrize("seed", ["1", "987654321"])
@pytest.mark.parametrize("name", HERE)
def test_correct_solution_passes_for_any_grading_seed(name, seed, monkeypatch, capsys):
    monkeypatch.setenv("LOSSUTILS_GRADING_SEED", seed)
    check(name, CORRECT[name], hidden=True)
    assert capsys.readouterr().out.endswith("cases passed\n")


@pytest.mark.parametrize(
    ("name", "diagnosis", "fn"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in BUGGY],
)
def test_buggy_solution_is_diagnosed(name, diagnosis, fn):
    with pytest.raises(CheckFailed) as info:
        check(name, fn)
    assert info.value.diagnosis == diagnosis, str(info.value)
    assert info.value.exercise == name
    assert str(info.value).endswith(f"\n[check: {name}; diagnosis: {diagnosis}]")
    message = info.value.message
    assert "[check:" not in message
    mistakes = {m.id: m.message for m in get_exercise(name).mistakes}
    if diagnosis in mistakes:
        label = r"Diagnosis( \(from case \d+, [^\n]*\))?: "
        assert re.search(f"^{label}{re.escape(mistakes[diagnosis])}$", message, re.MULTILINE)


# One buggy solution per exercise is also run on the hidden battery.
_FIRST_PER_EXERCISE = list({row[0]: row for row in reversed(BUGGY)}.values())


@pytest.mark.parametrize(
    ("name", "diagnosis", "fn"),
    [pytest.param(*row, id=f"{row[0]}-{row[1]}") for row in _FIRST_PER_EXERCISE],
)
def test_buggy_solution_is_diagnosed_on_hidden_cases(name, diagnosis, fn):
    with pytest.raises(CheckFailed) as info:
        check(name, fn, hidden=True)
    assert info.value.diagnosis == diagnosis, str(info.value)


def test_every_exercise_is_tested_here_or_in_the_classifier_file():
    assert ELSEWHERE <= set(exercises())


def test_at_least_forty_buggy_solutions():
    assert len(BUGGY) >= 40


@pytest.mark.parametrize("name", HERE)
def test_every_catalogued_mistake_has_a_buggy_solution(name):
    covered = {d for n, d, _ in BUGGY if n == name}
    assert {m.id for m in get_exercise(name).mistakes} <= covered


def test_result_counts_cases():
    result = run_check("softmax", _naive_softmax)
    assert not result.passed
    assert result.n_cases == len(get_exercise("softmax").cases())
    assert 0 < result.n_passed < result.n_cases
    assert result.diagnosis == "overflow"
